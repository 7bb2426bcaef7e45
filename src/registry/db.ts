// Opening the registry database: directory creation, connection pragmas
// (WAL, foreign keys, busy timeout, NORMAL sync) and migrations to the
// latest schema version, all before the first query is served.

import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { migrate } from "./migrations.ts";
import { Registry } from "./registry.ts";
import { RegistryError } from "./types.ts";

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

export function openRegistry(path: string): Registry {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  let db: Database;
  try {
    db = new Database(path, { create: true, strict: true });
  } catch (e) {
    throw new RegistryError(`cannot open registry ${path}: ${(e as Error).message}`);
  }
  try {
    applyPragmas(db);
    migrate(db);
  } catch (e) {
    db.close();
    if (e instanceof RegistryError) throw e;
    throw new RegistryError(`cannot open registry ${path}: ${(e as Error).message}`);
  }
  return new Registry(db, path);
}
