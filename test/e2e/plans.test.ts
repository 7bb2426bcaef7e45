// e2e acceptance test of plans before changes (issue 19, stumble 4 and "Plans before changes")
// through the COMPILED binary, a real local agent, real podman and images pulled from a real OCI
// registry:
//   - `mcp deploy --dry-run` before the first deploy says everything is new, then the argv;
//   - after a deploy, a definition with a new image, changed/added/removed env and another port
//     gives exactly those changes, field by field, then the argv; the node is untouched (same
//     container, same image, still answering on the old port); `mcp sync --dry-run` shows the same;
//   - `mcp history --diff 1` after the second deploy shows that change; the oldest entry has
//     nothing before it; a bad K is a usage error;
//   - after `mcp rollback`, the rollback row names the entry it restored by the K the table shows
//     (and its time), and still does after another deploy pushed it down the list;
//   - with the agent stopped, a dry run is one line naming the node, exit 1.
// The tests run in file order and share one service, as an operator would drive it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  busyboxImage,
  freePort,
  podman,
  pushToRegistry,
  type Registry,
  startRegistry,
} from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `plan-${rand}`;
const WEB = `${SVC}-web`;

let agent: LocalAgent;
let registry: Registry | null = null;
let repo = ""; // <registry>/plan-<rand>
let defFile = "";
const ports = { old: 0, new: 0 };

function writeDef(o: { tag: string; port: number; env: string[] }): void {
  writeFileSync(
    defFile,
    [
      `name = "${SVC}"`,
      "",
      "[[components]]",
      'name = "web"',
      `image = "${repo}:${o.tag}"`,
      `ports = ["127.0.0.1:${o.port}:8080"]`,
      `env = ${JSON.stringify(o.env)}`,
      "",
    ].join("\n"),
  );
}

const V1 = () => ({ tag: "v1", port: ports.old, env: ["GREETING=hello", "OLD=1"] });
const V2 = () => ({ tag: "v2", port: ports.new, env: ["GREETING=bye", "NEW=x y"] });

/** The lines V1 → V2 changes, as every plan and diff renders them. */
const changeLines = () => [
  `  web.image: ${repo}:v1 -> ${repo}:v2`,
  `  web.ports: - "127.0.0.1:${ports.old}:8080"`,
  `  web.ports: + "127.0.0.1:${ports.new}:8080"`,
  "  web.env.GREETING: hello -> bye",
  '  web.env.OLD: - removed (was "1")',
  '  web.env.NEW: + "x y"',
];

async function mcpOk(args: string[]): Promise<string> {
  const r = await agent.mcp(args);
  if (r.code !== 0 || r.stderr !== "")
    throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function inspect(format: string): Promise<string> {
  const r = await podman("inspect", "--format", format, WEB);
  return r.code === 0 ? r.stdout : "missing";
}

async function answers(port: number): Promise<boolean> {
  for (let i = 0; i < 40; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      return res.status === 200;
    } catch {
      await Bun.sleep(50);
    }
  }
  return false;
}

interface Entry {
  k: number;
  deployedAt: string;
  kind: string;
  images: string;
  detail?: string;
  rollbackTo?: { k: number; id: number };
}

async function history(): Promise<Entry[]> {
  return (JSON.parse(await mcpOk(["history", SVC, "--json"])) as { entries: Entry[] }).entries;
}

/** The table's time for an entry (to the second), as the rollback detail must name it. */
const tableTime = (e: Entry) => e.deployedAt.replace(/\.\d+Z$/, "Z");

beforeAll(async () => {
  const [a, r, local] = await Promise.all([startLocalAgent(), startRegistry(), busyboxImage("v1.0.0")]);
  agent = a;
  registry = r;
  repo = `${r.address}/plan-${rand}`;
  await pushToRegistry(local, `${repo}:v1`);
  await pushToRegistry(local, `${repo}:v2`);
  ports.old = await freePort();
  ports.new = await freePort();
  while (ports.new === ports.old) ports.new = await freePort();
  defFile = join(agent.servicesDir, `${SVC}.toml`);
}, 60_000);

afterAll(async () => {
  await removeContainers([WEB]);
  for (const tag of ["v1", "v2"]) if (repo) await podman("rmi", "--force", "--ignore", `${repo}:${tag}`);
  await registry?.stop();
  await agent?.stop();
}, 30_000);

describe("plans before changes (compiled binary, real registry, real podman)", () => {
  test("deploy --dry-run before the first deploy: everything is new, then the argv; nothing is created", async () => {
    writeDef(V1());
    const lines = (await mcpOk(["deploy", SVC, "--dry-run"])).trimEnd().split("\n");
    expect(lines.slice(0, 2)).toEqual([
      `dry run: deploying ${SVC} to local (from ${defFile})`,
      "not deployed on local yet: everything is new",
    ]);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toStartWith(`web: podman `);
    expect(lines[2]).toContain(`run -d --name ${WEB} `);
    expect(lines[2]).toEndWith(` ${repo}:v1`);
    expect(await inspect("{{.Id}}")).toBe("missing");
  }, 20_000);

  test("after a deploy, a changed image, env and port are shown field by field, then the argv; the node is untouched", async () => {
    const d = await agent.mcp(["deploy", SVC]);
    expect(d.code).toBe(0);
    const id = await inspect("{{.Id}}");
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    expect(await answers(ports.old)).toBe(true);

    writeDef(V2());
    const lines = (await mcpOk(["deploy", SVC, "--dry-run"])).trimEnd().split("\n");
    expect(lines.slice(0, -1)).toEqual([
      `dry run: deploying ${SVC} to local (from ${defFile})`,
      "changes against the spec deployed on local:",
      ...changeLines(),
    ]);
    const argv = lines.at(-1)!;
    expect(argv).toStartWith(`web: podman `);
    expect(argv).toContain(`-p 127.0.0.1:${ports.new}:8080`);
    expect(argv).not.toContain(`:${ports.old}:`);
    expect(argv).toContain("-e GREETING=bye -e 'NEW=x y'");
    expect(argv).toEndWith(` ${repo}:v2`);

    // Nothing changed on the node: the same container, its image, its port.
    expect(await inspect("{{.Id}}")).toBe(id);
    expect(await inspect("{{.State.Status}}")).toBe("running");
    expect(await inspect("{{.ImageName}}")).toBe(`${repo}:v1`);
    expect(await answers(ports.old)).toBe(true);
    expect(await history()).toHaveLength(1);

    // The same plan for scripts.
    const json = JSON.parse(await mcpOk(["deploy", SVC, "--dry-run", "--json"])) as {
      dryRun: boolean;
      plan: {
        deployed: string;
        changes: { path: string; kind: string; item?: boolean; from?: unknown; to?: unknown }[];
      };
      results: { name: string; argv: string[] }[];
    };
    expect(json.dryRun).toBe(true);
    expect(json.plan.deployed).toBe("deployed");
    expect(json.plan.changes).toEqual([
      { path: "web.image", kind: "changed", from: `${repo}:v1`, to: `${repo}:v2` },
      { path: "web.ports", kind: "removed", item: true, from: `127.0.0.1:${ports.old}:8080` },
      { path: "web.ports", kind: "added", item: true, to: `127.0.0.1:${ports.new}:8080` },
      { path: "web.env.GREETING", kind: "changed", from: "hello", to: "bye" },
      { path: "web.env.OLD", kind: "removed", from: "1" },
      { path: "web.env.NEW", kind: "added", to: "x y" },
    ]);
    expect(json.results[0]!.argv.at(-1)).toBe(`${repo}:v2`);
    expect(await inspect("{{.Id}}")).toBe(id);
  }, 60_000);

  test("sync --dry-run shows the same changes for the service and records nothing", async () => {
    const id = await inspect("{{.Id}}");
    const r = await agent.mcp(["sync", "--dry-run"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.split("\n");
    const at = lines.indexOf(`${SVC}: changes against the spec recorded on local:`);
    expect(at).toBeGreaterThan(0);
    expect(lines.slice(at + 1, at + 1 + changeLines().length)).toEqual(changeLines());
    expect(r.stdout).toMatch(new RegExp(`^local +${SVC} +yes +would record desired state$`, "m"));
    // Still the v1 spec on the node.
    const again = (await mcpOk(["deploy", SVC, "--dry-run"])).split("\n");
    expect(again).toContain(changeLines()[0]!);
    expect(await inspect("{{.Id}}")).toBe(id);
  }, 30_000);

  test("history --diff 1 after the second deploy shows that change; the oldest has nothing before it", async () => {
    const d = await agent.mcp(["deploy", SVC]);
    expect(d.code).toBe(0);
    expect(await inspect("{{.ImageName}}")).toBe(`${repo}:v2`);
    const h = await history();
    expect(h.map((e) => [e.k, e.kind, e.images])).toEqual([
      [1, "deploy", `web=${repo}:v2`],
      [2, "deploy", `web=${repo}:v1`],
    ]);

    const lines = (await mcpOk(["history", SVC, "--diff", "1"])).trimEnd().split("\n");
    expect(lines[0]).toMatch(
      new RegExp(
        `^${SVC} on local: from k=2 \\(deploy ${tableTime(h[1]!)} by \\S+\\) to k=1 \\(deploy ${tableTime(h[0]!)} by \\S+\\):$`,
      ),
    );
    expect(lines.slice(1)).toEqual(changeLines());
    // K..J names the same pair, either way round.
    expect(await mcpOk(["history", SVC, "--diff", "2..1"])).toBe(`${lines.join("\n")}\n`);

    const oldest = await mcpOk(["history", SVC, "--diff", "2"]);
    expect(oldest.trim()).toMatch(
      /k=2 \(deploy .*\) is the oldest entry kept: nothing before it to compare with$/,
    );

    const json = JSON.parse(await mcpOk(["history", SVC, "--diff", "1", "--json"])) as {
      from: Entry;
      to: Entry;
      changes: { path: string }[];
    };
    expect([json.from.k, json.to.k]).toEqual([2, 1]);
    expect(json.changes.map((c) => c.path)).toEqual([
      "web.image",
      "web.ports",
      "web.ports",
      "web.env.GREETING",
      "web.env.OLD",
      "web.env.NEW",
    ]);

    for (const bad of ["3", "0", "x", "1..1"]) {
      const r = await agent.mcp(["history", SVC, "--diff", bad]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
    }
  }, 60_000);

  test("after a rollback, history names the restored entry by the K the table shows, and keeps it right as K moves", async () => {
    const r = await agent.mcp(["rollback", SVC]);
    expect(r.code).toBe(0);
    expect(await inspect("{{.ImageName}}")).toBe(`${repo}:v1`);

    let h = await history();
    expect(h.map((e) => [e.k, e.kind, e.images])).toEqual([
      [1, "rollback", `web=${repo}:v1`],
      [2, "deploy", `web=${repo}:v2`],
      [3, "deploy", `web=${repo}:v1`],
    ]);
    expect(h[0]!.rollbackTo?.k).toBe(3);
    expect(h[0]!.detail).toBe(`rollback to k=3 (the spec deployed at ${tableTime(h[2]!)}, web=${repo}:v1)`);
    // The table says the same, and its row k=3 shows that time.
    const table = (await mcpOk(["history", SVC])).split("\n");
    expect(table[1]).toMatch(/^1\* +\S+ /);
    expect(table[1]).toContain(`rollback to k=3 (the spec deployed at ${tableTime(h[2]!)}, web=${repo}:v1)`);
    expect(table[3]).toMatch(new RegExp(`^3 +${tableTime(h[2]!)} `));
    // What the rollback changed, in the same K.
    const diff = (await mcpOk(["history", SVC, "--diff", "1"])).trimEnd().split("\n");
    expect(diff[0]).toContain("from k=2 (deploy ");
    expect(diff[0]).toContain("to k=1 (rollback ");
    expect(diff).toContain(`  web.image: ${repo}:v2 -> ${repo}:v1`);

    // A new deploy moves every row down one: the rollback row (now k=2) names k=4.
    const d = await agent.mcp(["deploy", SVC]);
    expect(d.code).toBe(0);
    h = await history();
    expect(h.map((e) => e.kind)).toEqual(["deploy", "rollback", "deploy", "deploy"]);
    expect(h[1]!.rollbackTo?.k).toBe(4);
    expect(h[1]!.detail).toBe(`rollback to k=4 (the spec deployed at ${tableTime(h[3]!)}, web=${repo}:v1)`);
    // And `rollback --to` takes the K the table shows.
    const to = await agent.mcp(["rollback", SVC, "--to", "4"]);
    expect(to.code).toBe(0);
    expect(to.stdout).toContain(`to entry 4 (web=${repo}:v1)`);
    h = await history();
    expect(h[0]!.detail).toBe(`rollback to k=5 (the spec deployed at ${tableTime(h[4]!)}, web=${repo}:v1)`);
  }, 90_000);

  test("with the agent stopped, a dry run says the node is unreachable in one line and exits 1", async () => {
    await agent.stopAgent();
    try {
      const r = await agent.mcp(["deploy", SVC, "--dry-run"]);
      expect(r.code).toBe(1);
      expect(r.stdout).toBe(`dry run: deploying ${SVC} to local (from ${defFile})\n`);
      const err = r.stderr.trim().split("\n");
      expect(err[0]).toStartWith("mcp: local: unreachable, so no plan (");
      expect(err[0]).toContain("UNAVAILABLE");
      // One line says it (a hint on how to start the agent may follow it); never a stack trace.
      expect(err.filter((l) => l.startsWith("mcp: local:"))).toHaveLength(1);
      expect(r.stderr).not.toMatch(/^\s+at /m);
    } finally {
      await agent.startAgent();
    }
  }, 30_000);
});
