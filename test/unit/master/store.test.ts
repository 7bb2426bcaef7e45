import { Database } from "bun:sqlite";
import { afterEach, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  MASTER_MIGRATIONS,
  type MasterStore,
  MasterStoreError,
  openMasterStore,
} from "../../../src/roles/master/store.ts";
import { migrateSchema } from "../../../src/util/sqlite.ts";

const dirs: string[] = [];
const stores: MasterStore[] = [];
function fresh(): { store: MasterStore; path: string } {
  const dir = mkdtempSync(join(tmpdir(), "mcp-master-store-"));
  dirs.push(dir);
  const path = join(dir, "sub", "master.db");
  const store = openMasterStore(path);
  stores.push(store);
  return { store, path };
}
afterEach(() => {
  for (const s of stores.splice(0)) {
    try {
      s.close();
    } catch {}
  }
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("master store", () => {
  test("opens in WAL mode at schema version 2, reopens idempotently", () => {
    const { store, path } = fresh();
    const mode = store.db.query<{ journal_mode: string }, []>("PRAGMA journal_mode").get();
    expect(mode?.journal_mode).toBe("wal");
    store.close();
    stores.pop();
    const again = openMasterStore(path);
    stores.push(again);
    const v = again.db.query<{ v: number }, []>("SELECT max(version) AS v FROM schema_migrations").get();
    expect(v?.v).toBe(2);
  });

  test("a version-1 database migrates to 2: nodes kept, their runtimes not reported yet", () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-master-store-"));
    dirs.push(dir);
    const path = join(dir, "master.db");
    const old = new Database(path, { create: true });
    migrateSchema(old, MASTER_MIGRATIONS, 1, (m) => new Error(m), "master database");
    old
      .query("INSERT INTO nodes (name, role, address, arch, version, containers) VALUES (?, ?, ?, ?, ?, ?)")
      .run("rift", "worker", "127.0.0.1:1", "amd64", "1.0", 3);
    old.close();
    const store = openMasterStore(path);
    stores.push(store);
    expect(store.getNode("rift")).toMatchObject({
      address: "127.0.0.1:1",
      version: "1.0",
      containers: 3,
      runtimes: null,
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
    const v = store.db.query<{ v: number }, []>("SELECT max(version) AS v FROM schema_migrations").get();
    expect(v?.v).toBe(2);
  });

  test("node runtimes: null until reported, replaced by each report, kept by registration updates", () => {
    const { store, path } = fresh();
    store.upsertNode({ name: "rift", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
    expect(store.getNode("rift")?.runtimes).toBeNull();
    const uni = {
      runtimes: ["container", "unikernel"],
      unikernelAccel: "tcg",
      unikernelAccelReason: "/dev/kvm missing",
    };
    expect(store.setNodeRuntimes("rift", uni)).toBe(true);
    expect(store.getNode("rift")).toMatchObject({
      runtimes: ["container", "unikernel"],
      unikernelAccel: "tcg",
      unikernelAccelReason: "/dev/kvm missing",
    });
    // Re-registration (address change) and heartbeats do not touch what was reported.
    store.upsertNode({ name: "rift", role: "worker", address: "127.0.0.1:2", arch: "amd64" });
    store.recordHeartbeat("rift", { containers: 1, cpuMillicores: 0, memoryBytes: 0, diskBytes: 0 });
    expect(store.getNode("rift")?.runtimes).toEqual(["container", "unikernel"]);
    expect(
      store.setNodeRuntimes("rift", {
        runtimes: ["container"],
        unikernelAccel: "",
        unikernelAccelReason: "",
      }),
    ).toBe(true);
    store.close();
    stores.pop();
    const again = openMasterStore(path);
    stores.push(again);
    expect(again.getNode("rift")).toMatchObject({
      runtimes: ["container"],
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
    expect(again.setNodeRuntimes("nope", uni)).toBe(false);
    // A corrupt stored list reads as not reported (never as a runtime the node may not have).
    again.db.query("UPDATE nodes SET runtimes = ? WHERE name = ?").run('["container", 7]', "rift");
    expect(again.getNode("rift")?.runtimes).toBeNull();
  });

  test("nodes: upsert keeps status, heartbeat data and a known version", () => {
    const { store } = fresh();
    store.upsertNode({ name: "rift", role: "worker", address: "127.0.0.1:1", arch: "amd64", version: "1.0" });
    expect(store.getNode("rift")?.status).toBe("unknown");
    expect(store.setNodeStatus("rift", "healthy")).toBe(true);
    const at = new Date("2030-01-02T03:04:05.000Z");
    expect(
      store.recordHeartbeat("rift", {
        containers: 4,
        cpuMillicores: 250,
        memoryBytes: 10,
        diskBytes: 20,
        at,
      }),
    ).toBe(true);
    store.upsertNode({
      name: "rift",
      role: "worker",
      address: "127.0.0.1:2",
      addresses: ["127.0.0.2:2"],
      arch: "arm64",
    });
    const n = store.getNode("rift");
    expect(n).toMatchObject({
      address: "127.0.0.1:2",
      addresses: ["127.0.0.2:2"],
      arch: "arm64",
      version: "1.0",
      status: "healthy",
      containers: 4,
      cpuMillicores: 250,
      memoryBytes: 10,
      diskBytes: 20,
      lastHeartbeat: at.toISOString(),
    });
    store.setContainers("rift", 7);
    expect(store.getNode("rift")?.containers).toBe(7);
    expect(
      store.recordHeartbeat("nope", { containers: 0, cpuMillicores: 0, memoryBytes: 0, diskBytes: 0 }),
    ).toBe(false);
    expect(store.setNodeStatus("nope", "healthy")).toBe(false);
    expect(store.getNode("nope")).toBeNull();
  });

  test("listNodes is ordered by name", () => {
    const { store } = fresh();
    for (const name of ["c", "a", "b"])
      store.upsertNode({ name, role: "worker", address: "x:1", arch: "amd64" });
    expect(store.listNodes().map((n) => n.name)).toEqual(["a", "b", "c"]);
  });

  test("placements reference known nodes; edge routes cascade with their placement", () => {
    const { store } = fresh();
    expect(() => store.upsertPlacement({ service: "web", node: "ghost", tier: "worker" })).toThrow(
      MasterStoreError,
    );
    store.upsertNode({ name: "w1", role: "worker", address: "x:1", arch: "amd64" });
    store.upsertNode({ name: "edge", role: "edge", address: "x:2", arch: "amd64" });
    store.upsertPlacement({ service: "web", node: "w1", tier: "worker", specJson: '{"name":"web"}' });
    store.upsertPlacement({ service: "api", node: "w1", tier: "core" });
    expect(store.getPlacement("web")).toMatchObject({
      node: "w1",
      tier: "worker",
      specJson: '{"name":"web"}',
    });
    expect(store.listPlacements().map((p) => p.service)).toEqual(["api", "web"]);
    expect(store.listPlacements("edge")).toEqual([]);
    store.upsertEdgeRoute({
      hostname: "web.example.net",
      service: "web",
      edgeNode: "edge",
      backendHostname: "web.svc.mcp.metacircular.net",
      backendPort: 8443,
      certExpires: "2031-01-01T00:00:00Z",
    });
    store.upsertEdgeRoute({
      hostname: "api.example.net",
      service: "api",
      edgeNode: "edge",
      backendHostname: "api.svc.mcp.metacircular.net",
      backendPort: 9443,
    });
    expect(store.listEdgeRoutes("web")).toMatchObject([
      {
        hostname: "web.example.net",
        edgeNode: "edge",
        backendPort: 8443,
        certExpires: "2031-01-01T00:00:00Z",
      },
    ]);
    expect(store.listEdgeRoutes().map((r) => r.hostname)).toEqual(["api.example.net", "web.example.net"]);
    expect(() => store.deleteNode("w1")).toThrow(MasterStoreError);
    expect(store.deletePlacement("web")).toBe(true);
    expect(store.listEdgeRoutes("web")).toEqual([]);
    expect(store.deleteEdgeRoute("api.example.net")).toBe(true);
    expect(store.deleteEdgeRoute("api.example.net")).toBe(false);
    expect(store.deletePlacement("api")).toBe(true);
    expect(store.deleteNode("w1")).toBe(true);
    expect(store.getNode("w1")).toBeNull();
  });

  test("state survives reopening", () => {
    const { store, path } = fresh();
    store.upsertNode({ name: "w1", role: "master", address: "x:1", arch: "amd64", version: "2" });
    store.upsertPlacement({ service: "s", node: "w1", tier: "core" });
    store.close();
    stores.pop();
    const again = openMasterStore(path);
    stores.push(again);
    expect(again.getNode("w1")?.role).toBe("master");
    expect(again.getPlacement("s")?.tier).toBe("core");
  });
});

describe("container count held after a master-side change", () => {
  test("a heartbeat within the hold keeps the master's count; after it, the heartbeat wins", async () => {
    const dir = mkdtempSync(join(tmpdir(), "mcp-store-hold-"));
    const store = openMasterStore(join(dir, "master.db"));
    store.upsertNode({ name: "w1", role: "worker", address: "127.0.0.1:1", arch: "amd64", version: "v" });
    store.recordHeartbeat("w1", { containers: 2, cpuMillicores: 1, memoryBytes: 1, diskBytes: 1 });
    store.setContainers("w1", 3, 150);
    // A heartbeat sampled before the deploy still says 2: the master's 3 stands.
    store.recordHeartbeat("w1", { containers: 2, cpuMillicores: 5, memoryBytes: 1, diskBytes: 1 });
    expect(store.getNode("w1")!.containers).toBe(3);
    await Bun.sleep(200);
    store.recordHeartbeat("w1", { containers: 4, cpuMillicores: 5, memoryBytes: 1, diskBytes: 1 });
    expect(store.getNode("w1")!.containers).toBe(4);
    store.close();
    rmSync(dir, { recursive: true, force: true });
  });
});
