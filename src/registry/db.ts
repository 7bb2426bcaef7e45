// Opening the registry database: directory creation, connection pragmas
// (WAL, foreign keys, busy timeout, NORMAL sync) and migrations to the
// latest schema version, all before the first query is served.

import { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { applyPragmas } from "../util/sqlite.ts";
import { migrate } from "./migrations.ts";
import { Registry } from "./registry.ts";
import { RegistryError } from "./types.ts";

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
