// Deploy use case (reference flow): record the spec, then per component pull, stop+remove,
// run <service>-<component>, inspect, record observed state and the version from the tag.
// Deploys of one service are serialized by the caller's lock.
// A component that declares [components.health] is gated: it counts as deployed (routes are
// registered, the next component proceeds) only once healthy; one that never gets there is
// rolled back to what its registry record said ran before (unless no_rollback), the components
// after it are left as they were, and the history records the attempt and the rollback.
// Without a health declaration a deploy runs exactly the reference flow.

import type { MessageInitShape } from "@bufbuild/protobuf";
import { componentKey, specToDef } from "../../component/proto.ts";
import { recordToDef, toComponentInput } from "../../component/registry.ts";
import { extractVersion } from "../../config/image.ts";
import type { ComponentDef, ServiceDef } from "../../config/service.ts";
import type {
  ComponentResult,
  ComponentResultSchema,
  McpAgent,
  StepTimingSchema,
} from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord, HistoryKind } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, resourceExhausted } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { PullPolicy } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { gateComponent } from "./deploy-health.ts";
import { effectiveDef, writeHistory } from "./history.ts";
import { firstHookFailure, type HookStepResult, runComponentHook, stepTiming } from "./hooks.ts";
import { requireHostAccessFor, requireMountsConfined } from "./host-access.ts";
import {
  allocateRoutePorts,
  HostPortError,
  nodeAddressOf,
  portRangeOf,
  previewRoutePorts,
  routeKey,
  runSpec,
} from "./host-ports.ts";
import { requireContainersFree, requireOwnContainers } from "./ownership.ts";
import { requireRuntimes } from "./runtimes.ts";
import { checkServiceHome } from "./service-home.ts";
import { pruneVmCache } from "./vm-cache.ts";

/** Grace period for the old container (podman stop's default, as the reference flow had it). */
const STOP_TIMEOUT_SEC = 10;

type Result = MessageInitShape<typeof ComponentResultSchema>;
type Step = MessageInitShape<typeof StepTimingSchema>;

export interface DeployOptions {
  component?: string;
  pullPolicy?: PullPolicy;
  dryRun?: boolean;
  /** A gated component that never becomes healthy is left as it is, for inspection. */
  noRollback?: boolean;
  /** The RPC identity that asked; when set, the deploy is written to the spec history. */
  caller?: string;
  /** What a successful deploy is recorded as (Rollback: "rollback", with its detail). */
  historyKind?: Exclude<HistoryKind, "failed">;
  historyDetail?: string;
}

function selectComponents(def: ServiceDef, component?: string): ComponentDef[] {
  if (!component) return def.components;
  const c = def.components.find((x) => x.name === component);
  if (!c) throw invalidArgument(`service ${def.name} has no component "${component}"`);
  return [c];
}

/**
 * Records the desired spec of a service (all components) in one transaction. Deployed components
 * get a host port per route (the one allocated earlier if any), and lose the ports of routes
 * their definition dropped; the others keep what they have.
 */
export function recordSpec(ctx: AgentContext, def: ServiceDef, deployed: ComponentDef[]): void {
  const deployedNames = new Set(deployed.map((c) => c.name));
  const portRange = portRangeOf(ctx.settings);
  const host = nodeAddressOf(ctx.settings);
  ctx.registry.withTransaction(() => {
    ctx.registry.upsertService({
      name: def.name,
      active: def.active,
      tier: def.tier,
      node: def.node ?? "",
      specJson: JSON.stringify(def),
    });
    for (const c of def.components)
      writeComponent(ctx, def.name, c, deployedNames.has(c.name), portRange, host);
  });
}

/** One component of recordSpec (also used to restore a component's earlier spec). */
function writeComponent(
  ctx: AgentContext,
  service: string,
  c: ComponentDef,
  deployed: boolean,
  portRange: readonly [number, number],
  host: string,
): void {
  const existing = ctx.registry.getComponent(service, c.name);
  let hostPorts: Map<string, number> | null = null;
  if (deployed) {
    ctx.registry.releasePorts(service, c.name, c.routes.map(routeKey));
    hostPorts = allocateRoutePorts(ctx.registry, service, c, portRange, host);
  }
  // Only deployed components change desired state; the others keep theirs (component-level deploy).
  const desiredState = deployed ? "running" : (existing?.desiredState ?? "stopped");
  ctx.registry.upsertComponent(
    service,
    toComponentInput(deployed ? c : { ...c, image: existing?.image ?? c.image }, {
      desiredState,
      version: existing?.version ?? "",
      hostPort: (key) => hostPorts?.get(key) ?? existing?.routes.find((x) => x.name === key)?.hostPort ?? 0,
    }),
  );
}

async function timed<T>(steps: Step[], step: string, fn: () => Promise<T>, detail = ""): Promise<T> {
  const t0 = performance.now();
  try {
    return await fn();
  } finally {
    steps.push({ step, durationMs: BigInt(Math.round(performance.now() - t0)), detail });
  }
}

/** Pull per policy; a failed pull falls back to the exact image in the local store (with a warning). */
async function ensureImage(
  ctx: AgentContext,
  image: string,
  policy: PullPolicy,
  warnings: string[],
  kind: string,
): Promise<string> {
  const rt = ctx.runtime;
  if (policy === "never") {
    if (!(await rt.imageExists(image, kind)))
      throw new Error(`image ${image} is not in the local store (pull policy "never")`);
    return "local";
  }
  if (policy === "missing" && (await rt.imageExists(image, kind))) return "cached";
  try {
    await rt.pull(image, kind);
    return "pulled";
  } catch (err) {
    if (await rt.imageExists(image, kind)) {
      const msg = `pull of ${image} failed (${(err as Error).message.split("\n")[0]}); using the local copy`;
      warnings.push(msg);
      ctx.logger.warn({ image }, msg);
      return "local (pull failed)";
    }
    throw err;
  }
}

interface ComponentOutcome {
  result: Result;
  /**
   * A gated component failed after its old container was stopped: it never became healthy (or
   * never ran), so rolling back to the earlier spec is the way to get the service back.
   */
  rollback: boolean;
}

async function deployComponent(
  ctx: AgentContext,
  def: ServiceDef,
  c: ComponentDef,
  policy: PullPolicy,
  prepared: Step[] = [],
  /** Images checkImages already pulled per policy (how, warnings): not pulled a second time. */
  ensured?: ReadonlyMap<string, Ensured>,
): Promise<ComponentOutcome> {
  const steps: Step[] = [...prepared];
  const warnings: string[] = [];
  // The recorded routes carry the host ports recordSpec allocated for this deploy.
  const routes = ctx.registry.getComponent(def.name, c.name)?.routes ?? [];
  const spec = runSpec(ctx.settings, def.name, c, routes);
  const version = extractVersion(c.image);
  const gated = c.health !== undefined;
  let replaced = false;
  const failed = (error: string, rollback = gated && replaced): ComponentOutcome => ({
    result: { name: c.name, success: false, error, version, steps, warnings },
    rollback,
  });
  try {
    const how = await timed(steps, "pull", async () => {
      const done = ensured?.get(c.image);
      if (!done) return ensureImage(ctx, c.image, policy, warnings, c.runtime);
      warnings.push(...done.warnings);
      return done.how;
    });
    steps[steps.length - 1]!.detail = how;
    // The reference's `stop` + `rm` as one runtime call (podman `rm -f -t 10`: SIGTERM, the same
    // 10 s grace as `podman stop`, then SIGKILL), with no inspect before it: a missing container
    // is not an error. A failure means one was there and may be half gone: a gated one rolls back.
    await timed(steps, "stop", async () => {
      try {
        if (await ctx.runtime.stopAndRemove(spec.name, STOP_TIMEOUT_SEC)) replaced = true;
      } catch (err) {
        replaced = true;
        throw err;
      }
    });
    replaced = true;
    await timed(steps, "run", () => ctx.runtime.run(spec));
    // State and start time are all a deploy reads back: no image lookup (one call, not two).
    const details = await timed(steps, "inspect", () =>
      ctx.runtime.inspect(spec.name, { imageDefaults: false }),
    );
    const observed = details?.state ?? "removed";
    ctx.registry.withTransaction(() => {
      ctx.registry.setObservedState(def.name, c.name, observed);
      ctx.registry.setVersion(def.name, c.name, version);
    });
    if (observed !== "running" || !details)
      return failed(`container ${spec.name} is ${observed} after start`);
    if (gated) {
      const gate = await timed(steps, "health", () => gateComponent(ctx, def.name, c.name, details));
      steps[steps.length - 1]!.detail = gate.detail;
      if (!gate.healthy) {
        const now = await ctx.runtime.inspect(spec.name, { imageDefaults: false }).catch(() => null);
        ctx.registry.setObservedState(def.name, c.name, now?.state ?? "removed");
        return failed(gate.detail);
      }
    }
    // Routes point at the new container only now: after it runs, and with a check after it is healthy.
    const hookFailure = await runComponentHook(ctx, "onDeployed", def.name, c.name, steps);
    if (hookFailure) return failed(hookFailure, false);
    return { result: { name: c.name, success: true, version, steps, warnings }, rollback: false };
  } catch (err) {
    // Record what is really there so the registry never claims a success that did not happen.
    const details = await ctx.runtime.inspect(spec.name, { imageDefaults: false }).catch(() => null);
    ctx.registry.setObservedState(def.name, c.name, details?.state ?? "removed");
    return failed((err as Error).message.split("\n")[0] ?? "deploy failed");
  }
}

/**
 * Puts back the spec a component ran before this deploy (its registry record then) and deploys
 * it, health-gated when it declares a check. The failed result gets a "rollback" step and says
 * `rolled back to <image>`; the registry ends recording the old image, version and desired state.
 */
async function rollbackComponent(
  ctx: AgentContext,
  def: ServiceDef,
  c: ComponentDef,
  before: ComponentRecord | undefined,
  out: Result,
): Promise<boolean> {
  const steps = (out.steps ?? []) as Step[];
  out.steps = steps;
  if (!before || before.desiredState === "ignore") {
    out.error = `${out.error}; nothing to roll back to (no earlier deploy of ${c.name})`;
    return false;
  }
  const old = recordToDef(before);
  if (componentKey(old) === componentKey(c)) {
    out.error = `${out.error}; nothing to roll back to (the earlier spec of ${c.name} is the same)`;
    return false;
  }
  const t0 = performance.now();
  let restored: ComponentOutcome;
  try {
    ctx.registry.withTransaction(() =>
      writeComponent(ctx, def.name, old, true, portRangeOf(ctx.settings), nodeAddressOf(ctx.settings)),
    );
    restored = await deployComponent(ctx, def, old, "missing");
  } catch (err) {
    restored = {
      result: { name: c.name, success: false, error: (err as Error).message.split("\n")[0] },
      rollback: false,
    };
  }
  const r = restored.result;
  const health = r.steps?.find((x) => x.step === "health")?.detail;
  steps.push({
    step: "rollback",
    durationMs: BigInt(Math.round(performance.now() - t0)),
    detail: r.success
      ? `restored ${old.image}${health ? ` (${health})` : ""}`
      : `restoring ${old.image} failed: ${r.error}`,
  });
  if (!r.success) {
    out.error = `${out.error}; rollback to ${old.image} failed: ${r.error}`;
    return false;
  }
  // What runs now is the old version; the registry says so (writeComponent + deployComponent).
  ctx.registry.setVersion(def.name, c.name, before.version || extractVersion(old.image));
  out.error = `${out.error}; rolled back to ${old.image}`;
  out.rolledBackTo = old.image;
  out.version = before.version || extractVersion(old.image);
  out.warnings = [...(out.warnings ?? []), ...(r.warnings ?? [])];
  return true;
}

/** A component a stopped deploy never reached gets its earlier record back (its container was not touched). */
function restoreRecord(
  ctx: AgentContext,
  service: string,
  name: string,
  before: ComponentRecord | undefined,
): void {
  ctx.registry.withTransaction(() => {
    if (!before) {
      ctx.registry.deleteComponent(service, name);
      return;
    }
    writeComponent(
      ctx,
      service,
      recordToDef(before),
      true,
      portRangeOf(ctx.settings),
      nodeAddressOf(ctx.settings),
    );
    ctx.registry.setDesiredState(service, name, before.desiredState);
    ctx.registry.setVersion(service, name, before.version);
  });
}

/**
 * Runs the prepareDeploy hook (L7 certificates) of every selected component before anything is
 * touched. When one fails, every component gets a failed result and nothing else happens.
 */
async function prepareComponents(
  ctx: AgentContext,
  def: ServiceDef,
  comps: ComponentDef[],
): Promise<{ failed: boolean; steps: Map<string, Step[]>; results: Result[] }> {
  const steps = new Map<string, Step[]>();
  const failures = new Map<string, string>();
  if (!ctx.hooks.prepareDeploy) return { failed: false, steps, results: [] };
  for (const c of comps) {
    let res: HookStepResult[];
    try {
      res = await ctx.hooks.prepareDeploy(def, c);
    } catch (err) {
      res = [{ step: "integrations", success: false, error: (err as Error).message.split("\n")[0] }];
    }
    steps.set(c.name, res.map(stepTiming));
    const bad = firstHookFailure(res);
    if (bad) failures.set(c.name, bad);
  }
  if (failures.size === 0) return { failed: false, steps, results: [] };
  const [firstName, firstError] = [...failures][0]!;
  const results = comps.map((c) => ({
    name: c.name,
    success: false,
    error: failures.get(c.name) ?? `not deployed: component ${firstName} failed (${firstError})`,
    version: extractVersion(c.image),
    steps: steps.get(c.name) ?? [],
  }));
  ctx.logger.warn({ service: def.name, error: firstError }, "deploy refused before any change");
  return { failed: true, steps, results };
}

/** An image pulled per policy ahead of the deploy: how, and what its pull warned. */
interface Ensured {
  how: string;
  warnings: string[];
}

/**
 * Pulls (per policy) and checks the images of components whose runtime checks images (see
 * Runtime.checkImage) and throws FAILED_PRECONDITION with the first refusal: one line naming the
 * component, nothing recorded or created. A failed pull is left to the deploy to report as before.
 */
async function checkImages(
  ctx: AgentContext,
  service: string,
  comps: readonly ComponentDef[],
  policy: PullPolicy,
): Promise<Map<string, Ensured>> {
  const ensured = new Map<string, Ensured>();
  for (const c of comps) {
    const rt = ctx.runtime.runtimeFor(c.runtime);
    if (!rt.checkImage) continue;
    if (!ensured.has(c.image)) {
      const warnings: string[] = [];
      const how = await ensureImage(ctx, c.image, policy, warnings, c.runtime).catch(() => null);
      if (how === null) continue;
      ensured.set(c.image, { how, warnings });
    }
    try {
      await rt.checkImage(runSpec(ctx.settings, service, c, []));
    } catch (err) {
      throw failedPrecondition((err as Error).message.split("\n")[0]!);
    }
  }
  return ensured;
}

/** Host-port failures as one clear RPC error (RESOURCE_EXHAUSTED), not an internal one. */
function portsOrFail<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (err instanceof HostPortError) throw resourceExhausted(err.message);
    throw err;
  }
}

export async function deployService(
  ctx: AgentContext,
  def: ServiceDef,
  opts: DeployOptions,
): Promise<Result[]> {
  const comps = selectComponents(def, opts.component);
  // Every component, deployed now or only recorded, needs a runtime this node has: refused before
  // anything is recorded, allocated, created or written to the history (dry runs too).
  requireRuntimes(ctx, def);
  requireOwnContainers(ctx, def);
  // The containers under those names, as they are: another service's (by its label) is never
  // replaced, nor one MCP does not manage (the deployed components' names only). Looked at under
  // the service's lock (below) for a real deploy: an await before the lock would let a later
  // deploy of the same service overtake an earlier one.
  const containersFree = () =>
    requireContainersFree(ctx, def, { unlabelled: "refuse", deployed: comps.map((c) => c.name) });
  const policy = opts.pullPolicy ?? ctx.settings.pullPolicy;
  if (opts.dryRun) {
    await containersFree();
    // The ports a deploy would use now, chosen like a deploy chooses them but not kept.
    const host = nodeAddressOf(ctx.settings);
    const planned = portsOrFail(() =>
      previewRoutePorts(ctx.registry, def.name, comps, portRangeOf(ctx.settings), host),
    );
    return comps.map((c) => {
      const routes = [...(planned.get(c.name) ?? [])].map(([name, hostPort]) => ({ name, hostPort }));
      return {
        name: c.name,
        success: true,
        version: extractVersion(c.image),
        argv: ctx.runtime.describeRun(runSpec(ctx.settings, def.name, c, routes)),
      };
    });
  }
  return ctx.locks.run(def.name, async () => {
    await containersFree();
    // Every caller, every path that runs containers from a definition (deploy, rollback, boot).
    requireMountsConfined(ctx, def.name, comps);
    // Certificates first: a cert error fails the deploy before the registry or any container changes.
    const prepared = await prepareComponents(ctx, def, comps);
    if (prepared.failed) return prepared.results;
    // Images a runtime checks itself (a unikernel's: x86-64 ELF entrypoint) are pulled and checked
    // before the registry changes: a refused image leaves nothing behind.
    const ensured = await checkImages(ctx, def.name, comps, policy);
    // What ran before this deploy: a component that never becomes healthy goes back to it.
    const before = new Map((ctx.registry.getService(def.name)?.components ?? []).map((r) => [r.name, r]));
    // No free port (or an address that is not this host's): nothing is recorded or started.
    portsOrFail(() => recordSpec(ctx, def, comps));
    const results: Result[] = [];
    let gateFailure: { component: string; error: string; rolledBack: boolean } | null = null;
    for (const c of comps) {
      if (gateFailure) {
        // The deploy stopped at an unhealthy component: this one was never touched.
        restoreRecord(ctx, def.name, c.name, before.get(c.name));
        results.push({
          name: c.name,
          success: false,
          error: `not deployed: component ${gateFailure.component} did not become healthy`,
          version: extractVersion(c.image),
          steps: prepared.steps.get(c.name) ?? [],
        });
        continue;
      }
      const out = await deployComponent(ctx, def, c, policy, prepared.steps.get(c.name) ?? [], ensured);
      results.push(out.result);
      if (!out.rollback) continue;
      const error = out.result.error ?? "";
      let rolledBack = false;
      if (opts.noRollback) out.result.error = `${error}; left for inspection (no rollback)`;
      else rolledBack = await rollbackComponent(ctx, def, c, before.get(c.name), out.result);
      gateFailure = { component: c.name, error, rolledBack };
    }
    finishDeploy(ctx, def, opts, results, gateFailure);
    ctx.logger.info(
      { service: def.name, components: results.map((r) => `${r.name}:${r.success ? "ok" : "failed"}`) },
      "deploy finished",
    );
    return results;
  });
}

/**
 * After the components: the stored service spec says what runs when a gate failed, and the spec
 * history gets its rows (a deploy asked for over RPC only; boot and recover do not write any):
 * a successful deploy (or Rollback) one row; a gate failure the attempt as "failed" and, when
 * something was restored, what runs now as "rollback".
 */
function finishDeploy(
  ctx: AgentContext,
  def: ServiceDef,
  opts: DeployOptions,
  results: Result[],
  gateFailure: { component: string; error: string; rolledBack: boolean } | null,
): void {
  const now = effectiveDef(ctx, def);
  if (gateFailure) ctx.registry.upsertService({ name: def.name, specJson: JSON.stringify(now) });
  if (opts.caller === undefined) return;
  if (!gateFailure) {
    if (results.every((r) => r.success)) {
      writeHistory(ctx, now, opts.caller, opts.historyKind ?? "deploy", opts.historyDetail ?? "");
    }
    return;
  }
  // The attempt as it was asked for: components it did not select keep what they run.
  const attempted: ServiceDef = {
    ...now,
    components: now.components.map((c) =>
      opts.component && c.name !== opts.component ? c : (def.components.find((d) => d.name === c.name) ?? c),
    ),
  };
  const failed = results.find((r) => r.name === gateFailure.component);
  writeHistory(ctx, attempted, opts.caller, "failed", `${gateFailure.component}: ${gateFailure.error}`);
  if (gateFailure.rolledBack) {
    writeHistory(
      ctx,
      now,
      opts.caller,
      "rollback",
      `automatic: ${gateFailure.component} did not become healthy, rolled back to ${failed?.rolledBackTo ?? "?"}`,
    );
  }
}

export type { ComponentResult };

const PULL_POLICIES = new Set(["always", "missing", "never"]);

/** Deploy: the spec is validated with the definition-file schema (component/proto.ts), then deployed. */
export function deployHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async deploy(req, call) {
      if (!req.service) throw invalidArgument("service spec is required");
      if (req.pullPolicy && !PULL_POLICIES.has(req.pullPolicy)) {
        throw invalidArgument(
          `pull_policy: expected "always", "missing" or "never", got "${req.pullPolicy}"`,
        );
      }
      const def = specToDef(req.service, `service ${req.service.name || "(unnamed)"}`);
      checkServiceHome(ctx.settings, def.name);
      // Host-level fields need an admin: refused before anything is recorded or created.
      requireHostAccessFor(ctx, def, call.identity);
      const results = await deployService(ctx, def, {
        component: req.component || undefined,
        pullPolicy: (req.pullPolicy || undefined) as PullPolicy | undefined,
        dryRun: req.dryRun,
        noRollback: req.noRollback,
        caller: call.identity.name,
      });
      if (!req.dryRun) void pruneVmCache(ctx);
      return { results };
    },
  };
}
