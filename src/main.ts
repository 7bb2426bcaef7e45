// Entry point: picks the role from the name the binary was invoked by (mcp-agent, mcp-master)
// and from the subcommand. Kept tiny: `mcp --version` loads no command module.
declare const MCP_VERSION: string;
// The version between a searchable marker: `mcp agent upgrade` reads the version of a build for
// another arch (which it cannot run) from the file's bytes (agent-binary.ts embeddedVersion).
export const VERSION_STAMP = `mcp-version:${typeof MCP_VERSION === "string" ? MCP_VERSION : "0.0.0-dev"};`;
export const VERSION: string = VERSION_STAMP.slice("mcp-version:".length, -1);

import { daemonArgv } from "./util/daemon-argv.ts";
import { reexecWithAgentJscOptions } from "./util/jsc-options.ts";

function invokedAs(): string {
  const a0 = process.argv0 || "";
  const base = a0.slice(a0.lastIndexOf("/") + 1);
  return base;
}

/** Rewrites `mcp-agent server --config X` / `mcp-master server …` into `agent|master --config X`. */
export function normalizeArgv(name: string, argv: string[]): string[] {
  for (const role of ["agent", "master"]) {
    if (name === `mcp-${role}` || name.startsWith(`mcp-${role}-`)) {
      const rest = argv[0] === "server" ? argv.slice(1) : argv;
      return [role, ...rest];
    }
  }
  return argv;
}

function installPipeGuard(): void {
  // `mcp ps | head` must not die with an EPIPE stack trace.
  for (const s of [process.stdout, process.stderr]) {
    s.on("error", (err: NodeJS.ErrnoException) => {
      if (err.code === "EPIPE") process.exit(0);
      throw err;
    });
  }
}

async function main(): Promise<void> {
  const argv = normalizeArgv(invokedAs(), process.argv.slice(2));
  const isVersion = (a: string | undefined) => a === "--version" || a === "-V" || a === "version";
  // `mcp --version`, and `mcp-agent --version` (rewritten to `agent --version`).
  if (
    (argv.length === 1 && isVersion(argv[0])) ||
    (argv.length === 2 && (argv[0] === "agent" || argv[0] === "master") && isVersion(argv[1]))
  ) {
    process.stdout.write(`mcp ${VERSION}\n`);
    return;
  }
  installPipeGuard();
  const daemon = daemonArgv(argv);
  if (daemon?.role === "agent") {
    reexecWithAgentJscOptions();
    const { runAgentDaemon } = await import("./roles/agent/daemon.ts");
    process.exitCode = await runAgentDaemon(daemon.args, VERSION);
    return;
  }
  if (daemon?.role === "master") {
    const { runMasterDaemon } = await import("./roles/master/daemon.ts");
    process.exitCode = await runMasterDaemon(daemon.args, VERSION);
    return;
  }
  const { runCli } = await import("./roles/cli/index.ts");
  process.exitCode = await runCli(argv, VERSION);
}

main().catch((err: unknown) => {
  // Last resort: one line, no stack.
  process.stderr.write(`mcp: ${(err as Error)?.message ?? String(err)}\n`);
  process.exitCode = 1;
});
