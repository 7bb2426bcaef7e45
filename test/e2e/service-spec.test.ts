// e2e of the spec lifecycle commands through the COMPILED binary, real agent, real podman:
// `mcp service show` (registry spec as TOML / JSON), `mcp service export` (definition file),
// `mcp service edit` / `mcp edit` with $VISUAL/$EDITOR set to small scripts (export first when no
// file exists, validate after the editor, reopen it on an invalid edit, the definition replaced
// only by a valid one; more in cli-ux.test.ts),
// and the bad-input cases of show/export/adopt/undeploy/edit: unknown service, bad name, node
// down, missing editor — one clear line and a non-zero exit each.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, unlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import type { RunResult } from "../support/binary.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `spec-${rand}`;
const UNKNOWN = `nope-${rand}`;

let agent: LocalAgent;
let image = "";
let defFile = "";
let tmp = "";
let port = 0;
let original = "";
const editors = { retag: "", broken: "", visual: "", flaky: "" };

/** Exactly one stderr line, no stack trace; returns it. */
function oneLine(r: RunResult): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.trimEnd().split("\n");
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

function script(name: string, body: string): string {
  const path = join(tmp, name);
  // The file to edit is the last argument; anything before it came from $EDITOR's own words.
  writeFileSync(path, `#!/bin/bash\nset -eu\nf="\${@: -1}"\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

beforeAll(async () => {
  [agent, image] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0")]);
  tmp = mkdtempSync(join(tmpdir(), "mcp-spec-test-"));
  port = await freePort();
  defFile = join(agent.servicesDir, `${SVC}.toml`);
  original = [
    `name = "${SVC}"`,
    "active = true",
    "",
    "[[components]]",
    'name = "web"',
    `image = "${image}"`,
    `ports = ["127.0.0.1:${port}:8080"]`,
    'env = ["GREETING=hi", "MODE=spec"]',
    "",
    "[[components]]",
    'name = "worker"',
    `image = "${image}"`,
    'restart = "no"',
    `cmd = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]`,
    "",
  ].join("\n");
  writeFileSync(defFile, original);
  const d = await agent.mcp(["deploy", SVC, "--pull", "never"]);
  if (d.code !== 0) throw new Error(`deploy failed: ${d.stderr}`);
  editors.retag = script("retag.sh", `sed -i 's/:v1\\.0\\.0"/:v2.0.0"/' "$f"`);
  // Adds a bad line once; run again on the reopened edit, it saves it unchanged (gives up).
  editors.broken = script("broken.sh", `grep -q '^oops = = ' "$f" || echo 'oops = = "not toml"' >> "$f"`);
  editors.visual = script("visual.sh", `sed -i 's/MODE=spec/MODE=visual/' "$f"`);
  // First run breaks the file, every later run repairs it (and changes MODE): the operator fixing a mistake.
  editors.flaky = script(
    "flaky.sh",
    `n=$(cat "${tmp}/runs" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "${tmp}/runs"
if [ "$n" = 1 ]; then echo 'oops = = "not toml"' >> "$f"; else sed -i '/^oops = = /d; s/MODE=[a-z]*/MODE=fixed/' "$f"; fi`,
  );
}, 60_000);

afterAll(async () => {
  await removeContainers([`${SVC}-web`, `${SVC}-worker`]);
  await agent?.stop();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
}, 30_000);

describe("service show / export / edit (compiled binary, real podman)", () => {
  test("service show prints TOML that parses to the deployed definition", async () => {
    const r = await agent.mcp(["service", "show", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    // The registry spec is the file plus the node it runs on.
    expect(parseToml(r.stdout)).toEqual({ ...parseToml(original), node: "local" });
    const j = await agent.mcp(["service", "show", SVC, "--json"]);
    expect(j.code).toBe(0);
    const def = JSON.parse(j.stdout) as {
      name: string;
      node: string;
      components: { name: string; ports: string[] }[];
    };
    expect(def.name).toBe(SVC);
    expect(def.node).toBe("local");
    expect(def.components.map((c) => c.name)).toEqual(["web", "worker"]);
    expect(def.components[0]!.ports).toEqual([`127.0.0.1:${port}:8080`]);
  }, 15_000);

  test("service export -f writes the same definition; -n names the node", async () => {
    const out = join(tmp, "exported.toml");
    const r = await agent.mcp(["service", "export", SVC, "-f", out, "-n", "local"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`wrote ${out} (spec of ${SVC} from local)\n`);
    expect(readFileSync(out, "utf8")).toBe((await agent.mcp(["service", "show", SVC])).stdout);
  }, 15_000);

  test("service edit with no file exports first, runs $EDITOR, validates", async () => {
    unlinkSync(defFile);
    const r = await agent.mcp(["service", "edit", SVC], {
      env: { EDITOR: `${editors.retag} --wait`, VISUAL: "" },
    });
    expect(r.code).toBe(0);
    expect(r.stderr).toBe(`mcp: no ${defFile} yet: exported the spec of ${SVC} from local\n`);
    expect(r.stdout).toBe(`${defFile}: valid (apply with: mcp deploy ${SVC})\n`);
    const text = readFileSync(defFile, "utf8");
    expect(text).toContain('node = "local"');
    expect(text).toContain(":v2.0.0");
    expect(text).not.toContain(":v1.0.0");
  }, 15_000);

  test("$VISUAL wins over $EDITOR, and `mcp edit` is the same command", async () => {
    const r = await agent.mcp(["edit", SVC], { env: { VISUAL: editors.visual, EDITOR: editors.broken } });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const text = readFileSync(defFile, "utf8");
    expect(text).toContain("MODE=visual");
    expect(text).not.toContain("oops");
  }, 15_000);

  test("an editor that leaves invalid TOML: reopened on it, abandoned when saved unchanged (exit 2), the definition as it was", async () => {
    const before = readFileSync(defFile, "utf8");
    const r = await agent.mcp(["service", "edit", SVC], { env: { EDITOR: editors.broken, VISUAL: "" } });
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    const lines = r.stderr.trimEnd().split("\n");
    expect(lines).toHaveLength(3); // the problem, "reopening the editor", the abandoned edit
    expect(lines[0]).toMatch(/^mcp: \S+: line \d+: /);
    expect(lines[1]).toStartWith("mcp: reopening the editor");
    const kept =
      /^mcp: edit abandoned \(saved unchanged\): .*: (\S+) left as it was \(the edit is kept in (\S+)\)$/.exec(
        lines[2]!,
      );
    expect(kept?.[1]).toBe(defFile);
    expect(readFileSync(kept![2]!, "utf8")).toContain('oops = = "not toml"');
    rmSync(join(kept![2]!, ".."), { recursive: true, force: true });
    // The broken text never replaced the definition.
    expect(readFileSync(defFile, "utf8")).toBe(before);
  }, 15_000);

  test("the editor is reopened on the invalid edit until it is valid", async () => {
    const r = await agent.mcp(["service", "edit", SVC], { env: { EDITOR: editors.flaky, VISUAL: "" } });
    expect(r.code).toBe(0);
    expect(readFileSync(join(tmp, "runs"), "utf8").trim()).toBe("2");
    expect(r.stdout).toBe(`${defFile}: valid (apply with: mcp deploy ${SVC})\n`);
    expect(r.stderr).toMatch(/: line \d+: /);
    const text = readFileSync(defFile, "utf8");
    expect(text).not.toContain("oops");
    expect(text).toContain("MODE=fixed");
    expect(text).not.toContain("# mcp edit:");
  }, 30_000);
});

describe("bad input: unknown service, bad name, missing editor, node down", () => {
  test("show/export of an unknown service: one line, exit 1, no file written", async () => {
    for (const sub of ["show", "export"]) {
      const r = await agent.mcp(["service", sub, UNKNOWN]);
      expect(r.code).toBe(1);
      expect(oneLine(r)).toBe(
        `mcp: local: NOT_FOUND: no deployed spec for service "${UNKNOWN}" on node local`,
      );
    }
    expect(existsSync(join(agent.servicesDir, `${UNKNOWN}.toml`))).toBe(false);
  }, 15_000);

  test("adopt of a service with no containers: one line, exit 1", async () => {
    const r = await agent.mcp(["adopt", UNKNOWN]);
    expect(r.code).toBe(1);
    expect(oneLine(r)).toBe(
      `mcp: local: NOT_FOUND: no containers named "${UNKNOWN}" or "${UNKNOWN}-*" on node local (see mcp ps)`,
    );
  }, 15_000);

  test("undeploy of an unknown service is idempotent: exit 0, says not deployed", async () => {
    const r = await agent.mcp(["undeploy", UNKNOWN]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${UNKNOWN} is not deployed on local: nothing to do\n`);
  }, 15_000);

  test("a bad service name or an unknown node: one line, exit 2", async () => {
    for (const args of [
      ["service", "show", "Bad_Name"],
      ["adopt", "../etc"],
      ["undeploy", "web_1"],
    ]) {
      const r = await agent.mcp(args);
      expect(r.code).toBe(2);
      expect(oneLine(r)).toMatch(/^mcp: bad service name ".*": expected \[a-z0-9\]\[a-z0-9-\]\*$/);
    }
    const r = await agent.mcp(["service", "show", SVC, "-n", "mars"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain('"mars"');
  }, 15_000);

  test("a missing editor: one line, exit 2", async () => {
    const r = await agent.mcp(["edit", SVC], { env: { VISUAL: join(tmp, "no-such-editor"), EDITOR: "" } });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toContain("cannot run editor");
  }, 15_000);

  test("node down: show, export, adopt, undeploy each give one line and exit 1", async () => {
    await agent.stopAgent();
    try {
      for (const args of [
        ["service", "show", SVC],
        ["service", "export", SVC, "-f", join(tmp, "never.toml")],
        ["adopt", SVC],
        ["undeploy", SVC],
      ]) {
        const r = await agent.mcp(args);
        expect(r.code).toBe(1);
        expect(oneLine(r)).toMatch(/^mcp: local: UNAVAILABLE: /);
      }
      expect(existsSync(join(tmp, "never.toml"))).toBe(false);
    } finally {
      await agent.startAgent();
    }
  }, 60_000);
});
