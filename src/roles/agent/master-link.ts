// The agent's link to mcp-master ([master] in the agent config, architecture-v2 "Agent
// Registration and Health"): Register at start, retried with exponential backoff (1 s doubling
// to 60 s) while the master is unreachable or refuses; then a Heartbeat every [master] heartbeat
// with this node's resources. Heartbeat fields: cpu_millicores = CPU in use since the previous
// heartbeat (busy fraction × cores × 1000), memory_bytes = memory available (MemAvailable),
// disk_bytes = free bytes on the filesystem of srv_root, containers = running containers of
// the services this agent manages (status.ts managedRunning). Both calls carry the node's runtime
// kinds and unikernel accelerator (status.ts runtimeReport), so the master places by them.
// A heartbeat answered NOT_FOUND or PERMISSION_DENIED means the master no longer knows this node
// (restarted with a fresh node list, or the identity binding changed): register again, with the
// same backoff. RESOURCE_EXHAUSTED and unreachable masters just wait for the next beat.
// Nothing here touches containers: running services never depend on the master.
import { statfsSync } from "node:fs";
import os from "node:os";
import { dirname } from "node:path";
import { parseListenAddress } from "../../config/specs.ts";
import { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
// rpc/client.ts loads on the first connect: an agent without a master never pays for it.
import type { TypedClient } from "../../rpc/client.ts";
import { CallError, Code as status } from "../../rpc/wire.ts";
import type { AgentContext, MasterLinkSettings } from "./context.ts";
import { nodeAddressOf } from "./host-ports.ts";
import type { Background } from "./startup.ts";
import { cpuSample, goArch, managedRunning, memAvailable, runtimeReport } from "./status.ts";

const DEFAULT_BACKOFF_BASE_MS = 1_000;
const DEFAULT_BACKOFF_MAX_MS = 60_000;
const CALL_TIMEOUT_MS = 10_000;

export interface MasterLinkState {
  registered: boolean;
  /** Successful Register calls (1 after start; more after re-registrations). */
  registrations: number;
  lastRegistered: Date | null;
  heartbeats: number;
  lastHeartbeat: Date | null;
  /** The last failed call, one line ("UNAVAILABLE: ..."); null after a success. */
  lastError: string | null;
}

export interface HeartbeatSample {
  cpuMillicores: bigint;
  memoryBytes: bigint;
  diskBytes: bigint;
  containers: number;
}

const links = new WeakMap<AgentContext, MasterLink>();

/** The link state of an agent (null when it has no [master]); cheap, for status output. */
export function masterLinkState(ctx: AgentContext): MasterLinkState | null {
  const l = links.get(ctx);
  return l ? l.state() : null;
}

/** The host:port the master should dial this agent on: the node address and the gRPC port. */
export function advertisedAddress(ctx: AgentContext): string {
  const host = nodeAddressOf(ctx.settings);
  const { port } = parseListenAddress(ctx.settings.grpcAddr);
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

const oneLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";

/** Sleeps `ms`, returning early (without error) when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Free bytes where srv_root lives (its nearest existing ancestor on a fresh node). */
function diskFree(srvRoot: string): bigint {
  let p = srvRoot;
  for (let i = 0; i < 64; i++) {
    try {
      const st = statfsSync(p);
      return BigInt(st.bavail) * BigInt(st.bsize);
    } catch {
      const up = dirname(p);
      if (up === p) return 0n;
      p = up;
    }
  }
  return 0n;
}

export class MasterLink implements Background {
  private readonly stopper = new AbortController();
  private readonly done: Promise<void>;
  private client: TypedClient<typeof McpMasterService> | null = null;
  private lastCpu = cpuSample();
  private readonly st: MasterLinkState = {
    registered: false,
    registrations: 0,
    lastRegistered: null,
    heartbeats: 0,
    lastHeartbeat: null,
    lastError: null,
  };

  constructor(
    private readonly ctx: AgentContext,
    private readonly cfg: MasterLinkSettings,
  ) {
    if (ctx.shutdown.aborted) this.stopper.abort();
    else ctx.shutdown.addEventListener("abort", () => this.stopper.abort(), { once: true });
    this.done = this.run().catch((err: unknown) => {
      // run() handles call errors itself; this is a bug guard so the agent never dies of it.
      ctx.logger.error({ err: oneLine(err) }, "master link stopped");
    });
  }

  state(): MasterLinkState {
    return { ...this.st };
  }

  async stop(): Promise<void> {
    this.stopper.abort();
    await this.done;
    this.client?.close();
    this.client = null;
  }

  private get signal(): AbortSignal {
    return this.stopper.signal;
  }

  private async getClient(): Promise<TypedClient<typeof McpMasterService>> {
    if (!this.client) {
      const addresses = [
        this.cfg.address,
        ...(this.cfg.addresses ?? []).filter((a) => a !== this.cfg.address),
      ];
      const { connect } = await import("../../rpc/client.ts");
      this.client = await connect(McpMasterService, {
        addresses,
        caPem: this.cfg.caPem,
        token: this.cfg.token,
        defaultTimeoutMs: CALL_TIMEOUT_MS,
      });
    }
    return this.client;
  }

  /** After a transport failure, connect afresh next time (fallback addresses are retried in order). */
  private failed(err: unknown): string {
    const msg = oneLine(err);
    this.st.lastError = msg;
    if (
      !(err instanceof CallError) ||
      err.code === status.UNAVAILABLE ||
      err.code === status.DEADLINE_EXCEEDED
    ) {
      this.client?.close();
      this.client = null;
    }
    return msg;
  }

  private async run(): Promise<void> {
    while (!this.signal.aborted) {
      await this.register();
      await this.heartbeatLoop();
    }
  }

  /** Register until accepted (or stopped), 1 s, 2 s, 4 s ... capped at 60 s between attempts. */
  private async register(): Promise<void> {
    const base = this.cfg.backoffBaseMs ?? DEFAULT_BACKOFF_BASE_MS;
    const max = this.cfg.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
    const s = this.ctx.settings;
    let delay = base;
    while (!this.signal.aborted) {
      let problem: string;
      try {
        const client = await this.getClient();
        const res = await client.register(
          {
            name: s.nodeName,
            role: this.cfg.role ?? "",
            address: advertisedAddress(this.ctx),
            arch: goArch(),
            version: s.version,
            ...runtimeReport(this.ctx),
          },
          { signal: this.signal },
        );
        if (res.accepted) {
          this.st.registered = true;
          this.st.registrations++;
          this.st.lastRegistered = new Date();
          this.st.lastError = null;
          this.ctx.logger.info({ master: this.client?.address, node: s.nodeName }, "registered with master");
          return;
        }
        problem = "master did not accept the registration";
        this.st.lastError = problem;
      } catch (err) {
        if (this.signal.aborted) return;
        problem = this.failed(err);
      }
      this.ctx.logger.warn(
        { master: this.cfg.address, retryInMs: delay },
        `master registration failed: ${problem}`,
      );
      await sleep(delay, this.signal);
      delay = Math.min(delay * 2, max);
    }
  }

  /** Heartbeats until the master forgets this node (→ register again) or the link stops. */
  private async heartbeatLoop(): Promise<void> {
    let failing = false;
    while (!this.signal.aborted) {
      await sleep(this.cfg.heartbeatMs, this.signal);
      if (this.signal.aborted) return;
      try {
        const client = await this.getClient();
        await client.heartbeat(
          { name: this.ctx.settings.nodeName, ...(await this.sample()), ...runtimeReport(this.ctx) },
          { signal: this.signal, timeoutMs: Math.min(CALL_TIMEOUT_MS, Math.max(this.cfg.heartbeatMs, 1000)) },
        );
        this.st.heartbeats++;
        this.st.lastHeartbeat = new Date();
        this.st.lastError = null;
        if (failing) this.ctx.logger.info({ master: this.cfg.address }, "master heartbeats resumed");
        failing = false;
      } catch (err) {
        if (this.signal.aborted) return;
        const msg = this.failed(err);
        const code = err instanceof CallError ? err.code : status.UNKNOWN;
        if (code === status.NOT_FOUND || code === status.PERMISSION_DENIED) {
          this.st.registered = false;
          this.ctx.logger.warn(
            { master: this.cfg.address },
            `master heartbeat refused, registering again: ${msg}`,
          );
          return;
        }
        // Unreachable or rate-limited: say it once per outage and keep beating.
        if (!failing) this.ctx.logger.warn({ master: this.cfg.address }, `master heartbeat failed: ${msg}`);
        failing = true;
      }
    }
  }

  /** This node's resources now; CPU is averaged since the previous sample. */
  async sample(): Promise<HeartbeatSample> {
    const now = cpuSample();
    const dt = now.total - this.lastCpu.total;
    const busy = dt > 0 ? (dt - (now.idle - this.lastCpu.idle)) / dt : 0;
    this.lastCpu = now;
    let containers = 0;
    try {
      containers = managedRunning(this.ctx, await this.ctx.runtime.list());
    } catch (err) {
      this.ctx.logger.warn({ err: oneLine(err) }, "heartbeat: cannot list containers");
    }
    return {
      cpuMillicores: BigInt(Math.round(busy * os.cpus().length * 1000)),
      memoryBytes: BigInt(memAvailable()),
      diskBytes: diskFree(this.ctx.settings.srvRoot),
      containers,
    };
  }
}

/** Starts the link when [master] is configured; null otherwise. */
export function startMasterLink(ctx: AgentContext): MasterLink | null {
  const cfg = ctx.settings.master;
  if (!cfg || ctx.shutdown.aborted) return null;
  const link = new MasterLink(ctx, cfg);
  links.set(ctx, link);
  return link;
}
