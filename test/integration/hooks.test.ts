// Integration hooks at their call points, with real podman and a real sqlite registry (no gRPC):
// deploy calls onDeployed per running component, stop calls onStopped, undeploy calls
// onUndeployed with the service record before deleting it. A failed hook step fails the result
// with "<step>: <error>"; a failed teardown keeps the registry entry so a retry tears down again.
// Without integrations nothing fails and the agent says so exactly once.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import type { ServiceDef } from "../../src/config/service.ts";
import { openRegistry } from "../../src/registry/index.ts";
import type { ComponentRecord, ServiceRecord } from "../../src/registry/types.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import { type HookStepResult, type IntegrationHooks, noIntegrations } from "../../src/roles/agent/hooks.ts";
import { stopService } from "../../src/roles/agent/lifecycle.ts";
import { undeployService } from "../../src/roles/agent/undeploy.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { containerComponent, testAgentContext } from "../support/agent-context.ts";
import { busyboxImage, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";

const SVC = `hooks-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const CONTAINERS = [`${SVC}-web`, `${SVC}-api`];

/** Records every call; `fail` makes the named hook report a failed step. */
class RecordingHooks implements IntegrationHooks {
  calls: string[] = [];
  fail = new Set<string>();
  undeployedRecord: ServiceRecord | null = null;
  private result(hook: string, step: string): HookStepResult[] {
    return [
      this.fail.has(hook)
        ? { step, success: false, error: "mcns unreachable", durationMs: 3 }
        : { step, success: true, durationMs: 2 },
    ];
  }
  async onDeployed(s: ServiceRecord, c: ComponentRecord) {
    this.calls.push(`deployed ${s.name}/${c.name} ${c.observedState}`);
    return this.result("onDeployed", "dns");
  }
  async onStopped(s: ServiceRecord, c: ComponentRecord) {
    this.calls.push(`stopped ${s.name}/${c.name}`);
    return this.result("onStopped", "route");
  }
  async onUndeployed(s: ServiceRecord) {
    this.calls.push(`undeployed ${s.name} ${s.components.map((c) => c.name).join(",")}`);
    this.undeployedRecord = s;
    return this.result("onUndeployed", "cert");
  }
}

let dir = "";
let ctx: AgentContext;
let hooks: RecordingHooks;
let def: ServiceDef;

beforeAll(async () => {
  const [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-hooks-"));
  hooks = new RecordingHooks();
  const runtime = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  ctx = testAgentContext({ runtime, registry: openRegistry(join(dir, "mcp.db")), hooks });
  const comp = (name: string) =>
    containerComponent(name, image, {
      routes: [{ name: "", port: 443, mode: "l7", hostname: `${SVC}.example`, public: false }],
    });
  def = { name: SVC, tier: "worker", active: true, components: [comp("web"), comp("api")] };
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  ctx?.registry.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("integration hooks at their call points (real podman, real registry)", () => {
  test("deploy calls onDeployed per running component; its steps join the result", async () => {
    const res = await deployService(ctx, def, { pullPolicy: "never" });
    expect(res.map((r) => r.success)).toEqual([true, true]);
    expect(hooks.calls).toEqual([`deployed ${SVC}/web running`, `deployed ${SVC}/api running`]);
    for (const r of res)
      expect(r.steps?.map((s) => s.step)).toEqual(["pull", "stop", "run", "inspect", "dns"]);
  }, 30_000);

  test("a failed onDeployed step fails the component with '<step>: <error>'", async () => {
    hooks.calls = [];
    hooks.fail = new Set(["onDeployed"]);
    const res = await deployService(ctx, def, { pullPolicy: "never", component: "web" });
    expect(res).toHaveLength(1);
    expect(res[0]!.success).toBe(false);
    expect(res[0]!.error).toBe("dns: mcns unreachable");
    expect(res[0]!.steps?.at(-1)).toEqual({ step: "dns", durationMs: 3n, detail: "mcns unreachable" });
    expect(hooks.calls).toEqual([`deployed ${SVC}/web running`]);
  }, 30_000);

  test("stop calls onStopped per component after the container stopped", async () => {
    hooks.calls = [];
    hooks.fail = new Set();
    const res = await stopService(ctx, SVC);
    expect(res.map((r) => r.success)).toEqual([true, true]);
    expect(hooks.calls.sort()).toEqual([`stopped ${SVC}/api`, `stopped ${SVC}/web`]);
  }, 30_000);

  test("a failed teardown keeps the registry entry; the retry finishes; then nothing to do", async () => {
    hooks.calls = [];
    hooks.fail = new Set(["onUndeployed"]);
    const first = await undeployService(ctx, SVC);
    expect(first.filter((r) => r.name !== "").map((r) => [r.name, r.success])).toEqual([
      ["api", true],
      ["web", true],
    ]);
    expect(first.find((r) => r.name === "")).toMatchObject({
      success: false,
      error: "cert: mcns unreachable",
    });
    // The hook saw the full record (routes included) while it still existed.
    expect(hooks.undeployedRecord?.components[0]?.routes[0]?.hostname).toBe(`${SVC}.example`);
    expect(await ctx.runtime.inspect(CONTAINERS[0]!)).toBeNull();
    const kept = ctx.registry.getService(SVC);
    expect(kept?.components.map((c) => `${c.name} ${c.desiredState} ${c.observedState}`)).toEqual([
      "api stopped removed",
      "web stopped removed",
    ]);

    hooks.fail = new Set();
    const second = await undeployService(ctx, SVC);
    expect(second.every((r) => r.success)).toBe(true);
    expect(ctx.registry.getService(SVC)).toBeNull();
    expect(ctx.registry.recentEvents({ service: SVC, limit: 50 }).length).toBeGreaterThan(0);
    expect(hooks.calls).toEqual([`undeployed ${SVC} api,web`, `undeployed ${SVC} api,web`]);

    expect(await undeployService(ctx, SVC)).toEqual([]);
    expect(hooks.calls).toHaveLength(2); // nothing to tear down, no hook call
  }, 60_000);
});

describe("a failed first deploy (security: issue 19 review)", () => {
  test("removes its own containers and rows but calls no undeploy hook: the route and cert of its hostname may be another service's", async () => {
    const other = `${SVC}-b`;
    CONTAINERS.push(`${other}-web`);
    const before = hooks.calls.length;
    // A new service reusing a running service's hostname whose container cannot start.
    const bad: ServiceDef = {
      name: other,
      tier: "worker",
      active: true,
      components: [{ ...def.components[0]!, user: "nosuchuser-mcp" }],
    };
    const results = await deployService(ctx, bad, { pullPolicy: "never" });
    expect(results.every((r) => r.success)).toBe(false);
    expect(ctx.registry.getService(other)).toBeNull();
    // Before the fix: ["undeployed <svc>-b web"], i.e. removeRoute/removeCert by that hostname.
    expect(hooks.calls.slice(before)).toEqual([]);
  }, 60_000);
});

describe("noIntegrations", () => {
  test("returns no steps and logs the skip once, at info", async () => {
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _enc, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const h = noIntegrations(pino({ level: "info" }, sink));
    const rec = { name: "x", components: [] } as unknown as ServiceRecord;
    const comp = { name: "y" } as unknown as ComponentRecord;
    expect(await h.onDeployed(rec, comp)).toEqual([]);
    expect(await h.onStopped(rec, comp)).toEqual([]);
    expect(await h.onUndeployed(rec)).toEqual([]);
    expect(lines).toHaveLength(1);
    const entry = JSON.parse(lines[0]!) as { level: number; msg: string };
    expect(entry.level).toBe(30);
    expect(entry.msg).toBe(
      "no integrations configured (mc-proxy, Metacrypt, MCNS): route/cert/DNS steps skipped",
    );
  });
});
