// Versioned schema migrations for the agent registry. Each migration runs in
// its own transaction together with its schema_migrations row, so a crash
// mid-upgrade leaves the database at the previous version, never between.
// Migrations are append-only: never edit one that has shipped.

import type { Database } from "bun:sqlite";
import { type Migration, migrateSchema, SQL_NOW, schemaVersion } from "../util/sqlite.ts";
import { RegistryError } from "./types.ts";

export type { Migration };

// Version 1 is the reference design's schema, verbatim.
const V1 = `
CREATE TABLE services (
  name TEXT PRIMARY KEY,
  active INTEGER NOT NULL DEFAULT 1,
  created_at TEXT NOT NULL DEFAULT (datetime('now')),
  updated_at TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE TABLE components (
  name TEXT NOT NULL,
  service TEXT NOT NULL REFERENCES services(name) ON DELETE CASCADE,
  image TEXT NOT NULL,
  network TEXT NOT NULL DEFAULT 'bridge',
  user_spec TEXT NOT NULL DEFAULT '',
  restart TEXT NOT NULL DEFAULT 'unless-stopped',
  desired_state TEXT NOT NULL DEFAULT 'running',
  observed_state TEXT NOT NULL DEFAULT 'unknown',
  version TEXT NOT NULL DEFAULT '',
  created_at TEXT NOT NULL DEFAULT (datetime('now')),
  updated_at TEXT NOT NULL DEFAULT (datetime('now')),
  PRIMARY KEY (service, name)
);
CREATE TABLE component_ports (
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  mapping TEXT NOT NULL,
  PRIMARY KEY (service, component, mapping),
  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE
);
CREATE TABLE component_volumes (
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  mapping TEXT NOT NULL,
  PRIMARY KEY (service, component, mapping),
  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE
);
CREATE TABLE component_cmd (
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  position INTEGER NOT NULL,
  arg TEXT NOT NULL,
  PRIMARY KEY (service, component, position),
  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE
);
CREATE TABLE events (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  prev_state TEXT NOT NULL,
  new_state TEXT NOT NULL,
  timestamp TEXT NOT NULL DEFAULT (datetime('now'))
);
CREATE INDEX idx_events_component_time ON events(service, component, timestamp);
`;

// Version 2: routes, env, runtime sizing, placement, the deployed spec,
// host-port allocations and edge routes. Existing timestamps written by the
// reference datetime('now') defaults are rewritten to ISO-8601 so text
// comparison against new rows stays exact.
const isoOf = (col: string) => `strftime('%Y-%m-%dT%H:%M:%fZ', ${col})`;
const V2 = `
CREATE TABLE component_env (
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  position INTEGER NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (service, component, position),
  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE
);
CREATE TABLE component_routes (
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  name TEXT NOT NULL,
  port INTEGER NOT NULL,
  mode TEXT NOT NULL DEFAULT 'l4',
  hostname TEXT NOT NULL DEFAULT '',
  public INTEGER NOT NULL DEFAULT 0,
  host_port INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (service, component, name),
  FOREIGN KEY (service, component) REFERENCES components(service, name) ON DELETE CASCADE
);
ALTER TABLE components ADD COLUMN runtime TEXT NOT NULL DEFAULT 'podman';
ALTER TABLE components ADD COLUMN memory TEXT NOT NULL DEFAULT '';
ALTER TABLE components ADD COLUMN vcpus INTEGER NOT NULL DEFAULT 0;
ALTER TABLE services ADD COLUMN tier TEXT NOT NULL DEFAULT 'worker';
ALTER TABLE services ADD COLUMN node TEXT NOT NULL DEFAULT '';
ALTER TABLE services ADD COLUMN spec_json TEXT;
CREATE TABLE port_allocations (
  port INTEGER PRIMARY KEY,
  service TEXT NOT NULL,
  component TEXT NOT NULL,
  route TEXT NOT NULL
);
CREATE UNIQUE INDEX idx_port_allocations_owner ON port_allocations(service, component, route);
CREATE TABLE edge_routes (
  hostname TEXT PRIMARY KEY,
  backend_hostname TEXT NOT NULL,
  backend_port INTEGER NOT NULL,
  cert_serial TEXT NOT NULL DEFAULT '',
  cert_expires TEXT,
  created_at TEXT NOT NULL DEFAULT (${SQL_NOW})
);
CREATE INDEX idx_events_time ON events(timestamp);
UPDATE services SET created_at = ${isoOf("created_at")}, updated_at = ${isoOf("updated_at")}
  WHERE created_at NOT LIKE '%Z' OR updated_at NOT LIKE '%Z';
UPDATE components SET created_at = ${isoOf("created_at")}, updated_at = ${isoOf("updated_at")}
  WHERE created_at NOT LIKE '%Z' OR updated_at NOT LIKE '%Z';
UPDATE events SET timestamp = ${isoOf("timestamp")} WHERE timestamp NOT LIKE '%Z';
`;

// Version 3: health checks per component (the HealthDef as JSON, NULL = none) and the spec
// history of deploys and rollbacks (kind: deploy | rollback | failed), newest rows by id.
const V3 = `
ALTER TABLE components ADD COLUMN health_json TEXT;
CREATE TABLE deploy_history (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  service TEXT NOT NULL,
  deployed_at TEXT NOT NULL DEFAULT (${SQL_NOW}),
  caller TEXT NOT NULL DEFAULT '',
  image_summary TEXT NOT NULL DEFAULT '',
  spec_json TEXT NOT NULL,
  kind TEXT NOT NULL DEFAULT 'deploy',
  detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX idx_deploy_history_service ON deploy_history(service, id);
`;

export const MIGRATIONS: readonly Migration[] = [
  { version: 1, sql: V1 },
  { version: 2, sql: V2 },
  { version: 3, sql: V3 },
];

export const LATEST_VERSION = MIGRATIONS[MIGRATIONS.length - 1]!.version;

export { schemaVersion };

/**
 * Apply every migration above the stored version, up to `target` (util/sqlite.ts). Safe to
 * call on every open: a current database costs one query. `migrations` is
 * replaceable so tests can prove a failing migration rolls back whole.
 */
export function migrate(
  db: Database,
  target: number = LATEST_VERSION,
  migrations: readonly Migration[] = MIGRATIONS,
): number {
  return migrateSchema(db, migrations, target, (m) => new RegistryError(m), "registry");
}
