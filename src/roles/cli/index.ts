// The operator CLI: command table (cac) with one lazily imported module per command group,
// so each invocation loads only what it runs.
import { cac } from "cac";
import { closest } from "../../util/suggest.ts";
import { CliError, EXIT_CODES_HELP, EXIT_OK, EXIT_USAGE, exitCodeFor, printError } from "./output.ts";

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
      ["--dry-run", "show what changes against the deployed spec and the exact runtime argv; change nothing"],
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
    options: [
      ["-n, --node <node>", "the node (default: the definition's, else the one running it)"],
      [
        "--diff <k>",
        "what entry K changed against the one before it (K..J: between two entries), field by field",
      ],
    ],
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
      ["--dry-run", "report what would change, field by field; record, stop and discover nothing"],
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
    help: "Edit the definition in $VISUAL/$EDITOR (exported first if missing): reopened on a mistake, saved only when valid",
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
  // The global help ends with the exit-code policy (a command's own help has no Commands section).
  cli.help((sections) =>
    sections.some((s) => s.title === "Commands")
      ? [
          ...sections,
          { title: "Exit codes", body: EXIT_CODES_HELP.map(([c, d]) => `  ${c}  ${d}`).join("\n") },
        ]
      : sections,
  );
  cli.version(version);
  return cli;
}

// ---- parsing ------------------------------------------------------------------------------------
// cac matches a command only when its name is argv's first word and hands the word after a boolean
// flag to it as a value (`deploy --dry-run web` lost "web"): it cannot tell which options take a
// value. The table above can, so argv is read here first: the command is found wherever its words
// are among the options, every option is checked against that command's table (unknown ones are
// refused with a suggestion, exit 2), the positional words are counted against its args, and cac
// is given only the command name and the options in an unambiguous form (`--node=x`) to build the
// options object commands read, with each value as typed (cac would turn `-n 01` into 1).

/** One option of the table, as the command line may spell it. */
interface OptionSpec {
  /** As the table writes it ("-n, --node <node>"); cac's rawName. */
  flag: string;
  /** Every spelling: "-n", "--node". */
  spellings: string[];
  takesValue: boolean;
}

type OptionTable = Map<string, OptionSpec>;

const HELP_OPTION = "-h, --help";
const VERSION_OPTION = "-v, --version";

function optionSpec(flag: string): OptionSpec {
  const names = flag.replace(/[<[].*$/, "");
  return {
    flag,
    spellings: names
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean),
    takesValue: /[<[]/.test(flag),
  };
}

/** Spelling → option; on a clash the first flag wins (a command's own option over a global one). */
function optionTable(flags: readonly string[]): OptionTable {
  const table: OptionTable = new Map();
  for (const flag of flags) {
    const spec = optionSpec(flag);
    for (const s of spec.spellings) if (!table.has(s)) table.set(s, spec);
  }
  return table;
}

/** What `def` accepts: its own options, then the global ones (and --help). No --version: top level only. */
function commandOptionTable(def: CommandDef): OptionTable {
  return optionTable([
    ...(def.options ?? []).map(([f]) => f),
    ...GLOBAL_OPTIONS.map(([f]) => f),
    HELP_OPTION,
  ]);
}

interface GivenOption {
  /** The argv word it came from ("--node", "-fn", "--node=x"). */
  word: string;
  /** The option's spelling without a value ("--node", "-n"). */
  spelling: string;
  spec: OptionSpec | undefined;
  value?: string;
}

interface ScannedArgv {
  /** The positional words in order; everything after "--" is one too. */
  words: string[];
  options: GivenOption[];
}

const isValueWord = (s: string | undefined): s is string =>
  s !== undefined && (s === "-" || !s.startsWith("-"));

/**
 * Splits argv into positional words and options by `table`: an option that takes a value takes
 * `--opt=value`, or the next word unless that starts with "-" (then it has none: an error later).
 * Short options may be bundled (`-fn web`: booleans first, one taking a value last) and take
 * `-n=x` or `-nx`. An option the table lacks is kept (spec undefined) and takes no value.
 */
export function scanArgv(argv: readonly string[], table: OptionTable): ScannedArgv {
  const words: string[] = [];
  const options: GivenOption[] = [];
  const add = (word: string, spelling: string, value: string | undefined) => {
    const spec = table.get(spelling);
    options.push(value === undefined ? { word, spelling, spec } : { word, spelling, spec, value });
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") {
      words.push(...argv.slice(i + 1));
      break;
    }
    if (!a.startsWith("-") || a === "-") {
      words.push(a);
      continue;
    }
    if (a.startsWith("--")) {
      const eq = a.indexOf("=");
      const spelling = eq < 0 ? a : a.slice(0, eq);
      let value = eq < 0 ? undefined : a.slice(eq + 1);
      if (value === undefined && table.get(spelling)?.takesValue && isValueWord(argv[i + 1]))
        value = argv[++i];
      add(a, spelling, value);
      continue;
    }
    // A bundle with a letter the table lacks is one unknown option and takes no value ("-dry-run"
    // is not -d -r -y … -n with the next word as -n's value).
    const bundle = a.slice(1).replace(/=.*$/, "");
    const stop = [...bundle].findIndex((c) => !table.has(`-${c}`) || table.get(`-${c}`)!.takesValue);
    if (stop >= 0 && !table.has(`-${bundle[stop]}`)) {
      add(a, a.replace(/=.*$/, ""), undefined);
      continue;
    }
    for (let j = 1; j < a.length; j++) {
      const spelling = `-${a[j]}`;
      if (a[j + 1] === "=") {
        add(a, spelling, a.slice(j + 2));
        break;
      }
      if (table.get(spelling)?.takesValue) {
        const rest = a.slice(j + 1);
        add(a, spelling, rest !== "" ? rest : isValueWord(argv[i + 1]) ? argv[++i] : undefined);
        break;
      }
      add(a, spelling, undefined);
    }
  }
  return { words, options };
}

/**
 * The commands that can match `argv` at all: those whose every name word is one of argv's words.
 * Only these are scanned and only the matched one is given to cac (building cac's table for all
 * commands and parsing with each cost ~5 ms at every start).
 */
export function candidateCommands(argv: readonly string[]): CommandDef[] {
  const words = new Set(argv);
  return COMMANDS.filter((c) => c.name.split(" ").every((w) => words.has(w)));
}

interface Match {
  def: CommandDef;
  scanned: ScannedArgv;
}

/** How many positional words a command takes after its name. */
function arity(def: CommandDef): { required: number; max: number; slots: string[] } {
  const slots = def.args.match(/<[^>]+>|\[[^\]]+\]/g) ?? [];
  const required = slots.filter((s) => s.startsWith("<")).length;
  return {
    required,
    max: slots.some((s) => s.includes("...")) ? Number.POSITIVE_INFINITY : slots.length,
    slots,
  };
}

/**
 * The command argv runs: its name is the first positional words (options may come anywhere). When
 * several could be read from argv, the reading whose table knows every option given wins (in
 * `-n ps logs web`, "ps" is -n's value for logs), then the one with as many arguments as its
 * command takes (`-f logs deploy`: logs -f, not deploy -f logs), then the longer name.
 */
function matchCommand(argv: readonly string[]): Match | null {
  let best: Match | null = null;
  let bestScore = -1;
  for (const def of candidateCommands(argv)) {
    const name = def.name.split(" ");
    const scanned = scanArgv(argv, commandOptionTable(def));
    if (!name.every((w, k) => scanned.words[k] === w)) continue;
    const { required, max } = arity(def);
    const args = scanned.words.length - name.length;
    const score =
      (scanned.options.every((o) => o.spec) ? 100 : 0) +
      (args >= required && args <= max ? 10 : 0) +
      name.length;
    if (score > bestScore) {
      best = { def, scanned };
      bestScore = score;
    }
  }
  return best;
}

const usageOf = (def: CommandDef) => `usage: mcp ${def.name}${def.args ? ` ${def.args}` : ""}`;

/** The option an unknown option word likely meant ("--dryrun", "-dry-run" → "--dry-run"), if any. */
function suggestOption(word: string, table: OptionTable): string | undefined {
  const name = word.replace(/^-+/, "").replace(/=.*$/, "");
  const longs = [...table.keys()].filter((s) => s.startsWith("--")).map((s) => s.slice(2));
  const guess = longs.includes(name) ? name : closest(name, longs);
  return guess === undefined ? undefined : `--${guess}`;
}

/** The usage problems of a matched command line (exit 2), in argv order; returns its arguments. */
function checkUsage({ def, scanned }: Match): string[] {
  const cmd = `mcp ${def.name}`;
  const at = def.name; // the line starts "mcp: " already
  for (const o of scanned.options) {
    if (!o.spec) {
      const guess = suggestOption(o.word, commandOptionTable(def));
      throw new CliError(
        guess
          ? `unknown option "${o.word}" for ${cmd}: did you mean "${guess}"?`
          : `unknown option "${o.word}" for ${cmd} (see ${cmd} --help)`,
        EXIT_USAGE,
      );
    }
    if (o.spec.takesValue && o.value === undefined)
      throw new CliError(`${at}: option ${o.spelling} needs a value (${o.spec.flag})`, EXIT_USAGE);
    if (!o.spec.takesValue && o.value !== undefined)
      throw new CliError(`${at}: option ${o.spelling} takes no value, got "${o.word}"`, EXIT_USAGE);
  }
  const args = scanned.words.slice(def.name.split(" ").length);
  const { required, max, slots } = arity(def);
  if (args.length < required)
    throw new CliError(
      `${at}: missing ${slots.slice(args.length, required).join(" ")} (${usageOf(def)})`,
      EXIT_USAGE,
    );
  if (args.length > max)
    throw new CliError(`${at}: unexpected argument "${args[max]}" (${usageOf(def)})`, EXIT_USAGE);
  return args;
}

/** The options for cac, one word each: the long spelling, with `=value` when it takes one. */
function cacOptionWords(scanned: ScannedArgv): string[] {
  const out: string[] = [];
  for (const o of scanned.options) {
    if (!o.spec || (o.spec.takesValue && o.value === undefined)) continue;
    const long = o.spec.spellings.find((s) => s.startsWith("--")) ?? o.spelling;
    out.push(o.spec.takesValue ? `${long}=${o.value}` : long);
  }
  return out;
}

/** Replaces cac's values of the options given with values with the words as typed (cac makes "0640" 640). */
function withTypedValues(cli: ReturnType<typeof cac>, scanned: ScannedArgv): void {
  const values = new Map<string, string[]>();
  for (const o of scanned.options)
    if (o.spec?.takesValue && o.value !== undefined)
      values.set(o.spec.flag, [...(values.get(o.spec.flag) ?? []), o.value]);
  const cacOptions = [...(cli.matchedCommand?.options ?? []), ...cli.globalCommand.options];
  for (const [flag, v] of values) {
    const names = cacOptions.find((o) => o.rawName === flag)?.names ?? [];
    for (const name of names) cli.options[name] = v.length === 1 ? v[0] : v;
  }
}

/** What argv means as a whole command line: the command, its arguments and its options object. */
interface ParsedCommandLine {
  command: string;
  args: string[];
  options: Record<string, unknown>;
  help: boolean;
}

/** Parses a command line the way runCli does, without running it; usage problems throw CliError. */
export function parseCommandLine(
  argv: readonly string[],
  version = "0.0.0",
  onAction: (r: Promise<number>) => void = () => {},
): (ParsedCommandLine & { run(): Promise<unknown> }) | null {
  const match = matchCommand(argv);
  if (!match) return null;
  const { def, scanned } = match;
  const help = scanned.options.some((o) => o.spec?.flag === HELP_OPTION);
  const args = help ? [] : checkUsage(match);
  const cli = buildCli([def], version, onAction);
  cli.showHelpOnExit = false;
  cli.parse(["mcp", "mcp", def.name, ...cacOptionWords(scanned)], { run: false });
  cli.args = args;
  withTypedValues(cli, scanned);
  return {
    command: def.name,
    args,
    options: cli.options,
    help,
    run: async () => (help ? cli.outputHelp() : cli.runMatchedCommand()),
  };
}

const commandNames = () => COMMANDS.map((c) => c.name);

/** The one line for words that name no command, with the likeliest command when one is close. */
function unknownCommand(words: string[]): CliError {
  const [w0 = "", w1] = words;
  const names = commandNames();
  const groups = [...new Set(names.filter((n) => n.includes(" ")).map((n) => n.split(" ")[0]!))];
  const wrong = (what: string, guess: string | undefined) =>
    new CliError(
      guess
        ? `unknown command "${what}": did you mean "${guess}"?`
        : `unknown command "${what}" (see mcp --help)`,
      EXIT_USAGE,
    );
  if (groups.includes(w0)) {
    const subs = names.filter((n) => n.startsWith(`${w0} `));
    if (w1 === undefined) {
      const daemon = w0 === "agent" ? '; "mcp agent" with only --config runs the agent daemon' : "";
      return new CliError(`${w0}: missing subcommand, one of: ${subs.join(", ")}${daemon}`, EXIT_USAGE);
    }
    const guess = closest(
      w1,
      subs.map((n) => n.slice(w0.length + 1)),
    );
    return wrong(`${w0} ${w1}`, guess && `${w0} ${guess}`);
  }
  const group = closest(w0, groups);
  if (group && w1 !== undefined && names.includes(`${group} ${w1}`))
    return wrong(`${w0} ${w1}`, `${group} ${w1}`);
  return wrong(w0, closest(w0, [...names.filter((n) => !n.includes(" ")), ...groups]));
}

/** argv that runs no command: the global help or version, else the one line saying what is wrong. */
function topLevel(argv: readonly string[], version: string): number {
  // Every option any command takes, so a value before a mistyped command is not taken for it.
  const table = optionTable([
    ...GLOBAL_OPTIONS.map(([f]) => f),
    HELP_OPTION,
    VERSION_OPTION,
    ...COMMANDS.flatMap((c) => (c.options ?? []).map(([f]) => f)),
  ]);
  const { words, options } = scanArgv(argv, table);
  const given = (flag: string) => options.some((o) => o.spec?.flag === flag);
  if (argv.length === 0 || given(HELP_OPTION) || (given(VERSION_OPTION) && words.length === 0)) {
    const cli = buildCli(COMMANDS, version, () => {});
    if (argv.length === 0 || given(HELP_OPTION)) cli.outputHelp();
    else cli.outputVersion();
    return EXIT_OK;
  }
  if (words.length > 0) throw unknownCommand(words);
  const bad = options.find((o) => !o.spec);
  if (bad) {
    const guess = suggestOption(bad.word, table);
    throw new CliError(
      guess
        ? `unknown option "${bad.word}": did you mean "${guess}"?`
        : `unknown option "${bad.word}" (see mcp --help)`,
      EXIT_USAGE,
    );
  }
  throw new CliError("missing command (see mcp --help)", EXIT_USAGE);
}

export async function runCli(argv: string[], version: string): Promise<number> {
  let result: Promise<number> | null = null;
  try {
    const parsed = parseCommandLine(argv, version, (r) => {
      result = r;
    });
    if (!parsed) return topLevel(argv, version);
    await parsed.run();
    if (parsed.help || !result) return EXIT_OK;
    return await result;
  } catch (err) {
    printError(err);
    return exitCodeFor(err);
  }
}
