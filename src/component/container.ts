// Component definition ↔ runtime: the spec a component runs as (ContainerSpec) and, back from an
// inspected container, the definition that recreates it (adopt, drift, export). Route ports and
// their $PORT env are added on top by the agent (roles/agent/route-ports.ts), not here.
import type { ComponentDef } from "../config/service.ts";
import type { ContainerSpec } from "../runtime/runtime.ts";

/** Containers are named <service>-<component>; a component named after its service runs as <service>. */
export function containerName(service: string, component: string): string {
  return component === service ? service : `${service}-${component}`;
}

/** The one mapping from a component to what the runtime runs. */
export function containerSpec(service: string, c: ComponentDef): ContainerSpec {
  return {
    name: containerName(service, c.name),
    image: c.image,
    network: c.network,
    user: c.user,
    restart: c.restart,
    ports: [...c.ports],
    volumes: [...c.volumes],
    env: [...c.env],
    cmd: [...c.cmd],
    memory: c.memory ?? "",
    vcpus: c.vcpus ?? 0,
    runtime: c.runtime,
  };
}

// What inspect reports for "no --network given": writing them out would pin a runtime default.
const DEFAULT_NETWORKS = new Set(["", "default", "bridge", "slirp4netns", "pasta"]);

/**
 * The component definition that recreates a container as inspected (routes and health are not
 * visible in a container: none). Not validated here: callers run it through the schema.
 */
export function componentFromContainer(component: string, s: ContainerSpec): ComponentDef {
  return {
    name: component,
    image: s.image,
    network: DEFAULT_NETWORKS.has(s.network) ? "" : s.network,
    user: s.user,
    // The runtime reports "no restart policy" as ""; a definition must say "no" explicitly.
    restart: s.restart === "" ? "no" : s.restart,
    ports: [...s.ports],
    volumes: [...s.volumes],
    cmd: [...s.cmd],
    env: [...s.env],
    runtime: s.runtime === "unikernel" ? "unikernel" : "container",
    ...(s.memory !== "" ? { memory: s.memory } : {}),
    ...(s.vcpus !== 0 ? { vcpus: s.vcpus } : {}),
    routes: [],
  };
}
