// The operator CLI: command table (cac) with one lazily imported module per command group,
// so each invocation loads only what it runs.
import { cac } from "cac";
import { CliError, exitCodeFor, printError } from "./output.ts";

type Action = (args: string[], opts: Record<string, unknown>) => Promise<number>;
const lazy =
  <M>(load: () => Promise<M>, pick: (m: M) => Action): Action =>
  async (args, opts) =>
    pick(await load())(args, opts);

const deploy = () => import("./deploy.ts");
const history = () => import("./history.ts");
const lifecycle = () => import("./lifecycle.ts");
const status = () => import("./status.ts");
const node = () => import("./node.ts");
const init = () => import("./init.ts");
const login = () => import("./login.ts");
const undeploy = () => import("./undeploy.ts");
const adopt = () => import("./adopt.ts");
const sync = () => import("./sync.ts");
const service = () => import("./service.ts");
const logs = () => import("./logs.ts");
const build = () => import("./build.ts");
const files = () => import("./files.ts");
const snapshot = () => import("./snapshot.ts");
const recover = () => import("./recover.ts");
const route = () => import("./route.ts");
const agentUpgrade = () => import("./agent-upgrade.ts");
const agentStatus = () => import("./agent-status.ts");
const provision = () => import("./provision.ts");
const completion = () => import("./completion.ts");
const migrate = () => import("./migrate.ts");
const serviceSnapshot = () => import("./service-snapshot.ts");

interface CommandDef {
  name: string;
  args: string;
  help: string;
  options?: [string, string, unknown?][];
  action: Action;
}

export const GLOBAL_OPTIONS: [string, string][] = [
  ["--config <file>", "CLI config file (default $MCP_CONFIG or ~/.config/mcp/mcp.toml)"],
  ["--json", "machine-readable output"],
  ["--direct", "talk to the agents directly, bypassing the [master] (v1 mode; deploy then needs a node)"],
];

export const COMMANDS: CommandDef[] = [
  {
    name: "init",
    args: "",
    help: "Create a local CA, agent cert, admin token and configs (embedded local mode)",
    options: [
      ["--local", "local mode (no MCIAS, no Metacrypt)"],
      ["--dir <dir>", "where to write everything", "~/.config/mcp"],
      ["--node <name>", "node name", "local"],
      ["--listen <addr>", "agent gRPC address", "127.0.0.1:9444"],
      [
        "--runtime-arg <arg>",
        "global runtime flag for the agent, repeatable (e.g. --runtime-arg=--runtime --runtime-arg=runc)",
      ],
      ["--force", "overwrite an existing setup"],
    ],
    action: lazy(init, (m) => m.initCommand),
  },
  {
    name: "login",
    args: "",
    help: "Log in to MCIAS and store the token (0600)",
    options: [["--username <name>", "account name"]],
    action: lazy(login, (m) => m.loginCommand),
  },
  {
    name: "deploy",
    args: "<service>",
    help: "Deploy a service (or <service>/<component>) from its definition",
    options: [
      ["-f, --file <file>", "definition file (default <services.dir>/<service>.toml)"],
      ["--dry-run", "validate and print the exact runtime argv, change nothing"],
      ["--pull <policy>", "always | missing | never", "always"],
      ["--strict", "treat warnings (unpinned image tags) as errors"],
      ["-n, --node <node>", "override the node"],
      ["--no-rollback", "leave a component that fails or never becomes healthy as it is, for inspection"],
      ["--force", "recreate components whose spec and image are unchanged (else left as they are)"],
    ],
    action: lazy(deploy, (m) => m.deployCommand),
  },
  {
    name: "history",
    args: "<service>",
    help: "The service's last deployed specs, newest first (1 = current): time, caller, images",
    options: [["-n, --node <node>", "the node (default: the definition's, else the one running it)"]],
    action: lazy(history, (m) => m.historyCommand),
  },
  {
    name: "rollback",
    args: "<service>",
    help: "Redeploy an earlier spec from `mcp history` (default: the previous one), health-gated",
    options: [
      ["--to <k>", "the history entry to go back to (see mcp history; 1 = current)"],
      ["-n, --node <node>", "the node (default: the definition's, else the one running it)"],
      ["--no-rollback", "leave a component that never becomes healthy as it is, for inspection"],
    ],
    action: lazy(history, (m) => m.rollbackCommand),
  },
  {
    name: "migrate",
    args: "[service]",
    help: "Move a service (or --all of a node) to another node through the master: data, routes, DNS",
    options: [
      ["--to <node>", "the destination node"],
      ["--all", "every service of the --from node (tier core skipped), one after another"],
      ["--from <node>", "the source node (with --all)"],
      ["--force", "overwrite an existing /srv/<service>/ on the destination"],
    ],
    action: lazy(migrate, (m) => m.migrateCommand),
  },
  {
    name: "snapshot create",
    args: "<service>",
    help: "Snapshot a service's /srv/<service>/ data to the master's snapshots dir (through the master)",
    action: lazy(serviceSnapshot, (m) => m.snapshotCreateCommand),
  },
  {
    name: "snapshot list",
    args: "<service>",
    help: "List the master's stored snapshots of a service, newest first",
    action: lazy(serviceSnapshot, (m) => m.snapshotListCommand),
  },
  {
    name: "stop",
    args: "<service>",
    help: "Stop all components and set active = false in the definition",
    action: lazy(lifecycle, (m) => m.stopCommand),
  },
  {
    name: "start",
    args: "<service>",
    help: "Start all components and set active = true in the definition",
    action: lazy(lifecycle, (m) => m.startCommand),
  },
  {
    name: "restart",
    args: "<service>",
    help: "Restart all components",
    action: lazy(lifecycle, (m) => m.restartCommand),
  },
  {
    name: "undeploy",
    args: "<service>",
    help: "Remove a service: containers, routes/DNS/certs, registry entry (events and /srv data kept)",
    options: [["-n, --node <node>", "override the node"]],
    action: lazy(undeploy, (m) => m.undeployCommand),
  },
  {
    name: "adopt",
    args: "<service>",
    help: "Claim the <service> and <service>-* containers of a node into the registry",
    options: [["-n, --node <node>", "node whose containers to adopt"]],
    action: lazy(adopt, (m) => m.adoptCommand),
  },
  {
    name: "sync",
    args: "",
    help: "Push every definition: agents record desired state, stop inactive services, discover containers",
    options: [
      ["--dry-run", "report what would change; record, stop and discover nothing"],
      ["--build", "first build and push the [build.images] missing from the registry (see mcp build)"],
      ["--runtime-arg <arg>", "with --build: global podman flag, repeatable (also $MCP_RUNTIME_ARGS)"],
    ],
    action: lazy(sync, (m) => m.syncCommand),
  },
  {
    name: "service show",
    args: "<service>",
    help: "Print the spec from the agent registry as TOML",
    options: [["-n, --node <node>", "override the node"]],
    action: lazy(service, (m) => m.showCommand),
  },
  {
    name: "service export",
    args: "<service>",
    help: "Write the agent registry spec as a definition file",
    options: [
      ["-f, --file <file>", "where to write (default <services.dir>/<service>.toml)"],
      ["-n, --node <node>", "override the node"],
    ],
    action: lazy(service, (m) => m.exportCommand),
  },
  {
    name: "service edit",
    args: "<service>",
    help: "Edit the definition in $VISUAL/$EDITOR (exported first if missing), then validate it",
    options: [["-n, --node <node>", "node to export from when there is no file yet"]],
    action: lazy(service, (m) => m.editCommand),
  },
  {
    name: "edit",
    args: "<service>",
    help: "Alias of service edit",
    options: [["-n, --node <node>", "node to export from when there is no file yet"]],
    action: lazy(service, (m) => m.editCommand),
  },
  {
    name: "list",
    args: "",
    help: "Services from every node's registry (no runtime query)",
    action: lazy(status, (m) => m.listCommand),
  },
  {
    name: "ps",
    args: "",
    help: "Live container check on every node",
    action: lazy(status, (m) => m.psCommand),
  },
  {
    name: "status",
    args: "[service]",
    help: "Live state, drift and recent events",
    action: lazy(status, (m) => m.statusCommand),
  },
  {
    name: "logs",
    args: "<service>",
    help: "Container logs of a service (or <service>/<component>); -f follows until Ctrl-C",
    options: [
      ["-f, --follow", "keep printing new lines until interrupted"],
      ["--tail <n>", "only the last n lines (0: none, with -f only new lines)"],
      ["--since <time>", "lines since a duration (10m, 2h) or time (2024-01-02T15:04:05Z)"],
      ["-n, --node <node>", "override the node"],
    ],
    action: lazy(logs, (m) => m.logsCommand),
  },
  {
    name: "build",
    args: "<service>",
    help: "Build the [build.images] of a definition with podman here, tag with the component images, push",
    options: [
      ["-f, --file <file>", "definition file (default <services.dir>/<service>.toml)"],
      ["--no-push", "build and tag only"],
      [
        "--runtime-arg <arg>",
        'global podman flag, repeatable (also $MCP_RUNTIME_ARGS, e.g. "--runtime runc")',
      ],
    ],
    action: lazy(build, (m) => m.buildCommand),
  },
  {
    name: "push",
    args: "<file> <service> [path]",
    help: "Copy a local file into /srv/<service>/[path] on the service's node (path default: the file's name)",
    options: [
      ["--mode <mode>", "permission bits, e.g. 0640 (default: the local file's mode)"],
      ["--create", "allow a push before the service's first deploy"],
      ["-n, --node <node>", "override the node"],
    ],
    action: lazy(files, (m) => m.pushCommand),
  },
  {
    name: "pull",
    args: "<service> <path> [file]",
    help: "Copy /srv/<service>/<path> from the service's node to a local file (default: its name)",
    options: [
      ["--force", "overwrite an existing local file"],
      ["-n, --node <node>", "override the node"],
    ],
    action: lazy(files, (m) => m.pullCommand),
  },
  {
    name: "agent recover",
    args: "[node]",
    help: "Recreate lost containers from the agent registry (all nodes, or one); never pulls images",
    options: [["--service <service>", "only this service"]],
    action: lazy(recover, (m) => m.recoverCommand),
  },
  {
    name: "agent snapshot",
    args: "",
    help: "On the node: VACUUM INTO copy of the agent registry to <db dir>/backups, keeping the newest N",
    options: [
      ["--config <file>", "agent config (default $MCP_AGENT_CONFIG or /srv/mcp/mcp-agent.toml)"],
      ["--dir <dir>", "snapshot directory (default: backups/ beside the database)"],
      ["--keep <n>", "snapshots to keep, older mcp-<stamp>.db files are deleted", 7],
    ],
    action: lazy(snapshot, (m) => m.snapshotCommand),
  },
  {
    name: "agent upgrade",
    args: "[...nodes]",
    help: "Ship this mcp build to every node's agent (or the named ones) over SSH, in parallel; rolls back a node whose new agent does not answer",
    options: [
      ["--binary <file>", "binary to ship instead of this executable / the mcp-linux-<arch> beside it"],
      ["--force", "upgrade nodes already on this version too"],
      [
        "--accept-new-host-key",
        "trust and record a host key known_hosts does not have yet (never a changed one)",
      ],
      ["--timeout <duration>", "how long to wait for the new agent to answer before rolling back", "60s"],
    ],
    action: lazy(agentUpgrade, (m) => m.agentUpgradeCommand),
  },
  {
    name: "agent status",
    args: "[...nodes]",
    help: "Every node's agent: reachable, version (skew against this CLI), arch, uptime, runtime, services, disk, memory",
    action: lazy(agentStatus, (m) => m.agentStatusCommand),
  },
  {
    name: "route list",
    args: "",
    help: "mc-proxy routes of every node (or one), by listener",
    options: [["-n, --node <node>", "only this node"]],
    action: lazy(route, (m) => m.routeListCommand),
  },
  {
    name: "route add",
    args: "<hostname> <backend>",
    help: "Add or replace an mc-proxy route on a node (manual fix; deploys manage their own routes)",
    options: [
      ["--listener <port>", "mc-proxy listener port (default 443)"],
      ["--mode <mode>", "l4 (TLS passthrough) | l7 (mc-proxy terminates TLS) (default l4)"],
      ["--tls-cert <path>", "l7: full-chain certificate path on the node"],
      ["--tls-key <path>", "l7: key path on the node"],
      ["--backend-tls", "l7: speak TLS to the backend"],
      ["-n, --node <node>", "node whose mc-proxy to change (default: the only node)"],
    ],
    action: lazy(route, (m) => m.routeAddCommand),
  },
  {
    name: "route remove",
    args: "<hostname>",
    help: "Remove an mc-proxy route from a node (a missing route is not an error)",
    options: [
      ["--listener <port>", "mc-proxy listener port (default 443)"],
      ["-n, --node <node>", "node whose mc-proxy to change (default: the only node)"],
    ],
    action: lazy(route, (m) => m.routeRemoveCommand),
  },
  {
    name: "node list",
    args: "",
    help: "Nodes with reachability, agent version and runtimes (container, unikernel)",
    action: lazy(node, (m) => m.nodeListCommand),
  },
  {
    name: "node add",
    args: "<name> <address>",
    help: "Add a node to the CLI config",
    options: [
      ["--ssh <target>", "user@host[:port] or ssh_config alias"],
      ["--arch <arch>", "amd64 | arm64", "amd64"],
      ["--fallback <addr>", "fallback address (repeatable)"],
    ],
    action: lazy(node, (m) => m.nodeAddCommand),
  },
  {
    name: "node remove",
    args: "<name>",
    help: "Remove a node from the CLI config",
    action: lazy(node, (m) => m.nodeRemoveCommand),
  },
  {
    name: "node provision",
    args: "<name>",
    help: "Prepare a Debian machine over SSH as an MCP node (idempotent) and add it to the CLI config",
    options: [
      ["--ssh <target>", "user@host[:port] or ssh_config alias (root, or a user with passwordless sudo)"],
      ["--address <addr>", "host:port the CLI and master dial (cert SAN; default <ssh host>:9444)"],
      ["--listen <addr>", "host:port the agent binds when it differs (NAT, published ports)"],
      ["--arch <arch>", "amd64 | arm64 (default: what the node reports)"],
      ["--uid <uid>", "UID/GID of the mcp user (an existing user's UID is never changed)", 850],
      ["--ca-cert <file>", "CA certificate to issue the agent cert with (the CLI's [tls] CA)"],
      ["--ca-key <file>", "its private key"],
      [
        "--master-cert",
        "also issue the master's client certificate into /srv/mcp-master/certs (the master's node)",
      ],
      ["--binary <file>", "agent binary to install (default: this executable or mcp-linux-<arch> beside it)"],
      ["--accept-new-host-key", "trust and record an unknown SSH host key (never a changed one)"],
    ],
    action: lazy(provision, (m) => m.provisionCommand),
  },
  {
    name: "completion",
    args: "<shell>",
    help: "Print the shell completion script: bash | zsh (e.g. source <(mcp completion bash))",
    action: lazy(completion, (m) => m.completionCommand),
  },
];

// Options that take a value, so their value is not mistaken for a command word.
const VALUE_OPTIONS = new Set(["--config"]);

/** cac does not match multi-word commands: join the first two positional words when they name one. */
export function joinMultiWord(argv: string[], names: Set<string>): string[] {
  let i = 0;
  while (i < argv.length && argv[i]!.startsWith("-")) i += VALUE_OPTIONS.has(argv[i]!) ? 2 : 1;
  if (i + 1 < argv.length) {
    const pair = `${argv[i]} ${argv[i + 1]}`;
    if (names.has(pair)) return [...argv.slice(0, i), pair, ...argv.slice(i + 2)];
  }
  return argv;
}

/** A cac instance with `commands` registered (in table order) plus the global help and version. */
function buildCli(commands: CommandDef[], version: string, onAction: (r: Promise<number>) => void) {
  const cli = cac("mcp");
  for (const c of commands) {
    const cmd = cli.command(`${c.name}${c.args ? ` ${c.args}` : ""}`, c.help);
    for (const [flag, desc, def] of c.options ?? [])
      cmd.option(flag, desc, def === undefined ? undefined : { default: def });
    // A command may redefine a global flag (agent snapshot: --config is the AGENT config).
    const own = new Set((c.options ?? []).map(([f]) => f.split(" ")[0]));
    for (const [flag, desc] of GLOBAL_OPTIONS) if (!own.has(flag.split(" ")[0])) cmd.option(flag, desc);
    cmd.action((...a: unknown[]) => {
      const opts = a.pop() as Record<string, unknown>;
      const args = a
        .flat()
        .filter((x) => x !== undefined)
        .map(String);
      onAction(c.action(args, opts));
    });
  }
  cli.command("agent", "Run the node agent daemon (mcp agent --config /srv/mcp/mcp-agent.toml)");
  cli.help();
  cli.version(version);
  return cli;
}

/**
 * The commands that can match `argv` at all: cac matches a command only when its name is the
 * first positional word, so a command whose name is none of argv's words never matches. Parsing
 * with these alone gives the same match, arguments and options as with the whole table (cac
 * parses argv once per registered command: ~5 ms for all of them at every start).
 */
export function candidateCommands(argv: string[]): CommandDef[] {
  const words = new Set(argv);
  return COMMANDS.filter((c) => words.has(c.name));
}

export async function runCli(argv: string[], version: string): Promise<number> {
  let result: Promise<number> | null = null;
  const onAction = (r: Promise<number>) => {
    result = r;
  };
  const names = new Set(COMMANDS.map((c) => c.name));
  const joined = joinMultiWord(argv, names);
  try {
    // First the candidates only, help output held back: with a match, the command's own help
    // (all cac prints then) or its action is the same as with the whole table. Without a match
    // (no command word, unknown command, global help or version), the whole table decides.
    const few = candidateCommands(joined);
    let cli = buildCli(few, version, onAction);
    if (few.length > 0) {
      cli.showHelpOnExit = false;
      cli.parse(["mcp", "mcp", ...joined], { run: false });
      if (cli.matchedCommand && cli.options.help) {
        cli.outputHelp();
        return 0;
      }
    }
    if (!cli.matchedCommand) {
      cli = buildCli(COMMANDS, version, onAction);
      cli.parse(["mcp", "mcp", ...joined], { run: false });
    }
    if (cli.options.help || cli.options.version) return 0;
    if (!cli.matchedCommand) {
      if (joined.length === 0) {
        cli.outputHelp();
        return 0;
      }
      throw new CliError(`unknown command "${joined.join(" ")}" (see mcp --help)`, 2);
    }
    await cli.runMatchedCommand();
    if (!result) return 0;
    return await result;
  } catch (err) {
    printError(err);
    return exitCodeFor(err);
  }
}
