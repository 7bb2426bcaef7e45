// Reliability (issue 10), bad input, the files half: a few hundred malformed service definitions,
// CLI configs, agent configs and master configs, fed to the COMPILED binary the way an operator
// would: `mcp deploy <svc> -f FILE --dry-run`, `mcp node list` with MCP_CONFIG=FILE, `mcp agent
// --config FILE` and `mcp master --config FILE`. Each must exit 2 with exactly one stderr line
// `<prefix><file>: <key>: <why>` (`line N` for TOML syntax and bad UTF-8), no stack frame and
// nothing on stdout. Cases are hand-written (out-of-range values, enums, names, images,
// duplicates, unknown/missing keys, special files) plus generated with a seeded fast-check (a
// wrong-typed value for every key; truncations, byte flips, insertions and deletions of a valid
// file, kept when they break the TOML). A service deployed before the barrage is unchanged after
// it, and the daemons never bound their ports. Bounded: a fixed number of cases, 4 processes at a
// time, each killed after 10 s. Seed: MCP_SEED, printed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { parse as parseToml, stringify, TomlError } from "smol-toml";
import { parseAgentConfig } from "../../src/config/agent.ts";
import { parseCliConfig } from "../../src/config/cli.ts";
import { formatKeyPath } from "../../src/config/load.ts";
import { parseMasterConfig } from "../../src/config/master.ts";
import { parseServiceDef } from "../../src/config/service.ts";
import { type RunResult, runMcp } from "../support/binary.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";
import { recordSuite } from "../support/reliability.ts";

const SEED = Number(process.env.MCP_SEED || Math.floor(Math.random() * 2 ** 31));
const SVC = `badin-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const CONCURRENCY = 4;
const MUTANTS_PER_TARGET = 12;
/** A "clear line" is short enough to read: generous, but no megabyte of echoed input. */
const MAX_LINE = 600;

type Target = "service" | "cli" | "agent" | "master";
type Path = (string | number)[];
type Toml = Record<string, unknown>;

interface Case {
  target: Target;
  kind: string;
  /** What the file is made of: a TOML object, raw bytes, or made by `make` (a dir, …). */
  doc?: Toml;
  bytes?: Uint8Array;
  make?: (file: string) => void;
  /** The key the line must name (formatKeyPath form), or `line N`; undefined = the file only. */
  key?: string;
  /** Run without CAP_DAC_OVERRIDE so a mode-000 file is really unreadable to root. */
  noDacOverride?: boolean;
}

let agent: LocalAgent;
let work = "";
let image = "";
let webPort = 0;
let agentPort = 0;
let masterPort = 0;
const bases = {} as Record<Target, Toml>;

// ---- documents --------------------------------------------------------------------------------

const clone = <T>(v: T): T => structuredClone(v);
const toml = (doc: Toml): string => stringify(doc as Parameters<typeof stringify>[0]);

function mutate(base: Toml, path: Path, value: unknown | typeof DELETE): Toml {
  const doc = clone(base);
  let node: Record<string | number, unknown> = doc;
  for (const seg of path.slice(0, -1)) node = node[seg] as Record<string | number, unknown>;
  const last = path[path.length - 1]!;
  if (value === DELETE) {
    if (Array.isArray(node)) node.splice(last as number, 1);
    else delete node[last];
  } else node[last] = value;
  return doc;
}
const DELETE = Symbol("delete");

function serviceBase(): Toml {
  return {
    name: SVC,
    tier: "worker",
    active: true,
    node: "local",
    build: { images: { web: "Containerfile.web" } },
    snapshot: { method: "full", exclude: ["cache"] },
    components: [
      {
        name: "web",
        image,
        network: "",
        user: "1000:1000",
        restart: "unless-stopped",
        ports: [`127.0.0.1:${webPort}:8080`],
        volumes: ["/srv/x/data:/data:rw"],
        cmd: ["/bin/sh", "-c", "httpd -f"],
        env: ["A=1"],
        runtime: "container",
        memory: "64m",
        vcpus: 1,
        routes: [{ name: "http", port: 8443, mode: "l7", hostname: "web.example.net", public: false }],
        health: { type: "tcp", port: 8080, interval: "2s", timeout: "1s", retries: 3, start_period: "0s" },
      },
      { name: "worker", image, cmd: ["/bin/true"] },
    ],
  };
}

function cliBase(): Toml {
  const b = parseToml(readFileSync(agent.cliConfig, "utf8")) as Toml;
  return {
    ...b,
    mcias: { server_url: "https://mcias.example.net:8443", ca_cert: "", service_name: "mcp" },
    master: { address: "127.0.0.1:1", addresses: ["127.0.0.1:2"] },
    nodes: [
      { ...(b.nodes as Toml[])[0], addresses: ["127.0.0.1:3"], ssh: "root@node" },
      { name: "other", address: "127.0.0.1:4", arch: "arm64" },
    ],
  };
}

function agentBase(): Toml {
  const b = parseToml(readFileSync(agent.agentConfig, "utf8")) as Toml;
  const server = b.server as Toml;
  const ag = b.agent as Toml;
  return {
    ...b,
    server: { ...server, grpc_addr: `127.0.0.1:${agentPort}`, allow_any_addr: false },
    database: { path: join(work, "agent-never.db") },
    agent: {
      ...ag,
      srv_root: join(work, "srv-never"),
      port_range: [10000, 60000],
      pull: "missing",
      history_keep: 10,
      recover_on_start: false,
    },
    monitor: {
      interval: "60s",
      alert_command: ["/bin/true"],
      cooldown: "15m",
      flap_threshold: 3,
      retention: "30d",
    },
    edge: { allowed_backend_cidrs: ["100.64.0.0/10"], listener: 443 },
    master: { address: "127.0.0.1:5", role: "worker", heartbeat: "30s" },
    boot: {
      sequence: [
        {
          name: "core",
          timeout: "60s",
          health: "tcp",
          blocking: true,
          services: [{ name: "boot-svc", components: [{ name: "app", image: "localhost/app:v1" }] }],
        },
      ],
    },
  };
}

function masterBase(): Toml {
  const a = parseToml(readFileSync(agent.agentConfig, "utf8")) as Toml;
  const server = a.server as Toml;
  return {
    server: { grpc_addr: `127.0.0.1:${masterPort}`, tls_cert: server.tls_cert, tls_key: server.tls_key },
    database: { path: join(work, "master-never.db") },
    auth: a.auth,
    tls: { ca_cert: join(agent.dir, "certs", "ca.pem") },
    edge: { allowed_domains: ["example.net"] },
    registration: {
      allowed_agents: ["agent-a"],
      max_nodes: 16,
      register_interval: "60s",
      heartbeat_min_interval: "10s",
    },
    timeouts: { deploy: "5m", edge_route: "30s", health_check: "5s", undeploy: "2m", snapshot: "10m" },
    master: { heartbeat_miss: 3, heartbeat_interval: "30s", probe_timeout: "5s", allowed_public_domains: [] },
    nodes: [{ name: "n1", address: "127.0.0.1:6", role: "worker", arch: "amd64" }],
    snapshots: { dir: join(work, "snapshots-never"), interval: "24h", retain: 7 },
    log: { level: "info" },
  };
}

// ---- case catalogues --------------------------------------------------------------------------

/** TOML value kinds: string, integer, float, boolean, array, table, datetime. */
type Kind = "s" | "i" | "f" | "b" | "a" | "t" | "d";

const kindArb: Record<Kind, fc.Arbitrary<unknown>> = {
  s: fc.string({ maxLength: 12 }),
  i: fc.integer({ min: -1_000_000, max: 1_000_000 }),
  f: fc.double({ min: -1e6, max: 1e6, noNaN: true }).filter((x) => !Number.isInteger(x)),
  b: fc.boolean(),
  a: fc.array(fc.integer({ min: 0, max: 9 }), { maxLength: 3 }),
  t: fc.dictionary(fc.stringMatching(/^[a-z]{1,6}$/), fc.integer({ min: 0, max: 9 }), { maxKeys: 2 }),
  d: fc.date({ min: new Date(0), max: new Date(4e12), noInvalidDate: true }),
};
const wrongFor = (k: Kind) =>
  fc.oneof(...(Object.keys(kindArb) as Kind[]).filter((x) => x !== k).map((x) => kindArb[x]));

/** Every key of each base with the kind it must have: each gets one generated wrong-typed value. */
const C0: Path = ["components", 0];
const R0: Path = [...C0, "routes", 0];
const H0: Path = [...C0, "health"];
const TYPED: Record<Target, [Path, Kind][]> = {
  service: [
    [["name"], "s"],
    [["tier"], "s"],
    [["active"], "b"],
    [["node"], "s"],
    [["build"], "t"],
    [["build", "images"], "t"],
    [["build", "images", "web"], "s"],
    [["snapshot"], "t"],
    [["snapshot", "method"], "s"],
    [["snapshot", "exclude"], "a"],
    [["snapshot", "exclude", 0], "s"],
    [["components"], "a"],
    [C0, "t"],
    [[...C0, "name"], "s"],
    [[...C0, "image"], "s"],
    [[...C0, "network"], "s"],
    [[...C0, "user"], "s"],
    [[...C0, "restart"], "s"],
    [[...C0, "ports"], "a"],
    [[...C0, "ports", 0], "s"],
    [[...C0, "volumes"], "a"],
    [[...C0, "volumes", 0], "s"],
    [[...C0, "cmd"], "a"],
    [[...C0, "cmd", 0], "s"],
    [[...C0, "env"], "a"],
    [[...C0, "env", 0], "s"],
    [[...C0, "runtime"], "s"],
    [[...C0, "memory"], "s"],
    [[...C0, "vcpus"], "i"],
    [[...C0, "routes"], "a"],
    [R0, "t"],
    [[...R0, "name"], "s"],
    [[...R0, "port"], "i"],
    [[...R0, "mode"], "s"],
    [[...R0, "hostname"], "s"],
    [[...R0, "public"], "b"],
    [H0, "t"],
    [[...H0, "type"], "s"],
    [[...H0, "port"], "i"],
    [[...H0, "interval"], "s"],
    [[...H0, "timeout"], "s"],
    [[...H0, "retries"], "i"],
    [[...H0, "start_period"], "s"],
    [["components", 1, "name"], "s"],
    [["components", 1, "image"], "s"],
  ],
  cli: [
    [["services"], "t"],
    [["services", "dir"], "s"],
    [["auth"], "t"],
    [["auth", "token_path"], "s"],
    [["tls"], "t"],
    [["tls", "ca_cert"], "s"],
    [["mcias"], "t"],
    [["mcias", "server_url"], "s"],
    [["mcias", "service_name"], "s"],
    [["master"], "t"],
    [["master", "address"], "s"],
    [["master", "addresses"], "a"],
    [["master", "addresses", 0], "s"],
    [["nodes"], "a"],
    [["nodes", 0], "t"],
    [["nodes", 0, "name"], "s"],
    [["nodes", 0, "address"], "s"],
    [["nodes", 0, "addresses"], "a"],
    [["nodes", 0, "addresses", 0], "s"],
    [["nodes", 0, "ssh"], "s"],
    [["nodes", 0, "arch"], "s"],
    [["nodes", 1, "name"], "s"],
  ],
  agent: [
    [["server"], "t"],
    [["server", "grpc_addr"], "s"],
    [["server", "tls_cert"], "s"],
    [["server", "tls_key"], "s"],
    [["server", "allow_any_addr"], "b"],
    [["database"], "t"],
    [["database", "path"], "s"],
    [["auth"], "t"],
    [["auth", "mode"], "s"],
    [["auth", "tokens"], "a"],
    [["auth", "tokens", 0], "t"],
    [["auth", "tokens", 0, "name"], "s"],
    [["auth", "tokens", 0, "role"], "s"],
    [["auth", "tokens", 0, "account_type"], "s"],
    [["auth", "tokens", 0, "sha256"], "s"],
    [["agent"], "t"],
    [["agent", "node_name"], "s"],
    [["agent", "container_runtime"], "s"],
    [["agent", "runtime_args"], "a"],
    [["agent", "srv_root"], "s"],
    [["agent", "port_range"], "a"],
    [["agent", "pull"], "s"],
    [["agent", "history_keep"], "i"],
    [["agent", "recover_on_start"], "b"],
    [["monitor"], "t"],
    [["monitor", "interval"], "s"],
    [["monitor", "alert_command"], "a"],
    [["monitor", "cooldown"], "s"],
    [["monitor", "flap_threshold"], "i"],
    [["monitor", "retention"], "s"],
    [["edge"], "t"],
    [["edge", "listener"], "i"],
    [["edge", "allowed_backend_cidrs"], "a"],
    [["log"], "t"],
    [["log", "level"], "s"],
    [["master"], "t"],
    [["master", "address"], "s"],
    [["master", "role"], "s"],
    [["master", "heartbeat"], "s"],
    [["boot"], "t"],
    [["boot", "sequence"], "a"],
    [["boot", "sequence", 0, "name"], "s"],
    [["boot", "sequence", 0, "timeout"], "s"],
    [["boot", "sequence", 0, "health"], "s"],
    [["boot", "sequence", 0, "blocking"], "b"],
    [["boot", "sequence", 0, "services"], "a"],
    [["boot", "sequence", 0, "services", 0, "name"], "s"],
    [["boot", "sequence", 0, "services", 0, "components", 0, "image"], "s"],
  ],
  master: [
    [["server"], "t"],
    [["server", "grpc_addr"], "s"],
    [["server", "tls_cert"], "s"],
    [["database", "path"], "s"],
    [["auth", "mode"], "s"],
    [["auth", "tokens", 0, "role"], "s"],
    [["tls"], "t"],
    [["tls", "ca_cert"], "s"],
    [["edge"], "t"],
    [["edge", "allowed_domains"], "a"],
    [["edge", "allowed_domains", 0], "s"],
    [["registration"], "t"],
    [["registration", "allowed_agents"], "a"],
    [["registration", "max_nodes"], "i"],
    [["registration", "register_interval"], "s"],
    [["registration", "heartbeat_min_interval"], "s"],
    [["timeouts"], "t"],
    [["timeouts", "deploy"], "s"],
    [["timeouts", "edge_route"], "s"],
    [["timeouts", "health_check"], "s"],
    [["timeouts", "undeploy"], "s"],
    [["timeouts", "snapshot"], "s"],
    [["master"], "t"],
    [["master", "heartbeat_miss"], "i"],
    [["master", "heartbeat_interval"], "s"],
    [["master", "probe_timeout"], "s"],
    [["master", "allowed_public_domains"], "a"],
    [["nodes"], "a"],
    [["nodes", 0, "name"], "s"],
    [["nodes", 0, "address"], "s"],
    [["nodes", 0, "role"], "s"],
    [["nodes", 0, "arch"], "s"],
    [["snapshots"], "t"],
    [["snapshots", "dir"], "s"],
    [["snapshots", "interval"], "s"],
    [["snapshots", "retain"], "i"],
    [["log", "level"], "s"],
  ],
};

/** [kind, path, value (DELETE removes it), reported key when it is not the path itself]. */
type Hand = [string, Path, unknown, Path?];
const long = (n: number) => "a".repeat(n);

function handCases(): Record<Target, Hand[]> {
  const P = [...C0, "ports", 0];
  const routes2 = [
    { name: "http", port: 8443 },
    { name: "http", port: 9443 },
  ];
  return {
    service: [
      ...[
        "127.0.0.1:0:8080",
        "127.0.0.1:70000:8080",
        "127.0.0.1:8080:0",
        "8080",
        "a:b:c:d",
        "80:80/sctp",
        "-1:80",
      ].map((v): Hand => ["out-of-range/bad port spec", P, v]),
      ...[0, 70000, -443].map((v): Hand => ["out-of-range route port", [...R0, "port"], v]),
      ...[0, 70000].map((v): Hand => ["out-of-range health port", [...H0, "port"], v]),
      ...["-5s", "0s", "5 minutes", "1x", "", "2", "1h-5m"].map(
        (v): Hand => ["bad duration", [...H0, "interval"], v],
      ),
      ["bad duration", [...H0, "timeout"], "0ms"],
      ["bad duration", [...H0, "start_period"], "soon"],
      ...[0, -1].map((v): Hand => ["out-of-range retries", [...H0, "retries"], v]),
      ...[0, -2].map((v): Hand => ["out-of-range vcpus", [...C0, "vcpus"], v]),
      ["empty memory", [...C0, "memory"], ""],
      ...["sometimes", "on-failure:x"].map((v): Hand => ["bad enum restart", [...C0, "restart"], v]),
      ["bad enum", [...C0, "runtime"], "docker"],
      ["bad enum", ["tier"], "edge"],
      ["bad enum", [...R0, "mode"], "l5"],
      ["bad enum", [...H0, "type"], "udp"],
      ["bad enum", ["snapshot", "method"], "rsync"],
      ...["my/svc", "UPPER", long(64), "", "-lead", "svc_1", "svc.x"].map(
        (v): Hand => ["bad service name", ["name"], v],
      ),
      ...["web/1", "Web", long(64), "", " web"].map((v): Hand => ["bad component name", [...C0, "name"], v]),
      ...["", "busy box:v1", " leading:v1"].map((v): Hand => ["bad image", [...C0, "image"], v]),
      ["duplicate component name", ["components", 1, "name"], "web"],
      ["duplicate route name", [...C0, "routes"], routes2, [...C0, "routes", 1, "name"]],
      ["bad hostname", [...R0, "hostname"], "bad_host!"],
      ["bad route name", [...R0, "name"], "Http"],
      ...["NOEQUALS", "=x", "1A=2"].map((v): Hand => ["bad env", [...C0, "env", 0], v]),
      ["bad volume", [...C0, "volumes", 0], "relative/dir:/data"],
      ["health exec without cmd", H0, { type: "exec" }, [...H0, "cmd"]],
      ["health port and route", H0, { type: "tcp", port: 8080, route: "http" }, [...H0, "route"]],
      ["health path on tcp", H0, { type: "tcp", port: 8080, path: "/x" }, [...H0, "path"]],
      ["health route not a route", H0, { type: "tcp", route: "nope" }, [...H0, "route"]],
      ["name is not the service deployed", ["name"], "other-svc"],
      ["unknown key", ["nmae"], "x", ["nmae"]],
      ["unknown key", [...C0, "imagee"], "x"],
      ["unknown key", [...R0, "publc"], true],
      ["unknown key", [...H0, "intervl"], "2s"],
      ["unknown key", ["build", "workspce"], "x"],
      ["unknown key", ["snapshot", "methd"], "full"],
      ["unknown key", ["components", 1, "portss"], []],
      ["missing key", ["name"], DELETE],
      ["missing key", ["components"], DELETE],
      ["missing key", [...C0, "name"], DELETE],
      ["missing key", [...C0, "image"], DELETE],
      ["missing key", [...R0, "port"], DELETE],
      ["missing key", [...H0, "type"], DELETE],
      ["no components", ["components"], []],
    ],
    cli: [
      ...["nohost", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1", "[::1:80", ":8443"].map(
        (v): Hand => ["bad address", ["nodes", 0, "address"], v],
      ),
      ["bad address", ["nodes", 0, "addresses", 0], "x:y"],
      ["bad address", ["master", "address"], "127.0.0.1:99999"],
      ...["Up", "a/b", long(64), ""].map((v): Hand => ["bad node name", ["nodes", 0, "name"], v]),
      ["bad enum", ["nodes", 0, "arch"], "sparc"],
      ["duplicate node name", ["nodes", 1, "name"], "local"],
      ...["ftp://mcias", "not a url", ""].map((v): Hand => ["bad url", ["mcias", "server_url"], v]),
      ["empty value", ["auth", "token_path"], ""],
      ["empty value", ["services", "dir"], ""],
      ["empty value", ["nodes", 0, "ssh"], ""],
      ["missing key", ["nodes", 0, "name"], DELETE],
      ["missing key", ["nodes", 0, "address"], DELETE],
      ["missing key", ["mcias", "server_url"], DELETE],
      ["missing key", ["master", "address"], DELETE],
      ["no [tls] section", ["tls"], DELETE, ["tls", "ca_cert"]],
    ],
    agent: [
      ...["127.0.0.1:0", "127.0.0.1:70000", "nohost", "127.0.0.1"].map(
        (v): Hand => ["bad address", ["server", "grpc_addr"], v],
      ),
      ["binds every interface", ["server", "grpc_addr"], `0.0.0.0:${0}`],
      ["bad enum", ["auth", "mode"], "kerberos"],
      ["bad enum", ["auth", "tokens", 0, "role"], "root"],
      ["bad sha256", ["auth", "tokens", 0, "sha256"], "abc"],
      ["bad date", ["auth", "tokens", 0, "expires"], "tomorrow"],
      ["no tokens in local mode", ["auth", "tokens"], []],
      ["bad enum", ["agent", "container_runtime"], "lxc"],
      ["relative path", ["agent", "srv_root"], "relative/srv"],
      ["bad port range", ["agent", "port_range"], [0, 10], ["agent", "port_range", 0]],
      ["bad port range", ["agent", "port_range"], [1, 70000], ["agent", "port_range", 1]],
      ...[[20000, 10000], [1]].map((v): Hand => ["bad port range", ["agent", "port_range"], v]),
      ["out-of-range", ["agent", "history_keep"], 0],
      ["bad enum", ["agent", "pull"], "sometimes"],
      ...["0.0.0.0", "not-an-ip"].map((v): Hand => ["bad node address", ["agent", "address"], v]),
      ...["-1s", "60", "1 hour"].map((v): Hand => ["bad duration", ["monitor", "interval"], v]),
      ["out-of-range", ["monitor", "flap_threshold"], 0],
      ...[0, 70000].map((v): Hand => ["out-of-range port", ["edge", "listener"], v]),
      ["bad enum", ["log", "level"], "loud"],
      ["bad enum", ["master", "role"], "boss"],
      ["bad address", ["master", "address"], "x"],
      ["bad url", ["mcias"], { server_url: "ftp://mcias" }, ["mcias", "server_url"]],
      ["bad enum", ["boot", "sequence", 0, "health"], "udp"],
      ["no boot services", ["boot", "sequence", 0, "services"], []],
      ["bad service name in boot", ["boot", "sequence", 0, "services", 0, "name"], "Bad/Name"],
      ["unknown key in boot service", ["boot", "sequence", 0, "services", 0, "components", 0, "imagee"], "x"],
      ["missing key", ["server"], DELETE],
      ["missing key", ["server", "grpc_addr"], DELETE],
      ["missing key", ["server", "tls_cert"], DELETE],
      ["missing key", ["auth", "tokens", 0, "sha256"], DELETE],
      ["missing key", ["boot", "sequence", 0, "name"], DELETE],
      ["missing key", ["master", "address"], DELETE],
      // Issue 16: identities with one job, https for the identity service.
      ["node identity as operator", ["auth", "operators"], ["agent-rift"], ["auth", "operators", 0]],
      ["master identity as operator", ["auth", "operators"], ["mcp-master"], ["auth", "operators", 0]],
      [
        "plain http identity service",
        ["mcias"],
        { server_url: "http://127.0.0.1:1" },
        ["mcias", "server_url"],
      ],
    ],
    master: [
      ["replayable master token", ["master", "token_path"], "/srv/mcp-master/mcp-master.token"],
      ["certificate without key", ["master", "client_cert"], "client.pem", ["master", "client_key"]],
      ["node identity as operator", ["auth", "operators"], ["agent-rift"], ["auth", "operators", 0]],
      ...["127.0.0.1:0", "127.0.0.1:70000", "nohost"].map(
        (v): Hand => ["bad address", ["server", "grpc_addr"], v],
      ),
      ["out-of-range", ["registration", "max_nodes"], 0],
      ["bad duration", ["timeouts", "deploy"], "soon"],
      ["bad duration", ["registration", "register_interval"], "-1m"],
      ["out-of-range", ["master", "heartbeat_miss"], 0],
      ...["Bad/Name", long(64), ""].map((v): Hand => ["bad node name", ["nodes", 0, "name"], v]),
      ["bad enum", ["nodes", 0, "arch"], "riscv"],
      ["bad enum", ["nodes", 0, "role"], "boss"],
      ["bad address", ["nodes", 0, "address"], "127.0.0.1:0"],
      [
        "duplicate node name",
        ["nodes"],
        [
          { name: "n1", address: "127.0.0.1:6" },
          { name: "n1", address: "127.0.0.1:7" },
        ],
        ["nodes", 1, "name"],
      ],
      ...["Example.NET", "localhost", "a..b"].map(
        (v): Hand => ["bad domain", ["edge", "allowed_domains", 0], v],
      ),
      [
        "bad domain",
        ["master", "allowed_public_domains"],
        ["-x.net"],
        ["master", "allowed_public_domains", 0],
      ],
      ["out-of-range", ["snapshots", "retain"], 0],
      ["bad duration", ["snapshots", "interval"], "daily"],
      ["bad enum", ["auth", "mode"], "kerberos"],
      ["no tokens in local mode", ["auth", "tokens"], []],
      ["bad enum", ["log", "level"], "trace"],
      ["missing key", ["server"], DELETE],
      ["missing key", ["server", "tls_key"], DELETE],
      ["missing tls section", ["tls"], DELETE, ["tls", "ca_cert"]],
      ["missing key", ["nodes", 0, "address"], DELETE],
    ],
  };
}

/** Truncations, byte flips, insertions and deletions of a valid file that break its TOML (seeded). */
function syntaxMutants(text: string, seed: number): { bytes: Uint8Array; line: number }[] {
  const src = new TextEncoder().encode(text);
  const op = fc.record({
    op: fc.constantFrom("truncate", "flip", "insert", "delete"),
    pos: fc.nat({ max: src.length - 1 }),
    byte: fc.oneof(
      fc.constantFrom(0x22, 0x5b, 0x5d, 0x3d, 0x0a, 0x23, 0x7b, 0x2c, 0x27),
      fc.integer({ min: 0, max: 255 }),
    ),
    len: fc.integer({ min: 1, max: 8 }),
  });
  const out: { bytes: Uint8Array; line: number }[] = [];
  // Bounded: 400 candidates at most; most break the file.
  for (const m of fc.sample(op, { seed, numRuns: 400 })) {
    if (out.length >= MUTANTS_PER_TARGET) break;
    let b: Uint8Array;
    if (m.op === "truncate") b = src.slice(0, m.pos);
    else if (m.op === "flip") {
      b = src.slice();
      b[m.pos] = m.byte === src[m.pos] ? m.byte ^ 0x80 : m.byte;
    } else if (m.op === "insert") b = new Uint8Array([...src.slice(0, m.pos), m.byte, ...src.slice(m.pos)]);
    else b = new Uint8Array([...src.slice(0, m.pos), ...src.slice(m.pos + m.len)]);
    const line = brokenLine(b);
    if (line !== null) out.push({ bytes: b, line });
  }
  return out;
}

/** The line a broken file must be blamed on (first invalid UTF-8 line, else the TOML error's), or null. */
function brokenLine(b: Uint8Array): number | null {
  const dec = new TextDecoder("utf-8", { fatal: true });
  let text: string;
  try {
    text = dec.decode(b);
  } catch {
    const lines = Buffer.from(b).toString("latin1").split("\n");
    for (let i = 0; i < lines.length; i++) {
      try {
        dec.decode(Buffer.from(lines[i]!, "latin1"));
      } catch {
        return i + 1;
      }
    }
    return null;
  }
  try {
    parseToml(text);
    return null;
  } catch (e) {
    return e instanceof TomlError ? e.line : null;
  }
}

/** A key of each document that must not be an integer (the huge-file case sets it to 5). */
const HUGE_KEY: Record<Target, string> = { service: "active", cli: "nodes", agent: "log", master: "log" };

function buildCases(): Case[] {
  const cases: Case[] = [];
  const hand = handCases();
  let salt = 0;
  for (const target of ["service", "cli", "agent", "master"] as Target[]) {
    const base = bases[target];
    for (const [kind, path, value, reported] of hand[target]) {
      const v = kind === "binds every interface" ? `0.0.0.0:${agentPort}` : value;
      const key = kind === "name is not the service deployed" ? "name" : formatKeyPath(reported ?? path);
      cases.push({ target, kind, doc: mutate(base, path, v), key });
    }
    const typed = TYPED[target];
    const values = fc.sample(fc.tuple(...typed.map(([, k]) => wrongFor(k))), {
      seed: SEED + ++salt,
      numRuns: 1,
    })[0]!;
    typed.forEach(([path, k], i) => {
      cases.push({
        target,
        kind: `wrong type (${k})`,
        doc: mutate(base, path, values[i]),
        key: formatKeyPath(path),
      });
    });
    for (const m of syntaxMutants(toml(base), SEED + ++salt)) {
      cases.push({ target, kind: "broken TOML (generated)", bytes: m.bytes, key: `line ${m.line}` });
    }
    const good = new TextEncoder().encode(toml(base));
    const enc = (s: string) => new TextEncoder().encode(s);
    cases.push(
      { target, kind: "directory", make: (f) => mkdirSync(f) },
      { target, kind: "unreadable (mode 000)", bytes: good, noDacOverride: true },
      {
        target,
        kind: "non-UTF-8 in a value",
        bytes: new Uint8Array([
          ...enc("# header\n"),
          ...good.slice(0, good.indexOf(0x0a)),
          0x20,
          0x23,
          0xe9,
          0x0a,
          ...good.slice(good.indexOf(0x0a) + 1),
        ]),
        key: "line 2",
      },
      {
        target,
        kind: "non-UTF-8 (Latin-1 comment)",
        bytes: new Uint8Array([0x23, 0x20, 0x63, 0x61, 0x66, 0xe9, 0x0a, ...good]),
        key: "line 1",
      },
      {
        target,
        kind: "NUL bytes",
        bytes: new Uint8Array([...good, 0, 0, 0]),
        key: `line ${good.filter((c) => c === 0x0a).length + 1}`,
      },
      // 8 MiB of comments, then the document with one wrong-typed top-level key.
      {
        target,
        kind: "huge file (8 MiB), bad value after the padding",
        bytes: enc(
          `${"# padding padding padding padding padding padding padding padding\n".repeat(8 * 16384)}${toml(mutate(base, [HUGE_KEY[target]], 5))}`,
        ),
        key: HUGE_KEY[target],
      },
      {
        target,
        kind: "huge single line (4 MiB)",
        bytes: enc(`${"x".repeat(4 * 1024 * 1024)}\n`),
        key: "line 1",
      },
    );
    if (target !== "cli") cases.push({ target, kind: "empty file", bytes: new Uint8Array() });
  }
  return cases;
}

// ---- running ----------------------------------------------------------------------------------

const PREFIX: Record<Target, string> = {
  service: "mcp: ",
  cli: "mcp: ",
  agent: "mcp agent: ",
  master: "mcp master: ",
};

async function runCase(c: Case, file: string): Promise<RunResult> {
  if (c.make) c.make(file);
  else writeFileSync(file, c.bytes ?? toml(c.doc!));
  if (c.noDacOverride) chmodSync(file, 0o000);
  const wrapper = c.noDacOverride ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search"] : [];
  const opts = { env: agent.env, timeoutMs: 10_000, wrapper };
  switch (c.target) {
    case "service":
      return runMcp(["deploy", SVC, "-f", file, "--dry-run"], opts);
    case "cli":
      return runMcp(["node", "list"], { ...opts, env: { ...agent.env, MCP_CONFIG: file } });
    case "agent":
      return runMcp(["agent", "--config", file], opts);
    case "master":
      return runMcp(["master", "--config", file], opts);
  }
}

interface Outcome {
  c: Case;
  file: string;
  r: RunResult;
  ms: number;
}

async function runAll(cases: Case[]): Promise<Outcome[]> {
  const out: Outcome[] = new Array(cases.length);
  let next = 0;
  const worker = async () => {
    // Bounded: each worker takes cases until the fixed list is exhausted.
    while (next < cases.length) {
      const i = next++;
      const c = cases[i]!;
      const file = join(work, `${String(i).padStart(3, "0")}-${c.target}.toml`);
      const t = performance.now();
      // A case that is accepted by mistake starts a daemon: runMcp kills it; report, don't abort.
      const r = await runCase(c, file).catch(
        (e: Error): RunResult => ({ code: -1, stdout: "", stderr: `(killed) ${e.message.split("\n")[0]}` }),
      );
      out[i] = { c, file, r, ms: performance.now() - t };
    }
  };
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return out;
}

/** What the contract found wrong with one outcome ("" = nothing). */
function problem(o: Outcome): string {
  const { c, file, r } = o;
  const lines = r.stderr.split("\n");
  if (lines.at(-1) === "") lines.pop();
  const head = `${c.target}/${c.kind} (${file})`;
  if (/^\s+at /m.test(r.stderr)) return `${head}: stack trace: ${r.stderr.slice(0, 400)}`;
  if (r.code !== 2) return `${head}: exit ${r.code}, stderr ${JSON.stringify(r.stderr.slice(0, 300))}`;
  if (r.stdout !== "") return `${head}: stdout ${JSON.stringify(r.stdout.slice(0, 200))}`;
  if (lines.length !== 1 || lines[0]!.trim() === "")
    return `${head}: ${lines.length} stderr lines: ${JSON.stringify(r.stderr.slice(0, 400))}`;
  const line = lines[0]!;
  if (line.length > MAX_LINE) return `${head}: line of ${line.length} chars: ${line.slice(0, 200)}…`;
  const want = `${PREFIX[c.target]}${file}: ${c.key ? `${c.key}: ` : ""}`;
  if (!line.startsWith(want))
    return `${head}: expected a line starting ${JSON.stringify(want)}, got ${JSON.stringify(line)}`;
  return "";
}

// ---- the registry that must not change ---------------------------------------------------------

async function stored(): Promise<string> {
  const list = await agent.mcp(["list", "--json"]);
  expect(list.code).toBe(0);
  const show = await agent.mcp(["service", "show", SVC]);
  expect(show.code).toBe(0);
  // Only our service: other tests share this podman store and come and go meanwhile.
  const services = (JSON.parse(list.stdout) as { services: { service: string }[] }).services.filter(
    (s) => s.service === SVC,
  );
  expect(services).toHaveLength(1);
  return `${JSON.stringify(services)}\n${show.stdout}\n${readFileSync(join(agent.servicesDir, `${SVC}.toml`), "utf8")}`;
}

async function refusesConnections(port: number): Promise<boolean> {
  return Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
    (s) => {
      s.end();
      return false;
    },
    () => true,
  );
}

let before = "";

beforeAll(async () => {
  console.log(`bad-input seed: MCP_SEED=${SEED}`);
  const [a, img, p1, p2, p3] = await Promise.all([
    startLocalAgent(),
    busyboxImage("v1.0.0"),
    freePort(),
    freePort(),
    freePort(),
  ]);
  agent = a;
  image = img;
  [webPort, agentPort, masterPort] = [p1, p2, p3];
  work = mkdtempSync(join(tmpdir(), "mcp-bad-input-"));
  // Something already stored: a deployed service, its definition and its registry entry.
  const def = `name = "${SVC}"\nactive = true\n\n[[components]]\nname = "web"\nimage = "${image}"\nports = ["127.0.0.1:${webPort}:8080"]\n`;
  writeFileSync(join(agent.servicesDir, `${SVC}.toml`), def);
  const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
  if (r.code !== 0) throw new Error(`good deploy failed: ${r.stderr}${r.stdout}`);
  before = await stored();
  bases.service = serviceBase();
  bases.cli = cliBase();
  bases.agent = agentBase();
  bases.master = masterBase();
}, 90_000);

afterAll(async () => {
  await removeContainers([`${SVC}-web`]);
  await agent?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

describe("malformed definitions and configs", () => {
  test("every base document is valid (so each case fails for its own mutation)", () => {
    const f = join(work, "base.toml");
    expect(parseServiceDef(bases.service, f).def.name).toBe(SVC);
    expect(parseCliConfig(bases.cli, f).config.nodes).toHaveLength(2);
    expect(parseAgentConfig(bases.agent, f).config.server.grpc_addr).toBe(`127.0.0.1:${agentPort}`);
    expect(parseMasterConfig(bases.master, f).config.nodes).toHaveLength(1);
    // and they survive the trip through TOML text unchanged
    for (const t of ["service", "cli", "agent", "master"] as Target[])
      expect(parseToml(toml(bases[t])) as Toml).toEqual(bases[t]);
  });

  test("each one: exit 2, one line naming the file and key, no stack, nothing on stdout; nothing stored changes", async () => {
    const cases = buildCases();
    const t0 = performance.now();
    const outcomes = await runAll(cases);
    const wall = performance.now() - t0;
    const problems = outcomes.map(problem).filter((p) => p !== "");
    for (const p of problems.slice(0, 40)) console.log(`PROBLEM ${p}`);
    expect(problems).toEqual([]);
    expect(cases.length).toBeGreaterThanOrEqual(200);

    // Nothing bound, nothing stored changed, the agent still answers.
    expect(await refusesConnections(agentPort)).toBe(true);
    expect(await refusesConnections(masterPort)).toBe(true);
    expect(await stored()).toBe(before);

    const per = (t: Target) => cases.filter((c) => c.target === t).length;
    const ms = outcomes.map((o) => o.ms).sort((a, b) => a - b);
    const pct = (q: number) => ms[Math.min(ms.length - 1, Math.floor(q * ms.length))]!.toFixed(0);
    const generated = cases.filter(
      (c) => c.kind.startsWith("wrong type") || c.kind.includes("generated"),
    ).length;
    const detail =
      `seed=${SEED} service=${per("service")} cli=${per("cli")} agent=${per("agent")} master=${per("master")} ` +
      `generated=${generated} p50=${pct(0.5)}ms p99=${pct(0.99)}ms wall=${(wall / 1000).toFixed(1)}s`;
    recordSuite({ suite: "bad-input-files", cases: cases.length, faults: cases.length, dataLost: 0, detail });
  }, 240_000);
});
