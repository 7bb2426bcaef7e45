// Boot sequencing ([[boot.sequence]], architecture-v2 "Boot Sequencing", SPEC §5.8): at agent
// start, bring the configured stages up in order. Each stage deploys its services from the full
// definitions in the agent config (like `mcp deploy`, so they are registered and show in
// ps/status), keeps containers that podman already runs with the same image (a reboot), then
// waits for every component's health check. A foundation stage (the first one, or
// `blocking = true`) that fails is retried with backoff and alerts until it is healthy — nothing
// downstream can work without it; a later stage that fails is logged and the boot moves on.
//
// Health target of a component, per the stage's `health` (tcp | http GET / | grpc Health/Check):
//   1. the host side of its first TCP published port (host ip default 127.0.0.1), else
//   2. the host port stored for its first route that has one (routes publish on 127.0.0.1), else
//   3. nothing to connect to: the container being running counts as healthy (logged as such).
// Images are pre-staged for boot (the registry may be one of the later stages): pull policy
// "missing", so a present image is never re-pulled.
import { isIPv6 } from "node:net";
import type { Logger } from "pino";
import { containerName } from "../../component/container.ts";
import type { BootStage } from "../../config/agent.ts";
import { canonicalImage, extractVersion } from "../../config/image.ts";
import type { ComponentDef, ServiceDef } from "../../config/service.ts";
import { isAnyAddr, parsePortSpec } from "../../config/specs.ts";
import { checkGrpc, checkHttp, checkTcp, type HealthResult, waitHealthy } from "../../health/index.ts";
import { sleepAbortable } from "../../health/wait.ts";
import { alertSink, raiseAlert } from "../../monitor/alert.ts";
import type { AgentContext } from "./context.ts";
import { deployService, recordSpec } from "./deploy.ts";
import { nodeAddressOf } from "./host-ports.ts";
import { requireContainersFree, requireOwnContainers } from "./ownership.ts";
import { requireRuntimes } from "./runtimes.ts";

/** Backoff between attempts of a failed blocking stage: 1 s doubling, capped at 60 s. */
export const BOOT_BACKOFF_FIRST_MS = 1000;
export const BOOT_BACKOFF_MAX_MS = 60_000;
/** One health probe never takes longer than this, however long the stage timeout is. */
const PROBE_TIMEOUT_MS = 2000;
const PROBE_INTERVAL_MS = 250;

export type HealthTarget =
  | { kind: "port"; host: string; port: number; from: "port" | "route" }
  | { kind: "running" };

export interface ComponentBootResult {
  service: string;
  component: string;
  /** started = (re)created now; kept = already running with the same image; failed = deploy failed. */
  deploy: "started" | "kept" | "failed";
  healthy: boolean;
  detail: string;
}

export interface StageResult {
  name: string;
  blocking: boolean;
  /** Attempts so far (blocking stages retry). */
  attempts: number;
  status: "running" | "healthy" | "failed" | "aborted";
  /** Start of the first attempt and end of the last (null while running). */
  startedAt: Date;
  endedAt: Date | null;
  /** When the last attempt started. */
  attemptStartedAt: Date;
  components: ComponentBootResult[];
}

// Per agent context (tests run several agents in one process): no module-global list.
const results = new WeakMap<AgentContext, StageResult[]>();

/** The boot stages of this agent so far, in order (live objects; copy before mutating). */
export function bootStatus(ctx: AgentContext): readonly StageResult[] {
  return results.get(ctx) ?? [];
}

/** Where to health-check a component (see the module header). Pure apart from the registry read. */
export function healthTarget(ctx: AgentContext, service: string, c: ComponentDef): HealthTarget {
  for (const p of c.ports) {
    const spec = parsePortSpec(p);
    if (spec.protocol === "udp") continue;
    let host = spec.hostIp ?? "127.0.0.1";
    // Published on every interface: loopback reaches it without depending on the host's addresses.
    if (isAnyAddr(host)) host = isIPv6(host) ? "::1" : "127.0.0.1";
    return { kind: "port", host, port: spec.hostPort, from: "port" };
  }
  const stored = ctx.registry.getComponent(service, c.name)?.routes.find((r) => r.hostPort > 0);
  if (stored)
    return { kind: "port", host: nodeAddressOf(ctx.settings), port: stored.hostPort, from: "route" };
  return { kind: "running" };
}

/** Same image reference, ignoring the defaults podman fills in (docker.io/library/, :latest). */
export function sameImage(a: string, b: string): boolean {
  return canonicalImage(a) === canonicalImage(b);
}

function probe(
  ctx: AgentContext,
  health: BootStage["health"],
  container: string,
  target: HealthTarget,
): (budgetMs: number) => Promise<HealthResult> {
  return async (budgetMs) => {
    const timeout = Math.min(budgetMs, PROBE_TIMEOUT_MS);
    if (target.kind === "running") {
      const t0 = performance.now();
      const info = await ctx.runtime.inspect(container).catch(() => null);
      const state = info?.state ?? "removed";
      return {
        healthy: state === "running",
        detail: `nothing published to check with ${health}; container ${container} is ${state}`,
        ms: Math.round(performance.now() - t0),
      };
    }
    const { host, port } = target;
    if (health === "http") {
      const h = host.includes(":") ? `[${host}]` : host;
      return checkHttp(`http://${h}:${port}/`, timeout);
    }
    if (health === "grpc") return checkGrpc(host, port, timeout);
    return checkTcp(host, port, timeout);
  };
}

/**
 * Registers the service like a deploy and brings up what is not already running with the right
 * image. Returns per component how it was brought up.
 */
async function bringUp(
  ctx: AgentContext,
  def: ServiceDef,
  log: Logger,
): Promise<Map<string, { deploy: ComponentBootResult["deploy"]; error?: string }>> {
  const out = new Map<string, { deploy: ComponentBootResult["deploy"]; error?: string }>();
  const toDeploy: ComponentDef[] = [];
  requireRuntimes(ctx, def); // before recordSpec: a boot service this node cannot run records nothing
  requireOwnContainers(ctx, def);
  // Boot's definitions claim what runs under their names, except another service's (by label).
  await requireContainersFree(ctx, def, { unlabelled: "keep" });
  await ctx.locks.run(def.name, async () => {
    const kept: ComponentDef[] = [];
    for (const c of def.components) {
      const info = await ctx.runtime.inspect(containerName(def.name, c.name)).catch(() => null);
      if (info?.state === "running" && sameImage(info.image, c.image)) kept.push(c);
      else toDeploy.push(c);
    }
    // Desired state "running" for every component, as a full deploy records it; the kept ones
    // are observed running with the version of the image they run.
    recordSpec(ctx, def, def.components);
    ctx.registry.withTransaction(() => {
      for (const c of kept) {
        ctx.registry.setObservedState(def.name, c.name, "running");
        ctx.registry.setVersion(def.name, c.name, extractVersion(c.image));
      }
    });
    for (const c of kept) {
      out.set(c.name, { deploy: "kept" });
      log.info({ service: def.name, component: c.name, image: c.image }, "boot: already running, kept");
    }
  });
  for (const c of toDeploy) {
    const [r] = await deployService(ctx, def, { component: c.name, pullPolicy: "missing" });
    if (r?.success) out.set(c.name, { deploy: "started" });
    else out.set(c.name, { deploy: "failed", error: r?.error ?? "deploy returned no result" });
  }
  return out;
}

async function checkService(
  ctx: AgentContext,
  stage: BootStage,
  def: ServiceDef,
  log: Logger,
): Promise<ComponentBootResult[]> {
  let brought: Awaited<ReturnType<typeof bringUp>>;
  try {
    brought = await bringUp(ctx, def, log);
  } catch (err) {
    const error = (err as Error).message.split("\n")[0] ?? "";
    brought = new Map(def.components.map((c) => [c.name, { deploy: "failed" as const, error }]));
  }
  return Promise.all(
    def.components.map(async (c): Promise<ComponentBootResult> => {
      const b = brought.get(c.name) ?? { deploy: "failed" as const, error: "not deployed" };
      const base = { service: def.name, component: c.name, deploy: b.deploy };
      if (b.deploy === "failed") return { ...base, healthy: false, detail: `deploy failed: ${b.error}` };
      const target = healthTarget(ctx, def.name, c);
      if (target.kind === "running") {
        log.info(
          { service: def.name, component: c.name, health: stage.health },
          "boot: nothing published to health-check; a running container counts as healthy",
        );
      }
      const r = await waitHealthy(probe(ctx, stage.health, containerName(def.name, c.name), target), {
        timeoutMs: stage.timeout,
        intervalMs: PROBE_INTERVAL_MS,
        signal: ctx.shutdown,
      });
      return { ...base, healthy: r.healthy, detail: r.aborted ? `aborted: ${r.detail}` : r.detail };
    }),
  );
}

async function runAttempt(
  ctx: AgentContext,
  stage: BootStage,
  res: StageResult,
  log: Logger,
): Promise<boolean> {
  res.attempts++;
  res.attemptStartedAt = new Date();
  res.status = "running";
  res.endedAt = null;
  const t0 = performance.now();
  log.info(
    { attempt: res.attempts, services: stage.services.map((s) => s.name), health: stage.health },
    "boot stage starting",
  );
  const perService = await Promise.all(stage.services.map((def) => checkService(ctx, stage, def, log)));
  res.components = perService.flat();
  res.endedAt = new Date();
  const ok = res.components.every((c) => c.healthy);
  const durationMs = Math.round(performance.now() - t0);
  if (ok) {
    res.status = "healthy";
    log.info({ attempt: res.attempts, durationMs }, "boot stage healthy");
  } else {
    res.status = ctx.shutdown.aborted ? "aborted" : "failed";
    const failed = res.components
      .filter((c) => !c.healthy)
      .map((c) => `${c.service}/${c.component}: ${c.detail}`);
    log.error({ attempt: res.attempts, durationMs, blocking: res.blocking, failed }, "boot stage failed");
  }
  return ok;
}

async function alertFailed(ctx: AgentContext, stage: BootStage, res: StageResult): Promise<void> {
  const sink = alertSink(ctx.settings);
  await Promise.all(
    res.components
      .filter((c) => !c.healthy)
      .map(async (c) => {
        const info = await ctx.runtime.inspect(containerName(c.service, c.component)).catch(() => null);
        await raiseAlert(sink, {
          type: "boot",
          service: c.service,
          component: c.component,
          desired: "running",
          observed: info?.state ?? "removed",
          prev: "",
          transitions: 0,
          detail: `boot stage ${stage.name} attempt ${res.attempts} failed: ${c.detail}`,
        });
      }),
  );
}

/**
 * Runs the configured boot stages in order. Returns when every stage has run (healthy or, for
 * non-blocking stages, failed), or when ctx.shutdown aborts a blocking stage's retries.
 */
export async function runBootSequence(ctx: AgentContext): Promise<void> {
  const stages = ctx.settings.bootSequence ?? [];
  if (stages.length === 0) return;
  const list: StageResult[] = [];
  results.set(ctx, list);
  const bootT0 = performance.now();
  for (const [i, stage] of stages.entries()) {
    const now = new Date();
    const res: StageResult = {
      name: stage.name,
      blocking: stage.blocking ?? i === 0,
      attempts: 0,
      status: "running",
      startedAt: now,
      endedAt: null,
      attemptStartedAt: now,
      components: [],
    };
    list.push(res);
    const log = ctx.logger.child({ boot_stage: stage.name, stage_index: i + 1, stages: stages.length });
    for (;;) {
      if (ctx.shutdown.aborted) {
        res.status = "aborted";
        res.endedAt ??= new Date();
        log.warn("boot stopped: agent shutting down");
        return;
      }
      if (await runAttempt(ctx, stage, res, log)) break;
      if (ctx.shutdown.aborted) {
        res.status = "aborted";
        log.warn("boot stopped: agent shutting down");
        return;
      }
      if (!res.blocking) {
        log.error("boot stage failed; not a foundation stage, continuing with the next stage");
        break;
      }
      await alertFailed(ctx, stage, res);
      const delay = Math.min(BOOT_BACKOFF_FIRST_MS * 2 ** (res.attempts - 1), BOOT_BACKOFF_MAX_MS);
      log.warn({ retryInMs: delay }, "foundation boot stage failed; later stages wait for it");
      if (!(await sleepAbortable(delay, ctx.shutdown))) {
        res.status = "aborted";
        log.warn("boot stopped: agent shutting down");
        return;
      }
    }
  }
  ctx.logger.info(
    {
      durationMs: Math.round(performance.now() - bootT0),
      stages: list.map((s) => `${s.name}:${s.status}`),
    },
    "boot sequence finished",
  );
}
