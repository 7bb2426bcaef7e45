// Adopt use case (reference "Adopting Unmanaged Containers"): claim the containers named
// `<svc>` and `<svc>-*` into service <svc>. Component names come from the prefix (`svc-api` →
// `api`, `svc` → `svc`), desired state from the current state (running → running, else
// stopped), and the component spec is read back from the runtime (component/container.ts:
// image, ports, volumes, env, cmd, network, user, restart, memory, cpus) so that `mcp service export` writes a definition that recreates
// the same containers. The `ignore` entries reconcile made for these containers are removed.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { componentFromContainer, containerName } from "../../component/container.ts";
import { toComponentInput } from "../../component/registry.ts";
import { extractVersion } from "../../config/image.ts";
import { type ComponentDef, NAME_RE, parseServiceDef, type ServiceDef } from "../../config/service.ts";
import type { AdoptResultSchema, McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { Registry } from "../../registry/index.ts";
import type { ServiceRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { ContainerDetails, ContainerInfo } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { describeClaim, type ForeignClaim, foreignClaim } from "./ownership.ts";
import { checkServiceHome } from "./service-home.ts";

type Result = MessageInitShape<typeof AdoptResultSchema>;

/** `svc` → `svc`, `svc-api` → `api`; null when the container is not one of the service's. */
export function componentNameFor(service: string, container: string): string | null {
  if (container === service) return service;
  if (container.startsWith(`${service}-`) && container.length > service.length + 1)
    return container.slice(service.length + 1);
  return null;
}

/** Containers of `service`, minus those that are components of another managed service. */
export function candidates(
  service: string,
  containers: ContainerInfo[],
  services: ServiceRecord[],
): { container: string; component: string }[] {
  const owned = new Map<string, string>();
  for (const s of services) {
    for (const c of s.components) {
      if (c.desiredState !== "ignore") owned.set(containerName(s.name, c.name), s.name);
    }
  }
  const out: { container: string; component: string }[] = [];
  for (const c of containers) {
    const component = componentNameFor(service, c.name);
    if (component === null) continue;
    const owner = owned.get(c.name);
    if (owner !== undefined && owner !== service) continue; // e.g. svc-web-api belongs to svc-web
    out.push({ container: c.name, component });
  }
  return out.sort((a, b) => a.container.localeCompare(b.container));
}

/**
 * Containers named like components of `service` that another service owns: by their owner label
 * (MCP created them for it, whatever the registry says) or, without one, by a managed registry
 * entry. Adopt refuses them, naming the owner, instead of taking another service's container.
 */
export function claimedElsewhere(
  service: string,
  containers: ContainerInfo[],
  registry: Pick<Registry, "ownersOfContainer" | "getComponent">,
): { container: string; component: string; claim: ForeignClaim }[] {
  const out: { container: string; component: string; claim: ForeignClaim }[] = [];
  for (const c of containers) {
    const component = componentNameFor(service, c.name);
    if (component === null) continue;
    const claim = foreignClaim(registry, service, c.name, c.owner);
    if (claim) out.push({ container: c.name, component, claim });
  }
  return out.sort((a, b) => a.container.localeCompare(b.container));
}

/** Validates one adopted component with the definition schema; throws a one-line ConfigError. */
function validated(service: string, c: ComponentDef): ComponentDef {
  const { def } = parseServiceDef(
    { name: service, components: [{ ...c, routes: [] }] },
    `container ${containerName(service, c.name)}`,
  );
  return def.components[0]!;
}

export function adoptContainers(ctx: AgentContext, service: string): Promise<Result[]> {
  if (!NAME_RE.test(service))
    throw invalidArgument(`service name: expected [a-z0-9][a-z0-9-]*, got ${JSON.stringify(service)}`);
  return ctx.locks.run(service, async () => {
    const list = await ctx.runtime.list();
    const claimed = claimedElsewhere(service, list, ctx.registry);
    const refused = new Set(claimed.map((c) => c.container));
    const found = candidates(service, list, ctx.registry.listServices()).filter(
      (f) => !refused.has(f.container),
    );
    const refusal = (c: (typeof claimed)[number]) =>
      `container ${c.container} belongs to ${describeClaim(c.claim)}; not adopted into ${service}`;
    if (found.length === 0 && claimed.length > 0) throw failedPrecondition(refusal(claimed[0]!));
    if (found.length === 0) {
      throw notFound(
        `no containers named "${service}" or "${service}-*" on node ${ctx.settings.nodeName} (see mcp ps)`,
      );
    }
    const results: Result[] = claimed.map((c) => ({
      container: c.container,
      component: c.component,
      success: false,
      error: refusal(c),
    }));
    const adopted: { def: ComponentDef; details: ContainerDetails; container: string }[] = [];
    for (const f of found) {
      try {
        if (!NAME_RE.test(f.component))
          throw new Error(`component name ${JSON.stringify(f.component)} is not [a-z0-9][a-z0-9-]*`);
        const details = await ctx.runtime.inspect(f.container);
        if (!details) throw new Error("container disappeared");
        adopted.push({
          def: validated(service, componentFromContainer(f.component, details.spec)),
          details,
          container: f.container,
        });
        results.push({ container: f.container, component: f.component, success: true });
      } catch (err) {
        results.push({
          container: f.container,
          component: f.component,
          success: false,
          error: (err as Error).message.split("\n")[0],
        });
      }
    }
    if (adopted.length > 0) record(ctx, service, adopted);
    ctx.logger.info(
      { service, components: results.map((r) => `${r.container}:${r.success ? "ok" : "failed"}`) },
      "adopt finished",
    );
    return results;
  });
}

/** One transaction: drop the ignore entries, merge the components into the service and its spec. */
function record(
  ctx: AgentContext,
  service: string,
  adopted: { def: ComponentDef; details: ContainerDetails; container: string }[],
): void {
  const reg = ctx.registry;
  reg.withTransaction(() => {
    for (const a of adopted) {
      // reconcile() tracks an unknown container as service = component = container name.
      const stray = a.container === service ? null : reg.getService(a.container);
      if (stray?.components.every((c) => c.desiredState === "ignore" && c.name === a.container))
        reg.deleteService(a.container);
    }
    const existing = reg.getService(service);
    let prior: ServiceDef | null = null;
    try {
      prior = existing?.specJson ? (JSON.parse(existing.specJson) as ServiceDef) : null;
    } catch {
      prior = null;
    }
    const names = new Set(adopted.map((a) => a.def.name));
    // Keep components the service already had (managed ones from an earlier deploy); replace adopted ones.
    const kept = (prior?.components ?? []).filter((c) => !names.has(c.name));
    const components = [...kept, ...adopted.map((a) => a.def)];
    const desired = new Map<string, "running" | "stopped">();
    for (const a of adopted) desired.set(a.def.name, a.details.state === "running" ? "running" : "stopped");
    for (const c of existing?.components ?? []) {
      if (!names.has(c.name) && c.desiredState !== "ignore") desired.set(c.name, c.desiredState);
    }
    const active = [...desired.values()].some((d) => d === "running");
    const def: ServiceDef = {
      name: service,
      ...(prior?.node !== undefined ? { node: prior.node } : {}),
      tier: prior?.tier ?? "worker",
      active,
      ...(prior?.build ? { build: prior.build } : {}),
      ...(prior?.snapshot ? { snapshot: prior.snapshot } : {}),
      components,
    };
    reg.upsertService({
      name: service,
      active,
      tier: def.tier,
      node: def.node ?? "",
      specJson: JSON.stringify(def),
    });
    // The <svc> container's own ignore row is this service's component row: adopt overwrites it.
    for (const a of adopted) {
      reg.upsertComponent(
        service,
        toComponentInput(a.def, {
          desiredState: desired.get(a.def.name) ?? "stopped",
          observedState: a.details.state,
          version: extractVersion(a.def.image),
        }),
      );
    }
  });
}

/** AdoptContainer. */
export function adoptHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async adoptContainer(req) {
      if (!req.service) throw invalidArgument("service name is required");
      checkServiceHome(ctx.settings, req.service);
      return { results: await adoptContainers(ctx, req.service) };
    },
  };
}
