// The agent's read side under overlapping calls: concurrent live checks share one runtime listing
// (single flight), a call after it settles lists again, and a reconcile that changes nothing
// returns the same rows as a fresh registry read. Real podman (the test env), real sqlite file;
// the runtime is the real PodmanRuntime with list() counted.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../src/registry/index.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { reconcile } from "../../src/roles/agent/reconcile.ts";
import { liveCheck, serviceStatus } from "../../src/roles/agent/status.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { podmanEnv } from "../support/env.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-live-check-"));
const registry = openRegistry(join(dir, "mcp.db"));

afterAll(() => {
  registry.close();
  rmSync(dir, { recursive: true, force: true });
});

// Other tests share this podman and start/stop containers at any time: the listing is narrowed to
// this test's own names (none), so the registry only changes when the test changes it.
async function counted(): Promise<{ ctx: AgentContext; lists: () => number }> {
  const pe = await podmanEnv();
  const real = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  let n = 0;
  const runtime = Object.create(real) as PodmanRuntime;
  runtime.list = () => {
    n++;
    return real.list().then((l) => l.filter((c) => c.name.startsWith("lc-")));
  };
  const ctx = { registry, runtime, settings: { nodeName: "t" } } as unknown as AgentContext;
  return { ctx, lists: () => n };
}

describe("live check", () => {
  test("overlapping calls share one runtime listing; a later call lists again", async () => {
    registry.upsertService({ name: "lc-svc", active: true });
    const { ctx, lists } = await counted();
    const [a, b, c] = await Promise.all([liveCheck(ctx), liveCheck(ctx), serviceStatus(ctx, "")]);
    expect(lists()).toBe(1);
    expect(b).toEqual(a);
    expect(c.services).toEqual(a);
    await liveCheck(ctx);
    expect(lists()).toBe(2);
  }, 60_000);

  test("a reconcile that writes nothing returns what a fresh registry read gives", async () => {
    const { ctx } = await counted();
    registry.upsertComponent("lc-svc", {
      name: "web",
      image: "img:v1",
      network: "",
      user: "",
      restart: "",
      desiredState: "running",
      observedState: "running",
      version: "v1",
      ports: [],
      volumes: [],
      cmd: [],
      env: [],
      routes: [],
      runtime: "container",
      memory: "",
      vcpus: 0,
    });
    const first = await reconcile(ctx); // lc-svc-web is not running: one transition, written
    expect(first.transitions).toEqual([
      { service: "lc-svc", component: "web", prev: "running", next: "removed" },
    ]);
    expect(first.services).toEqual(registry.listServices());
    const res = await reconcile(ctx);
    expect(res.transitions).toEqual([]);
    expect(res.discovered).toEqual([]);
    expect(res.services).toEqual(registry.listServices());
    expect(res.services.find((s) => s.name === "lc-svc")?.components[0]?.observedState).toBe("removed");
  }, 60_000);
});
