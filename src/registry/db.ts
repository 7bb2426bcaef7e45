// Opening the registry database: directory creation, connection pragmas
// (WAL, foreign keys, busy timeout, NORMAL sync) and migrations to the
// latest schema version, all before the first query is served.

import type { Database } from "bun:sqlite";
import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { applyPragmas, openOwnerOnly } from "../util/sqlite.ts";
import { migrate } from "./migrations.ts";
import { Registry } from "./registry.ts";
import { RegistryError } from "./types.ts";

/** Opens the registry, owner-only (openOwnerOnly); `warn` hears of a file whose mode was tightened. */
export function openRegistry(path: string, warn?: (message: string) => void): Registry {
  if (path !== ":memory:") mkdirSync(dirname(path), { recursive: true });
  let db: Database;
  try {
    db = openOwnerOnly(path, warn);
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
