// Export copies a database a container wrote: it is opened read-only with the schema untrusted
// (files/tree.ts openUntrustedSqlite), falling back to read-write only for a hot journal.
import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { copyFileSync, existsSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openUntrustedSqlite, vacuumUntrusted } from "../../../src/roles/agent/files/tree.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-untrusted-sqlite-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("openUntrustedSqlite", () => {
  test("read-only, schema untrusted, cells checked; a view calling an unsafe function is refused", () => {
    const path = join(dir, "view.db");
    const w = new Database(path, { create: true });
    w.run("CREATE TABLE t(x)");
    w.run("INSERT INTO t VALUES (1)");
    w.run("CREATE VIEW v AS SELECT load_extension('/nonexistent/evil') AS y FROM t");
    w.close();
    const db = openUntrustedSqlite(path);
    try {
      expect(db.query("PRAGMA trusted_schema").get()).toEqual({ trusted_schema: 0 });
      expect(db.query("PRAGMA cell_size_check").get()).toEqual({ cell_size_check: 1 });
      expect(() => db.query("SELECT * FROM v").all()).toThrow("unsafe use of load_extension()");
      expect(() => db.run("INSERT INTO t VALUES (2)")).toThrow("attempt to write a readonly database");
    } finally {
      db.close();
    }
  });
});

describe("vacuumUntrusted", () => {
  test("a WAL copy is vacuumed read-only, its uncheckpointed rows included", () => {
    const src = join(dir, "wal.db");
    const w = new Database(src, { create: true });
    w.run("PRAGMA journal_mode = WAL");
    w.run("PRAGMA wal_autocheckpoint = 0");
    w.run("CREATE TABLE t(x)");
    w.run("INSERT INTO t VALUES (1), (2)");
    const copy = join(dir, "wal-copy.db");
    copyFileSync(src, copy);
    copyFileSync(`${src}-wal`, `${copy}-wal`);
    w.close();
    const out = join(dir, "wal-out.db");
    vacuumUntrusted(copy, out);
    const r = new Database(out, { readonly: true });
    expect(r.query("SELECT count(*) AS n FROM t").get()).toEqual({ n: 2 });
    r.close();
  });

  test("a hot rollback journal (only a writer may roll it back) falls back to read-write: the rolled-back state", () => {
    const src = join(dir, "hot.db");
    const w = new Database(src, { create: true });
    w.run("CREATE TABLE t(x)");
    w.run("INSERT INTO t VALUES ('committed')");
    w.run("PRAGMA cache_size = 1");
    w.run("BEGIN");
    for (let i = 0; i < 2000; i++) w.run("INSERT INTO t VALUES (randomblob(500))");
    const copy = join(dir, "hot-copy.db");
    copyFileSync(src, copy);
    expect(existsSync(`${src}-journal`)).toBe(true);
    copyFileSync(`${src}-journal`, `${copy}-journal`);
    w.run("ROLLBACK");
    w.close();
    const out = join(dir, "hot-out.db");
    vacuumUntrusted(copy, out);
    const r = new Database(out, { readonly: true });
    expect(r.query("SELECT x FROM t").all()).toEqual([{ x: "committed" }]);
    r.close();
    expect(readdirSync(dir).filter((n) => n.startsWith("hot-out"))).toEqual(["hot-out.db"]);
  });
});
