// Service snapshots on the master (architecture-v2 "Snapshots"): CreateSnapshot asks the node
// the service is placed on for ExportServiceData and streams the tar.zst into
// `<[snapshots] dir>/<svc>/<UTC timestamp>.tar.zst` (a .partial name until complete, then a
// rename), records it in the store and prunes to `retain`; ListSnapshots reads the store; Status
// flags placed services whose latest snapshot is older than twice the interval (or that have
// none once placed for that long). With a [snapshots] section the master also snapshots every
// placed service each interval (a service busy with a deploy/migration is skipped that round).
// Everything touching one service runs under the fleet-wide per-service lock.
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import type { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import { CallError } from "../../rpc/client.ts";
import {
  failedPrecondition,
  invalidArgument,
  notFound,
  RpcError,
  resourceExhausted,
  unavailable,
} from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { Background, MasterContext } from "./context.ts";
import type { SnapshotRecord } from "./store.ts";

export const DEFAULT_SNAPSHOT_DIR = "/srv/mcp-master/snapshots";
const DEFAULT_INTERVAL_MS = 24 * 3600_000;
const DEFAULT_RETAIN = 7;
const DEFAULT_TIMEOUT_MS = 10 * 60_000;
/** [snapshots] max_bytes default: the largest archive stored for one snapshot. */
export const DEFAULT_SNAPSHOT_MAX_BYTES = 1024 ** 3;
/** The only names the master ever writes or prunes in a service's snapshot dir. */
export const SNAPSHOT_FILE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\.tar\.zst$/;
const SERVICE_RE = /^[a-z0-9][a-z0-9-]{0,63}$/;

export interface SnapshotSettings {
  dir: string;
  intervalMs: number;
  retain: number;
  timeoutMs: number;
  /** Largest archive stored (compressed bytes); a larger one is refused and nothing is kept. */
  maxBytes: number;
  /** A [snapshots] section is configured: the scheduled loop runs. */
  scheduled: boolean;
}

export function snapshotSettings(ctx: MasterContext): SnapshotSettings {
  const cfg = ctx.settings.config;
  return {
    dir: cfg?.snapshots?.dir ?? DEFAULT_SNAPSHOT_DIR,
    intervalMs: cfg?.snapshots?.interval ?? DEFAULT_INTERVAL_MS,
    retain: cfg?.snapshots?.retain ?? DEFAULT_RETAIN,
    timeoutMs: cfg?.timeouts.snapshot ?? DEFAULT_TIMEOUT_MS,
    maxBytes: cfg?.snapshots?.max_bytes ?? DEFAULT_SNAPSHOT_MAX_BYTES,
    scheduled: cfg?.snapshots !== undefined,
  };
}

/** `2026-04-01T00:00:00Z.tar.zst`; with `ms`, `2026-04-01T00:00:00.123Z.tar.zst`. */
export function snapshotFileName(at: Date, ms = false): string {
  const iso = at.toISOString();
  return `${ms ? iso : iso.replace(/\.\d{3}Z$/, "Z")}.tar.zst`;
}

function checkService(service: string): void {
  if (!service) throw invalidArgument("service name is required");
  if (!SERVICE_RE.test(service)) throw invalidArgument(`invalid service name ${JSON.stringify(service)}`);
}

export interface CreatedSnapshot extends SnapshotRecord {
  path: string;
  pruned: string[];
}

/** Deletes the oldest records (and their files) of `service` beyond `retain`; returns the filenames. */
async function prune(
  ctx: MasterContext,
  s: SnapshotSettings,
  service: string,
  keep: number,
): Promise<string[]> {
  const pruned: string[] = [];
  for (const r of ctx.store.listSnapshots(service).slice(keep)) {
    // Only a plain name of our own shape is unlinked: a row can never point outside the dir.
    if (SNAPSHOT_FILE.test(r.filename)) await rm(join(s.dir, service, r.filename), { force: true });
    ctx.store.deleteSnapshot(r.id);
    pruned.push(r.filename);
  }
  return pruned;
}

/** The snapshot itself; the caller holds the service's lock. */
async function snapshotLocked(ctx: MasterContext, service: string): Promise<CreatedSnapshot> {
  const s = snapshotSettings(ctx);
  const placement = ctx.store.getPlacement(service);
  if (!placement) throw notFound(`service ${service} has no placement on the master`);
  const node = ctx.store.getNode(placement.node);
  if (!node) throw failedPrecondition(`service ${service} is placed on unknown node ${placement.node}`);
  const dir = join(s.dir, service);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const at = new Date();
  let filename = snapshotFileName(at);
  if (
    await stat(join(dir, filename)).then(
      () => true,
      () => false,
    )
  )
    filename = snapshotFileName(at, true);
  const path = join(dir, filename);
  const partial = join(dir, `.${filename}.partial`);
  const fh = await open(partial, "wx", 0o600);
  let size = 0;
  try {
    try {
      const agent = await ctx.agents.get(node);
      for await (const chunk of agent.exportServiceData(
        { serviceName: service },
        { timeoutMs: s.timeoutMs },
      )) {
        if (chunk.data.length === 0) continue;
        // Leaving the loop cancels the agent's stream; the partial file is removed below.
        if (size + chunk.data.length > s.maxBytes)
          throw resourceExhausted(
            `snapshot of ${service} from node ${node.name} refused: the archive exceeds ${s.maxBytes} bytes ([snapshots] max_bytes); nothing was stored`,
          );
        let w = 0;
        while (w < chunk.data.length) w += (await fh.write(chunk.data, w)).bytesWritten;
        size += chunk.data.length;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    if (size === 0) throw failedPrecondition(`node ${node.name} sent an empty archive for ${service}`);
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    // An agent's error keeps its code and line, naming the node it came from.
    if (err instanceof CallError) throw new RpcError(err.code, `node ${node.name}: ${err.details}`);
    if (err instanceof RpcError) throw err;
    throw unavailable(`snapshot of ${service} from node ${node.name}: ${(err as Error).message}`);
  }
  const rec = ctx.store.addSnapshot({
    service,
    node: node.name,
    filename,
    sizeBytes: size,
    createdAt: at.toISOString(),
  });
  const pruned = await prune(ctx, s, service, s.retain);
  ctx.logger.info({ service, node: node.name, filename, bytes: size, pruned }, "snapshot stored");
  return { ...rec, path, pruned };
}

/** Snapshots one placed service under its lock (waits for a deploy/migration in progress). */
export function createSnapshot(ctx: MasterContext, service: string): Promise<CreatedSnapshot> {
  checkService(service);
  return ctx.locks.run(service, () => snapshotLocked(ctx, service));
}

/**
 * Placed services whose newest snapshot is older than twice the interval, or that have none
 * and were placed longer ago than that, sorted by name.
 */
export function staleSnapshots(ctx: MasterContext, now = Date.now()): string[] {
  const limit = 2 * snapshotSettings(ctx).intervalMs;
  const latest = new Map<string, number>();
  for (const r of ctx.store.listSnapshots()) {
    const t = Date.parse(r.createdAt);
    if (!(latest.get(r.service)! >= t)) latest.set(r.service, t);
  }
  const out: string[] = [];
  for (const p of ctx.store.listPlacements()) {
    const since = latest.get(p.service) ?? Date.parse(p.deployedAt);
    if (Number.isFinite(since) && now - since > limit) out.push(p.service);
  }
  return out.sort();
}

const abortable = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener(
      "abort",
      () => {
        clearTimeout(t);
        resolve();
      },
      { once: true },
    );
  });

/**
 * Every interval: a snapshot of each placed service, one at a time. A service whose lock is held
 * (deploy, undeploy, migration) is skipped this round; failures are logged and retried next round.
 */
export function startSnapshotScheduler(ctx: MasterContext, intervalMs?: number): Background {
  const every = intervalMs ?? snapshotSettings(ctx).intervalMs;
  const stop = new AbortController();
  const signal = AbortSignal.any([stop.signal, ctx.shutdown]);
  const loop = (async () => {
    for (;;) {
      await abortable(every, signal);
      if (signal.aborted) return;
      for (const p of ctx.store.listPlacements()) {
        if (signal.aborted) return;
        if (ctx.locks.isHeld(p.service)) {
          ctx.logger.info({ service: p.service }, "scheduled snapshot skipped: the service is busy");
          continue;
        }
        await createSnapshot(ctx, p.service).catch((err: Error) =>
          ctx.logger.warn({ service: p.service, err: err.message }, "scheduled snapshot failed"),
        );
      }
    }
  })();
  return {
    async stop() {
      stop.abort();
      await loop;
    },
  };
}

export function snapshotHandlers(ctx: MasterContext): Partial<Handlers<typeof McpMasterService>> {
  return {
    async createSnapshot(req) {
      const r = await createSnapshot(ctx, req.serviceName);
      return { filename: r.filename, sizeBytes: BigInt(r.sizeBytes) };
    },
    async listSnapshots(req) {
      checkService(req.serviceName);
      return {
        snapshots: ctx.store.listSnapshots(req.serviceName).map((r) => ({
          serviceName: r.service,
          node: r.node,
          filename: r.filename,
          sizeBytes: BigInt(r.sizeBytes),
          createdAt: r.createdAt,
        })),
      };
    },
  };
}
