// Deploy use case (reference flow): pull, record the spec, then per component stop+remove, run
// <service>-<component>, inspect, record observed state and the version from the tag.
// Deploys of one service are serialized by the caller's lock.
//
// Before anything is recorded, stopped or created, every selected component's image is pulled
// (per policy) and its plan made (deploy-plan.ts): a missing tag fails the deploy with the
// registry and the containers as they were (a new service: nothing recorded at all). A component
// whose container runs the same spec from the same image is left alone ("unchanged": no
// container recreated) unless forced (no plan: everything recreated); one whose tag now names
// another image is recreated and says so.
//
// A component that declares [components.health] is gated: it counts as deployed (routes are
// registered, the next component proceeds) only once healthy. A component that fails once its
// old container was replaced (the run fails, the container is not running, it never becomes
// healthy) stops the deploy: it is rolled back to what its registry record said ran before
// (unless no_rollback), the components after it are left as they were, and the history records
// the attempt and the rollback. A component that had no earlier deploy and never ran is removed
// again; a new service none of whose containers ran is torn down like `mcp undeploy` (no
// registry rows, no history: the operator saw the failure, and `mcp list`/`ps`/`status` do not
// know a service that never ran).

import type { MessageInitShape } from "@bufbuild/protobuf";
import { containerName } from "../../component/container.ts";
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
import type { ComponentRecord, HistoryKind, ServiceRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, resourceExhausted } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { PullPolicy } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { gateComponent } from "./deploy-health.ts";
import { type Plan, planComponent } from "./deploy-plan.ts";
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
import { teardown } from "./undeploy.ts";
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
  /** Recreate components whose spec and image are unchanged too (else they are left alone). */
  force?: boolean;
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
   * The component failed after its old container was stopped (or with none there): it never ran,
   * exited or never became healthy. Such a failure stops the deploy, and rolling back to the
   * earlier spec is the way to get the service back.
   */
  rollback: boolean;
  /** A new container was created and started (run returned), whatever happened to it after. */
  started: boolean;
  /** The failure was the health gate's ("did not become healthy"), not the run's. */
  unhealthy: boolean;
}

/** An image pulled per policy ahead of the deploy: how, and what its pull warned. */
interface Ensured {
  how: string;
  warnings: string[];
}

/** Images are per runtime kind (a container image and a unikernel image are different stores). */
const imageKey = (c: ComponentDef) => `${c.runtime}\0${c.image}`;

async function deployComponent(
  ctx: AgentContext,
  def: ServiceDef,
  c: ComponentDef,
  policy: PullPolicy,
  /** Steps done before (pull, cert): they lead this component's steps. */
  prepared: Step[] = [],
  /** The image as the deploy pulled it ahead (no second pull); absent: pulled here per policy. */
  pulled?: Ensured,
): Promise<ComponentOutcome> {
  const steps: Step[] = [...prepared];
  const warnings: string[] = [...(pulled?.warnings ?? [])];
  // The recorded routes carry the host ports recordSpec allocated for this deploy.
  const routes = ctx.registry.getComponent(def.name, c.name)?.routes ?? [];
  const spec = runSpec(ctx.settings, def.name, c, routes);
  const version = extractVersion(c.image);
  const gated = c.health !== undefined;
  let replaced = false;
  let started = false;
  const failed = (error: string, rollback = replaced, unhealthy = false): ComponentOutcome => ({
    result: { name: c.name, success: false, error, version, steps, warnings },
    rollback,
    started,
    unhealthy,
  });
  try {
    if (!pulled) {
      const how = await timed(steps, "pull", () => ensureImage(ctx, c.image, policy, warnings, c.runtime));
      steps[steps.length - 1]!.detail = how;
    }
    // The reference's `stop` + `rm` as one runtime call (podman `rm -f -t 10`: SIGTERM, the same
    // 10 s grace as `podman stop`, then SIGKILL), with no inspect before it: a missing container
    // is not an error. From here on a failure rolls back: what ran before is gone or may be.
    replaced = true;
    await timed(steps, "stop", () => ctx.runtime.stopAndRemove(spec.name, STOP_TIMEOUT_SEC));
    await timed(steps, "run", () => ctx.runtime.run(spec));
    started = true;
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
        return failed(gate.detail, true, true);
      }
    }
    // Routes point at the new container only now: after it runs, and with a check after it is healthy.
    const hookFailure = await runComponentHook(ctx, "onDeployed", def.name, c.name, steps);
    if (hookFailure) return failed(hookFailure, false);
    return {
      result: { name: c.name, success: true, version, steps, warnings },
      rollback: false,
      started,
      unhealthy: false,
    };
  } catch (err) {
    // Record what is really there so the registry never claims a success that did not happen.
    const details = await ctx.runtime.inspect(spec.name, { imageDefaults: false }).catch(() => null);
    ctx.registry.setObservedState(def.name, c.name, details?.state ?? "removed");
    return failed((err as Error).message.split("\n")[0] ?? "deploy failed");
  }
}

/**
 * An unchanged component: its container is left as it is. The registry says it runs (observed
 * running, the version of its tag) and its routes and DNS record are asserted again (the hooks
 * upsert; a route a failed deploy never registered is registered now).
 */
async function keepComponent(
  ctx: AgentContext,
  def: ServiceDef,
  c: ComponentDef,
  plan: Plan,
  prepared: Step[],
  pulled: Ensured | undefined,
): Promise<Result> {
  const steps = [...prepared];
  const version = extractVersion(c.image);
  ctx.registry.withTransaction(() => {
    ctx.registry.setObservedState(def.name, c.name, "running");
    ctx.registry.setVersion(def.name, c.name, version);
  });
  const hookFailure = await runComponentHook(ctx, "onDeployed", def.name, c.name, steps);
  return {
    name: c.name,
    success: hookFailure === null,
    error: hookFailure ?? "",
    version,
    steps,
    warnings: [...(pulled?.warnings ?? [])],
    unchanged: true,
    reason: plan.reason,
  };
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
      started: false,
      unhealthy: false,
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

/**
 * A component this deploy added that failed before its container ran: what the failed run left
 * under its name (a created, never started container) goes, and so does its record.
 */
async function dropNewComponent(ctx: AgentContext, service: string, c: ComponentDef, out: Result) {
  try {
    await ctx.runtime.stopAndRemove(containerName(service, c.name), 0);
    restoreRecord(ctx, service, c.name, undefined);
  } catch (err) {
    out.error = `${out.error}; removing what the attempt left failed: ${(err as Error).message.split("\n")[0]}`;
  }
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
 * Runs the prepareDeploy hook (L7 certificates) of every component to deploy (`comps`) before
 * anything is touched. When one fails, nothing else happens: every component of the deploy
 * (`all`) gets a failed result, its earlier steps (`leading`) first.
 */
async function prepareComponents(
  ctx: AgentContext,
  def: ServiceDef,
  comps: readonly ComponentDef[],
  all: readonly ComponentDef[],
  leading: ReadonlyMap<string, Step[]>,
): Promise<{ failed: boolean; steps: Map<string, Step[]>; results: Result[] }> {
  const steps = new Map<string, Step[]>(all.map((c) => [c.name, [...(leading.get(c.name) ?? [])]]));
  const failures = new Map<string, string>();
  if (!ctx.hooks.prepareDeploy) return { failed: false, steps, results: [] };
  for (const c of comps) {
    let res: HookStepResult[];
    try {
      res = await ctx.hooks.prepareDeploy(def, c);
    } catch (err) {
      res = [{ step: "integrations", success: false, error: (err as Error).message.split("\n")[0] }];
    }
    steps.get(c.name)!.push(...res.map(stepTiming));
    const bad = firstHookFailure(res);
    if (bad) failures.set(c.name, bad);
  }
  if (failures.size === 0) return { failed: false, steps, results: [] };
  const [firstName, firstError] = [...failures][0]!;
  const results = all.map((c) => ({
    name: c.name,
    success: false,
    error: failures.get(c.name) ?? `not deployed: component ${firstName} failed (${firstError})`,
    version: extractVersion(c.image),
    steps: steps.get(c.name) ?? [],
  }));
  ctx.logger.warn({ service: def.name, error: firstError }, "deploy refused before any change");
  return { failed: true, steps, results };
}

/**
 * Pulls (per policy) the image of every component to deploy, each image once, before anything is
 * recorded or touched, and checks the images of runtimes that check them (Runtime.checkImage).
 * A failed pull fails the deploy with nothing changed: the results (pull step and error for the
 * component, "not deployed" for the others). A refused image is FAILED_PRECONDITION, one line
 * naming the component.
 */
async function pullImages(
  ctx: AgentContext,
  def: ServiceDef,
  comps: readonly ComponentDef[],
  policy: PullPolicy,
): Promise<{ images: Map<string, Ensured>; steps: Map<string, Step[]>; failed: Result[] | null }> {
  const images = new Map<string, Ensured>();
  const steps = new Map<string, Step[]>();
  for (const c of comps) {
    const key = imageKey(c);
    const done = images.get(key);
    const warnings: string[] = [];
    const t0 = performance.now();
    try {
      // One pull serves every component of that image: said once with its time.
      const how = done ? done.how : await ensureImage(ctx, c.image, policy, warnings, c.runtime);
      if (!done) images.set(key, { how, warnings });
      steps.set(c.name, [
        { step: "pull", durationMs: BigInt(Math.round(performance.now() - t0)), detail: how },
      ]);
    } catch (err) {
      const error = (err as Error).message.split("\n")[0] || "pull failed";
      const pull = { step: "pull", durationMs: BigInt(Math.round(performance.now() - t0)), detail: "" };
      ctx.logger.warn(
        { service: def.name, component: c.name, image: c.image, error },
        "deploy refused: pull failed",
      );
      return {
        images,
        steps,
        failed: comps.map((x) => ({
          name: x.name,
          success: false,
          error: x === c ? error : `not deployed: the image of component ${c.name} could not be pulled`,
          version: extractVersion(x.image),
          steps: x === c ? [pull] : (steps.get(x.name) ?? []),
          warnings: x === c ? warnings : [],
        })),
      };
    }
    const rt = ctx.runtime.runtimeFor(c.runtime);
    if (!rt.checkImage) continue;
    try {
      await rt.checkImage(runSpec(ctx.settings, def.name, c, []));
    } catch (err) {
      throw failedPrecondition((err as Error).message.split("\n")[0]!);
    }
  }
  return { images, steps, failed: null };
}

/**
 * The plan of each component (deploy-plan.ts): new components need no look; the others one
 * inspect of their container and, when it runs the same spec, one look at the local image's id.
 */
async function planComponents(
  ctx: AgentContext,
  def: ServiceDef,
  comps: readonly ComponentDef[],
  before: ReadonlyMap<string, ComponentRecord>,
): Promise<Map<string, Plan>> {
  const plans = new Map<string, Plan>();
  const ids = new Map<string, Promise<string | null | undefined>>();
  for (const c of comps) {
    const rec = before.get(c.name);
    if (!rec || rec.desiredState === "ignore") {
      plans.set(c.name, { unchanged: false, reason: "" });
      continue;
    }
    const wantKey = runSpec(ctx.settings, def.name, c, rec.routes).specKey ?? "";
    const d = await ctx.runtime
      .inspect(containerName(def.name, c.name), { imageDefaults: false })
      .catch(() => null);
    let imageId: string | null | undefined;
    if (d?.state === "running" && d.spec.specKey === wantKey) {
      const key = imageKey(c);
      if (!ids.has(key))
        ids.set(
          key,
          ctx.runtime.imageId(c.image, c.runtime).catch(() => undefined),
        );
      imageId = await ids.get(key);
    }
    plans.set(
      c.name,
      planComponent({
        running: d ? { state: d.state, specKey: d.spec.specKey, imageId: d.imageId } : null,
        wantKey,
        imageId,
      }),
    );
  }
  return plans;
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

/** Where a deploy stopped: the component that failed, why, and whether it was restored. */
interface Stop {
  component: string;
  error: string;
  /** "did not become healthy" or "failed". */
  why: string;
  rolledBack: boolean;
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
    // What ran before this deploy: a component that fails goes back to it.
    const existing = ctx.registry.getService(def.name);
    const before = new Map((existing?.components ?? []).map((r) => [r.name, r]));
    // Images first: a tag the registry does not have fails the deploy before anything changes.
    const pulled = await pullImages(ctx, def, comps, policy);
    if (pulled.failed) return pulled.failed;
    // --force: no plan, no look: every component is recreated.
    const plans = opts.force ? new Map<string, Plan>() : await planComponents(ctx, def, comps, before);
    const todo = comps.filter((c) => !plans.get(c.name)?.unchanged);
    // Certificates next: a cert error fails the deploy before the registry or any container changes.
    const prepared = await prepareComponents(ctx, def, todo, comps, pulled.steps);
    if (prepared.failed) return prepared.results;
    // No free port (or an address that is not this host's): nothing is recorded or started.
    portsOrFail(() => recordSpec(ctx, def, comps));
    const results: Result[] = [];
    let stop: Stop | null = null;
    let anyStarted = false;
    // A component this deploy added that failed before it ran: removed once the loop is done.
    let dropNew: { c: ComponentDef; result: Result } | null = null;
    for (const c of comps) {
      const plan = plans.get(c.name) ?? { unchanged: false, reason: "" };
      const image = pulled.images.get(imageKey(c));
      if (stop) {
        // The deploy stopped at a failed component: this one was never touched.
        restoreRecord(ctx, def.name, c.name, before.get(c.name));
        results.push({
          name: c.name,
          success: false,
          error: `not deployed: component ${stop.component} ${stop.why}`,
          version: extractVersion(c.image),
          steps: prepared.steps.get(c.name) ?? [],
        });
        continue;
      }
      if (plan.unchanged) {
        results.push(await keepComponent(ctx, def, c, plan, prepared.steps.get(c.name) ?? [], image));
        continue;
      }
      const out = await deployComponent(ctx, def, c, policy, prepared.steps.get(c.name) ?? [], image);
      if (plan.reason) out.result.reason = plan.reason;
      results.push(out.result);
      anyStarted ||= out.started;
      if (!out.rollback) continue;
      const error = out.result.error ?? "";
      const earlier = before.get(c.name);
      let rolledBack = false;
      if (opts.noRollback) out.result.error = `${error}; left for inspection (no rollback)`;
      else if (earlier && earlier.desiredState !== "ignore")
        rolledBack = await rollbackComponent(ctx, def, c, earlier, out.result);
      else if (!out.started) dropNew = { c, result: out.result };
      else out.result.error = `${error}; nothing to roll back to (no earlier deploy of ${c.name})`;
      stop = {
        component: c.name,
        error,
        why: out.unhealthy ? "did not become healthy" : "failed",
        rolledBack,
      };
    }
    // A new service none of whose containers ever ran: nothing of it stays (undeploy's teardown).
    if (!existing && stop && !anyStarted && !opts.noRollback) {
      await forgetService(ctx, def.name, results);
      return results;
    }
    if (dropNew) await dropNewComponent(ctx, def.name, dropNew.c, dropNew.result);
    finishDeploy(ctx, def, opts, results, stop, existing?.specJson ?? null);
    ctx.logger.info(
      {
        service: def.name,
        components: results.map(
          (r) => `${r.name}:${r.unchanged ? "unchanged" : r.success ? "ok" : "failed"}`,
        ),
      },
      "deploy finished",
    );
    return results;
  });
}

/**
 * Removes what a failed first deploy recorded and created (containers never started, the registry
 * entry and its ports), as `mcp undeploy` would, but not routes/DNS/certs by hostname (see below). When that
 * fails the entry stays (desired stopped) and the first failed result says how to finish.
 */
async function forgetService(ctx: AgentContext, service: string, results: Result[]): Promise<void> {
  const svc: ServiceRecord | null = ctx.registry.getService(service);
  if (!svc) return;
  let left = "";
  try {
    // Containers and the registry entry (its ports) only: it never ran, so it registered no
    // route or DNS record, and undeploy's hooks would remove another service's by hostname.
    const bad = (await teardown(ctx, svc, { integrations: false })).filter((r) => !r.success);
    if (bad.length > 0) left = bad.map((r) => `${r.name || "integrations"}: ${r.error}`).join("; ");
  } catch (err) {
    left = (err as Error).message.split("\n")[0] ?? "teardown failed";
  }
  const first = results.find((r) => !r.success);
  if (left && first)
    first.error = `${first.error}; removing what the attempt left failed (${left}): run mcp undeploy ${service}`;
  ctx.logger.warn(
    { service, cleaned: left === "" },
    left === ""
      ? "first deploy failed before anything ran: nothing kept"
      : "first deploy failed; cleanup incomplete",
  );
}

/**
 * After the components: the stored service spec says what runs when the deploy stopped, and the
 * spec history gets its rows (a deploy asked for over RPC only; boot and recover do not write
 * any): a successful deploy (or Rollback) one row, unless nothing changed at all; a stopped one
 * the attempt as "failed" and, when something was restored, what runs now as "rollback".
 */
function finishDeploy(
  ctx: AgentContext,
  def: ServiceDef,
  opts: DeployOptions,
  results: Result[],
  stop: Stop | null,
  specBefore: string | null,
): void {
  const now = effectiveDef(ctx, def);
  if (stop) ctx.registry.upsertService({ name: def.name, specJson: JSON.stringify(now) });
  if (opts.caller === undefined) return;
  if (!stop) {
    if (!results.every((r) => r.success)) return;
    // Every component unchanged and the same definition: a no-op is not a new entry.
    if (results.every((r) => r.unchanged) && specBefore === JSON.stringify(def)) return;
    writeHistory(ctx, now, opts.caller, opts.historyKind ?? "deploy", opts.historyDetail ?? "");
    return;
  }
  // The attempt as it was asked for: components it did not select keep what they run.
  const attempted: ServiceDef = {
    ...now,
    components: now.components.map((c) =>
      opts.component && c.name !== opts.component ? c : (def.components.find((d) => d.name === c.name) ?? c),
    ),
  };
  const failed = results.find((r) => r.name === stop.component);
  writeHistory(ctx, attempted, opts.caller, "failed", `${stop.component}: ${stop.error}`);
  if (stop.rolledBack) {
    writeHistory(
      ctx,
      now,
      opts.caller,
      "rollback",
      `automatic: ${stop.component} ${stop.why}, rolled back to ${failed?.rolledBackTo ?? "?"}`,
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
        force: req.force,
      });
      if (req.dryRun) return { results };
      void pruneVmCache(ctx);
      const failed = results.some((r) => !r.success);
      return { results, nothingKept: failed && ctx.registry.getService(def.name) === null };
    },
  };
}
