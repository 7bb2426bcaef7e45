// Deploy use case (reference flow): record the spec, then per component pull, stop+remove,
// run <service>-<component>, inspect, record observed state and the version from the tag.
// Deploys of one service are serialized by the caller's lock.

import type { MessageInitShape } from "@bufbuild/protobuf";
import type { ComponentDef, ServiceDef } from "../../config/service.ts";
import type { ComponentResult, ComponentResultSchema, StepTimingSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import { invalidArgument, resourceExhausted } from "../../rpc/errors.ts";
import type { PullPolicy } from "../../runtime/runtime.ts";
import { extractVersion } from "../../runtime/version.ts";
import type { AgentContext } from "./context.ts";
import { firstHookFailure, type HookStepResult, runComponentHook, stepTiming } from "./hooks.ts";
import {
  allocateRoutePorts,
  HostPortError,
  nodeAddressOf,
  portRangeOf,
  previewRoutePorts,
  routeKey,
  runSpec,
} from "./host-ports.ts";

type Result = MessageInitShape<typeof ComponentResultSchema>;
type Step = MessageInitShape<typeof StepTimingSchema>;

export interface DeployOptions {
  component?: string;
  pullPolicy?: PullPolicy;
  dryRun?: boolean;
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
    for (const c of def.components) {
      const existing = ctx.registry.getComponent(def.name, c.name);
      let hostPorts: Map<string, number> | null = null;
      if (deployedNames.has(c.name)) {
        ctx.registry.releasePorts(def.name, c.name, c.routes.map(routeKey));
        hostPorts = allocateRoutePorts(ctx.registry, def.name, c, portRange, host);
      }
      // Only deployed components change desired state; the others keep theirs (component-level deploy).
      const desiredState = deployedNames.has(c.name) ? "running" : (existing?.desiredState ?? "stopped");
      ctx.registry.upsertComponent(def.name, {
        name: c.name,
        image: deployedNames.has(c.name) ? c.image : (existing?.image ?? c.image),
        network: c.network,
        user: c.user,
        restart: c.restart,
        desiredState,
        version: existing?.version ?? "",
        ports: c.ports,
        volumes: c.volumes,
        cmd: c.cmd,
        env: c.env,
        routes: c.routes.map((r) => ({
          name: routeKey(r),
          port: r.port,
          mode: r.mode,
          hostname: r.hostname ?? "",
          public: r.public,
          hostPort:
            hostPorts?.get(routeKey(r)) ??
            existing?.routes.find((x) => x.name === routeKey(r))?.hostPort ??
            0,
        })),
        runtime: c.runtime,
        memory: c.memory ?? "",
        vcpus: c.vcpus ?? 0,
        ...(c.health ? { health: c.health } : {}),
      });
    }
  });
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
): Promise<string> {
  const rt = ctx.runtime;
  if (policy === "never") {
    if (!(await rt.imageExists(image)))
      throw new Error(`image ${image} is not in the local store (pull policy "never")`);
    return "local";
  }
  if (policy === "missing" && (await rt.imageExists(image))) return "cached";
  try {
    await rt.pull(image);
    return "pulled";
  } catch (err) {
    if (await rt.imageExists(image)) {
      const msg = `pull of ${image} failed (${(err as Error).message.split("\n")[0]}); using the local copy`;
      warnings.push(msg);
      ctx.logger.warn({ image }, msg);
      return "local (pull failed)";
    }
    throw err;
  }
}

async function deployComponent(
  ctx: AgentContext,
  def: ServiceDef,
  c: ComponentDef,
  policy: PullPolicy,
  prepared: Step[] = [],
): Promise<Result> {
  const steps: Step[] = [...prepared];
  const warnings: string[] = [];
  // The recorded routes carry the host ports recordSpec allocated for this deploy.
  const routes = ctx.registry.getComponent(def.name, c.name)?.routes ?? [];
  const spec = runSpec(ctx.settings, def.name, c, routes);
  const version = extractVersion(c.image);
  try {
    const how = await timed(steps, "pull", () => ensureImage(ctx, c.image, policy, warnings));
    steps[steps.length - 1]!.detail = how;
    await timed(steps, "stop", async () => {
      const existing = await ctx.runtime.inspect(spec.name);
      if (existing) {
        if (existing.state === "running") await ctx.runtime.stop(spec.name);
        await ctx.runtime.remove(spec.name, true);
      }
    });
    await timed(steps, "run", () => ctx.runtime.run(spec));
    const details = await timed(steps, "inspect", () => ctx.runtime.inspect(spec.name));
    const observed = details?.state ?? "removed";
    ctx.registry.withTransaction(() => {
      ctx.registry.setObservedState(def.name, c.name, observed);
      ctx.registry.setVersion(def.name, c.name, version);
    });
    if (observed !== "running") {
      return {
        name: c.name,
        success: false,
        error: `container ${spec.name} is ${observed} after start`,
        version,
        steps,
        warnings,
      };
    }
    const hookFailure = await runComponentHook(ctx, "onDeployed", def.name, c.name, steps);
    if (hookFailure) return { name: c.name, success: false, error: hookFailure, version, steps, warnings };
    return { name: c.name, success: true, version, steps, warnings };
  } catch (err) {
    // Record what is really there so the registry never claims a success that did not happen.
    const details = await ctx.runtime.inspect(spec.name).catch(() => null);
    ctx.registry.setObservedState(def.name, c.name, details?.state ?? "removed");
    return {
      name: c.name,
      success: false,
      error: (err as Error).message.split("\n")[0],
      version,
      steps,
      warnings,
    };
  }
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
  const policy = opts.pullPolicy ?? ctx.settings.pullPolicy;
  if (opts.dryRun) {
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
    // Certificates first: a cert error fails the deploy before the registry or any container changes.
    const prepared = await prepareComponents(ctx, def, comps);
    if (prepared.failed) return prepared.results;
    // No free port (or an address that is not this host's): nothing is recorded or started.
    portsOrFail(() => recordSpec(ctx, def, comps));
    const results: Result[] = [];
    for (const c of comps)
      results.push(await deployComponent(ctx, def, c, policy, prepared.steps.get(c.name) ?? []));
    ctx.logger.info(
      { service: def.name, components: results.map((r) => `${r.name}:${r.success ? "ok" : "failed"}`) },
      "deploy finished",
    );
    return results;
  });
}

export type { ComponentResult };
