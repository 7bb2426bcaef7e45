// normalizeArgv (src/main.ts) through the compiled binary: importing main.ts would run main(),
// so the role rewrite is observed the way systemd units use it — a symlink named mcp-agent or
// mcp-master in front of the one executable.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mcpBinary, runMcp } from "../../support/binary.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-argv-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function as(name: string): string {
  const p = join(dir, name);
  symlinkSync(mcpBinary(), p);
  return p;
}

const agent = as("mcp-agent");
const agentSuffixed = as("mcp-agent-v2");
const master = as("mcp-master");
const notAgent = as("mcp-agentx");
const AGENT_USAGE = "usage: mcp agent [--config /srv/mcp/mcp-agent.toml] [--allow-any-addr]";

describe("invoked as mcp-agent", () => {
  test("`mcp-agent server --help` prints the agent daemon usage", async () => {
    const r = await runMcp(["server", "--help"], { bin: agent });
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(AGENT_USAGE);
  });

  test("`mcp-agent --help` (no server word) and mcp-agent-<suffix> are the agent too", async () => {
    for (const bin of [agent, agentSuffixed]) {
      const r = await runMcp(["--help"], { bin });
      expect(r.code).toBe(0);
      expect(r.stdout).toStartWith(AGENT_USAGE);
    }
    const r = await runMcp(["server", "--help"], { bin: agentSuffixed });
    expect(r.stdout).toStartWith(AGENT_USAGE);
  });

  test("`mcp-agent server --config X` passes X to the daemon", async () => {
    const missing = join(dir, "nope", "mcp-agent.toml");
    const r = await runMcp(["server", "--config", missing], { bin: agent });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(missing);
    expect(r.stderr.trim().split("\n").length).toBe(1); // one line, no stack
    expect(r.stderr).not.toContain("    at ");
  });

  test("an unknown daemon argument is one usage line, exit 2", async () => {
    const r = await runMcp(["server", "--bogus"], { bin: agent });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown argument "--bogus"');
    expect(r.stderr.trim().split("\n").length).toBe(1);
  });

  test("`mcp-agent --version` prints the same version line as `mcp --version`", async () => {
    const main = await runMcp(["--version"]);
    expect(main.stdout).toMatch(/^mcp \S+\n$/);
    const r = await runMcp(["--version"], { bin: agent });
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({
      code: 0,
      stdout: main.stdout,
      stderr: "",
    });
  });
});

describe("other names", () => {
  test("`mcp-master --version` prints the same version line as `mcp --version`", async () => {
    const main = await runMcp(["--version"]);
    const r = await runMcp(["--version"], { bin: master });
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 0, stdout: main.stdout });
  });

  test("a name that merely starts with mcp-agent is the plain CLI", async () => {
    const help = await runMcp(["--help"], { bin: notAgent });
    expect(help.code).toBe(0);
    expect(help.stdout).not.toContain(AGENT_USAGE);
    expect(help.stdout).toContain("Commands:");
    const r = await runMcp(["server", "--help"], { bin: notAgent });
    expect(r.stdout).not.toContain(AGENT_USAGE);
  });

  test("plain `mcp agent --help` is the daemon usage (the rewrite target)", async () => {
    const r = await runMcp(["agent", "--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toStartWith(AGENT_USAGE);
  });
});
