// Component definition ↔ registry row: what a component record stores of the domain type
// (ComponentDef) next to the agent's own bookkeeping (desired/observed state, version, the host
// port each route got), and the definition a record stands for (the truth of what ran: rollbacks,
// recover, restart, export).
import type { ComponentDef } from "../config/service.ts";
import type { ComponentInput, ComponentRecord, DesiredState, ObservedState } from "../registry/types.ts";

/** What a registry row adds to a definition. */
export interface RecordState {
  desiredState: DesiredState;
  /** Absent: kept on update, "unknown" on insert. */
  observedState?: ObservedState;
  version: string;
  /** The host port recorded for a route (by its key: the route's name, "" for the unnamed one). */
  hostPort?: (routeKey: string) => number;
}

/** The registry row of a component (upsertComponent's input). */
export function toComponentInput(c: ComponentDef, state: RecordState): ComponentInput {
  return {
    name: c.name,
    image: c.image,
    network: c.network,
    user: c.user,
    restart: c.restart,
    desiredState: state.desiredState,
    ...(state.observedState !== undefined ? { observedState: state.observedState } : {}),
    version: state.version,
    ports: [...c.ports],
    volumes: [...c.volumes],
    cmd: [...c.cmd],
    env: [...c.env],
    routes: c.routes.map((r) => ({
      name: r.name ?? "",
      port: r.port,
      mode: r.mode,
      hostname: r.hostname ?? "",
      public: r.public,
      hostPort: state.hostPort?.(r.name ?? "") ?? 0,
    })),
    runtime: c.runtime,
    memory: c.memory ?? "",
    vcpus: c.vcpus ?? 0,
    ...(c.health ? { health: c.health } : {}),
  };
}

/** The definition of a component as its registry record says it runs (key order as the schema's). */
export function recordToDef(r: ComponentRecord): ComponentDef {
  const c: ComponentDef = {
    name: r.name,
    image: r.image,
    network: r.network,
    user: r.user,
    restart: r.restart,
    ports: [...r.ports],
    volumes: [...r.volumes],
    cmd: [...r.cmd],
    env: [...r.env],
    runtime: r.runtime === "unikernel" ? "unikernel" : "container",
    ...(r.memory !== "" ? { memory: r.memory } : {}),
    ...(r.vcpus !== 0 ? { vcpus: r.vcpus } : {}),
    routes: r.routes.map((x) => ({
      ...(x.name !== "" ? { name: x.name } : {}),
      port: x.port,
      mode: x.mode,
      ...(x.hostname !== "" ? { hostname: x.hostname } : {}),
      public: x.public,
    })),
  };
  if (r.health) c.health = r.health;
  return c;
}
