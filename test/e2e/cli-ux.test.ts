// e2e (issue 19, stumbles 7 and 8) through the COMPILED binary against a real local agent:
// options before positionals; "did you mean" for commands and options; one exit-code policy
// (0 ok, 1 failed, 2 usage or bad input: the table below); a rollback of an unknown service prints
// nothing before its error; `mcp service edit` reopens the editor on an invalid edit (driven by a
// fake $EDITOR script) and never puts a broken file in place of the definition; a wrong node name
// is blamed on the service file; a mistyped key of the CLI or agent config is named next to the
// "missing key" it caused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { EXIT_CODES_HELP } from "../../src/roles/cli/output.ts";
import { type RunResult, runMcp } from "../support/binary.ts";
import { busyboxImage, freePort, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const SVC = `ux-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const WEB = `${SVC}-web`;
const NOSUCH = `${SVC}-nosuch`;

let agent: LocalAgent;
let defFile = "";
let goodDef = "";
let webId = "";

/** "<id> <state>" of the service's container: a refused command must leave it alone. */
async function webContainer(): Promise<string> {
  const r = await podman("inspect", "--format", "{{.Id}} {{.State.Status}}", WEB);
  expect(r.code).toBe(0);
  return r.stdout;
}

/** Exactly one non-empty stderr line, no stack frames; returns it. */
function oneLine(r: RunResult): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.split("\n");
  expect(lines.pop()).toBe("");
  expect(lines).toHaveLength(1);
  expect(lines[0]!.trim()).not.toBe("");
  return lines[0]!;
}

beforeAll(async () => {
  const [a, image, port] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0"), freePort()]);
  agent = a;
  defFile = join(agent.servicesDir, `${SVC}.toml`);
  goodDef = `name = "${SVC}"\nactive = true\n\n[[components]]\nname = "web"\nimage = "${image}"\nports = ["127.0.0.1:${port}:8080"]\n`;
  writeFileSync(defFile, goodDef);
  const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
  if (r.code !== 0) throw new Error(`deploy failed: ${r.stderr}${r.stdout}`);
  webId = await webContainer();
  expect(webId).toMatch(/^[0-9a-f]{64} running$/);
}, 60_000);

afterAll(async () => {
  await removeContainers([WEB]);
  await agent?.stop();
}, 30_000);

describe("options before positionals", () => {
  test("deploy --dry-run <service>, --config F first, -n node first: all as deploy <service> --dry-run", async () => {
    const want = await agent.mcp(["deploy", SVC, "--dry-run"]);
    expect(want.code).toBe(0);
    expect(want.stdout).toStartWith(`dry run: deploying ${SVC} to local`);
    // MCP_CONFIG points nowhere: only --config can have found the CLI config.
    const nowhere = { MCP_CONFIG: join(agent.dir, "not-there.toml") };
    for (const [argv, env] of [
      [["deploy", "--dry-run", SVC], {}],
      [["--config", agent.cliConfig, "deploy", "--dry-run", SVC], nowhere],
      [["--config", agent.cliConfig, "deploy", SVC, "--dry-run"], nowhere],
      [["deploy", "-n", "local", "--dry-run", SVC], {}],
      [["--dry-run", "deploy", SVC], {}],
    ] as [string[], Record<string, string>][]) {
      const r = await agent.mcp(argv, { env });
      expect({ argv, code: r.code, stderr: r.stderr }).toEqual({ argv, code: 0, stderr: "" });
      expect(r.stdout).toBe(want.stdout);
    }
    expect(await webContainer()).toBe(webId); // a dry run changes nothing
  }, 30_000);

  test("--json first: history, list", async () => {
    for (const [first, last] of [
      [
        ["--json", "history", SVC],
        ["history", SVC, "--json"],
      ],
      [
        ["--json", "list"],
        ["list", "--json"],
      ],
      [
        ["history", "--json", "-n", "local", SVC],
        ["history", SVC, "--node=local", "--json"],
      ],
    ]) {
      const [a, b] = await Promise.all([agent.mcp(first!), agent.mcp(last!)]);
      expect(a.code).toBe(0);
      expect(a.stdout).toBe(b.stdout);
      expect(JSON.parse(a.stdout)).toBeTruthy();
    }
  }, 30_000);

  test("multi-word commands: --json agent status, agent --json status", async () => {
    const summary = (r: RunResult) => {
      expect(r.code).toBe(0);
      const out = JSON.parse(r.stdout) as {
        cliVersion: string;
        nodes: { name: string; reachable: boolean }[];
      };
      return { cli: out.cliVersion, nodes: out.nodes.map((n) => [n.name, n.reachable]) };
    };
    const want = summary(await agent.mcp(["agent", "status", "--json"]));
    expect(want.nodes).toEqual([["local", true]]);
    expect(summary(await agent.mcp(["--json", "agent", "status"]))).toEqual(want);
    expect(summary(await agent.mcp(["agent", "--json", "status"]))).toEqual(want);
  }, 30_000);

  test("the agent daemon's word after its --config: mcp --config F agent", async () => {
    const missing = join(agent.dir, "no-agent.toml");
    const r = await runMcp(["--config", missing, "agent"], { env: agent.env, timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(`mcp agent: ${missing}: file not found`);
  }, 20_000);
});

describe("did you mean", () => {
  test("a mistyped command: one line, exit 2, the likeliest command", async () => {
    for (const [argv, line] of [
      [["deplyo", SVC], 'mcp: unknown command "deplyo": did you mean "deploy"?'],
      [["--json", "stauts"], 'mcp: unknown command "stauts": did you mean "status"?'],
      [["node", "lsit"], 'mcp: unknown command "node lsit": did you mean "node list"?'],
      [["bogus"], 'mcp: unknown command "bogus" (see mcp --help)'],
    ] as [string[], string][]) {
      const r = await agent.mcp(argv);
      expect({ argv, code: r.code, stdout: r.stdout, line: oneLine(r) }).toEqual({
        argv,
        code: 2,
        stdout: "",
        line,
      });
    }
  }, 30_000);

  test("a mistyped option is refused, not ignored: exit 2, the likeliest option, nothing changes", async () => {
    const r = await agent.mcp(["deploy", "--dryrun", SVC]);
    expect(r.code).toBe(2);
    expect(r.stdout).toBe("");
    expect(oneLine(r)).toBe('mcp: unknown option "--dryrun" for mcp deploy: did you mean "--dry-run"?');
    const ps = await agent.mcp(["ps", "--jsno"]);
    expect(ps.code).toBe(2);
    expect(oneLine(ps)).toBe('mcp: unknown option "--jsno" for mcp ps: did you mean "--json"?');
    expect(await webContainer()).toBe(webId);
  }, 30_000);

  test("a mistyped agent command reaches the daemon, which names the command", async () => {
    const r = await runMcp(["agent", "statsu"], { env: agent.env, timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe('mcp agent: unknown argument "statsu": did you mean "mcp agent status"?');
  }, 20_000);
});

describe("the exit-code table", () => {
  test("mcp --help states the policy", async () => {
    const r = await runMcp(["--help"]);
    expect(r.code).toBe(0);
    const body = EXIT_CODES_HELP.map(([c, d]) => `  ${c}  ${d}`).join("\n");
    expect(r.stdout).toContain(`Exit codes:\n${body}\n`);
    expect(EXIT_CODES_HELP.map(([c]) => c)).toEqual([0, 1, 2, 3]);
  });

  // 3 here for one unreachable node; drift and its other cases: status-exit.test.ts.
  test("3: mcp status and mcp ps with a node that cannot be reached", async () => {
    const cfg = join(dirname(agent.cliConfig), "mcp-with-gone-node.toml");
    writeFileSync(
      cfg,
      `${readFileSync(agent.cliConfig, "utf8")}\n[[nodes]]\nname = "gone"\naddress = "127.0.0.1:${await freePort()}"\narch = "amd64"\n`,
    );
    for (const argv of [["status"], ["ps"], ["--json", "status"]]) {
      const r = await agent.mcp([...argv, "--config", cfg]);
      expect({ argv, code: r.code }).toEqual({ argv, code: 3 });
    }
  }, 30_000);

  const TABLE: { argv: string[]; code: 0 | 1 | 2; why: string }[] = [
    { argv: ["list"], code: 0, why: "ok" },
    { argv: ["history", SVC], code: 0, why: "ok" },
    { argv: ["--json", "deploy", "--dry-run", SVC], code: 0, why: "ok (a plan)" },
    { argv: ["history", NOSUCH], code: 1, why: "the agent has no such service" },
    { argv: ["rollback", NOSUCH], code: 1, why: "the agent has no such service" },
    { argv: ["rollback", SVC], code: 1, why: "nothing to roll back to" },
    { argv: ["deplyo", SVC], code: 2, why: "unknown command" },
    { argv: ["deploy", SVC, "--bogus"], code: 2, why: "unknown option" },
    { argv: ["deploy"], code: 2, why: "missing argument" },
    { argv: ["ps", "extra"], code: 2, why: "extra argument" },
    { argv: ["deploy", SVC, "-n"], code: 2, why: "option without its value" },
    { argv: ["deploy", SVC, "--pull", "bogus"], code: 2, why: "bad value" },
    { argv: ["rollback", SVC, "--to", "x"], code: 2, why: "bad value" },
    { argv: ["rollback", SVC, "--to", "9"], code: 2, why: "no such history entry" },
    { argv: ["deploy", SVC, "-f", "/nonexistent/x.toml"], code: 2, why: "missing definition file" },
    { argv: ["list", "--config", "/nonexistent/mcp.toml"], code: 2, why: "missing CLI config" },
  ];
  for (const row of TABLE) {
    test(`${row.code}: mcp ${row.argv.join(" ")} (${row.why})`, async () => {
      const r = await agent.mcp(row.argv);
      expect({ stderr: r.stderr, code: r.code }).toEqual({ stderr: r.stderr, code: row.code });
      if (row.code === 0) expect(r.stderr).toBe("");
      else {
        expect(oneLine(r)).toStartWith("mcp: ");
        // Refused or failed before doing anything: nothing on stdout.
        expect(r.stdout).toBe("");
      }
    }, 20_000);
  }

  test("nothing above changed the deployed service", async () => {
    expect(await webContainer()).toBe(webId);
  });
});

describe("rollback validates before it prints", () => {
  test("rollback of an unknown service: only the error line", async () => {
    const r = await agent.mcp(["rollback", NOSUCH]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(oneLine(r)).toBe(`mcp: local: NOT_FOUND: service "${NOSUCH}" is not deployed on node local`);
  }, 20_000);
});

// ---- service edit through a fake $EDITOR ---------------------------------------------------------

/**
 * A fake editor: a sh script that counts its runs and, on run n, keeps a copy of what it was given
 * (seen<n>) and of the real definition at that moment (def<n>), then runs runs[n-1] on the file
 * ("$1"). A run beyond the plan exits 9, so a loop that would not end fails the test instead.
 */
function fakeEditor(name: string, runs: string[]): { env: Record<string, string | undefined>; dir: string } {
  const dir = join(agent.dir, `editor-${name}`);
  const script = join(agent.dir, `editor-${name}.sh`);
  rmSync(dir, { recursive: true, force: true });
  writeFileSync(
    script,
    [
      "#!/bin/sh",
      "set -e",
      `d='${dir}'`,
      'mkdir -p "$d"',
      'n=$(( $(cat "$d/count" 2>/dev/null || echo 0) + 1 ))',
      'echo "$n" > "$d/count"',
      'cp "$1" "$d/seen$n"',
      `cp '${defFile}' "$d/def$n"`,
      'case "$n" in',
      ...runs.map((r, i) => `${i + 1}) ${r} ;;`),
      "*) exit 9 ;;",
      "esac",
      "",
    ].join("\n"),
  );
  chmodSync(script, 0o755);
  return { env: { VISUAL: undefined, EDITOR: script }, dir };
}

const read = (dir: string, f: string) => readFileSync(join(dir, f), "utf8");
const TYPO = `sed -i 's/^image = /imagee = /' "$1"`;
const typoed = () => goodDef.replace("\nimage = ", "\nimagee = ");

describe("mcp service edit", () => {
  afterAll(() => writeFileSync(defFile, goodDef));

  test("an invalid edit is reopened with the problem on top and the operator's text; the fix is saved", async () => {
    const ed = fakeEditor("fix", [
      TYPO,
      `sed -i 's/^imagee = /image = /; s/^active = true/active = false/' "$1"`,
    ]);
    const r = await agent.mcp(["service", "edit", SVC], { env: ed.env });
    expect(r.code).toBe(0);
    expect(read(ed.dir, "count")).toBe("2\n");
    // Run 2 got the typo'd text back under the note, which names the problem and how to abandon.
    const seen2 = read(ed.dir, "seen2").split("\n");
    expect(seen2.slice(3).join("\n")).toBe(typoed());
    expect(seen2[0]).toStartWith("# mcp edit: NOT APPLIED: ");
    expect(seen2[0]).toContain('components[0].imagee: unknown key "imagee" (did you mean "image"?)');
    expect(seen2[1]).toContain(defFile);
    expect(seen2[2]).toContain("to abandon the edit");
    // The problem was printed too, naming the edited file and the line as the editor shows it.
    expect(r.stderr).toContain('components[0].imagee: unknown key "imagee" (did you mean "image"?)');
    expect(r.stderr).toContain("reopening the editor");
    // While the operator was editing, the definition was the good one, both times.
    expect(read(ed.dir, "def1")).toBe(goodDef);
    expect(read(ed.dir, "def2")).toBe(goodDef);
    // What is saved is the fixed text, without the note.
    expect(readFileSync(defFile, "utf8")).toBe(goodDef.replace("active = true", "active = false"));
    expect(r.stdout).toBe(`${defFile}: valid (apply with: mcp deploy ${SVC})\n`);
    writeFileSync(defFile, goodDef);
  }, 30_000);

  test("saving the invalid edit unchanged abandons it: exit 2, definition as it was, the edit kept", async () => {
    const ed = fakeEditor("unchanged", [TYPO, "true"]);
    const r = await agent.mcp(["edit", SVC], { env: ed.env });
    expect(r.code).toBe(2);
    expect(read(ed.dir, "count")).toBe("2\n");
    expect(readFileSync(defFile, "utf8")).toBe(goodDef);
    const last = r.stderr.trimEnd().split("\n").at(-1)!;
    const m =
      /^mcp: edit abandoned \(saved unchanged\): .*imagee.*: (\S+) left as it was \(the edit is kept in (\S+)\)$/.exec(
        last,
      );
    expect(m?.[1]).toBe(defFile);
    const kept = m![2]!;
    expect(readFileSync(kept, "utf8")).toBe(typoed());
    rmSync(dirname(kept), { recursive: true, force: true });
  }, 30_000);

  test("an editor that fails abandons the edit, and one that saves it empty", async () => {
    for (const [name, second] of [
      ["fails", "exit 1"],
      ["empty", ': > "$1"'],
    ]) {
      const ed = fakeEditor(name!, [TYPO, second!]);
      const r = await agent.mcp(["service", "edit", SVC], { env: ed.env });
      expect(r.code).toBe(2);
      expect(readFileSync(defFile, "utf8")).toBe(goodDef);
      const kept = /\(the edit is kept in (\S+)\)$/.exec(r.stderr.trimEnd())?.[1];
      expect(kept && existsSync(kept)).toBe(true);
      expect(readFileSync(kept!, "utf8")).toBe(typoed());
      rmSync(dirname(kept!), { recursive: true, force: true });
    }
  }, 30_000);

  test("no change, or an editor failing on a valid file: the definition stays, nothing kept", async () => {
    const same = fakeEditor("same", ["true"]);
    const r = await agent.mcp(["service", "edit", SVC], { env: same.env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${defFile}: no changes\n`);
    const fails = fakeEditor("fails-first", ["exit 3"]);
    const f = await agent.mcp(["service", "edit", SVC], { env: fails.env });
    expect(f.code).toBe(1);
    expect(oneLine(f)).toMatch(/^mcp: editor \S+ exited with code 3: \S+ left as it was$/);
    expect(readFileSync(defFile, "utf8")).toBe(goodDef);
  }, 30_000);

  test("a node the CLI config does not have is a problem of the edit", async () => {
    const ed = fakeEditor("node", [
      `sed -i 's/^active = true/active = true\\nnode = "nosuch"/' "$1"`,
      `sed -i '/^node = "nosuch"/d' "$1"`,
    ]);
    const r = await agent.mcp(["service", "edit", SVC], { env: ed.env });
    expect(read(ed.dir, "seen2").split("\n")[0]).toContain(
      `node: no node named "nosuch" in ${agent.cliConfig} (known: local)`,
    );
    // Run 2 removed the line again: back to the definition as it was.
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${defFile}: no changes\n`);
  }, 30_000);
});

// ---- errors name the file where the mistake is -----------------------------------------------------

describe("errors name the file where the mistake is", () => {
  test('node = "nosuch" in a service file is reported against the service file', async () => {
    const other = `${SVC}-n`;
    const file = join(agent.servicesDir, `${other}.toml`);
    writeFileSync(file, goodDef.replace(`name = "${SVC}"`, `name = "${other}"\nnode = "nosuch"`));
    try {
      const r = await agent.mcp(["deploy", "--dry-run", other]);
      expect(r.code).toBe(2);
      expect(r.stdout).toBe("");
      expect(oneLine(r)).toBe(
        `mcp: ${file}: node: no node named "nosuch" in ${agent.cliConfig} (known: local)`,
      );
    } finally {
      rmSync(file, { force: true });
    }
  }, 20_000);

  test('a mistyped key in the CLI config ("addres") is named next to the missing "address"', async () => {
    const file = join(agent.dir, "typo-mcp.toml");
    const text = readFileSync(agent.cliConfig, "utf8");
    expect(text).toMatch(/^address = /m);
    writeFileSync(file, text.replace(/^address = /m, "addres = "));
    const r = await agent.mcp(["list", "--config", file]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `mcp: ${file}: nodes[0].address: required key is missing (expected string); nodes[0].addres: unknown key "addres" (did you mean "address"?)`,
    );
  }, 20_000);

  test("the same for the agent's config (grpc_adr)", async () => {
    const file = join(agent.dir, "typo-agent.toml");
    const text = readFileSync(agent.agentConfig, "utf8");
    expect(text).toMatch(/^grpc_addr = /m);
    writeFileSync(file, text.replace(/^grpc_addr = /m, "grpc_adr = "));
    const r = await runMcp(["agent", "--config", file], { env: agent.env, timeoutMs: 15_000 });
    expect(r.code).toBe(2);
    const line = oneLine(r);
    expect(line).toStartWith(`mcp agent: ${file}: server.grpc_addr: required key is missing`);
    expect(line).toEndWith('; server.grpc_adr: unknown key "grpc_adr" (did you mean "grpc_addr"?)');
  }, 20_000);
});
