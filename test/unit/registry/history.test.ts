// Registry: health_json on components and the deploy_history table (order, pruning to keep N).
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry, RegistryError } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-history-test-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = () => openRegistry(join(dir, `r${n++}.db`));

const comp = {
  name: "app",
  image: "img:v1",
  network: "",
  user: "",
  restart: "unless-stopped",
  desiredState: "running" as const,
  version: "v1",
  ports: [],
  volumes: [],
  cmd: [],
  env: [],
  routes: [],
  runtime: "container",
  memory: "",
  vcpus: 0,
};

describe("component health", () => {
  test("stored and read back; absent stays absent; an upsert without it clears it", () => {
    const reg = fresh();
    reg.upsertService({ name: "web" });
    const health = {
      type: "exec" as const,
      cmd: ["true"],
      intervalMs: 1000,
      timeoutMs: 500,
      retries: 2,
      startPeriodMs: 0,
    };
    reg.upsertComponent("web", { ...comp, health });
    reg.upsertComponent("web", { ...comp, name: "other" });
    expect(reg.getComponent("web", "app")?.health).toEqual(health);
    expect(reg.getComponent("web", "other")).not.toHaveProperty("health");
    reg.upsertComponent("web", comp);
    expect(reg.getComponent("web", "app")).not.toHaveProperty("health");
    reg.close();
  });
});

describe("deploy history", () => {
  test("newest first, per service, pruned to keep", () => {
    const reg = fresh();
    const row = (service: string, i: number) => ({
      service,
      caller: "alice",
      imageSummary: `app=img:v${i}`,
      specJson: `{"v":${i}}`,
      kind: "deploy" as const,
      detail: "",
    });
    for (let i = 1; i <= 5; i++) reg.insertHistory(row("web", i), 3);
    const id = reg.insertHistory({ ...row("api", 9), kind: "rollback", detail: "auto" }, 3);
    const web = reg.listHistory("web");
    expect(web.map((h) => h.imageSummary)).toEqual(["app=img:v5", "app=img:v4", "app=img:v3"]);
    expect(web[0]!.caller).toBe("alice");
    expect(web[0]!.deployedAt.getTime()).toBeGreaterThan(Date.now() - 60_000);
    expect(reg.getHistory(id)).toMatchObject({
      service: "api",
      kind: "rollback",
      detail: "auto",
      specJson: '{"v":9}',
    });
    expect(reg.getHistory(999)).toBeNull();
    expect(() => reg.insertHistory(row("web", 6), 0)).toThrow(RegistryError);
    reg.close();
  });
});
