// Snapshot helpers of `mcp agent snapshot` on real sqlite files in a temp dir: the file name
// stamp, keep-N pruning (only mcp-<stamp>.db regular files, never the one just written), and
// the one-line failures for a missing, foreign or non-SQLite database. The e2e test
// (test/e2e/agent-snapshot.test.ts) covers the command beside a running agent.
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../../src/registry/index.ts";
import { CliError } from "../../../src/roles/cli/output.ts";
import {
  pruneSnapshots,
  SNAPSHOT_FILE,
  snapshotFileName,
  tableRowCounts,
  takeSnapshot,
} from "../../../src/roles/cli/snapshot.ts";

const root = mkdtempSync(join(tmpdir(), "mcp-snapshot-unit-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const fresh = () => {
  const d = join(root, `d${n++}`);
  mkdirSync(d);
  return d;
};

describe("snapshotFileName", () => {
  test("UTC compact stamp, no millis, matches SNAPSHOT_FILE and sorts in time order", () => {
    expect(snapshotFileName(new Date("2026-11-21T05:45:00.789Z"))).toBe("mcp-20261121T054500Z.db");
    const times = [0, 1, 59_999, 86_400_000, 1_800_000_000_000].map((t) => new Date(t));
    const names = times.map(snapshotFileName);
    for (const name of names) expect(name).toMatch(SNAPSHOT_FILE);
    expect([...names].sort()).toEqual(names);
  });
});

describe("pruneSnapshots", () => {
  test("keeps the newest N stamped files, leaves others, symlinks and dirs alone", () => {
    const d = fresh();
    const stamped = [1, 2, 3, 4, 5].map((h) => snapshotFileName(new Date(Date.UTC(2026, 0, 1, h))));
    for (const s of stamped) writeFileSync(join(d, s), "x");
    const others = ["mcp.db", "mcp-latest.db", "notes.txt", `${stamped[0]}.tmp-9`];
    for (const o of others) writeFileSync(join(d, o), "y");
    symlinkSync(join(d, "notes.txt"), join(d, snapshotFileName(new Date(Date.UTC(2020, 0, 1)))));
    mkdirSync(join(d, snapshotFileName(new Date(Date.UTC(2019, 0, 1)))));
    const pruned = pruneSnapshots(d, 2);
    expect(pruned.sort()).toEqual(stamped.slice(0, 3).map((s) => join(d, s)));
    const left = readdirSync(d);
    for (const s of stamped.slice(3)) expect(left).toContain(s);
    for (const o of others) expect(left).toContain(o);
    expect(left).toHaveLength(2 + others.length + 2);
  });

  test("the protected (just written) file survives even if the clock went back", () => {
    const d = fresh();
    const future = snapshotFileName(new Date(Date.UTC(2030, 0, 1)));
    const now = snapshotFileName(new Date(Date.UTC(2026, 0, 1)));
    for (const f of [future, now]) writeFileSync(join(d, f), "x");
    expect(pruneSnapshots(d, 1, join(d, now))).toEqual([join(d, future)]);
    expect(readdirSync(d)).toEqual([now]);
  });
});

describe("takeSnapshot", () => {
  test("copies a real registry, counts rows, keeps N", () => {
    const d = fresh();
    const dbPath = join(d, "mcp.db");
    const reg = openRegistry(dbPath);
    reg.db.run("INSERT INTO services (name, active) VALUES ('svc', 1)");
    const dir = join(d, "backups");
    const first = takeSnapshot({ database: dbPath, dir, keep: 1, now: new Date(Date.UTC(2026, 0, 1)) });
    expect(first.tables.services).toBe(1);
    expect(first.schemaVersion).toBeGreaterThan(0);
    expect(tableRowCounts(first.path)).toEqual(first.tables);
    const second = takeSnapshot({ database: dbPath, dir, keep: 1, now: new Date(Date.UTC(2026, 0, 2)) });
    expect(second.pruned).toEqual([first.path]);
    expect(readdirSync(dir)).toEqual([second.path.split("/").pop()!]);
    reg.close();
  });

  const failure = (database: string) => {
    try {
      takeSnapshot({ database, dir: join(root, "never"), keep: 7 });
    } catch (e) {
      expect(e).toBeInstanceOf(CliError);
      expect((e as CliError).code).toBe(1);
      return (e as Error).message;
    }
    throw new Error("expected a failure");
  };

  test("missing, non-SQLite and non-registry databases fail with one line and write nothing", () => {
    const d = fresh();
    expect(failure(join(d, "none.db"))).toBe(`registry database ${join(d, "none.db")} does not exist`);
    expect(existsSync(join(d, "none.db"))).toBe(false);
    writeFileSync(join(d, "junk.db"), "not a database at all ".repeat(100));
    expect(failure(join(d, "junk.db"))).toMatch(
      /^cannot read registry database .*junk\.db: file is not a database$/,
    );
    const other = new Database(join(d, "other.db"), { create: true });
    other.run("CREATE TABLE t (x)");
    other.close();
    expect(failure(join(d, "other.db"))).toBe(
      `${join(d, "other.db")} is not an MCP registry (no schema_migrations)`,
    );
    expect(existsSync(join(root, "never"))).toBe(false);
  });
});
