// The Registry class: the agent's node-local operational truth (services,
// components, desired/observed state, events, host ports, edge routes) over
// one bun:sqlite connection. It composes the per-area modules; bun caches
// each prepared statement by its SQL text (Database#query), so repeated
// calls do not re-parse SQL.

import type { Database } from "bun:sqlite";
import { chmodSync, mkdirSync, renameSync, rmSync } from "node:fs";
import { dirname } from "node:path";
import * as comp from "./components.ts";
import * as ev from "./events.ts";
import * as hist from "./history.ts";
import { schemaVersion } from "./migrations.ts";
import * as ports from "./ports.ts";
import { loadComponents, loadServices, ownersOfContainer, runtimeOfContainer } from "./rows.ts";
import type {
  ComponentInput,
  ComponentRecord,
  DesiredState,
  DriftRecord,
  EdgeRouteRecord,
  EventInput,
  EventRecord,
  HistoryInput,
  HistoryRecord,
  ObservedState,
  PortAllocation,
  ServiceInput,
  ServiceRecord,
} from "./types.ts";
import { isDrift, RegistryError } from "./types.ts";

export class Registry {
  /** The open connection; exposed for diagnostics and tests, not for ad-hoc writes. */
  readonly db: Database;
  readonly path: string;

  constructor(db: Database, path: string) {
    this.db = db;
    this.path = path;
  }

  schemaVersion(): number {
    return schemaVersion(this.db);
  }

  /** Run `fn` atomically; registry calls inside it join the transaction (as savepoints). */
  withTransaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  close(): void {
    this.db.close();
  }

  // --- services and components -------------------------------------------

  upsertService(s: ServiceInput): void {
    comp.upsertService(this.db, s);
  }

  /** Replaces the component's ports, volumes, cmd, env and routes. */
  upsertComponent(service: string, c: ComponentInput): void {
    comp.upsertComponent(this.db, service, c);
  }

  getService(name: string): ServiceRecord | null {
    return this.withTransaction(() => loadServices(this.db, name)[0] ?? null);
  }

  /** All services ordered by name, each with its components ordered by name. */
  listServices(): ServiceRecord[] {
    // One read transaction gives a consistent snapshot across the queries.
    return this.withTransaction(() => loadServices(this.db));
  }

  getComponent(service: string, name: string): ComponentRecord | null {
    return this.withTransaction(
      () => loadComponents(this.db, { kind: "component", service, component: name })[0] ?? null,
    );
  }

  /** The runtime kind of the component running as container `name`; undefined = none does. */
  runtimeOfContainer(name: string): string | undefined {
    return runtimeOfContainer(this.db, name);
  }

  /** The components (of any service) whose container is named `name`. */
  ownersOfContainer(name: string): { service: string; component: string }[] {
    return ownersOfContainer(this.db, name);
  }

  setDesiredState(service: string, component: string | null, state: DesiredState): number {
    return comp.setDesiredState(this.db, service, component, state);
  }

  setObservedState(
    service: string,
    component: string,
    state: ObservedState,
  ): { prev: string; changed: boolean } {
    return comp.setObservedState(this.db, service, component, state);
  }

  setVersion(service: string, component: string, version: string): void {
    comp.setVersion(this.db, service, component, version);
  }

  setServiceActive(service: string, active: boolean): void {
    comp.setServiceActive(this.db, service, active);
  }

  deleteService(name: string): boolean {
    return comp.deleteService(this.db, name);
  }

  deleteComponent(service: string, name: string): boolean {
    return comp.deleteComponent(this.db, service, name);
  }

  /** Components whose observed state disagrees with the desired one (see isDrift). */
  drift(service?: string): DriftRecord[] {
    const scope =
      service === undefined ? ({ kind: "all" } as const) : ({ kind: "service", service } as const);
    const rows = this.db
      .query<{ service: string; name: string; desired_state: string; observed_state: string }, string[]>(
        `SELECT service, name, desired_state, observed_state FROM components
         ${scope.kind === "all" ? "" : "WHERE service = ?"} ORDER BY service, name`,
      )
      .all(...(scope.kind === "all" ? [] : [scope.service]));
    const out: DriftRecord[] = [];
    for (const r of rows) {
      const d = r.desired_state as DesiredState;
      const o = r.observed_state as ObservedState;
      if (isDrift(d, o)) out.push({ service: r.service, component: r.name, desired: d, observed: o });
    }
    return out;
  }

  // --- events -------------------------------------------------------------

  insertEvent(e: EventInput): number {
    return ev.insertEvent(this.db, e);
  }

  recentEvents(q: ev.RecentEventsQuery): EventRecord[] {
    return ev.recentEvents(this.db, q);
  }

  countTransitions(service: string, component: string, since: Date): number {
    return ev.countTransitions(this.db, service, component, since);
  }

  pruneEvents(olderThan: Date): number {
    return ev.pruneEvents(this.db, olderThan);
  }

  // --- spec history --------------------------------------------------------

  /** Appends a history row, keeping only the newest `keep` rows of that service. */
  insertHistory(h: HistoryInput, keep: number): number {
    return hist.insertHistory(this.db, h, keep);
  }

  /** A service's history rows, newest first. */
  listHistory(service: string): HistoryRecord[] {
    return hist.listHistory(this.db, service);
  }

  getHistory(id: number): HistoryRecord | null {
    return hist.getHistory(this.db, id);
  }

  // --- host ports and edge routes ------------------------------------------

  allocatePort(
    service: string,
    component: string,
    route: string,
    range: readonly [number, number],
    isFree: (port: number) => boolean,
  ): number {
    return ports.allocatePort(this.db, service, component, route, range, isFree);
  }

  /** See ports.releasePorts: `keep` names route keys whose ports stay. */
  releasePorts(service: string, component?: string, keep?: readonly string[]): number {
    return ports.releasePorts(this.db, service, component, keep);
  }

  allocatedPorts(service: string): PortAllocation[] {
    return ports.allocatedPorts(this.db, service);
  }

  upsertEdgeRoute(e: Omit<EdgeRouteRecord, "createdAt">): void {
    ports.upsertEdgeRoute(this.db, e);
  }

  listEdgeRoutes(): EdgeRouteRecord[] {
    return ports.listEdgeRoutes(this.db);
  }

  deleteEdgeRoute(hostname: string): boolean {
    return ports.deleteEdgeRoute(this.db, hostname);
  }

  // --- backups --------------------------------------------------------------

  /**
   * Write a consistent, compacted copy of the database to `path` (VACUUM
   * INTO). The copy is made beside the target and renamed over it, so a
   * reader never sees a half-written snapshot and an old one is replaced.
   */
  snapshotTo(path: string): void {
    if (this.db.inTransaction) throw new RegistryError("cannot snapshot the registry inside a transaction");
    mkdirSync(dirname(path), { recursive: true });
    const tmp = `${path}.tmp-${process.pid}`;
    rmSync(tmp, { force: true });
    // The copy holds service env values: created owner-only (umask 077 while SQLite creates it,
    // the call is synchronous) and chmod'ed again in case the umask was not what made it.
    const oldMask = process.umask(0o077);
    try {
      this.db.query<unknown, [string]>("VACUUM INTO ?").run(tmp);
      chmodSync(tmp, 0o600);
      renameSync(tmp, path);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new RegistryError(`registry snapshot to ${path} failed: ${(e as Error).message}`);
    } finally {
      process.umask(oldMask);
    }
  }
}
