// Registry open/migrate behaviour on real sqlite files: pragmas, idempotent
// reopen, upgrade of a version-1 database with its data intact, and refusal
// of a database from a newer binary.

import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LATEST_VERSION, migrate, openRegistry, RegistryError } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-reg-mig-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => join(dir, `r${++n}`, "registry.db");

const tables = (db: Database) =>
  db
    .query<{ name: string }, []>("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    .all()
    .map((r) => r.name);

describe("openRegistry", () => {
  test("creates the parent directory and applies every migration once", () => {
    const path = fresh();
    const reg = openRegistry(path);
    expect(reg.schemaVersion()).toBe(LATEST_VERSION);
    expect(LATEST_VERSION).toBe(3);
    expect(tables(reg.db)).toEqual([
      "component_cmd",
      "component_env",
      "component_ports",
      "component_routes",
      "component_volumes",
      "components",
      "deploy_history",
      "edge_routes",
      "events",
      "port_allocations",
      "schema_migrations",
      "services",
      "sqlite_sequence",
    ]);
    reg.close();
  });

  test("sets WAL, foreign keys, busy timeout and NORMAL sync on the connection", () => {
    const reg = openRegistry(fresh());
    const p = (name: string) => Object.values(reg.db.query(`PRAGMA ${name}`).get() as object)[0];
    expect(p("journal_mode")).toBe("wal");
    expect(p("foreign_keys")).toBe(1);
    expect(p("busy_timeout")).toBe(5000);
    expect(p("synchronous")).toBe(1); // NORMAL
    reg.close();
    // WAL is a property of the file: a plain connection sees it too.
    const raw = new Database(reg.path);
    expect(raw.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get()?.journal_mode).toBe("wal");
    raw.close();
  });

  test("reopening is idempotent: no migration re-runs, data stays", () => {
    const path = fresh();
    const a = openRegistry(path);
    a.upsertService({ name: "svc" });
    const applied = a.db.query("SELECT version, applied_at FROM schema_migrations ORDER BY version").all();
    a.close();
    for (let i = 0; i < 3; i++) {
      const b = openRegistry(path);
      expect(b.db.query("SELECT version, applied_at FROM schema_migrations ORDER BY version").all()).toEqual(
        applied,
      );
      expect(b.listServices().map((s) => s.name)).toEqual(["svc"]);
      b.close();
    }
  });

  test("a version-1 database upgrades to the latest version with its data kept", () => {
    const path = fresh();
    openRegistry(path).close(); // create the directory
    rmSync(path);
    const v1 = new Database(path, { create: true });
    v1.run("PRAGMA foreign_keys = ON");
    expect(migrate(v1, 1)).toBe(1);
    // Rows written the way the reference schema's defaults write them.
    v1.run("INSERT INTO services (name, active) VALUES ('metacrypt', 0)");
    v1.run(
      `INSERT INTO components (name, service, image, user_spec, desired_state, observed_state, version)
       VALUES ('api', 'metacrypt', 'mcr/metacrypt:v1', '0:0', 'running', 'exited', 'v1')`,
    );
    v1.run("INSERT INTO component_ports VALUES ('metacrypt', 'api', '127.0.0.1:8443:8443')");
    v1.run("INSERT INTO component_volumes VALUES ('metacrypt', 'api', '/srv/metacrypt:/srv')");
    v1.run(
      "INSERT INTO component_cmd VALUES ('metacrypt', 'api', 0, 'serve'), ('metacrypt', 'api', 1, '-v')",
    );
    v1.run(
      "INSERT INTO events (service, component, prev_state, new_state) VALUES ('metacrypt', 'api', 'running', 'exited')",
    );
    v1.close();

    const reg = openRegistry(path);
    expect(reg.schemaVersion()).toBe(LATEST_VERSION);
    const svc = reg.getService("metacrypt");
    expect(svc).not.toBeNull();
    expect(svc!.active).toBe(false);
    expect(svc!.tier).toBe("worker");
    expect(svc!.node).toBe("");
    expect(svc!.specJson).toBeNull();
    const c = svc!.components[0]!;
    expect(c).toMatchObject({
      name: "api",
      image: "mcr/metacrypt:v1",
      network: "bridge",
      user: "0:0",
      restart: "unless-stopped",
      desiredState: "running",
      observedState: "exited",
      version: "v1",
      ports: ["127.0.0.1:8443:8443"],
      volumes: ["/srv/metacrypt:/srv"],
      cmd: ["serve", "-v"],
      env: [],
      routes: [],
      runtime: "container",
      memory: "",
      vcpus: 0,
    });
    expect(Math.abs(c.createdAt.getTime() - Date.now())).toBeLessThan(60_000);
    // Old datetime('now') timestamps were rewritten to the ISO form.
    const ts = reg.db.query<{ t: string }, []>("SELECT timestamp AS t FROM events").get()!.t;
    expect(ts).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(reg.recentEvents({ limit: 10 })).toHaveLength(1);
    reg.close();
  });

  test("a database from a newer binary is refused with one clear line", () => {
    const path = fresh();
    const reg = openRegistry(path);
    reg.db.run("INSERT INTO schema_migrations (version, applied_at) VALUES (99, 'x')");
    reg.close();
    let err: unknown;
    try {
      openRegistry(path);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(RegistryError);
    expect((err as Error).message).toBe(
      "registry schema version 99 is newer than this binary supports (3); upgrade mcp",
    );
  });

  test("an unopenable path gives a one-line RegistryError", () => {
    const path = fresh();
    openRegistry(path).close();
    // A directory where the database file should be.
    expect(() => openRegistry(join(path, ".."))).toThrow(/^cannot open registry /);
  });
});

describe("foreign keys", () => {
  test("child rows need their component and a component needs its service", () => {
    const reg = openRegistry(fresh());
    expect(() =>
      reg.db.run("INSERT INTO components (name, service, image) VALUES ('api', 'missing', 'img')"),
    ).toThrow(/FOREIGN KEY constraint failed/);
    expect(() => reg.db.run("INSERT INTO component_ports VALUES ('missing', 'api', '1:1')")).toThrow(
      /FOREIGN KEY constraint failed/,
    );
    expect(() =>
      reg.upsertComponent("missing", {
        name: "api",
        image: "img",
        network: "bridge",
        user: "",
        restart: "always",
        desiredState: "running",
        version: "",
        ports: [],
        volumes: [],
        cmd: [],
        env: [],
        routes: [],
        runtime: "container",
        memory: "",
        vcpus: 0,
      }),
    ).toThrow("service missing not found");
    reg.close();
  });
});

describe("migration atomicity", () => {
  test("a migration that fails half-way leaves the database at the previous version", () => {
    const path = fresh();
    openRegistry(path).close();
    rmSync(path);
    const db = new Database(path, { create: true });
    const broken = [
      { version: 1, sql: "CREATE TABLE a (x INTEGER)" },
      {
        version: 2,
        sql: "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (1); INSERT INTO nope VALUES (1);",
      },
    ];
    expect(() => migrate(db, 2, broken)).toThrow(/no such table: nope/);
    expect(db.query("SELECT max(version) AS v FROM schema_migrations").get()).toEqual({ v: 1 });
    expect(tables(db)).toEqual(["a", "schema_migrations"]);
    expect(db.query("SELECT count(*) AS n FROM a").get()).toEqual({ n: 0 });
    db.close();
  });
});
