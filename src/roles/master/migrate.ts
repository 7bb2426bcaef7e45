// Service migration between nodes (architecture-v2 "Service Migration"): validate, then per
// service under its lock: stop on the source, take a final snapshot of /srv/<svc>/ (streamed from
// the source into the master's snapshots dir and recorded like any snapshot, so `snapshot list`
// shows it and retention prunes it later; the latest stored snapshot when the source is down), stream it to the destination (ImportServiceData, which refuses an existing
// /srv/<svc>/ unless force), deploy the stored definition there (the agent allocates route ports,
// certs, mc-proxy routes and points the service's A record at itself), wait until every component
// runs, refresh the edge routes, move the placement, and only then undeploy on the source.
// Safety rule: whatever fails, the service is left running on ONE node and the last step result
// says which. Before the destination is healthy a failure undoes the destination's part and
// restarts the service on the source; after that the destination keeps it and what failed is
// reported (the source's leftovers can be removed with a retried undeploy there).
import { createReadStream, existsSync } from "node:fs";
import { mkdir, open, rename, rm, stat } from "node:fs/promises";
import { isAbsolute, join } from "node:path";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { defToSpec } from "../../component/proto.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { ImportServiceDataChunkSchema, StepResultSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import { failedPrecondition, invalidArgument, notFound } from "../../rpc/errors.ts";
import type { AgentClient } from "./agents.ts";
import { type MasterContext, nodeViews } from "./context.ts";
import { canonicalSpec } from "./deploy.ts";
import { runtimeMisfit, runtimeNeeds } from "./placement.ts";
import { snapshotFileName, snapshotSettings } from "./snapshots.ts";
import type { NodeRecord, PlacementRecord } from "./store.ts";

type Step = MessageInitShape<typeof StepResultSchema>;
type ImportChunk = MessageInitShape<typeof ImportServiceDataChunkSchema>;

export interface MigrateInput {
  serviceName: string;
  targetNode: string;
  force: boolean;
  all: boolean;
  sourceNode: string;
}

/** Data streams can be large: bounded, but far above a deploy's timeout. */
const DATA_TIMEOUT_MS = 30 * 60_000;
/** Import stream chunk size (gRPC's default message limit is 4 MiB). */
const CHUNK_BYTES = 256 * 1024;
/** How long the destination may take until every component runs after its deploy returned. */
const HEALTHY_WITHIN_MS = 60_000;

const firstLine = (err: unknown) => ((err as Error)?.message ?? String(err)).split("\n")[0] ?? "";
const ok = (step: string): Step => ({ step, success: true, error: "" });
const failed = (step: string, err: unknown): Step => ({ step, success: false, error: firstLine(err) });

function requireNode(ctx: MasterContext, name: string, what: string): NodeRecord {
  const n = ctx.store.getNode(name);
  if (!n) throw notFound(`${what} node "${name}" is not known to the master`);
  return n;
}

/** The destination must be a known, healthy node that runs application containers. */
function validateTarget(ctx: MasterContext, target: string): NodeRecord {
  if (!target) throw invalidArgument("a target node is required (--to <node>)");
  const n = requireNode(ctx, target, "target");
  if (n.role === "edge") throw failedPrecondition(`node ${target} is an edge node: it runs no services`);
  if (n.status !== "healthy") throw failedPrecondition(`target node ${target} is ${n.status}, not healthy`);
  return n;
}

function validateService(p: PlacementRecord | null, service: string, target: string): PlacementRecord {
  if (!p) throw notFound(`service "${service}" is not placed by the master`);
  if (p.tier === "core")
    throw failedPrecondition(
      `service ${service} is tier "core": it stays on the master's node (moving it means designating a new master)`,
    );
  if (p.node === target) throw failedPrecondition(`service ${service} is already on ${target}`);
  if (!p.specJson)
    throw failedPrecondition(`service ${service} has no stored definition: deploy it again first`);
  return p;
}

/** Entry point of the Migrate RPC: one service, or every non-core service of a node (--all). */
export async function masterMigrate(ctx: MasterContext, req: MigrateInput): Promise<{ results: Step[] }> {
  if (req.all) {
    if (req.serviceName)
      throw invalidArgument("--all migrates every service of a node: give no service name");
    if (!req.sourceNode) throw invalidArgument("--all needs the source node (--from <node>)");
    requireNode(ctx, req.sourceNode, "source");
    if (req.sourceNode === req.targetNode) throw failedPrecondition("source and target are the same node");
    validateTarget(ctx, req.targetNode);
    const results: Step[] = [];
    const placements = ctx.store.listPlacements(req.sourceNode);
    if (placements.length === 0) results.push(ok(`no services placed on ${req.sourceNode}: nothing to do`));
    for (const p of placements) {
      if (p.tier === "core") {
        results.push(ok(`${p.service}: skipped (tier "core" stays on the master's node)`));
        continue;
      }
      const steps = await migrateOne(ctx, p.service, req.targetNode, req.force, req.sourceNode);
      results.push(...steps);
      // Sequential, stopping at the first failure: the operator fixes it and re-runs --all
      // (migrated services no longer have placements on the source, so they are skipped).
      if (steps.some((s) => !s.success)) break;
    }
    return { results };
  }
  if (!req.serviceName) throw invalidArgument("a service name is required (or --all --from <node>)");
  validateService(ctx.store.getPlacement(req.serviceName), req.serviceName, req.targetNode);
  validateTarget(ctx, req.targetNode);
  if (req.sourceNode && req.sourceNode !== ctx.store.getPlacement(req.serviceName)?.node)
    throw failedPrecondition(`service ${req.serviceName} is not on ${req.sourceNode}`);
  return { results: await migrateOne(ctx, req.serviceName, req.targetNode, req.force, "") };
}

/** One service, under its lock; the last step says where the service runs now. */
function migrateOne(
  ctx: MasterContext,
  service: string,
  target: string,
  force: boolean,
  expectSource: string,
): Promise<Step[]> {
  return ctx.locks.run(service, async () => {
    const steps: Step[] = [];
    // Re-checked under the lock: a deploy or migration may have moved it meanwhile.
    let placement: PlacementRecord;
    try {
      placement = validateService(ctx.store.getPlacement(service), service, target);
      if (expectSource && placement.node !== expectSource)
        throw failedPrecondition(`service ${service} moved to ${placement.node} meanwhile`);
      validateTarget(ctx, target);
    } catch (err) {
      return [failed(`${service}: validate`, err)];
    }
    const source = placement.node;
    const sourceNode = ctx.store.getNode(source);
    // An unhealthy source is treated as down (disaster recovery): no stop, no cleanup there.
    const sourceAlive = sourceNode !== null && sourceNode.status !== "unhealthy";
    const def = JSON.parse(placement.specJson!) as ServiceDef;
    // The target must run every runtime kind the service's components need (placement's rule).
    const targetView = nodeViews(ctx).find((n) => n.name === target);
    const misfit = targetView
      ? runtimeMisfit(
          { name: service, tier: placement.tier, needs: runtimeNeeds(def.components) },
          targetView,
        )
      : null;
    if (misfit) return [failed(`${service}: validate`, misfit)];
    const m = new Migration(ctx, service, source, target, sourceAlive, steps);
    await m.run(def, force);
    return steps;
  });
}

class Migration {
  constructor(
    private readonly ctx: MasterContext,
    private readonly service: string,
    private readonly source: string,
    private readonly target: string,
    private readonly sourceAlive: boolean,
    private readonly steps: Step[],
  ) {}

  private agent(node: string): Promise<AgentClient> {
    const n = this.ctx.store.getNode(node);
    if (!n) return Promise.reject(new Error(`node "${node}" is not known to the master`));
    return this.ctx.agents.get(n);
  }

  private ok(step: string): void {
    this.steps.push(ok(`${this.service}: ${step}`));
  }

  private fail(step: string, err: unknown): void {
    this.steps.push(failed(`${this.service}: ${step}`, err));
  }

  async run(def: ServiceDef, force: boolean): Promise<void> {
    const { service, source, target } = this;
    const log = this.ctx.logger.child({ service, source, target });
    log.info({ sourceAlive: this.sourceAlive }, "migration started");
    // (1) stop on the source: the service shuts down cleanly, so the data is consistent.
    if (this.sourceAlive) {
      try {
        const src = await this.agent(source);
        const res = await src.stopService(
          { name: service },
          { timeoutMs: this.ctx.settings.timeouts.deployMs },
        );
        const bad = res.results.filter((r) => !r.success);
        if (bad.length) throw new Error(bad.map((r) => `${r.name}: ${r.error}`).join("; "));
        this.ok(`stop on ${source}`);
      } catch (err) {
        this.fail(`stop on ${source}`, err);
        return await this.backToSource(false, log);
      }
    } else {
      this.ok(`stop on ${source}: skipped (${source} is down)`);
    }
    // (2) final snapshot from the source, or the latest stored one when the source is down.
    let snapshotFile: string;
    if (this.sourceAlive) {
      try {
        const snap = await this.finalSnapshot();
        snapshotFile = snap.path;
        this.ok(`snapshot from ${source} (${snap.bytes} bytes, stored as ${snap.filename})`);
      } catch (err) {
        this.fail(`snapshot from ${source}`, err);
        return await this.backToSource(false, log);
      }
    } else {
      const stored = latestStoredSnapshot(this.ctx, service);
      if (!stored) {
        this.fail(
          "snapshot",
          `${source} is down and the master has no stored snapshot of ${service}: nothing to restore from`,
        );
        return this.final(
          false,
          `not migrated: nothing changed, ${service} stays placed on ${source} (down)`,
        );
      }
      snapshotFile = stored;
      this.ok(`snapshot: ${source} is down, using the stored snapshot ${stored}`);
    }
    // (3) stream it to the destination; the agent refuses an existing /srv/<svc>/ unless force.
    try {
      const written = await this.importFrom(snapshotFile, force);
      this.ok(`restore on ${target} (${written} bytes written)`);
    } catch (err) {
      this.fail(`restore on ${target}`, err);
      // Nothing was deployed there; its /srv/<svc>/ is left for the operator to inspect.
      return await this.backToSource(false, log);
    }
    // (4) deploy the stored definition on the destination.
    const moved: ServiceDef = def.node ? { ...def, node: target } : def;
    try {
      const dst = await this.agent(target);
      const res = await dst.deploy(
        { service: defToSpec(moved), component: "" },
        { timeoutMs: this.ctx.settings.timeouts.deployMs },
      );
      const bad = res.results.filter((r) => !r.success);
      if (bad.length) throw new Error(bad.map((r) => `${r.name}: ${r.error}`).join("; "));
      this.ok(`deploy on ${target}`);
    } catch (err) {
      this.fail(`deploy on ${target}`, err);
      return await this.backToSource(true, log);
    }
    // (5) the destination answers: every component observed running.
    try {
      await this.waitRunning(target);
      this.ok(`healthy on ${target}`);
    } catch (err) {
      this.fail(`healthy on ${target}`, err);
      return await this.backToSource(true, log);
    }
    // From here on the destination keeps the service, whatever else fails.
    let clean = true;
    // (6) edge routes: the backend name is unchanged (its A record moved); set up again anyway
    // so the edge refreshes its route now rather than at the next deploy.
    const edgeErrors: string[] = [];
    const edges = this.ctx.store.listEdgeRoutes(service);
    for (const r of edges) {
      try {
        const edge = await this.agent(r.edgeNode);
        await edge.setupEdgeRoute(
          {
            hostname: r.hostname,
            backendHostname: r.backendHostname,
            backendPort: r.backendPort,
            backendTls: true,
          },
          { timeoutMs: this.ctx.settings.timeouts.edgeRouteMs },
        );
      } catch (err) {
        edgeErrors.push(`${r.hostname} on ${r.edgeNode}: ${firstLine(err)}`);
      }
    }
    if (edgeErrors.length) {
      clean = false;
      this.fail("edge routes", edgeErrors.join("; "));
    } else if (edges.length) {
      this.ok(`edge routes: ${edges.map((r) => `${r.hostname} on ${r.edgeNode}`).join(", ")}`);
    }
    // (7) the placement moves (edge route rows stay: they belong to the service, not the node).
    this.ctx.store.upsertPlacement({
      service,
      node: target,
      tier: moved.tier,
      specJson: canonicalSpec(moved),
    });
    this.adjust(target, moved.components.length);
    this.ok(
      `placement: ${source} → ${target}${def.node ? ` (the definition pins node = "${def.node}": update it)` : ""}`,
    );
    // (8) only now remove it from the source (containers, routes, DNS record, certs; data stays).
    if (this.sourceAlive) {
      try {
        const src = await this.agent(source);
        const res = await src.undeployService(
          { name: service },
          { timeoutMs: this.ctx.settings.timeouts.undeployMs },
        );
        const bad = res.results.filter((r) => !r.success);
        if (bad.length) throw new Error(bad.map((r) => `${r.name || "integrations"}: ${r.error}`).join("; "));
        this.adjust(source, -def.components.length);
        this.ok(`undeploy on ${source} (/srv/${service}/ kept there)`);
      } catch (err) {
        clean = false;
        this.fail(`undeploy on ${source}`, err);
      }
      // (9) the source's teardown may have removed the A record the destination set (nodes
      // sharing an address, or an MCNS without per-value deletes): the destination re-asserts
      // its routes and record (StartService on running components is an upsert).
      try {
        const dst = await this.agent(target);
        const res = await dst.startService(
          { name: service },
          { timeoutMs: this.ctx.settings.timeouts.deployMs },
        );
        const bad = res.results.filter((r) => !r.success);
        if (bad.length) throw new Error(bad.map((r) => `${r.name}: ${r.error}`).join("; "));
        this.ok(`routes and DNS re-asserted on ${target}`);
      } catch (err) {
        clean = false;
        this.fail(`routes and DNS on ${target}`, err);
      }
    } else {
      this.ok(`undeploy on ${source}: skipped (${source} is down; undeploy it there once it is back)`);
    }
    log.info({ clean }, "migration done");
    this.final(clean, clean ? `migrated to ${target}` : `running on ${target}; see the failed steps above`);
  }

  private final(success: boolean, msg: string): void {
    this.steps.push({
      step: `${this.service}: ${success ? msg : "result"}`,
      success,
      error: success ? "" : msg,
    });
  }

  /**
   * Undo: the destination's part goes (when it was deployed), the source runs again. Says where
   * the service is now.
   */
  private async backToSource(deployedOnTarget: boolean, log: MasterContext["logger"]): Promise<void> {
    const { service, source, target } = this;
    if (deployedOnTarget) {
      try {
        const dst = await this.agent(target);
        await dst.undeployService({ name: service }, { timeoutMs: this.ctx.settings.timeouts.undeployMs });
        this.ok(`undo: undeploy on ${target}`);
      } catch (err) {
        this.fail(`undo: undeploy on ${target}`, err);
      }
    }
    if (!this.sourceAlive) {
      log.warn("migration failed; source is down");
      return this.final(
        false,
        `migration failed: ${service} stays placed on ${source}, which is down: it runs nowhere until ${source} is back or a retry succeeds`,
      );
    }
    try {
      const src = await this.agent(source);
      const res = await src.startService(
        { name: service },
        { timeoutMs: this.ctx.settings.timeouts.deployMs },
      );
      const bad = res.results.filter((r) => !r.success);
      if (bad.length) throw new Error(bad.map((r) => `${r.name}: ${r.error}`).join("; "));
      this.ok(`undo: start on ${source}`);
      log.warn("migration failed; service restarted on the source");
      this.final(false, `migration failed: ${service} is still on ${source} (running again)`);
    } catch (err) {
      this.fail(`undo: start on ${source}`, err);
      this.final(false, `migration failed: ${service} is still on ${source} but did not start again`);
    }
  }

  private adjust(node: string, delta: number): void {
    const n = this.ctx.store.getNode(node);
    const holdMs = this.ctx.settings.heartbeat.intervalMs + 1000;
    if (n && delta !== 0) this.ctx.store.setContainers(node, Math.max(0, n.containers + delta), holdMs);
  }

  /**
   * Streams the source's /srv/<svc>/ archive into `<[snapshots] dir>/<svc>/<UTC time>.tar.zst`
   * (a hidden partial file renamed when complete) and records it as a snapshot of the source.
   */
  private async finalSnapshot(): Promise<{ path: string; filename: string; bytes: number }> {
    const dir = join(snapshotSettings(this.ctx).dir, this.service);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const at = new Date();
    // Millisecond names: never the same name as a scheduled snapshot taken in the same second.
    const filename = snapshotFileName(at, true);
    const path = join(dir, filename);
    const partial = join(dir, `.${filename}.partial`);
    const src = await this.agent(this.source);
    let bytes = 0;
    try {
      const fh = await open(partial, "wx", 0o600);
      try {
        for await (const chunk of src.exportServiceData(
          { serviceName: this.service, allFiles: true },
          { timeoutMs: DATA_TIMEOUT_MS },
        )) {
          if (chunk.data.length === 0) continue;
          let w = 0;
          while (w < chunk.data.length) w += (await fh.write(chunk.data, w)).bytesWritten;
          bytes += chunk.data.length;
        }
        await fh.sync();
      } finally {
        await fh.close();
      }
      if (bytes === 0) throw new Error("the source sent an empty archive");
      await rename(partial, path);
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
    this.ctx.store.addSnapshot({
      service: this.service,
      node: this.source,
      filename,
      sizeBytes: bytes,
      createdAt: at.toISOString(),
    });
    return { path, filename, bytes };
  }

  /** Streams `file` to the destination's ImportServiceData; returns the bytes it wrote. */
  private async importFrom(file: string, force: boolean): Promise<number> {
    const size = (await stat(file)).size;
    if (size === 0) throw new Error(`${file} is empty`);
    const service = this.service;
    async function* chunks(): AsyncIterable<ImportChunk> {
      let first = true;
      for await (const buf of createReadStream(file, { highWaterMark: CHUNK_BYTES })) {
        const data = new Uint8Array(buf as Buffer);
        yield first ? { serviceName: service, data, force } : { data };
        first = false;
      }
    }
    const dst = await this.agent(this.target);
    const res = await dst.importServiceData(chunks(), { timeoutMs: DATA_TIMEOUT_MS });
    return Number(res.bytesWritten);
  }

  /** Polls the destination until every component meant to run is observed running. */
  private async waitRunning(node: string): Promise<void> {
    const dst = await this.agent(node);
    const deadline = Date.now() + HEALTHY_WITHIN_MS;
    let last = "not seen yet";
    while (Date.now() < deadline) {
      try {
        const res = await dst.liveCheck({}, { timeoutMs: 10_000 });
        const svc = res.services.find((s) => s.name === this.service);
        if (svc) {
          const want = svc.components.filter((c) => c.desiredState === "running");
          const notUp = want.filter((c) => c.observedState !== "running");
          if (want.length > 0 && notUp.length === 0) return;
          last = notUp.map((c) => `${c.name} ${c.observedState}`).join(", ") || "no component to run";
        }
      } catch (err) {
        last = firstLine(err);
      }
      await Bun.sleep(500);
    }
    throw new Error(`not running within ${HEALTHY_WITHIN_MS / 1000}s: ${last}`);
  }
}

/**
 * The newest snapshot file the master recorded for `service` that is still on disk, or null.
 * A relative filename lives in `<[snapshots] dir>/<service>/`.
 */
function latestStoredSnapshot(ctx: MasterContext, service: string): string | null {
  const dir = join(snapshotSettings(ctx).dir, service);
  for (const r of ctx.store.listSnapshots(service)) {
    const file = isAbsolute(r.filename) ? r.filename : join(dir, r.filename);
    if (existsSync(file)) return file;
  }
  return null;
}
