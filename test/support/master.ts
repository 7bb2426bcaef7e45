// A real local fleet for tests (architecture v2 on one machine): one test CA and server
// certificate, local tokens per identity (`operator` human admin, `mcp-master` system, one
// `agent-<node>` system account per node, plus `agent-rogue`, known but not allowlisted), the
// compiled binary as `mcp master --config` and as N `mcp agent --config` processes (separate
// ports, srv roots, databases), each agent with its own fake mc-proxy and all sharing fake
// Metacrypt/MCNS, and a CLI config with [master] plus [[nodes]] (for --direct) and the operator
// token. Every node has its OWN podman store (--root/--runroot/--tmpdir, file locks), so each
// agent sees only its containers, as on separate machines (placement counts them); test images
// are copied in with podman save | load. Heartbeat, miss window, probe timeout and rate limits
// are shortened through the configs so health transitions take seconds. stop() ends every
// process it started, removes the containers it is told about and the dir.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken } from "../../src/auth/local.ts";
import { createCA, issueCert, issueMasterClientCert, writeKeyPair } from "../../src/pki/ca.ts";
import { type FakeMcns, startFakeMcns } from "../fakes/mcns.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";
import { type FakeMetacrypt, startFakeMetacrypt } from "../fakes/metacrypt.ts";
import { mcpBinary, type RunOptions, type RunResult, runMcp } from "./binary.ts";
import { freePort, podmanEnv } from "./env.ts";

export const ZONE = "svc.mcp.metacircular.net";
export type FleetRole = "worker" | "edge" | "master";

/** A long-running mcp child process (master or agent) that can be stopped, paused and restarted. */
export interface Daemon {
  name: string;
  port: number;
  address: string;
  config: string;
  pid(): number | null;
  running(): boolean;
  /** stderr so far (pino JSON lines), across restarts. */
  log(): string;
  start(): Promise<void>;
  /** SIGTERM, SIGKILL after 5 s. */
  stop(): Promise<void>;
  /** SIGKILL at once (a crashed master). */
  kill(): Promise<void>;
  /** SIGSTOP: the process stays, answers nothing (a hung node). */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

export interface FleetNode extends Daemon {
  role: FleetRole;
  srvRoot: string;
  /** This node's podman: global flags (its own store) and env (its containers.conf). */
  podmanArgs: string[];
  podmanEnv: Record<string, string>;
  /** Runs podman against this node's store. */
  podman(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** The `agent-<node>` token this agent presents to the master. */
  agentToken: string;
  proxy: FakeMcProxy;
  /** Where this node's mc-proxy certs are written. */
  certDir: string;
}

export interface LocalFleet {
  dir: string;
  caPem: string;
  caPath: string;
  master: Daemon;
  /** The node the master runs on (bootstrap [[nodes]] entry of the master config; "" = none). */
  masterNode: string;
  nodes: FleetNode[];
  node(name: string): FleetNode;
  tokens: { operator: string; master: string; rogue: string };
  cliConfig: string;
  servicesDir: string;
  metacrypt: FakeMetacrypt;
  mcns: FakeMcns;
  /** Environment for CLI children: MCP_CONFIG plus the podman test env. */
  env: Record<string, string>;
  mcp(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Removes these containers (by name) from every node's store. */
  removeContainers(names: string[]): Promise<void>;
  stop(): Promise<void>;
}

export interface FleetOptions {
  /** Worker agents node-a, node-b, ... (default 2). */
  workers?: number;
  /** An edge agent named "edge" (default true). */
  edge?: boolean;
  /**
   * The master's own node: an agent named "hub" with role "master", the master config's bootstrap
   * [[nodes]] entry, where tier = "core" services go (default true).
   */
  masterNode?: boolean;
  /** Explicit nodes instead of the above (role "master" marks the master's node). */
  nodes?: { name: string; role: FleetRole }[];
  /** Agent heartbeat and the master's expected interval (default "1s"). */
  heartbeat?: string;
  heartbeatMiss?: number;
  probeTimeout?: string;
  /** [registration] rate limits (default "1s" and "500ms"). */
  registerInterval?: string;
  heartbeatMinInterval?: string;
  allowedDomains?: string[];
  logLevel?: string;
  /** Local images copied into every node's store (agents run with pull = "never"). */
  images?: string[];
  /** [snapshots] interval and retain (the dir is always `<fleet dir>/master/snapshots`). */
  snapshots?: { interval?: string; retain?: number };
}

const q = JSON.stringify;

async function exec(
  argv: string[],
  env: Record<string, string>,
  stdin?: ReadableStream<Uint8Array>,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const p = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    stdin: stdin ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), 120_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

async function waitForPort(port: number, ms: number, alive: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error(`${what} exited during startup`);
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`${what} did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

const live = new Set<ReturnType<typeof Bun.spawn>>();
process.on("exit", () => {
  for (const p of live) {
    try {
      p.kill("SIGCONT");
      p.kill("SIGKILL"); // never leave a daemon behind a crashed run
    } catch {
      // already gone
    }
  }
});

function daemon(
  name: string,
  argv: string[],
  port: number,
  config: string,
  env: Record<string, string>,
): Daemon {
  let proc: ReturnType<typeof Bun.spawn> | null = null;
  let stderr = "";
  const running = () => proc !== null && proc.exitCode === null && proc.signalCode === null;
  const end = async (signal: "SIGTERM" | "SIGKILL") => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGCONT"); // a paused process cannot handle SIGTERM
    p.kill(signal);
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(t);
    live.delete(p);
  };
  return {
    name,
    port,
    address: `127.0.0.1:${port}`,
    config,
    pid: () => proc?.pid ?? null,
    running,
    log: () => stderr,
    async start() {
      if (running()) return;
      const p = Bun.spawn([mcpBinary(), ...argv], {
        env: { ...process.env, ...env },
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      });
      proc = p;
      live.add(p);
      void (async () => {
        const dec = new TextDecoder();
        for await (const chunk of p.stderr as ReadableStream<Uint8Array>) stderr += dec.decode(chunk);
      })();
      try {
        await waitForPort(port, 15_000, () => p.exitCode === null, name);
      } catch (err) {
        throw new Error(
          `${(err as Error).message}; stderr: ${stderr.trim().split("\n").slice(-3).join(" | ")}`,
        );
      }
    },
    stop: () => end("SIGTERM"),
    kill: () => end("SIGKILL"),
    pause() {
      proc?.kill("SIGSTOP");
    },
    resume() {
      proc?.kill("SIGCONT");
    },
  };
}

function tokenEntry(name: string, role: string, accountType: string, token: string): string {
  return `[[auth.tokens]]
name = ${q(name)}
role = ${q(role)}
account_type = ${q(accountType)}
sha256 = ${q(hashToken(token))}
`;
}

export async function startLocalFleet(opts: FleetOptions = {}): Promise<LocalFleet> {
  const specs = opts.nodes ?? [
    ...(opts.masterNode === false ? [] : [{ name: "hub", role: "master" as const }]),
    ...Array.from({ length: opts.workers ?? 2 }, (_, i) => ({
      name: `node-${String.fromCharCode(97 + i)}`,
      role: "worker" as const,
    })),
    ...(opts.edge === false ? [] : [{ name: "edge", role: "edge" as const }]),
  ];
  const names = specs.map((n) => n.name);
  const roles: FleetRole[] = specs.map((n) => n.role);
  const masterNode = specs.find((n) => n.role === "master")?.name ?? "";
  const heartbeat = opts.heartbeat ?? "1s";
  const logLevel = opts.logLevel ?? "info";

  const pe = await podmanEnv();
  const dir = mkdtempSync(join(tmpdir(), "mcp-fleet-test-"));
  const certs = join(dir, "certs");
  mkdirSync(certs, { recursive: true, mode: 0o700 });
  const ca = await createCA({ commonName: "MCP fleet test CA", days: 30 });
  await writeKeyPair(certs, "ca", ca);
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "mcp fleet test server",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 30,
    serverAuth: true,
  });
  await writeKeyPair(certs, "server", { certPem: leaf.chainPem, keyPem: leaf.keyPem });
  // The master's client certificate (SPEC §5.2): how agents with a [master] know the master.
  const masterClient = await issueMasterClientCert(ca, 30);
  await writeKeyPair(certs, "master-client", { certPem: masterClient.certPem, keyPem: masterClient.keyPem });
  const caPath = join(certs, "ca.pem");
  const certPath = join(certs, "server.pem");
  const keyPath = join(certs, "server.key");

  const tokenFile = (name: string, token: string) => {
    const p = join(dir, "tokens", name);
    mkdirSync(join(dir, "tokens"), { recursive: true, mode: 0o700 });
    writeFileSync(p, `${token}\n`, { mode: 0o600 });
    return p;
  };
  const tokens = { operator: generateToken(), master: generateToken(), rogue: generateToken() };
  const agentTokens = names.map(() => generateToken());
  const operatorPath = tokenFile("operator", tokens.operator);

  const mcToken = generateToken();
  const dnsToken = generateToken();
  const mcTokenPath = tokenFile("metacrypt", mcToken);
  const dnsTokenPath = tokenFile("mcns", dnsToken);
  const [metacrypt, mcns, ...proxies] = await Promise.all([
    startFakeMetacrypt({ tokens: [mcToken] }),
    startFakeMcns({ tokens: [dnsToken], zone: ZONE }),
    ...names.map(() => startFakeMcProxy()),
  ]);

  const ports = await Promise.all([freePort(), ...names.map(() => freePort())]);
  const masterPort = ports[0]!;
  const masterAddress = `127.0.0.1:${masterPort}`;

  const nodes: FleetNode[] = names.map((name, i) => {
    const port = ports[i + 1]!;
    const ndir = join(dir, "nodes", name);
    const srvRoot = join(ndir, "srv");
    const certDir = join(ndir, "mc-proxy-certs");
    for (const d of [ndir, srvRoot, certDir]) mkdirSync(d, { recursive: true, mode: 0o700 });
    const agentTokenPath = tokenFile(`agent-${name}`, agentTokens[i]!);
    const store = join(ndir, "podman");
    mkdirSync(store, { recursive: true });
    const podmanConf = join(store, "containers.conf");
    writeFileSync(
      podmanConf,
      '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\nlock_type = "file"\n',
    );
    const podmanArgs = [
      ...pe.globalArgs,
      "--root",
      join(store, "storage"),
      "--runroot",
      join(store, "run"),
      "--tmpdir",
      join(store, "tmp"),
    ];
    const podmanEnv = { ...pe.env, CONTAINERS_CONF: podmanConf };
    const role = roles[i]!;
    const config = join(ndir, "mcp-agent.toml");
    writeFileSync(
      config,
      `# fleet test agent ${name} (${role})
[server]
grpc_addr = ${q(`127.0.0.1:${port}`)}
tls_cert = ${q(certPath)}
tls_key = ${q(keyPath)}

[database]
path = ${q(join(ndir, "mcp.db"))}

[auth]
mode = "local"

${tokenEntry("operator", "admin", "human", tokens.operator)}
${tokenEntry("mcp-master", "admin", "system", tokens.master)}
${tokenEntry(`agent-${names[(i + 1) % names.length]}`, "user", "system", agentTokens[(i + 1) % names.length]!)}
[agent]
node_name = ${q(name)}
container_runtime = "podman"
runtime_args = ${q(podmanArgs)}
srv_root = ${q(srvRoot)}
address = "127.0.0.1"
pull = "never"

[tls]
ca_cert = ${q(caPath)}

[master]
address = ${q(masterAddress)}
role = ${q(role)}
heartbeat = ${q(heartbeat)}
ca_cert = ${q(caPath)}
token_path = ${q(agentTokenPath)}

[edge]
allowed_backend_cidrs = ["127.0.0.0/8"]

[mcproxy]
socket = ${q(proxies[i]!.socket)}
cert_dir = ${q(certDir)}

[metacrypt]
server_url = ${q(metacrypt.url)}
ca_cert = ${q(metacrypt.caCertPath)}
token_path = ${q(mcTokenPath)}

[mcns]
server_url = ${q(mcns.url)}
ca_cert = ${q(mcns.caCertPath)}
zone = ${q(ZONE)}
token_path = ${q(dnsTokenPath)}

[log]
level = ${q(logLevel)}
`,
      { mode: 0o600 },
    );
    const d = daemon(name, ["agent", "--config", config], port, config, podmanEnv);
    return {
      ...d,
      role,
      srvRoot,
      podmanArgs,
      podmanEnv,
      podman: (...args: string[]) => exec(["podman", ...podmanArgs, ...args], podmanEnv),
      agentToken: agentTokens[i]!,
      proxy: proxies[i]!,
      certDir,
    };
  });

  const masterDir = join(dir, "master");
  mkdirSync(masterDir, { recursive: true, mode: 0o700 });
  const masterConfig = join(masterDir, "mcp-master.toml");
  const boot = nodes.find((n) => n.name === masterNode);
  writeFileSync(
    masterConfig,
    `# fleet test master (runs on ${masterNode || "no node"})
[server]
grpc_addr = ${q(masterAddress)}
tls_cert = ${q(certPath)}
tls_key = ${q(keyPath)}

[database]
path = ${q(join(masterDir, "master.db"))}

[auth]
mode = "local"

${tokenEntry("operator", "admin", "human", tokens.operator)}
${tokenEntry("mcp-master", "admin", "system", tokens.master)}
${names.map((n, i) => tokenEntry(`agent-${n}`, "user", "system", agentTokens[i]!)).join("\n")}
${tokenEntry("agent-rogue", "user", "system", tokens.rogue)}
[tls]
ca_cert = ${q(caPath)}

[edge]
allowed_domains = ${q(opts.allowedDomains ?? ["metacircular.net"])}

[registration]
allowed_agents = ${q(names.map((n) => `agent-${n}`))}
# Roles are the master's decision; the master's own node has its [[nodes]] entry below.
roles = { ${nodes
      .filter((n) => n.role !== "worker" && n.name !== masterNode)
      .map((n) => `${q(n.name)} = ${q(n.role)}`)
      .join(", ")} }
max_nodes = 16
register_interval = ${q(opts.registerInterval ?? "1s")}
heartbeat_min_interval = ${q(opts.heartbeatMinInterval ?? "500ms")}

[timeouts]
health_check = ${q(opts.probeTimeout ?? "1s")}

[snapshots]
dir = ${q(join(masterDir, "snapshots"))}
interval = ${q(opts.snapshots?.interval ?? "24h")}
retain = ${opts.snapshots?.retain ?? 7}

[master]
heartbeat_interval = ${q(heartbeat)}
heartbeat_miss = ${opts.heartbeatMiss ?? 3}
probe_timeout = ${q(opts.probeTimeout ?? "1s")}
client_cert = ${q(join(certs, "master-client.pem"))}
client_key = ${q(join(certs, "master-client.key"))}

${
  boot
    ? `# Bootstrap: the master's own node (in production it cannot register before the master runs).
[[nodes]]
name = ${q(boot.name)}
address = ${q(boot.address)}
role = "master"
`
    : ""
}
[log]
level = ${q(logLevel)}
`,
    { mode: 0o600 },
  );
  const master = daemon("master", ["master", "--config", masterConfig], masterPort, masterConfig, pe.env);

  const servicesDir = join(dir, "services");
  mkdirSync(servicesDir, { recursive: true });
  const cliConfig = join(dir, "mcp.toml");
  writeFileSync(
    cliConfig,
    `# fleet test CLI
[services]
dir = ${q(servicesDir)}

[auth]
token_path = ${q(operatorPath)}

[tls]
ca_cert = ${q(caPath)}

[master]
address = ${q(masterAddress)}
${nodes.map((n) => `\n[[nodes]]\nname = ${q(n.name)}\naddress = ${q(n.address)}\narch = "amd64"\n`).join("")}`,
    { mode: 0o600 },
  );
  const env: Record<string, string> = { ...pe.env, MCP_CONFIG: cliConfig };

  const fleet: LocalFleet = {
    dir,
    caPem: ca.certPem,
    caPath,
    master,
    masterNode,
    nodes,
    node(name) {
      const n = nodes.find((x) => x.name === name);
      if (!n) throw new Error(`no fleet node ${name}`);
      return n;
    },
    tokens,
    cliConfig,
    servicesDir,
    metacrypt,
    mcns,
    env,
    mcp: (args, o = {}) => runMcp(args, { ...o, env: { ...env, MCP_TOKEN: undefined, ...o.env } }),
    async removeContainers(names) {
      if (names.length === 0) return;
      await Promise.all(nodes.map((n) => n.podman("rm", "-f", "-t", "1", "--ignore", ...names)));
    },
    async stop() {
      await Promise.all([master.stop(), ...nodes.map((n) => n.stop())]);
      await Promise.all([metacrypt.stop(), mcns.stop(), ...proxies.map((p) => p.stop())]);
      // Each store is this fleet's alone: unmount what podman left mounted under it, then delete.
      const mounts = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith(dir));
      for (const m of mounts.reverse()) Bun.spawnSync(["umount", m]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
  try {
    await loadImages(opts.images ?? [], nodes, dir, pe);
    await master.start();
    await Promise.all(nodes.map((n) => n.start()));
  } catch (err) {
    await fleet.stop().catch(() => {});
    throw err;
  }
  return fleet;
}

/** podman save of each image from the machine's store once, then podman load into every node's store. */
async function loadImages(
  images: string[],
  nodes: FleetNode[],
  dir: string,
  pe: { globalArgs: string[]; env: Record<string, string> },
): Promise<void> {
  if (images.length === 0) return;
  const tar = join(dir, "images.tar");
  const save = await exec(
    ["podman", ...pe.globalArgs, "save", "-o", tar, ...(images.length > 1 ? ["-m"] : []), ...images],
    pe.env,
  );
  if (save.code !== 0) throw new Error(`podman save ${images.join(" ")}: ${save.stderr}`);
  await Promise.all(
    nodes.map(async (n) => {
      const r = await n.podman("load", "-i", tar);
      if (r.code !== 0) throw new Error(`podman load into ${n.name}'s store: ${r.stderr}`);
    }),
  );
}

/** Polls `check` every `everyMs` until it returns a truthy value or `ms` pass; throws with `what`. */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | null | undefined | false>,
  ms: number,
  everyMs = 250,
): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await check();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await Bun.sleep(everyMs);
  }
  throw new Error(
    `timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`,
  );
}
