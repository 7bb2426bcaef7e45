// e2e of `mcp sync` through the COMPILED binary, real agent, real podman. Two definitions: one
// deployed and running whose file now says `active = false` (sync must stop it and say so), one
// never deployed (sync records its desired state without deploying it). A broken definition file
// sits among them: one line naming it, a non-zero exit, and the others are still synced.
// `--dry-run` reports the same plan, with what changes field by field, and changes nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxImage, podmanEnv } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const OFF = `sync-${rand}-off`;
const ON = `sync-${rand}-on`;
const BAD = `sync-${rand}-bad`;
const OFF_WEB = `${OFF}-web`;
const ON_WEB = `${ON}-web`;

let agent: LocalAgent;
let image = "";
let badFile = "";

async function state(name: string): Promise<string> {
  const pe = await podmanEnv();
  const p = Bun.spawn(
    ["podman", ...pe.globalArgs, "container", "inspect", "--format", "{{.State.Status}}", name],
    {
      env: { ...process.env, ...pe.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "ignore",
    },
  );
  const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
  return code === 0 ? out.trim() : "missing";
}

function writeDef(name: string, active: boolean): void {
  writeFileSync(
    join(agent.servicesDir, `${name}.toml`),
    `name = "${name}"\nactive = ${active}\n\n[[components]]\nname = "web"\nimage = "${image}"\n`,
  );
}

interface Row {
  service: string;
  component: string;
  desired: string;
  observed: string;
  active: boolean;
}
async function mine(): Promise<string[]> {
  const r = await agent.mcp(["list", "--json"]);
  expect(r.code).toBe(0);
  return (JSON.parse(r.stdout) as { services: Row[] }).services
    .filter((s) => s.service.startsWith(`sync-${rand}`))
    .map((s) => `${s.service}/${s.component} desired=${s.desired} active=${s.active}`)
    .sort();
}

interface SyncRow {
  node: string;
  service: string;
  changed: boolean;
  summary: string;
  error?: string;
  /** Dry run: the spec the node holds ("deployed", "absent"…) and what changes against it. */
  deployed?: string;
  changes?: { path: string; kind: string; from?: unknown; to?: unknown }[];
}
const ours = (rows: SyncRow[]) => rows.filter((r) => r.service.startsWith(`sync-${rand}`));

beforeAll(async () => {
  [agent, image] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0")]);
  writeDef(OFF, true);
  const d = await agent.mcp(["deploy", OFF, "--pull", "never"]);
  if (d.code !== 0) throw new Error(`deploy ${OFF} failed: ${d.stderr}`);
  writeDef(OFF, false); // the operator now wants it off
  writeDef(ON, true);
  badFile = join(agent.servicesDir, `${BAD}.toml`);
  writeFileSync(badFile, `name = "${BAD}"\n\n[[components]]\nname = "web"\n`); // no image
}, 60_000);

afterAll(async () => {
  await removeContainers([OFF_WEB, ON_WEB]);
  await agent?.stop();
}, 30_000);

describe("sync (compiled binary, real podman)", () => {
  test("--dry-run reports the plan and changes nothing", async () => {
    const before = await mine();
    expect(before).toEqual([`${OFF}/web desired=running active=true`]);
    const r = await agent.mcp(["sync", "--dry-run", "--json"]);
    expect(r.code).toBe(2); // the bad file
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toStartWith(`mcp: ${badFile}: components[0].image: `);
    const out = JSON.parse(r.stdout) as { dryRun: boolean; results: SyncRow[] };
    expect(out.dryRun).toBe(true);
    // Each with what changes against the spec the node holds (OFF: only active; ON: nothing held).
    expect(ours(out.results)).toEqual([
      {
        node: "local",
        service: OFF,
        changed: true,
        summary: "would be stopped (inactive)",
        deployed: "deployed",
        changes: [{ path: "active", kind: "changed", from: true, to: false }],
      },
      {
        node: "local",
        service: ON,
        changed: true,
        summary: "would record desired state",
        deployed: "absent",
        changes: [],
      },
    ]);
    const text = await agent.mcp(["sync", "--dry-run"]);
    expect(text.code).toBe(2);
    const lines = text.stdout.split("\n");
    expect(lines).toContain(`${OFF}: changes against the spec recorded on local:`);
    expect(lines[lines.indexOf(`${OFF}: changes against the spec recorded on local:`) + 1]).toBe(
      "  active: true -> false",
    );
    expect(lines).toContain(`${ON}: not recorded on local yet: everything is new`);
    expect(await mine()).toEqual(before);
    expect(await state(OFF_WEB)).toBe("running");
  }, 30_000);

  test("sync stops the inactive service, records the other, names the bad file", async () => {
    const r = await agent.mcp(["sync"]);
    expect(r.code).toBe(2);
    const err = r.stderr.trim().split("\n");
    expect(err).toHaveLength(1);
    expect(err[0]).toStartWith(`mcp: ${badFile}: components[0].image: `);
    expect(r.stdout).toMatch(new RegExp(`^local +${OFF} +yes +stopped \\(inactive\\)$`, "m"));
    expect(r.stdout).toMatch(new RegExp(`^local +${ON} +yes +desired state recorded$`, "m"));
    expect(r.stdout).not.toContain(BAD);
    expect(await state(OFF_WEB)).toBe("exited");
    expect(await state(ON_WEB)).toBe("missing"); // recorded, not deployed
    expect(await mine()).toEqual([
      `${OFF}/web desired=stopped active=false`,
      `${ON}/web desired=running active=true`,
    ]);
  }, 30_000);

  test("a second sync with the file fixed reports both unchanged and exits 0", async () => {
    writeFileSync(
      badFile,
      `name = "${BAD}"\nactive = false\n\n[[components]]\nname = "web"\nimage = "${image}"\n`,
    );
    const r = await agent.mcp(["sync", "--json"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(ours((JSON.parse(r.stdout) as { results: SyncRow[] }).results)).toEqual([
      { node: "local", service: BAD, changed: true, summary: "desired state recorded" },
      { node: "local", service: OFF, changed: false, summary: "unchanged" },
      { node: "local", service: ON, changed: false, summary: "unchanged" },
    ]);
    expect(await state(OFF_WEB)).toBe("exited");
  }, 30_000);

  test("node down: one line, non-zero", async () => {
    await agent.stopAgent();
    try {
      const r = await agent.mcp(["sync"]);
      expect(r.code).toBe(1);
      const err = r.stderr.trim().split("\n");
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(/^mcp: local: UNAVAILABLE: /);
    } finally {
      await agent.startAgent();
    }
  }, 30_000);
});
