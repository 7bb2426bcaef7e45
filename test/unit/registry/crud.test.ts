// Services and components round-trip through real sqlite files with every
// field; cascades keep events; failed transactions leave nothing behind.

import { Database } from "bun:sqlite";
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ComponentInput, Registry } from "../../../src/registry/index.ts";
import { openRegistry, RegistryError } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-reg-crud-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): Registry => openRegistry(join(dir, `r${++n}.db`));

const api = (over: Partial<ComponentInput> = {}): ComponentInput => ({
  name: "api",
  image: "mcr.example/metacrypt:v1.2.0",
  network: "mcpnet",
  user: "1000:1000",
  restart: "unless-stopped",
  desiredState: "running",
  version: "v1.2.0",
  ports: ["127.0.0.1:18443:8443", "127.0.0.1:19090:9090"],
  volumes: ["/srv/metacrypt:/srv/metacrypt", "/srv/certs:/certs:ro"],
  cmd: ["server", "--config", "/srv/metacrypt/metacrypt.toml"],
  env: ["LOG=debug", "EMPTY=", "A=b=c"],
  routes: [
    { name: "grpc", port: 9443, mode: "l4", hostname: "", public: false, hostPort: 20001 },
    { name: "web", port: 8443, mode: "l7", hostname: "metacrypt.example.net", public: true, hostPort: 20002 },
  ],
  runtime: "container",
  memory: "512m",
  vcpus: 2,
  ...over,
});

describe("round trip", () => {
  test("a service and component come back with every field", () => {
    const reg = fresh();
    const spec = JSON.stringify({ name: "metacrypt", components: [{ name: "api" }] });
    const before = Date.now();
    reg.upsertService({ name: "metacrypt", active: true, tier: "core", node: "rift", specJson: spec });
    reg.upsertComponent("metacrypt", { ...api(), observedState: "running" });
    const s = reg.getService("metacrypt")!;
    expect(s).toMatchObject({ name: "metacrypt", active: true, tier: "core", node: "rift", specJson: spec });
    expect(s.createdAt.getTime()).toBeGreaterThanOrEqual(before - 5);
    expect(s.components).toHaveLength(1);
    const { createdAt, updatedAt, ...rest } = s.components[0]!;
    expect(rest).toEqual({ ...api(), service: "metacrypt", observedState: "running" });
    expect(createdAt).toBeInstanceOf(Date);
    expect(updatedAt.getTime()).toBeGreaterThanOrEqual(createdAt.getTime());
    expect(reg.getComponent("metacrypt", "api")).toEqual(s.components[0]!);
    expect(reg.getComponent("metacrypt", "nope")).toBeNull();
    expect(reg.getService("nope")).toBeNull();
    reg.close();
  });

  test("data survives close and reopen", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc", tier: "edge" });
    reg.upsertComponent("svc", api());
    const before = reg.listServices();
    reg.close();
    const again = openRegistry(reg.path);
    expect(again.listServices()).toEqual(before);
    again.close();
  });

  test("upsertComponent replaces child rows and keeps observed state and created_at", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", { ...api(), observedState: "running" });
    const first = reg.getComponent("svc", "api")!;
    reg.upsertComponent(
      "svc",
      api({ ports: ["1:1"], volumes: [], cmd: ["x"], env: [], routes: [], image: "img:v2", vcpus: 0 }),
    );
    const c = reg.getComponent("svc", "api")!;
    expect(c).toMatchObject({
      ports: ["1:1"],
      volumes: [],
      cmd: ["x"],
      env: [],
      routes: [],
      image: "img:v2",
    });
    expect(c.observedState).toBe("running");
    expect(c.createdAt).toEqual(first.createdAt);
    const counts = reg.db
      .query<{ n: number }, []>(
        `SELECT (SELECT count(*) FROM component_ports) + (SELECT count(*) FROM component_volumes)
              + (SELECT count(*) FROM component_cmd) + (SELECT count(*) FROM component_env)
              + (SELECT count(*) FROM component_routes) AS n`,
      )
      .get();
    expect(counts?.n).toBe(2);
    reg.close();
  });

  test("a route without a host port keeps its earlier allocation on redeploy", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    const port = reg.allocatePort("svc", "api", "web", [30000, 30010], () => true);
    const route = { name: "web", port: 8080, mode: "l7" as const, hostname: "h", public: false, hostPort: 0 };
    reg.upsertComponent("svc", api({ routes: [route] }));
    expect(reg.getComponent("svc", "api")!.routes[0]!.hostPort).toBe(port);
    reg.close();
  });

  test("upsertService leaves unspecified fields as they were", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc", active: false, tier: "core", node: "n1", specJson: "{}" });
    reg.upsertService({ name: "svc", node: "n2" });
    expect(reg.getService("svc")).toMatchObject({ active: false, tier: "core", node: "n2", specJson: "{}" });
    reg.upsertService({ name: "svc", specJson: null });
    expect(reg.getService("svc")!.specJson).toBeNull();
    reg.upsertService({ name: "fresh" });
    expect(reg.getService("fresh")).toMatchObject({ active: true, tier: "worker", node: "", specJson: null });
    reg.close();
  });

  test("listServices orders services and components by name in a fixed number of queries", () => {
    const reg = fresh();
    for (const s of ["zeta", "alpha", "mid"]) {
      reg.upsertService({ name: s });
      for (const c of ["web", "api", "db"])
        reg.upsertComponent(s, api({ name: c, env: [`S=${s}`, `C=${c}`] }));
    }
    reg.upsertService({ name: "empty" });
    const all = reg.listServices();
    expect(all.map((s) => s.name)).toEqual(["alpha", "empty", "mid", "zeta"]);
    expect(all[0]!.components.map((c) => c.name)).toEqual(["api", "db", "web"]);
    expect(all[1]!.components).toEqual([]);
    expect(all[3]!.components[2]!.env).toEqual(["S=zeta", "C=web"]);
    // Same answer as per-service reads: grouping did not mix rows up.
    for (const s of all) expect(reg.getService(s.name)).toEqual(s);
    // Count statements: the number must not grow with the number of services.
    const db = reg.db as { query: (sql: string) => unknown };
    const orig = db.query.bind(reg.db);
    let calls = 0;
    db.query = (sql: string) => {
      calls++;
      return orig(sql);
    };
    reg.listServices();
    const small = calls;
    for (let i = 0; i < 30; i++) {
      reg.upsertService({ name: `bulk${i}` });
      reg.upsertComponent(`bulk${i}`, api());
    }
    calls = 0;
    expect(reg.listServices()).toHaveLength(34);
    expect(calls).toBe(small);
    expect(small).toBeLessThanOrEqual(8);
    reg.close();
  });
});

describe("state setters", () => {
  test("desired state for one component or the whole service", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", api({ name: "a" }));
    reg.upsertComponent("svc", api({ name: "b" }));
    expect(reg.setDesiredState("svc", "a", "stopped")).toBe(1);
    expect(reg.setDesiredState("svc", "a", "stopped")).toBe(0);
    expect(reg.setDesiredState("svc", null, "ignore")).toBe(2);
    expect(reg.getService("svc")!.components.map((c) => c.desiredState)).toEqual(["ignore", "ignore"]);
    expect(() => reg.setDesiredState("svc", "zzz", "running")).toThrow("component svc/zzz not found");
    expect(() => reg.setDesiredState("nope", null, "running")).toThrow("service nope not found");
    expect(() => reg.setDesiredState("svc", "a", "bogus" as "running")).toThrow(
      'invalid desired state "bogus"',
    );
    reg.close();
  });

  test("version and active flag", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", api());
    reg.setVersion("svc", "api", "v9");
    reg.setServiceActive("svc", false);
    expect(reg.getService("svc")).toMatchObject({ active: false, components: [{ version: "v9" }] });
    expect(() => reg.setVersion("svc", "nope", "v1")).toThrow(RegistryError);
    expect(() => reg.setServiceActive("nope", true)).toThrow("service nope not found");
    reg.close();
  });
});

describe("deletes", () => {
  test("deleting a service cascades to components and child rows, keeps events, frees ports", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertService({ name: "other" });
    reg.upsertComponent("svc", api());
    reg.upsertComponent("other", api());
    reg.setObservedState("svc", "api", "running");
    reg.allocatePort("svc", "api", "web", [30000, 30100], () => true);
    expect(reg.deleteService("svc")).toBe(true);
    expect(reg.deleteService("svc")).toBe(false);
    expect(reg.getService("svc")).toBeNull();
    const left = (t: string) =>
      reg.db.query<{ n: number }, []>(`SELECT count(*) AS n FROM ${t} WHERE service = 'svc'`).get()!.n;
    for (const t of [
      "components",
      "component_ports",
      "component_volumes",
      "component_cmd",
      "component_env",
      "component_routes",
      "port_allocations",
    ]) {
      expect(left(t)).toBe(0);
    }
    expect(reg.recentEvents({ service: "svc", limit: 10 })).toHaveLength(1);
    expect(reg.getComponent("other", "api")!.ports).toHaveLength(2);
    reg.close();
  });

  test("deleting one component leaves its siblings", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", api({ name: "a" }));
    reg.upsertComponent("svc", api({ name: "b" }));
    expect(reg.deleteComponent("svc", "a")).toBe(true);
    expect(reg.deleteComponent("svc", "a")).toBe(false);
    expect(reg.getService("svc")!.components.map((c) => c.name)).toEqual(["b"]);
    reg.close();
  });
});

describe("transactions", () => {
  test("a failing withTransaction leaves nothing half-written", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", api());
    const before = reg.listServices();
    expect(() =>
      reg.withTransaction(() => {
        reg.upsertService({ name: "new" });
        reg.upsertComponent("new", api());
        reg.setObservedState("svc", "api", "exited");
        reg.deleteComponent("svc", "api");
        throw new Error("boom");
      }),
    ).toThrow("boom");
    expect(reg.listServices()).toEqual(before);
    expect(reg.recentEvents({ limit: 10 })).toEqual([]);
    reg.close();
  });

  test("a component write that fails part-way keeps the old rows", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", api());
    const before = reg.getComponent("svc", "api");
    // Two routes with one name violate the routes primary key after the
    // component row and the other child rows were already rewritten.
    const dup = { name: "x", port: 1, mode: "l4" as const, hostname: "", public: false, hostPort: 0 };
    expect(() => reg.upsertComponent("svc", api({ image: "changed", routes: [dup, dup] }))).toThrow(/UNIQUE/);
    expect(reg.getComponent("svc", "api")).toEqual(before);
    reg.close();
  });

  test("bad input is rejected before anything is written", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    expect(() => reg.upsertComponent("svc", api({ desiredState: "up" as "running" }))).toThrow(
      'invalid desired state "up"',
    );
    expect(() => reg.upsertComponent("svc", api({ vcpus: 1.5 }))).toThrow(
      "vcpus must be a non-negative integer",
    );
    expect(() => reg.upsertService({ name: "" })).toThrow("service name must not be empty");
    expect(reg.getService("svc")!.components).toEqual([]);
    reg.close();
  });
});

describe("snapshotTo", () => {
  test("writes a consistent copy that opens as a registry, replacing an older snapshot", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc", specJson: '{"a":1}' });
    reg.upsertComponent("svc", api());
    const snap = join(dir, "backups", "snap.db");
    reg.snapshotTo(snap);
    reg.upsertService({ name: "later" });
    reg.snapshotTo(snap);
    expect(existsSync(`${snap}.tmp-${process.pid}`)).toBe(false);
    const copy = new Database(snap, { readonly: true });
    expect(copy.query("SELECT name FROM services ORDER BY name").all()).toEqual([
      { name: "later" },
      { name: "svc" },
    ]);
    copy.close();
    const restored = openRegistry(snap);
    expect(restored.getService("svc")).toEqual(reg.getService("svc"));
    restored.close();
    expect(() => reg.withTransaction(() => reg.snapshotTo(snap))).toThrow("inside a transaction");
    reg.close();
  });
});
