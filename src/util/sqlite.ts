// What every SQLite file of MCP shares (the agent registry, the master database): connection
// pragmas, the ISO-8601 "now" expression, and the versioned-migration runner. Each store keeps its
// own schema and error type; neither reaches into the other's modules for these.
import type { Database } from "bun:sqlite";

/** SQL expression for "now" as ISO-8601 UTC with milliseconds; sorts and compares exactly as text. */
export const SQL_NOW = "strftime('%Y-%m-%dT%H:%M:%fZ','now')";

/** Per-connection settings; foreign_keys and busy_timeout are not stored in the file. */
export function applyPragmas(db: Database): void {
  // busy_timeout first, so the switch to WAL waits for other connections
  // instead of failing with SQLITE_BUSY.
  db.run("PRAGMA busy_timeout = 5000");
  db.run("PRAGMA journal_mode = WAL");
  // NORMAL is durable across process crashes in WAL mode; only an OS crash
  // can lose the last commits, which reconciliation repairs.
  db.run("PRAGMA synchronous = NORMAL");
  db.run("PRAGMA foreign_keys = ON");
}

export interface Migration {
  version: number;
  sql: string;
}

export function schemaVersion(db: Database): number {
  const row = db.query<{ v: number | null }, []>("SELECT max(version) AS v FROM schema_migrations").get();
  return row?.v ?? 0;
}

/**
 * Applies every migration above the stored version, up to `target`, each in its own transaction
 * together with its schema_migrations row, so a crash mid-upgrade leaves the database at the
 * previous version, never between. A current database costs one query. A file newer than
 * `migrations` knows is refused with `newer(message)`.
 */
export function migrateSchema(
  db: Database,
  migrations: readonly Migration[],
  target: number,
  newer: (message: string) => Error,
  what: string,
): number {
  db.run(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    applied_at TEXT NOT NULL DEFAULT (${SQL_NOW})
  )`);
  const current = schemaVersion(db);
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  if (current > latest)
    throw newer(
      `${what} schema version ${current} is newer than this binary supports (${latest}); upgrade mcp`,
    );
  for (const m of migrations) {
    if (m.version <= current || m.version > target) continue;
    // immediate: take the write lock up front so two processes opening the
    // same file cannot both decide to apply the same migration.
    db.transaction(() => {
      if (schemaVersion(db) >= m.version) return; // another process got here first
      db.run(m.sql);
      db.query(`INSERT INTO schema_migrations (version, applied_at) VALUES (?, ${SQL_NOW})`).run(m.version);
    }).immediate();
  }
  return schemaVersion(db);
}
