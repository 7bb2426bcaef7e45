// Read side of the registry: loads services and components with all their
// child rows in a fixed handful of queries (one per table, grouped in memory)
// rather than one query per component.

import type { Database, SQLQueryBindings } from "bun:sqlite";
import { normalizeRuntimeKind } from "../config/runtime-kind.ts";
import type {
  ComponentRecord,
  DesiredState,
  HealthDef,
  ObservedState,
  RouteRecord,
  ServiceRecord,
} from "./types.ts";
import { fromDb } from "./types.ts";

interface ServiceRow {
  name: string;
  active: number;
  tier: string;
  node: string;
  spec_json: string | null;
  created_at: string;
  updated_at: string;
}

interface ComponentRow {
  service: string;
  name: string;
  image: string;
  network: string;
  user_spec: string;
  restart: string;
  desired_state: string;
  observed_state: string;
  version: string;
  runtime: string;
  memory: string;
  vcpus: number;
  health_json: string | null;
  created_at: string;
  updated_at: string;
}

interface ChildRow {
  service: string;
  component: string;
  v: string;
}

interface RouteRow {
  service: string;
  component: string;
  name: string;
  port: number;
  mode: string;
  hostname: string;
  public: number;
  host_port: number;
}

/** Which components to load: all, one service's, or one component. */
export type Scope =
  | { kind: "all" }
  | { kind: "service"; service: string }
  | { kind: "component"; service: string; component: string };

const key = (service: string, component: string) => `${service}\u0000${component}`;

// The WHERE clause and bindings for a scope; `col` is the component-name
// column, which is `name` in components and `component` in child tables.
function where(scope: Scope, col: string): [string, SQLQueryBindings[]] {
  if (scope.kind === "all") return ["", []];
  if (scope.kind === "service") return [" WHERE service = ?", [scope.service]];
  return [` WHERE service = ? AND ${col} = ?`, [scope.service, scope.component]];
}

function group<R extends { service: string; component: string }, T>(
  rows: R[],
  map: (r: R) => T,
): Map<string, T[]> {
  const out = new Map<string, T[]>();
  for (const r of rows) {
    const k = key(r.service, r.component);
    let list = out.get(k);
    if (!list) {
      list = [];
      out.set(k, list);
    }
    list.push(map(r));
  }
  return out;
}

export function loadComponents(db: Database, scope: Scope): ComponentRecord[] {
  const [cw, cb] = where(scope, "name");
  const [w, b] = where(scope, "component");
  const comps = db
    .query<ComponentRow, SQLQueryBindings[]>(
      `SELECT service, name, image, network, user_spec, restart, desired_state, observed_state, version,
              runtime, memory, vcpus, health_json, created_at, updated_at
       FROM components${cw} ORDER BY service, name`,
    )
    .all(...cb);
  if (comps.length === 0) return [];
  // Ports and volumes have no position column: rowid is insertion order,
  // and upsertComponent always rewrites them in list order.
  const child = (table: string, col: string, order: string) =>
    group(
      db
        .query<ChildRow, SQLQueryBindings[]>(
          `SELECT service, component, ${col} AS v FROM ${table}${w} ORDER BY ${order}`,
        )
        .all(...b),
      (r) => r.v,
    );
  const ports = child("component_ports", "mapping", "rowid");
  const volumes = child("component_volumes", "mapping", "rowid");
  const cmd = child("component_cmd", "arg", "service, component, position");
  const env = child("component_env", "value", "service, component, position");
  const routes = group(
    db
      .query<RouteRow, SQLQueryBindings[]>(
        `SELECT service, component, name, port, mode, hostname, public, host_port
         FROM component_routes${w} ORDER BY rowid`,
      )
      .all(...b),
    (r): RouteRecord => ({
      name: r.name,
      port: r.port,
      mode: r.mode === "l7" ? "l7" : "l4",
      hostname: r.hostname,
      public: r.public !== 0,
      hostPort: r.host_port,
    }),
  );
  return comps.map((c): ComponentRecord => {
    const k = key(c.service, c.name);
    const rec: ComponentRecord = {
      service: c.service,
      name: c.name,
      image: c.image,
      network: c.network,
      user: c.user_spec,
      restart: c.restart,
      desiredState: c.desired_state as DesiredState,
      observedState: c.observed_state as ObservedState,
      version: c.version,
      ports: ports.get(k) ?? [],
      volumes: volumes.get(k) ?? [],
      cmd: cmd.get(k) ?? [],
      env: env.get(k) ?? [],
      routes: routes.get(k) ?? [],
      // Rows written before the kind had its own name say "podman" (or the engine of a
      // discovered container): they read as "container".
      runtime: normalizeRuntimeKind(c.runtime),
      memory: c.memory,
      vcpus: c.vcpus,
      createdAt: fromDb(c.created_at),
      updatedAt: fromDb(c.updated_at),
    };
    if (c.health_json !== null) rec.health = JSON.parse(c.health_json) as HealthDef;
    return rec;
  });
}

/** Services (one, or all ordered by name) with their components. */
export function loadServices(db: Database, name?: string): ServiceRecord[] {
  const rows =
    name === undefined
      ? db
          .query<ServiceRow, []>(
            "SELECT name, active, tier, node, spec_json, created_at, updated_at FROM services ORDER BY name",
          )
          .all()
      : db
          .query<ServiceRow, [string]>(
            "SELECT name, active, tier, node, spec_json, created_at, updated_at FROM services WHERE name = ?",
          )
          .all(name);
  if (rows.length === 0) return [];
  const comps = loadComponents(db, name === undefined ? { kind: "all" } : { kind: "service", service: name });
  const byService = new Map<string, ComponentRecord[]>();
  for (const c of comps) {
    const list = byService.get(c.service);
    if (list) list.push(c);
    else byService.set(c.service, [c]);
  }
  return rows.map((r) => ({
    name: r.name,
    active: r.active !== 0,
    tier: r.tier,
    node: r.node,
    components: byService.get(r.name) ?? [],
    specJson: r.spec_json,
    createdAt: fromDb(r.created_at),
    updatedAt: fromDb(r.updated_at),
  }));
}

/**
 * The runtime kind of the component whose container is named `container` (<service>-<component>,
 * or <service> for a component named after its service); undefined when no component has that
 * container name (a container MCP does not know). One query, no child rows: the runtime router
 * asks this on every name-only call.
 */
export function runtimeOfContainer(db: Database, container: string): string | undefined {
  const row = db
    .query<{ runtime: string }, [string]>(
      `SELECT runtime FROM components
       WHERE (name = service AND service = ?1) OR (name <> service AND service || '-' || name = ?1)
       ORDER BY service, name LIMIT 1`,
    )
    .get(container);
  return row ? normalizeRuntimeKind(row.runtime) : undefined;
}

/** The components (of any service) whose container is named `container`: normally one or none. */
export function ownersOfContainer(db: Database, container: string): { service: string; component: string }[] {
  return db
    .query<{ service: string; component: string }, [string]>(
      `SELECT service, name AS component FROM components
       WHERE (name = service AND service = ?1) OR (name <> service AND service || '-' || name = ?1)
       ORDER BY service, name`,
    )
    .all(container);
}
