// `mcp agent snapshot` (SPEC §5.9), run ON the node, usually by mcp-agent-snapshot.timer: a
// consistent copy of the agent registry with VACUUM INTO, written as
// `<dir>/mcp-<UTC stamp>.db` (default dir: `backups/` beside the database, /srv/mcp/backups on
// a node), checked with integrity_check, then older snapshots beyond --keep are deleted.
//
// The registry is opened READ-ONLY, not through openRegistry: a snapshot must not create a
// missing database or run migrations behind a running agent's back. VACUUM INTO works on a
// read-only connection and reads one WAL snapshot, so it is consistent while the agent writes.
import { Database } from "bun:sqlite";
import { lstatSync, mkdirSync, readdirSync, rmSync, statSync, unlinkSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { DEFAULT_AGENT_CONFIG_PATH, loadAgentConfig } from "../../config/agent.ts";
import { resolveConfigPath } from "../../config/load.ts";
import { Registry } from "../../registry/registry.ts";
import { CliError, formatBytes, printJson, printTable, warn } from "./output.ts";

export const DEFAULT_SNAPSHOT_KEEP = 7;

/** Only files of exactly this shape are ever pruned; anything else in the dir is left alone. */
export const SNAPSHOT_FILE = /^mcp-\d{8}T\d{6}Z\.db$/;

/** `mcp-20261121T054500Z.db`: sorts by name in time order. */
export function snapshotFileName(at: Date): string {
  const stamp = at
    .toISOString()
    .replace(/\.\d{3}Z$/, "Z")
    .replace(/[-:]/g, "");
  return `mcp-${stamp}.db`;
}

export interface SnapshotResult {
  /** The snapshot file written. */
  path: string;
  bytes: number;
  /** The live registry it was taken from. */
  database: string;
  schemaVersion: number;
  /** Rows per table in the snapshot. */
  tables: Record<string, number>;
  /** Older snapshot files deleted by the keep-N rule. */
  pruned: string[];
}

/**
 * Deletes the oldest `mcp-<stamp>.db` regular files in `dir` so that `keep` remain, never
 * touching `protect` (the file just written, even if the clock went back and a "newer" one exists).
 */
export function pruneSnapshots(dir: string, keep: number, protect?: string): string[] {
  const others = readdirSync(dir)
    .filter((n) => SNAPSHOT_FILE.test(n) && join(dir, n) !== protect)
    .filter((n) => lstatSync(join(dir, n)).isFile())
    .sort()
    .reverse();
  const room = protect ? keep - 1 : keep;
  const doomed = others.slice(Math.max(0, room)).map((n) => join(dir, n));
  for (const p of doomed) unlinkSync(p);
  return doomed;
}

function openReadOnly(database: string): Database {
  try {
    statSync(database);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new CliError(`registry database ${database} does not exist`);
    throw new CliError(`cannot read registry database ${database}: ${(e as Error).message}`);
  }
  try {
    const db = new Database(database, { readonly: true, strict: true });
    // The agent may hold the write lock for a moment; wait rather than fail.
    db.run("PRAGMA busy_timeout = 5000");
    return db;
  } catch (e) {
    throw new CliError(`cannot open registry database ${database}: ${(e as Error).message}`);
  }
}

function registryVersion(db: Database, database: string): number {
  try {
    const row = db.query<{ v: number | null }, []>("SELECT max(version) AS v FROM schema_migrations").get();
    return row?.v ?? 0;
  } catch (e) {
    const msg = (e as Error).message;
    if (/no such table/.test(msg))
      throw new CliError(`${database} is not an MCP registry (no schema_migrations)`);
    throw new CliError(`cannot read registry database ${database}: ${msg}`);
  }
}

/** Row count of every table in a database file, by name. */
export function tableRowCounts(file: string): Record<string, number> {
  const db = new Database(file, { readonly: true, strict: true });
  try {
    const names = db
      .query<{ name: string }, []>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .all()
      .map((r) => r.name);
    const out: Record<string, number> = {};
    for (const n of names) {
      const q = `SELECT count(*) AS n FROM "${n.replace(/"/g, '""')}"`;
      out[n] = db.query<{ n: number }, []>(q).get()?.n ?? 0;
    }
    return out;
  } finally {
    db.close();
  }
}

function integrityOk(file: string): string {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").all();
    return rows.map((r) => r.integrity_check).join("; ");
  } finally {
    db.close();
  }
}

export function takeSnapshot(opts: {
  database: string;
  dir: string;
  keep: number;
  now?: Date;
}): SnapshotResult {
  const db = openReadOnly(opts.database);
  let target: string;
  let schemaVersion: number;
  // The registry holds service env (often secrets): the backups dir and files are owner-only.
  const oldMask = process.umask(0o077);
  try {
    schemaVersion = registryVersion(db, opts.database);
    mkdirSync(opts.dir, { recursive: true, mode: 0o700 });
    target = join(opts.dir, snapshotFileName(opts.now ?? new Date()));
    // Same second as an existing snapshot: snapshotTo renames over it, the newer copy wins.
    new Registry(db, opts.database).snapshotTo(target);
  } catch (e) {
    if (e instanceof CliError) throw e;
    throw new CliError((e as Error).message);
  } finally {
    process.umask(oldMask);
    db.close();
  }
  const check = integrityOk(target);
  if (check !== "ok") {
    rmSync(target, { force: true });
    throw new CliError(`snapshot ${target} failed its integrity check (${check}); removed`);
  }
  const tables = tableRowCounts(target);
  const pruned = pruneSnapshots(opts.dir, opts.keep, target);
  return {
    path: target,
    bytes: statSync(target).size,
    database: opts.database,
    schemaVersion,
    tables,
    pruned,
  };
}

function parseKeep(v: unknown): number {
  const n = typeof v === "number" ? v : Number(String(v));
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(`--keep: expected a whole number >= 1, got ${String(v)}`, 2);
  return n;
}

export async function snapshotCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const keep = parseKeep(opts.keep ?? DEFAULT_SNAPSHOT_KEEP);
  const config =
    typeof opts.config === "string" && opts.config !== ""
      ? opts.config
      : process.env.MCP_AGENT_CONFIG || DEFAULT_AGENT_CONFIG_PATH;
  const { config: cfg, warnings } = loadAgentConfig(config); // ConfigError → exit 2
  for (const w of warnings) warn(w);
  const database = resolveConfigPath(config, cfg.database.path);
  const dir =
    typeof opts.dir === "string" && opts.dir !== "" ? resolve(opts.dir) : join(dirname(database), "backups");
  const r = takeSnapshot({ database, dir, keep });
  if (opts.json) {
    printJson(r);
    return 0;
  }
  process.stdout.write(
    `snapshot ${r.path} (${formatBytes(r.bytes)}) of ${r.database}, schema v${r.schemaVersion}\n`,
  );
  printTable(
    ["table", "rows"],
    Object.entries(r.tables).map(([t, n]) => [t, String(n)]),
  );
  for (const p of r.pruned) process.stdout.write(`pruned ${p}\n`);
  return 0;
}
