// Host-port allocation for routes and the master's edge-route table. An
// allocation is keyed by (service, component, route) and persisted, so a
// redeploy gets the same host port and two routes never share one.

import type { Database } from "bun:sqlite";
import { SQL_NOW } from "../util/sqlite.ts";
import type { EdgeRouteRecord, PortAllocation } from "./types.ts";
import { fromDb, RegistryError, toDb } from "./types.ts";

/**
 * The existing allocation for the route if there is one; otherwise the
 * lowest port in [lo, hi] that no route holds and `isFree` accepts (the
 * caller probes the host). Runs under the write lock so two callers cannot
 * pick the same port.
 */
export function allocatePort(
  db: Database,
  service: string,
  component: string,
  route: string,
  range: readonly [number, number],
  isFree: (port: number) => boolean,
): number {
  const [lo, hi] = range;
  if (!Number.isInteger(lo) || !Number.isInteger(hi) || lo < 1 || hi > 65535 || lo > hi) {
    throw new RegistryError(`invalid port range ${lo}-${hi}`);
  }
  const tx = db.transaction((): number => {
    const existing = db
      .query<{ port: number }, [string, string, string]>(
        "SELECT port FROM port_allocations WHERE service = ? AND component = ? AND route = ?",
      )
      .get(service, component, route);
    if (existing) return existing.port;
    const taken = new Set(
      db
        .query<{ port: number }, [number, number]>(
          "SELECT port FROM port_allocations WHERE port BETWEEN ? AND ?",
        )
        .all(lo, hi)
        .map((r) => r.port),
    );
    for (let p = lo; p <= hi; p++) {
      if (taken.has(p) || !isFree(p)) continue;
      db.query<unknown, [number, string, string, string]>(
        "INSERT INTO port_allocations (port, service, component, route) VALUES (?, ?, ?, ?)",
      ).run(p, service, component, route);
      return p;
    }
    throw new RegistryError(`no free host port in ${lo}-${hi} for ${service}/${component} route ${route}`);
  });
  // Inside an outer transaction bun nests with a savepoint; at top level take
  // the write lock immediately rather than upgrading a read lock mid-way.
  return db.inTransaction ? tx() : tx.immediate();
}

/**
 * Release one component's ports, or the whole service's when `component` is omitted. With `keep`
 * (route keys), the component's ports for those routes stay: a redeploy drops only the ports of
 * routes the definition no longer has. Returns how many.
 */
export function releasePorts(
  db: Database,
  service: string,
  component?: string,
  keep: readonly string[] = [],
): number {
  if (component === undefined) {
    return db.query<unknown, [string]>("DELETE FROM port_allocations WHERE service = ?").run(service).changes;
  }
  const keepSet = new Set(keep);
  const tx = db.transaction((): number => {
    const stale = db
      .query<{ route: string }, [string, string]>(
        "SELECT route FROM port_allocations WHERE service = ? AND component = ?",
      )
      .all(service, component)
      .filter((r) => !keepSet.has(r.route));
    const del = db.query<unknown, [string, string, string]>(
      "DELETE FROM port_allocations WHERE service = ? AND component = ? AND route = ?",
    );
    for (const r of stale) del.run(service, component, r.route);
    return stale.length;
  });
  return tx();
}

export function allocatedPorts(db: Database, service: string): PortAllocation[] {
  return db
    .query<PortAllocation, [string]>(
      "SELECT port, service, component, route FROM port_allocations WHERE service = ? ORDER BY port",
    )
    .all(service);
}

interface EdgeRow {
  hostname: string;
  backend_hostname: string;
  backend_port: number;
  cert_serial: string;
  cert_expires: string | null;
  created_at: string;
}

const edgeRecord = (r: EdgeRow): EdgeRouteRecord => ({
  hostname: r.hostname,
  backendHostname: r.backend_hostname,
  backendPort: r.backend_port,
  certSerial: r.cert_serial,
  certExpires: r.cert_expires === null ? null : fromDb(r.cert_expires),
  createdAt: fromDb(r.created_at),
});

/** Insert or replace an edge route; created_at survives updates. */
export function upsertEdgeRoute(db: Database, e: Omit<EdgeRouteRecord, "createdAt">): void {
  db.query<unknown, [string, string, number, string, string | null]>(
    `INSERT INTO edge_routes (hostname, backend_hostname, backend_port, cert_serial, cert_expires, created_at)
     VALUES (?, ?, ?, ?, ?, ${SQL_NOW})
     ON CONFLICT (hostname) DO UPDATE SET backend_hostname = excluded.backend_hostname,
       backend_port = excluded.backend_port, cert_serial = excluded.cert_serial,
       cert_expires = excluded.cert_expires`,
  ).run(
    e.hostname,
    e.backendHostname,
    e.backendPort,
    e.certSerial,
    e.certExpires === null ? null : toDb(e.certExpires),
  );
}

export function listEdgeRoutes(db: Database): EdgeRouteRecord[] {
  return db
    .query<EdgeRow, []>(
      `SELECT hostname, backend_hostname, backend_port, cert_serial, cert_expires, created_at
       FROM edge_routes ORDER BY hostname`,
    )
    .all()
    .map(edgeRecord);
}

export function deleteEdgeRoute(db: Database, hostname: string): boolean {
  return db.query<unknown, [string]>("DELETE FROM edge_routes WHERE hostname = ?").run(hostname).changes > 0;
}
