// Recover at the use-case level with real podman and a real sqlite registry (no gRPC): a removed
// container comes back with its route host port published and $PORT injected (HTTP answers on
// it), a stale exited container is replaced, a running one is left alone, a desired-stopped one
// is skipped, each recreated component is re-registered through onDeployed, a missing image fails
// only its component (and is never pulled), and the registry records what is really there.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceDef } from "../../src/config/service.ts";
import { openRegistry } from "../../src/registry/index.ts";
import type { ComponentRecord, ServiceRecord } from "../../src/registry/types.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import type { HookStepResult, IntegrationHooks } from "../../src/roles/agent/hooks.ts";
import { recoverServices } from "../../src/roles/agent/recover.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { containerComponent, testAgentContext } from "../support/agent-context.ts";
import { busyboxImage, freePort, podman, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `recover-${rand()}`;
const GHOST = `recover-ghost-${rand()}`;
const MISSING_IMAGE = `localhost/mcp-recover-missing-${rand()}:v0.0.1`;
const CONTAINERS = ["web", "api", "worker", "off"].map((c) => `${SVC}-${c}`).concat(`${GHOST}-app`);

class RecordingHooks implements IntegrationHooks {
  calls: string[] = [];
  async onDeployed(s: ServiceRecord, c: ComponentRecord): Promise<HookStepResult[]> {
    this.calls.push(`${s.name}/${c.name} ${c.observedState}`);
    return [{ step: "route", success: true }];
  }
  async onStopped(): Promise<HookStepResult[]> {
    return [];
  }
  async onUndeployed(): Promise<HookStepResult[]> {
    return [];
  }
}

let dir = "";
let ctx: AgentContext;
let hooks: RecordingHooks;
let image = "";
let routePort = 0;

const containerId = async (name: string) =>
  (await podman("container", "inspect", "--format", "{{.Id}}", name)).stdout;

async function httpGet(port: number): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 60; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      return await res.text();
    } catch (err) {
      last = err;
      await Bun.sleep(50);
    }
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${port}: ${String(last)}`);
}

beforeAll(async () => {
  const [pe, img] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  image = img;
  routePort = await freePort();
  dir = mkdtempSync(join(tmpdir(), "mcp-recover-"));
  hooks = new RecordingHooks();
  const runtime = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  ctx = testAgentContext({ runtime, registry: openRegistry(join(dir, "mcp.db")), hooks });
  const comp = (name: string, routes: ServiceDef["components"][number]["routes"] = []) =>
    containerComponent(name, image, { env: [`ROLE=${name}`], routes });
  const def: ServiceDef = {
    name: SVC,
    tier: "worker",
    active: true,
    components: [
      comp("web", [{ name: "", port: 443, mode: "l7", hostname: `${SVC}.example`, public: false }]),
      comp("api"),
      comp("worker"),
      comp("off"),
    ],
  };
  const res = await deployService(ctx, def, { pullPolicy: "never" });
  expect(res.map((r) => r.success)).toEqual([true, true, true, true]);
  // Until deploy allocates route ports (issue 5), give web's route a stored host port by hand.
  const web = ctx.registry.getComponent(SVC, "web")!;
  const { createdAt: _c, updatedAt: _u, service: _s, ...input } = web;
  ctx.registry.upsertComponent(SVC, { ...input, routes: [{ ...web.routes[0]!, hostPort: routePort }] });
  ctx.registry.setDesiredState(SVC, "off", "stopped");
  // A second service whose image is not in the local store.
  ctx.registry.upsertService({ name: GHOST, active: true });
  ctx.registry.upsertComponent(GHOST, {
    ...input,
    name: "app",
    image: MISSING_IMAGE,
    routes: [],
    desiredState: "running",
  });
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  ctx?.registry.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("recover (real podman, real registry)", () => {
  test("recreates removed and stale containers, leaves running ones, skips stopped, reports a missing image", async () => {
    await podman("rm", "-f", "-t", "1", `${SVC}-web`);
    await podman("stop", "-t", "1", `${SVC}-worker`);
    const apiId = await containerId(`${SVC}-api`);
    const workerId = await containerId(`${SVC}-worker`);
    const offId = await containerId(`${SVC}-off`);
    hooks.calls = [];

    const results = await recoverServices(ctx);
    const mine = results
      .map((r) => `${r.service}/${r.component} ${r.action} ${r.success} ${r.error ?? ""}`.trim())
      .sort();
    expect(mine).toEqual(
      [
        `${GHOST}/app failed false image ${MISSING_IMAGE} is not in the local store (recover never pulls)`,
        `${SVC}/api already running true`,
        `${SVC}/off skipped (desired stopped) true`,
        `${SVC}/web recreated true`,
        `${SVC}/worker recreated true`,
      ].sort(),
    );
    // Re-registered through the integration hooks, with the registry already saying "running".
    expect(hooks.calls.sort()).toEqual([`${SVC}/web running`, `${SVC}/worker running`]);

    // web: $PORT injected and the route host port published as host:host on loopback.
    const web = await ctx.runtime.inspect(`${SVC}-web`);
    expect(web?.state).toBe("running");
    expect(web?.spec.env).toContain(`PORT=${routePort}`);
    expect(web?.spec.env).toContain("ROLE=web");
    expect(web?.spec.ports).toContain(`127.0.0.1:${routePort}:${routePort}`);
    expect(await httpGet(routePort)).toBe("hello from mcp\n");

    // The running one kept its container; the stale one was replaced by a new one.
    expect(await containerId(`${SVC}-api`)).toBe(apiId);
    expect(await containerId(`${SVC}-worker`)).not.toBe(workerId);
    // Desired stopped: recover neither recreates nor stops it (that is the monitor's and stop's job).
    expect(await containerId(`${SVC}-off`)).toBe(offId);
    // Never pulled: the missing image is still missing.
    expect(await ctx.runtime.imageExists(MISSING_IMAGE)).toBe(false);

    const observed = (s: string, c: string) => ctx.registry.getComponent(s, c)?.observedState;
    expect(observed(SVC, "web")).toBe("running");
    expect(observed(SVC, "worker")).toBe("running");
    expect(observed(GHOST, "app")).toBe("removed");
  }, 60_000);

  test("one service only; an unknown service is NOT_FOUND", async () => {
    const results = await recoverServices(ctx, SVC);
    expect(results.map((r) => `${r.component} ${r.action}`).sort()).toEqual([
      "api already running",
      "off skipped (desired stopped)",
      "web already running",
      "worker already running",
    ]);
    await expect(recoverServices(ctx, `nope-${rand()}`)).rejects.toThrow(/unknown service/);
  }, 30_000);
});
