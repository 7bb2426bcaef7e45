// The one mapping between the wire (generated protobuf types) and the plain domain objects:
// service definitions (config/service.ts) and registry records. Incoming specs are validated
// with the same schema as definition files, so the agent never trusts a client's parsing.
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { formatDuration, type HealthDef, parseServiceDef, type ServiceDef } from "../config/service.ts";
import {
  type ComponentInfo,
  ComponentInfoSchema,
  type ComponentSpec,
  type HealthSpec,
  type HealthSpecSchema,
  type ServiceInfo,
  ServiceInfoSchema,
  type ServiceSpec,
  ServiceSpecSchema,
} from "../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord, ServiceRecord } from "../registry/types.ts";

export function defToSpec(def: ServiceDef): ServiceSpec {
  return create(ServiceSpecSchema, {
    name: def.name,
    active: def.active,
    tier: def.tier,
    node: def.node ?? "",
    snapshot: def.snapshot
      ? { method: def.snapshot.method ?? "", excludes: def.snapshot.exclude }
      : undefined,
    components: def.components.map((c) => ({
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
    })),
  });
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

export function componentInfo(c: ComponentRecord, started?: Date | null): ComponentInfo {
  return create(ComponentInfoSchema, {
    name: c.name,
    image: c.image,
    desiredState: c.desiredState,
    observedState: c.observedState,
    version: c.version,
    started: started ? timestampFromDate(started) : undefined,
    ports: c.ports,
    routes: c.routes.map((r) => ({
      name: r.name,
      port: r.port,
      mode: r.mode,
      hostname: r.hostname,
      public: r.public,
      hostPort: r.hostPort,
    })),
  });
}

export function serviceInfo(s: ServiceRecord, started?: (c: ComponentRecord) => Date | null): ServiceInfo {
  return create(ServiceInfoSchema, {
    name: s.name,
    active: s.active,
    components: s.components.map((c) => componentInfo(c, started?.(c))),
  });
}
