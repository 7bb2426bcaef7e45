// Write side for services and components: upserts that rewrite a
// component's child rows, state changes (observed-state changes record an
// event in the same transaction) and deletes. Every function that touches
// more than one row runs inside one transaction (nested calls become
// savepoints, so they compose under Registry.withTransaction).

import type { Database } from "bun:sqlite";
import { SQL_NOW } from "../util/sqlite.ts";
import { insertEvent } from "./events.ts";
import type { ComponentInput, DesiredState, ObservedState, ServiceInput } from "./types.ts";
import { isDesiredState, isObservedState, RegistryError } from "./types.ts";

function requireService(db: Database, name: string): void {
  const row = db
    .query<{ n: number }, [string]>("SELECT count(*) AS n FROM services WHERE name = ?")
    .get(name);
  if (!row || row.n === 0) throw new RegistryError(`service ${name} not found`);
}

function currentObserved(db: Database, service: string, component: string): string | null {
  const row = db
    .query<{ s: string }, [string, string]>(
      "SELECT observed_state AS s FROM components WHERE service = ? AND name = ?",
    )
    .get(service, component);
  return row ? row.s : null;
}

function checkDesired(s: string): asserts s is DesiredState {
  if (!isDesiredState(s)) throw new RegistryError(`invalid desired state ${JSON.stringify(s)}`);
}

function checkObserved(s: string): asserts s is ObservedState {
  if (!isObservedState(s)) throw new RegistryError(`invalid observed state ${JSON.stringify(s)}`);
}

export function upsertService(db: Database, s: ServiceInput): void {
  if (s.name === "") throw new RegistryError("service name must not be empty");
  db.transaction(() => {
    const old = db
      .query<{ active: number; tier: string; node: string; spec_json: string | null }, [string]>(
        "SELECT active, tier, node, spec_json FROM services WHERE name = ?",
      )
      .get(s.name);
    const active = s.active ?? (old ? old.active !== 0 : true);
    const tier = s.tier ?? old?.tier ?? "worker";
    const node = s.node ?? old?.node ?? "";
    const spec = s.specJson !== undefined ? s.specJson : (old?.spec_json ?? null);
    db.query<unknown, [string, number, string, string, string | null]>(
      `INSERT INTO services (name, active, tier, node, spec_json, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ${SQL_NOW}, ${SQL_NOW})
       ON CONFLICT (name) DO UPDATE SET active = excluded.active, tier = excluded.tier,
         node = excluded.node, spec_json = excluded.spec_json, updated_at = excluded.updated_at`,
    ).run(s.name, active ? 1 : 0, tier, node, spec);
  })();
}

export function upsertComponent(db: Database, service: string, c: ComponentInput): void {
  if (c.name === "") throw new RegistryError(`component name must not be empty (service ${service})`);
  checkDesired(c.desiredState);
  if (c.observedState !== undefined) checkObserved(c.observedState);
  if (!Number.isInteger(c.vcpus) || c.vcpus < 0) {
    throw new RegistryError(`vcpus must be a non-negative integer, got ${c.vcpus}`);
  }
  for (const r of c.routes) {
    if (r.mode !== "l4" && r.mode !== "l7")
      throw new RegistryError(`route ${r.name}: invalid mode ${r.mode}`);
    if (!Number.isInteger(r.port) || !Number.isInteger(r.hostPort)) {
      throw new RegistryError(`route ${r.name}: ports must be integers`);
    }
  }
  db.transaction(() => {
    requireService(db, service);
    const prev = currentObserved(db, service, c.name);
    const observed = c.observedState ?? (prev as ObservedState | null) ?? "unknown";
    db.query(
      `INSERT INTO components (service, name, image, network, user_spec, restart, desired_state,
         observed_state, version, runtime, memory, vcpus, health_json, created_at, updated_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ${SQL_NOW}, ${SQL_NOW})
       ON CONFLICT (service, name) DO UPDATE SET image = excluded.image, network = excluded.network,
         user_spec = excluded.user_spec, restart = excluded.restart,
         desired_state = excluded.desired_state, observed_state = excluded.observed_state,
         version = excluded.version, runtime = excluded.runtime, memory = excluded.memory,
         vcpus = excluded.vcpus, health_json = excluded.health_json, updated_at = excluded.updated_at`,
    ).run(
      service,
      c.name,
      c.image,
      c.network,
      c.user,
      c.restart,
      c.desiredState,
      observed,
      c.version,
      c.runtime,
      c.memory,
      c.vcpus,
      c.health === undefined ? null : JSON.stringify(c.health),
    );
    if (prev !== null && prev !== observed) {
      insertEvent(db, { service, component: c.name, prevState: prev, newState: observed });
    }
    replaceChildren(db, service, c);
  })();
}

// Child rows are replaced wholesale: the component's lists are the truth.
function replaceChildren(db: Database, service: string, c: ComponentInput): void {
  const sc = [service, c.name] as const;
  for (const t of [
    "component_ports",
    "component_volumes",
    "component_cmd",
    "component_env",
    "component_routes",
  ]) {
    db.query<unknown, [string, string]>(`DELETE FROM ${t} WHERE service = ? AND component = ?`).run(...sc);
  }
  // Ports and volumes are keyed by their text in the reference schema, so a
  // repeated entry is stored once (it would be a podman error anyway).
  const port = db.query<unknown, [string, string, string]>(
    "INSERT OR IGNORE INTO component_ports (service, component, mapping) VALUES (?, ?, ?)",
  );
  for (const p of c.ports) port.run(...sc, p);
  const vol = db.query<unknown, [string, string, string]>(
    "INSERT OR IGNORE INTO component_volumes (service, component, mapping) VALUES (?, ?, ?)",
  );
  for (const v of c.volumes) vol.run(...sc, v);
  const cmd = db.query<unknown, [string, string, number, string]>(
    "INSERT INTO component_cmd (service, component, position, arg) VALUES (?, ?, ?, ?)",
  );
  for (const [i, a] of c.cmd.entries()) cmd.run(...sc, i, a);
  const env = db.query<unknown, [string, string, number, string]>(
    "INSERT INTO component_env (service, component, position, value) VALUES (?, ?, ?, ?)",
  );
  for (const [i, v] of c.env.entries()) env.run(...sc, i, v);
  const allocated = db.query<{ port: number }, [string, string, string]>(
    "SELECT port FROM port_allocations WHERE service = ? AND component = ? AND route = ?",
  );
  const route = db.query<unknown, [string, string, string, number, string, string, number, number]>(
    `INSERT INTO component_routes (service, component, name, port, mode, hostname, public, host_port)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
  );
  for (const r of c.routes) {
    // A redeploy that does not name a host port keeps the one allocated
    // earlier, so the proxy's backend address stays stable.
    const hostPort = r.hostPort !== 0 ? r.hostPort : (allocated.get(...sc, r.name)?.port ?? 0);
    route.run(...sc, r.name, r.port, r.mode, r.hostname, r.public ? 1 : 0, hostPort);
  }
}

/** Set desired state for one component, or every component of the service when `component` is null. Returns rows changed. */
export function setDesiredState(
  db: Database,
  service: string,
  component: string | null,
  state: DesiredState,
): number {
  checkDesired(state);
  return db.transaction(() => {
    requireService(db, service);
    if (component === null) {
      return db
        .query<unknown, [string, string, string]>(
          `UPDATE components SET desired_state = ?, updated_at = ${SQL_NOW}
           WHERE service = ? AND desired_state != ?`,
        )
        .run(state, service, state).changes;
    }
    if (currentObserved(db, service, component) === null) {
      throw new RegistryError(`component ${service}/${component} not found`);
    }
    return db
      .query<unknown, [string, string, string, string]>(
        `UPDATE components SET desired_state = ?, updated_at = ${SQL_NOW}
         WHERE service = ? AND name = ? AND desired_state != ?`,
      )
      .run(state, service, component, state).changes;
  })();
}

/** Record what the runtime reports; a change also appends an event, atomically. */
export function setObservedState(
  db: Database,
  service: string,
  component: string,
  state: ObservedState,
): { prev: string; changed: boolean } {
  checkObserved(state);
  return db.transaction(() => {
    const prev = currentObserved(db, service, component);
    if (prev === null) throw new RegistryError(`component ${service}/${component} not found`);
    if (prev === state) return { prev, changed: false };
    db.query<unknown, [string, string, string]>(
      `UPDATE components SET observed_state = ?, updated_at = ${SQL_NOW} WHERE service = ? AND name = ?`,
    ).run(state, service, component);
    insertEvent(db, { service, component, prevState: prev, newState: state });
    return { prev, changed: true };
  })();
}

export function setVersion(db: Database, service: string, component: string, version: string): void {
  const { changes } = db
    .query<unknown, [string, string, string]>(
      `UPDATE components SET version = ?, updated_at = ${SQL_NOW} WHERE service = ? AND name = ?`,
    )
    .run(version, service, component);
  if (changes === 0) throw new RegistryError(`component ${service}/${component} not found`);
}

export function setServiceActive(db: Database, service: string, active: boolean): void {
  const { changes } = db
    .query<unknown, [number, string]>(
      `UPDATE services SET active = ?, updated_at = ${SQL_NOW} WHERE name = ?`,
    )
    .run(active ? 1 : 0, service);
  if (changes === 0) throw new RegistryError(`service ${service} not found`);
}

/** Components and their rows go by cascade; host ports are released; events stay as history. */
export function deleteService(db: Database, name: string): boolean {
  return db.transaction(() => {
    db.query<unknown, [string]>("DELETE FROM port_allocations WHERE service = ?").run(name);
    return db.query<unknown, [string]>("DELETE FROM services WHERE name = ?").run(name).changes > 0;
  })();
}

export function deleteComponent(db: Database, service: string, component: string): boolean {
  return db.transaction(() => {
    db.query<unknown, [string, string]>(
      "DELETE FROM port_allocations WHERE service = ? AND component = ?",
    ).run(service, component);
    return (
      db
        .query<unknown, [string, string]>("DELETE FROM components WHERE service = ? AND name = ?")
        .run(service, component).changes > 0
    );
  })();
}
