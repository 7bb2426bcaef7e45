// What every SQLite file of MCP shares (the agent registry, the master database): connection
// pragmas, the ISO-8601 "now" expression, and the versioned-migration runner. Each store keeps its
// own schema and error type; neither reaches into the other's modules for these.
import { Database } from "bun:sqlite";
import { chmodSync, statSync } from "node:fs";

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

/** The files SQLite keeps beside a database (WAL mode, and a rollback journal if one is left). */
const SIDE_FILES = ["", "-wal", "-shm", "-journal"];

/**
 * Opens (creating if absent) an SQLite file readable by its owner only: the registry and the
 * master's database hold service env values, often secrets. A new file is created under umask
 * 077 (0600 from its first byte; opening is synchronous, so no other code of this process creates
 * files meanwhile); SQLite gives its -wal/-shm/-journal files the database file's mode. An
 * existing file, or side file, with group/other bits is tightened before it is opened, and named
 * through `warn` (one line each).
 */
export function openOwnerOnly(path: string, warn?: (message: string) => void): Database {
  if (path !== ":memory:") {
    for (const f of SIDE_FILES.map((x) => path + x)) {
      let mode: number;
      try {
        mode = statSync(f).mode & 0o777;
      } catch {
        continue; // absent
      }
      if ((mode & 0o077) === 0) continue;
      chmodSync(f, mode & 0o700);
      warn?.(
        `${f} was mode ${octal(mode)}; tightened to ${octal(mode & 0o700)} (it may hold secrets: owner only)`,
      );
    }
  }
  const old = process.umask(0o077);
  try {
    return new Database(path, { create: true, strict: true });
  } finally {
    process.umask(old);
  }
}

const octal = (mode: number) => `0${mode.toString(8).padStart(3, "0")}`;

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
