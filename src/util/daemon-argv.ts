// Which argv starts a daemon (`mcp agent …`, `mcp master …`) rather than a CLI command. The daemon
// word may follow the daemon's own options (`mcp --config F agent` is `mcp agent --config F`), and
// `mcp agent status|upgrade|recover|snapshot` are CLI commands whatever options come between
// (`mcp agent --json status`). Kept apart from main.ts so it can be tested without starting main().

/** `mcp agent <verb>`: the CLI commands under "agent" (every other `mcp agent …` is the daemon). */
export const AGENT_CLI_VERBS: ReadonlySet<string> = new Set(["upgrade", "status", "recover", "snapshot"]);

/** The daemons' options: --config/-c take a value. */
const takesValue = (a: string) => a === "--config" || a === "-c";
const isDaemonOption = (a: string) =>
  takesValue(a) || a.startsWith("--config=") || a === "--allow-any-addr" || a === "--help" || a === "-h";

/** The daemon argv runs and the arguments it gets (the word removed), or null for the CLI. */
export function daemonArgv(argv: readonly string[]): { role: "agent" | "master"; args: string[] } | null {
  let i = 0;
  while (i < argv.length && isDaemonOption(argv[i]!)) i += takesValue(argv[i]!) ? 2 : 1;
  const role = argv[i];
  if (role !== "agent" && role !== "master") return null;
  if (role === "agent") {
    // The first word after "agent" names a CLI command when it is one of the verbs.
    let j = i + 1;
    while (j < argv.length && argv[j]!.startsWith("-") && argv[j] !== "--") j += takesValue(argv[j]!) ? 2 : 1;
    if (AGENT_CLI_VERBS.has(argv[j] ?? "")) return null;
  }
  return { role, args: [...argv.slice(0, i), ...argv.slice(i + 1)] };
}
