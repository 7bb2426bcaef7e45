// Component (and service) definition ↔ wire: the one mapping between the domain type
// (ComponentDef/ServiceDef of config/service.ts, what a definition file parses into) and the
// generated ServiceSpec/ComponentSpec. Incoming specs are validated with the same schema as
// definition files, so the agent never trusts a client's parsing. Nothing here knows the
// registry: status rows (ComponentInfo) are the agent's own mapping.
import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type ComponentDef,
  formatDuration,
  type HealthDef,
  parseServiceDef,
  type ServiceDef,
} from "../config/service.ts";
import {
  type ComponentSpec,
  ComponentSpecSchema,
  type HealthSpec,
  type HealthSpecSchema,
  type ServiceSpec,
  ServiceSpecSchema,
} from "../gen/mcp/v1/mcp_pb.ts";

export function defToSpec(def: ServiceDef): ServiceSpec {
  return create(ServiceSpecSchema, {
    name: def.name,
    active: def.active,
    tier: def.tier,
    node: def.node ?? "",
    snapshot: def.snapshot
      ? { method: def.snapshot.method ?? "", excludes: def.snapshot.exclude }
      : undefined,
    components: def.components.map(componentToSpec),
  });
}

/** One component on the wire; unset optional fields become the proto's zero values. */
export function componentToSpec(c: ComponentDef): MessageInitShape<typeof ComponentSpecSchema> {
  return {
    name: c.name,
    image: c.image,
    network: c.network,
    user: c.user,
    restart: c.restart,
    ports: c.ports,
    volumes: c.volumes,
    cmd: c.cmd,
    env: c.env,
    runtime: c.runtime,
    memory: c.memory ?? "",
    vcpus: c.vcpus ?? 0,
    routes: c.routes.map((r) => ({
      name: r.name ?? "",
      port: r.port,
      mode: r.mode,
      hostname: r.hostname ?? "",
      public: r.public,
    })),
    health: c.health ? healthToSpec(c.health) : undefined,
  };
}

/** Durations go over the wire in the file syntax, so specToDef validates them like a file. */
export function healthToSpec(h: HealthDef): MessageInitShape<typeof HealthSpecSchema> {
  return {
    type: h.type,
    port: h.port ?? 0,
    route: h.route ?? "",
    path: h.path ?? "",
    interval: formatDuration(h.intervalMs),
    timeout: formatDuration(h.timeoutMs),
    retries: h.retries,
    startPeriod: formatDuration(h.startPeriodMs),
    cmd: h.cmd ?? [],
  };
}

/**
 * A canonical text of a component: equal keys run the same container. It is the component's wire
 * encoding (deterministic, every field, defaults and unset values alike), so a field added to the
 * proto mapping is compared without a second list to keep in step.
 */
export function componentKey(c: ComponentDef): string {
  return Buffer.from(toBinary(ComponentSpecSchema, create(ComponentSpecSchema, componentToSpec(c)))).toString(
    "base64",
  );
}

function healthData(h: HealthSpec): Record<string, unknown> {
  const out: Record<string, unknown> = { type: h.type };
  if (h.port) out.port = h.port;
  if (h.route) out.route = h.route;
  if (h.path) out.path = h.path;
  if (h.interval) out.interval = h.interval;
  if (h.timeout) out.timeout = h.timeout;
  if (h.retries) out.retries = h.retries;
  if (h.startPeriod) out.start_period = h.startPeriod;
  if (h.cmd.length > 0) out.cmd = h.cmd;
  return out;
}

/** A wire component as definition-file data (the schema then applies defaults and checks). */
function componentData(c: ComponentSpec): Record<string, unknown> {
  const out: Record<string, unknown> = {
    name: c.name,
    image: c.image,
    network: c.network,
    user: c.user,
    ports: c.ports,
    volumes: c.volumes,
    cmd: c.cmd,
    env: c.env,
    routes: c.routes.map((r) => {
      const route: Record<string, unknown> = { port: r.port, mode: r.mode || "l4", public: r.public };
      if (r.name) route.name = r.name;
      if (r.hostname) route.hostname = r.hostname;
      return route;
    }),
  };
  if (c.restart) out.restart = c.restart;
  if (c.runtime) out.runtime = c.runtime;
  if (c.memory) out.memory = c.memory;
  if (c.vcpus) out.vcpus = c.vcpus;
  if (c.health) out.health = healthData(c.health);
  return out;
}

/** Validates a spec from the wire with the definition schema; throws ConfigError naming the key. */
export function specToDef(spec: ServiceSpec, source = "request"): ServiceDef {
  const data: Record<string, unknown> = {
    name: spec.name,
    active: spec.active,
    components: spec.components.map(componentData),
  };
  if (spec.tier) data.tier = spec.tier;
  if (spec.node) data.node = spec.node;
  if (spec.snapshot && (spec.snapshot.method || spec.snapshot.excludes.length > 0)) {
    const snap: Record<string, unknown> = { exclude: spec.snapshot.excludes };
    if (spec.snapshot.method) snap.method = spec.snapshot.method;
    data.snapshot = snap;
  }
  return parseServiceDef(data, source).def;
}
