// Reconcile repairs the version an agent crash left behind (found by the issue 10 crash-consistency
// test): a deploy records the version only after `podman run` and inspect, so an agent killed in
// between leaves the earlier version recorded while the container already runs the new image. The
// next reconcile takes the version from the container when it runs the recorded image's tag, and
// leaves it alone when the container still runs an older image (killed before the replacement).
// Real podman (the test env), real sqlite file, the real PodmanRuntime narrowed to our names.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../src/registry/index.ts";
import type { ComponentInput } from "../../src/registry/types.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { reconcile } from "../../src/roles/agent/reconcile.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { busyboxImage, podman, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";

const SVC = `rv-${Math.random().toString(36).slice(2, 8)}`;
const NEW = `${SVC}-new`; // runs v1.0.1, registry says image v1.0.1 but version v1.0.0
const OLD = `${SVC}-old`; // runs v1.0.0, registry says image v1.0.1 (recorded, not yet run)
const dir = mkdtempSync(join(tmpdir(), "mcp-reconcile-version-"));
const registry = openRegistry(join(dir, "mcp.db"));
let v0 = "";
let v1 = "";

function component(name: string, image: string, version: string): ComponentInput {
  return {
    name,
    image,
    network: "",
    user: "",
    restart: "",
    desiredState: "running",
    observedState: "running",
    version,
    ports: [],
    volumes: [],
    cmd: [],
    env: [],
    routes: [],
    runtime: "container",
    memory: "",
    vcpus: 0,
  };
}

beforeAll(async () => {
  [v0, v1] = await Promise.all([busyboxImage("v1.0.0"), busyboxImage("v1.0.1")]);
  for (const [name, image] of [
    [NEW, v1],
    [OLD, v0],
  ] as const) {
    const r = await podman("run", "-d", "--name", name, image);
    expect(r.code).toBe(0);
  }
}, 60_000);

afterAll(async () => {
  await removeContainers([NEW, OLD]);
  registry.close();
  rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("reconcile and the recorded version", () => {
  test("a container running the recorded image's tag fixes a stale version; an older container does not", async () => {
    const pe = await podmanEnv();
    const real = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
    const runtime = Object.create(real) as PodmanRuntime;
    // Other tests' containers come and go: the listing is narrowed to this test's own names.
    runtime.list = () => real.list().then((l) => l.filter((c) => c.name.startsWith(`${SVC}-`)));
    const ctx = { registry, runtime, settings: { nodeName: "t" } } as unknown as AgentContext;
    registry.upsertService({ name: SVC, active: true });
    registry.upsertComponent(SVC, component("new", v1, "v1.0.0"));
    registry.upsertComponent(SVC, component("old", v1, "v1.0.0"));

    const res = await reconcile(ctx, { discoverUnknown: false });
    const got = res.services.find((s) => s.name === SVC)?.components.map((c) => [c.name, c.version]);
    expect(got).toEqual([
      ["new", "v1.0.1"],
      ["old", "v1.0.0"],
    ]);
    expect(res.services).toEqual(registry.listServices());
    // Repaired once: the next reconcile finds nothing to change.
    const again = await reconcile(ctx, { discoverUnknown: false });
    expect(again.transitions).toEqual([]);
    expect(registry.getComponent(SVC, "new")?.version).toBe("v1.0.1");
  }, 60_000);
});
