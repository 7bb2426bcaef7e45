// Registry reconciliation against the runtime (reference "Registry Reconciliation"): one
// runtime listing; registered components get their observed state (missing → removed, with an
// event per transition) and, when their container runs the recorded image's tag, that version;
// containers MCP does not know are recorded with desired state `ignore`.
import { containerName } from "../../component/container.ts";
import { toComponentInput } from "../../component/registry.ts";
import { extractVersion } from "../../config/image.ts";
import { DEFAULT_RUNTIME_KIND, normalizeRuntimeKind } from "../../config/runtime-kind.ts";
import type { ComponentDef } from "../../config/service.ts";
import type { ComponentRecord, ServiceRecord } from "../../registry/types.ts";
import type { ContainerInfo } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";

export interface ReconcileResult {
  services: ServiceRecord[];
  containers: Map<string, ContainerInfo>;
  transitions: { service: string; component: string; prev: string; next: string }[];
  discovered: string[];
}

export async function reconcile(
  ctx: AgentContext,
  opts: {
    discoverUnknown?: boolean;
    /** Services to leave as they are this time (an operation holds them mid-change). */
    skipService?: (service: string) => boolean;
  } = {},
): Promise<ReconcileResult> {
  const list = await ctx.runtime.list();
  const containers = new Map(list.map((c) => [c.name, c]));
  // A component is observed only through a container of its own runtime kind: VM names are not
  // reserved in podman, so a container named <svc>-<vm> is someone else's, never the VM.
  const ofKind = new Map(list.map((c) => [kindKey(c.runtime ?? DEFAULT_RUNTIME_KIND, c.name), c]));
  const transitions: ReconcileResult["transitions"] = [];
  const discovered: string[] = [];
  let versions = 0;
  let listed: ServiceRecord[] = [];
  ctx.registry.withTransaction(() => {
    const known = new Set<string>();
    listed = ctx.registry.listServices();
    for (const s of listed) {
      const skip = opts.skipService?.(s.name) === true;
      for (const c of s.components) {
        const name = containerName(s.name, c.name);
        known.add(name);
        if (skip) continue;
        const info = ofKind.get(kindKey(c.runtime, name));
        const observed = info?.state ?? "removed";
        // Read in this transaction: an equal state needs no write (the common tick: 3 statements
        // a component saved).
        if (c.observedState !== observed) {
          const r = ctx.registry.setObservedState(s.name, c.name, observed);
          if (r.changed)
            transitions.push({ service: s.name, component: c.name, prev: r.prev, next: observed });
        }
        // An agent killed between `podman run` and the deploy's last registry write leaves the
        // earlier version recorded while the container already runs the recorded image's tag.
        const tag = info ? extractVersion(info.image) : "";
        if (tag !== "" && tag !== c.version && tag === extractVersion(c.image)) {
          ctx.registry.setVersion(s.name, c.name, tag);
          versions++;
        }
      }
    }
    if (opts.discoverUnknown !== false) {
      for (const c of list) {
        if (known.has(c.name)) continue;
        recordDiscovered(ctx, c);
        discovered.push(c.name);
      }
    }
  });
  // Nothing written: the listing taken inside the transaction is still the registry's state, so
  // the common case (a `ps` where nothing changed) reads the registry once, not twice.
  const wrote = transitions.length > 0 || discovered.length > 0 || versions > 0;
  const services = wrote ? ctx.registry.listServices() : listed;
  return { services, containers, transitions, discovered };
}

/**
 * Records a container MCP does not know: tracked as service = component = container name,
 * desired `ignore` (never alerted on, never changed; `mcp adopt` takes it over). Call inside a
 * registry transaction.
 */
function recordDiscovered(ctx: Pick<AgentContext, "registry">, c: ContainerInfo): void {
  ctx.registry.upsertService({ name: c.name, active: false });
  ctx.registry.upsertComponent(
    c.name,
    toComponentInput(discoveredComponent(c), {
      desiredState: "ignore",
      observedState: c.state,
      version: extractVersion(c.image),
    }),
  );
}

/**
 * What an unknown container is recorded as: its name and image only. It is not managed (desired
 * `ignore`), so nothing else is read from it; adopt reads the whole spec when it takes it over.
 */
function discoveredComponent(c: ContainerInfo): ComponentDef {
  return {
    name: c.name,
    image: c.image,
    network: "",
    user: "",
    restart: "",
    ports: [],
    volumes: [],
    cmd: [],
    env: [],
    // The kind of the runtime that listed it (absent: the container runtime), never the engine.
    runtime: c.runtime === "unikernel" ? "unikernel" : "container",
    routes: [],
  };
}

function kindKey(kind: string, name: string): string {
  return `${normalizeRuntimeKind(kind)}\0${name}`;
}

export function startedOf(res: ReconcileResult, service: string): (c: ComponentRecord) => Date | null {
  return (c) => {
    const info = res.containers.get(containerName(service, c.name));
    const own =
      info !== undefined && kindKey(info.runtime ?? DEFAULT_RUNTIME_KIND, "") === kindKey(c.runtime, "");
    return own && info.state === "running" ? info.startedAt : null;
  };
}
