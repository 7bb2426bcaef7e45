// Issue 16 finding 8 (the registry's mode): the agent registry and the master's database hold
// service env values, often secrets. Real SQLite files under the usual umask 022: a new database,
// its -wal and -shm files and the registry's backups are 0600; an existing 0644 file is tightened
// on open, with one warning line naming it.

import { Database } from "bun:sqlite";
import { afterAll, afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../../src/registry/db.ts";
import { openMasterStore } from "../../../src/roles/master/store.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-file-modes-"));
const modeOf = (f: string) => statSync(f).mode & 0o777;
let oldMask = 0;

beforeEach(() => {
  oldMask = process.umask(0o022);
});
afterEach(() => {
  process.umask(oldMask);
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("database files are owner-only", () => {
  test("a new registry, its -wal and -shm files and a backup are 0600; the umask is restored", () => {
    const path = join(dir, "new", "registry.db");
    const reg = openRegistry(path);
    try {
      expect(process.umask(0o022)).toBe(0o022);
      // Migrations wrote through the WAL: both side files exist while the connection is open.
      for (const f of [path, `${path}-wal`, `${path}-shm`]) {
        expect(existsSync(f)).toBe(true);
        expect([f, modeOf(f).toString(8)]).toEqual([f, "600"]);
      }
      const backup = join(dir, "new", "backups", "mcp-1.db");
      reg.snapshotTo(backup);
      expect(modeOf(backup).toString(8)).toBe("600");
      expect(process.umask(0o022)).toBe(0o022);
    } finally {
      reg.db.close();
    }
  });

  test("a new master database and its WAL files are 0600", () => {
    const path = join(dir, "master.db");
    const store = openMasterStore(path);
    try {
      for (const f of [path, `${path}-wal`, `${path}-shm`]) expect(modeOf(f).toString(8)).toBe("600");
    } finally {
      store.close();
    }
  });

  test("an existing 0644 registry is tightened on open, with one line naming the file", () => {
    const path = join(dir, "old.db");
    const old = new Database(path, { create: true });
    old.run("PRAGMA journal_mode = WAL");
    old.run("CREATE TABLE t (x)");
    old.close();
    expect(modeOf(path).toString(8)).toBe("644");
    const warnings: string[] = [];
    const reg = openRegistry(path, (m) => warnings.push(m));
    try {
      expect(modeOf(path).toString(8)).toBe("600");
      expect(modeOf(`${path}-wal`).toString(8)).toBe("600");
      expect(warnings).toEqual([
        `${path} was mode 0644; tightened to 0600 (it may hold secrets: owner only)`,
      ]);
    } finally {
      reg.db.close();
    }
  });
});
