// A real local agent for tests: `mcp init --local` into a temp dir, then the compiled binary's
// `mcp agent` as a child process on a free 127.0.0.1 port, with the test podman environment.
// `mcp(args)` runs the CLI against it; stop() ends the agent and removes the dir.
// With `user`, init and the agent run as that unprivileged user (rootless podman, as the fleet
// runs it); the CLI stays root and reaches the agent over TLS like any other client.
import { Database } from "bun:sqlite";
import { appendFileSync, chownSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mcpBinary, type RunOptions, type RunResult, runMcp } from "./binary.ts";
import { freePort, podmanEnv } from "./env.ts";
import { unikernelAgentConfig } from "./unikernel.ts";

export interface LocalAgent {
  dir: string;
  port: number;
  address: string;
  agentConfig: string;
  cliConfig: string;
  servicesDir: string;
  /** The `[runtimes.unikernel]` state_dir when started with `unikernel` (else ""). */
  unikernelStateDir: string;
  token: string;
  caPem: string;
  /** Environment for CLI children: MCP_CONFIG plus the podman test env. */
  env: Record<string, string>;
  mcp(args: string[], opts?: RunOptions): Promise<RunResult>;
  /** Agent stderr so far (pino JSON lines). */
  log(): string;
  /** Stops the agent process (SIGTERM, then SIGKILL after 5 s). */
  stopAgent(): Promise<void>;
  /** Starts the agent again with the same config. */
  startAgent(): Promise<void>;
  /** The running agent's process id (null when it is not running). */
  pid(): number | null;
  /** Sends `signal` to the agent process alone (not its children) and waits until it has exited. */
  kill(signal: NodeJS.Signals): Promise<void>;
  stop(): Promise<void>;
}

async function waitForPort(port: number, ms: number, alive: () => boolean): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive()) throw new Error("agent exited during startup");
    try {
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      return;
    } catch {
      await Bun.sleep(50);
    }
  }
  throw new Error(`agent did not listen on 127.0.0.1:${port} within ${ms} ms`);
}

export async function startLocalAgent(
  opts: {
    node?: string;
    /** Merged over the podman test env for the agent and CLI children (e.g. a test-local CONTAINERS_CONF). */
    env?: Record<string, string>;
    /** The agent's runtime_args (default: the podman test env's global flags). */
    runtimeArgs?: string[];
    /**
     * Run `mcp init` and the agent as this user: the agent dir is chowned to it and `env` (HOME,
     * USER, XDG_RUNTIME_DIR, CONTAINERS_CONF… of that user) is merged over everything else.
     */
    user?: { uid: number; gid: number; env: Record<string, string> };
    /**
     * Give the agent the unikernel runtime: a `[runtimes.unikernel]` table (Nanos files from
     * nanosDir(), accel "auto" unless given, state_dir <agent dir>/unikernel).
     */
    unikernel?: boolean | { accel: "auto" | "kvm" | "tcg" };
    /** TOML appended to the agent config before its first start (e.g. a `[monitor]` table). */
    appendConfig?: string;
  } = {},
): Promise<LocalAgent> {
  const pe = await podmanEnv();
  const dir = mkdtempSync(join(tmpdir(), "mcp-agent-test-"));
  const user = opts.user;
  if (user) chownSync(dir, user.uid, user.gid);
  const asUser = user ? { uid: user.uid, gid: user.gid, env: { ...pe.env, ...opts.env, ...user.env } } : {};
  const port = await freePort();
  const address = `127.0.0.1:${port}`;
  const init = await runMcp(
    [
      "init",
      "--local",
      "--dir",
      dir,
      "--listen",
      address,
      "--node",
      opts.node ?? "local",
      ...(opts.runtimeArgs ?? pe.globalArgs).map((a) => `--runtime-arg=${a}`),
    ],
    asUser,
  );
  if (init.code !== 0) throw new Error(`mcp init failed: ${init.stderr}`);
  const agentConfig = join(dir, "mcp-agent.toml");
  const cliConfig = join(dir, "mcp.toml");
  const unikernelStateDir = opts.unikernel ? join(dir, "unikernel") : "";
  let extra = opts.appendConfig ?? "";
  if (opts.unikernel) {
    const accel = typeof opts.unikernel === "object" ? opts.unikernel.accel : "auto";
    extra += unikernelAgentConfig(unikernelStateDir, accel).toml;
  }
  if (extra !== "") appendFileSync(agentConfig, `\n${extra}\n`);
  const env: Record<string, string> = { ...pe.env, ...opts.env, MCP_CONFIG: cliConfig };
  let stderr = "";
  let proc: ReturnType<typeof Bun.spawn> | null = null;

  const startAgent = async () => {
    const p = Bun.spawn([mcpBinary(), "agent", "--config", agentConfig], {
      env: { ...process.env, ...pe.env, ...opts.env, ...user?.env },
      uid: user?.uid,
      gid: user?.gid,
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    proc = p;
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of p.stderr as ReadableStream<Uint8Array>) stderr += dec.decode(chunk);
    })();
    await waitForPort(port, 10_000, () => p.exitCode === null);
  };
  const stopAgent = async () => {
    const p = proc;
    if (!p || p.exitCode !== null) return;
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(t);
  };
  const pid = () => {
    const p = proc;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : null;
  };
  const kill = async (signal: NodeJS.Signals) => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    await p.exited;
  };
  await startAgent();
  return {
    dir,
    port,
    address,
    agentConfig,
    cliConfig,
    servicesDir: join(dir, "services"),
    unikernelStateDir,
    token: readFileSync(join(dir, "token"), "utf8").trim(),
    caPem: readFileSync(join(dir, "certs", "ca.pem"), "utf8"),
    env,
    mcp: (args, o = {}) => runMcp(args, { ...o, env: { ...env, ...o.env } }),
    log: () => stderr,
    stopAgent,
    startAgent,
    pid,
    kill,
    async stop() {
      await stopAgent();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Removes containers by name (never `podman rm -a`). */
export async function removeContainers(names: string[]): Promise<void> {
  if (names.length === 0) return;
  const pe = await podmanEnv();
  const p = Bun.spawn(["podman", ...pe.globalArgs, "rm", "-f", "-t", "1", "--ignore", ...names], {
    env: { ...process.env, ...pe.env },
    stdout: "ignore",
    stderr: "ignore",
  });
  await p.exited;
}

/** What `agent`'s registry file holds of `service`: rows in every table a deploy writes. */
export function registryRows(agent: Pick<LocalAgent, "dir">, service: string): Record<string, number> {
  const db = new Database(join(agent.dir, "mcp.db"), { readonly: true });
  try {
    const n = (sql: string) => db.query<{ n: number }, [string]>(sql).get(service)?.n ?? -1;
    return {
      services: n("SELECT count(*) AS n FROM services WHERE name = ?"),
      components: n("SELECT count(*) AS n FROM components WHERE service = ?"),
      ports: n("SELECT count(*) AS n FROM port_allocations WHERE service = ?"),
      history: n("SELECT count(*) AS n FROM deploy_history WHERE service = ?"),
    };
  } finally {
    db.close();
  }
}

/** registryRows() of a service the registry knows nothing of. */
export const NO_REGISTRY_ROWS = { services: 0, components: 0, ports: 0, history: 0 };
