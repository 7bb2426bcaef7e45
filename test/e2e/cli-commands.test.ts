// e2e: every command `mcp --help` lists is reached through the COMPILED binary: its own --help
// (usage line and every option of its table entry), and its action runs (each command module is
// imported only when it is chosen, and cac is first given only the commands argv can match). A
// missing CLI config makes every command that needs one stop with the one config line and exit 2,
// which proves its module loaded and its action ran; the rest stop on their own first check.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { COMMANDS } from "../../src/roles/cli/index.ts";
import { runMcp } from "../support/binary.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-cli-commands-"));
const env = {
  HOME: join(dir, "home"),
  MCP_CONFIG: join(dir, "none", "mcp.toml"),
  MCP_AGENT_CONFIG: join(dir, "none", "mcp-agent.toml"),
};
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The command names of `mcp --help`'s Commands section ("node list", "ps", …). */
function listedCommands(help: string): string[] {
  const section = help.split("\n\n").find((s) => s.startsWith("Commands:"));
  if (!section) throw new Error(`no Commands section in:\n${help}`);
  const multi = new Set(COMMANDS.map((c) => c.name).filter((n) => n.includes(" ")));
  return section
    .split("\n")
    .slice(1)
    .map((line) => {
      const [a = "", b = ""] = line.trim().split(/\s+/);
      return multi.has(`${a} ${b}`) ? `${a} ${b}` : a;
    });
}

const top = await runMcp(["--help"], { env });
const listed = listedCommands(top.stdout);
const notFound = `mcp: ${env.MCP_CONFIG}: file not found (run "mcp init --local" or create it; --config/MCP_CONFIG pick another)`;

/** What each command's action answers here (argv after the command name, expected exit, stderr). */
const DISPATCH: Record<string, { args: string[]; code: number; stderr: string }> = {
  init: {
    args: [],
    code: 2,
    stderr:
      "mcp: only local mode is available to init: pass --local (MCIAS setups are configured by hand, see README)",
  },
  "node add": {
    args: ["x", "x"],
    code: 2,
    stderr: 'mcp: missing port in address "x"; expected host:port (IPv6 as [addr]:port)',
  },
  migrate: { args: ["x"], code: 2, stderr: "mcp: --to <node> is required" },
  "agent snapshot": { args: [], code: 2, stderr: `mcp: ${env.MCP_AGENT_CONFIG}: file not found` },
  "route add": {
    args: ["x", "y"],
    code: 2,
    stderr: 'mcp: backend "y": expected host:port (the node address and the route\'s host port)',
  },
  completion: { args: ["bash"], code: 0, stderr: "" },
};

describe("every command of mcp --help", () => {
  test("mcp --help lists the whole command table (and the agent daemon)", () => {
    expect(top.code).toBe(0);
    expect(listed.filter((n) => n !== "agent").sort()).toEqual(COMMANDS.map((c) => c.name).sort());
  });

  for (const def of COMMANDS) {
    test(`mcp ${def.name} --help`, async () => {
      const r = await runMcp([...def.name.split(" "), "--help"], { env });
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage:\n  $ mcp ${def.name}${def.args ? ` ${def.args}` : ""}\n`);
      for (const [flag] of def.options ?? []) expect(r.stdout).toContain(`  ${flag}`);
      // A command's help is its own, never the global command list.
      expect(r.stdout).not.toContain("Commands:");
    });

    test(`mcp ${def.name} runs its action`, async () => {
      const want = DISPATCH[def.name] ?? {
        args: (def.args.match(/<[^>]+>/g) ?? []).map(() => "x"),
        code: 2,
        stderr: notFound,
      };
      const r = await runMcp([...def.name.split(" "), ...want.args], { env });
      expect(r.stderr.trimEnd()).toBe(want.stderr);
      expect(r.code).toBe(want.code);
    });
  }

  test("an unknown command is one line, exit 2, also next to a command word", async () => {
    for (const [argv, what] of [
      [["bogus"], "bogus"],
      [["bogus", "ps"], "bogus"],
      [["node", "bogus"], "node bogus"],
    ] as const) {
      const r = await runMcp([...argv], { env });
      expect(r.stderr).toBe(`mcp: unknown command "${what}" (see mcp --help)\n`);
      expect(r.code).toBe(2);
    }
  });

  test("--help next to a word that is no command prints the global help", async () => {
    const r = await runMcp(["bogus", "ps", "--help"], { env });
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(top.stdout);
  });
});
