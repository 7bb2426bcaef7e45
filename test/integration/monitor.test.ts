// The monitor loop in a real in-process agent (real podman, real sqlite, real TLS server) with
// short intervals: a killed container gives exactly one drift alert through a real alert command
// (a bash script recording its MCP_* environment as JSON lines); a flapping container (flipped by
// hand with podman stop/start: podman 4.3's restart=always loop is sampled too unevenly here to
// test on) gives a flap alert and then silence for the cooldown; retention prunes old events; a hanging or
// missing alert command is logged and the loop goes on; a slow runtime never makes ticks overlap.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import type { ServiceDef } from "../../src/config/service.ts";
import { Monitor } from "../../src/monitor/monitor.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import type { MonitorSettings } from "../../src/roles/agent/context.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { ContainerInfo, Runtime } from "../../src/runtime/runtime.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, type PodmanEnv, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const NODE = "monitor-node";
const INTERVAL = 300;
const COOLDOWN = 3_000;
const THRESHOLD = 3;

const containers: string[] = [];
const agents: RunningAgent[] = [];
let dir = "";
let pe: PodmanEnv;
let image = "";
let pki: { certPem: string; keyPem: string };
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(generateToken()) },
]);

interface Recorded {
  t: number;
  type: string;
  service: string;
  component: string;
  node: string;
  desired: string;
  observed: string;
  prev: string;
  transitions: string;
}

/** An alert command that appends its MCP_* environment to `out` as one JSON line. */
function recorderScript(out: string): string {
  const p = join(dir, `record-${Math.random().toString(36).slice(2, 8)}.sh`);
  writeFileSync(
    p,
    `#!/bin/bash
printf '{"t":%s,"type":"%s","service":"%s","component":"%s","node":"%s","desired":"%s","observed":"%s","prev":"%s","transitions":"%s"}\\n' \\
  "$(date +%s%3N)" "$MCP_ALERT_TYPE" "$MCP_SERVICE" "$MCP_COMPONENT" "$MCP_NODE" "$MCP_DESIRED" "$MCP_OBSERVED" "$MCP_PREV_STATE" "$MCP_TRANSITIONS" >> "${out}"
`,
  );
  chmodSync(p, 0o755);
  return p;
}

function readAlerts(out: string, service: string): Recorded[] {
  if (!existsSync(out)) return [];
  return readFileSync(out, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Recorded)
    .filter((a) => a.service === service);
}

function memoryLogger() {
  const chunks: string[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void chunks.push(s) });
  const lines = () =>
    chunks
      .join("")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines };
}

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(25);
  }
}

async function podman(...args: string[]): Promise<void> {
  await runOk(["podman", ...pe.globalArgs, ...args], { env: pe.env, timeoutMs: 30_000 });
}

async function startMonitored(
  monitor: Partial<MonitorSettings>,
  opts: { runtime?: Runtime } = {},
): Promise<{ agent: RunningAgent; monitor: Monitor; log: ReturnType<typeof memoryLogger> }> {
  const log = memoryLogger();
  const sub = mkdtempSync(join(dir, "agent-"));
  const agent = await startAgent(
    await testAgentSettings(sub, pki, {
      nodeName: NODE,
      validator,
      ...(opts.runtime ? { runtime: opts.runtime } : {}),
      pullPolicy: "never",
      logger: log.logger,
      monitor: {
        intervalMs: INTERVAL,
        alertCommand: [],
        cooldownMs: COOLDOWN,
        flapThreshold: THRESHOLD,
        flapWindowMs: 20_000,
        retentionMs: 3_600_000,
        alertTimeoutMs: 2_000,
        ...monitor,
      },
    }),
  );
  agents.push(agent);
  const m = (await agent.startup).find((b): b is Monitor => b instanceof Monitor);
  if (!m) throw new Error("agent started without a monitor");
  return { agent, monitor: m, log };
}

/** Deploys a one-component service <svc>/web from the test image (restart "no": a kill stays dead). */
async function deploy(agent: RunningAgent, svc: string): Promise<void> {
  containers.push(`${svc}-web`);
  const def: ServiceDef = {
    name: svc,
    tier: "worker",
    active: true,
    components: [containerComponent("web", image)],
  } as ServiceDef;
  const res = await deployService(agent.ctx, def, { pullPolicy: "never" });
  expect(res.map((r) => r.success)).toEqual([true]);
}

function observed(agent: RunningAgent, svc: string): string | undefined {
  return agent.registry.getComponent(svc, "web")?.observedState;
}

beforeAll(async () => {
  [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-monitor-test-"));
  pki = await testPki("monitor");
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.close();
  await removeContainers(containers);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("monitor loop with a real agent and podman", () => {
  let agent: RunningAgent;
  let monitor: Monitor;
  let log: ReturnType<typeof memoryLogger>;
  let out = "";

  beforeAll(async () => {
    out = join(dir, "alerts.jsonl");
    ({ agent, monitor, log } = await startMonitored({ alertCommand: [recorderScript(out)] }));
  });

  test("a killed container gives exactly one drift alert with the right variables", async () => {
    const svc = `mon-drift-${RUN}`;
    await deploy(agent, svc);
    const ticks0 = monitor.stats.ticks;
    await waitFor("two ticks", () => monitor.stats.ticks >= ticks0 + 2, 5_000);
    expect(readAlerts(out, svc)).toEqual([]); // a healthy deploy does not alert

    await podman("kill", `${svc}-web`);
    await waitFor("the drift alert", () => readAlerts(out, svc).length > 0, 10_000);
    const [a] = readAlerts(out, svc);
    expect(a).toMatchObject({
      type: "drift",
      service: svc,
      component: "web",
      node: NODE,
      desired: "running",
      observed: "exited",
      prev: "running",
    });
    // The crash is the one transition in the flap window: the deploy's first observation
    // (unknown -> running) is not a flap, and no tick wrote a state while the deploy held the
    // service (its container is briefly absent then).
    expect(Number(a?.transitions)).toBe(1);
    expect(
      agent.registry.recentEvents({ service: svc, limit: 10 }).map((e) => `${e.prevState}->${e.newState}`),
    ).toEqual(["running->exited", "unknown->running"]);

    // Same state for longer than the cooldown: drift fires on the transition only.
    const ticks1 = monitor.stats.ticks;
    await Bun.sleep(COOLDOWN + 1_000);
    expect(monitor.stats.ticks - ticks1).toBeGreaterThanOrEqual(5);
    expect(observed(agent, svc)).toBe("exited");
    expect(readAlerts(out, svc)).toHaveLength(1);
    expect(log.lines().filter((l) => l.msg === "alert command ran" && l.service === svc)).toHaveLength(1);
  }, 30_000);

  test("a flapping container: one flap alert, silence for the cooldown, then a new alert", async () => {
    const svc = `mon-flap-${RUN}`;
    await deploy(agent, svc);
    const name = `${svc}-web`;
    const start = Date.now();
    // Flip by hand, waiting each time until the monitor has seen the new state, for a bit more
    // than two cooldowns (each flip takes well under a second).
    for (let i = 0; i < 60 && Date.now() - start < 2 * COOLDOWN + 2_000; i++) {
      await podman("stop", "-t", "0", name);
      await waitFor("exited observed", () => observed(agent, svc) === "exited", 5_000);
      await podman("start", name);
      await waitFor("running observed", () => observed(agent, svc) === "running", 5_000);
    }
    await Bun.sleep(2 * INTERVAL); // let the last tick's alert command finish
    const alerts = readAlerts(out, svc).sort((x, y) => x.t - y.t);

    // The first crash is drift; the flap threshold is only reached later.
    expect(alerts[0]?.type).toBe("drift");
    const flaps = alerts.filter((a) => a.type === "flapping");
    expect(flaps.length).toBeGreaterThanOrEqual(1);
    for (const f of flaps) {
      expect(Number(f.transitions)).toBeGreaterThanOrEqual(THRESHOLD);
      expect(f).toMatchObject({ component: "web", node: NODE, desired: "running" });
    }
    // Silence for the cooldown after every alert (tolerance: exec start jitter of the script).
    for (let i = 1; i < alerts.length; i++) {
      expect(alerts[i]!.t - alerts[i - 1]!.t).toBeGreaterThanOrEqual(COOLDOWN - 250);
    }
    // After the first flap alert's cooldown a new alert fired...
    const first = flaps[0]!;
    const next = alerts.find((a) => a.t > first.t);
    expect(next).toBeDefined();
    // ...and the silence in between was suppression, not a lack of transitions.
    const during = agent.registry
      .recentEvents({ service: svc, component: "web", since: new Date(first.t), limit: 1000 })
      .filter((e) => e.timestamp.getTime() < next!.t - 100);
    expect(during.length).toBeGreaterThanOrEqual(2);
    const suppressed = log
      .lines()
      .filter((l) => l.msg === "alert suppressed by cooldown" && l.service === svc);
    expect(suppressed.length).toBeGreaterThanOrEqual(2);
  }, 60_000);

  test("retention: a tick prunes events older than retention, recent ones stay", async () => {
    const svc = `mon-retention-${RUN}`;
    const now = Date.now();
    const at = (msAgo: number) => new Date(now - msAgo);
    for (const ago of [30 * 86_400_000, 2 * 3_600_000, 3_600_000 + 60_000]) {
      agent.registry.insertEvent({
        service: svc,
        component: "x",
        prevState: "running",
        newState: "exited",
        timestamp: at(ago),
      });
    }
    for (const ago of [3_600_000 - 60_000, 600_000, 0]) {
      agent.registry.insertEvent({
        service: svc,
        component: "x",
        prevState: "exited",
        newState: "running",
        timestamp: at(ago),
      });
    }
    const events = () => agent.registry.recentEvents({ service: svc, limit: 100 });
    expect(events()).toHaveLength(6);
    await waitFor("old events pruned", () => events().length === 3, 5_000);
    const kept = events().map((e) => now - e.timestamp.getTime());
    expect(kept.every((ago) => ago < 3_600_000)).toBe(true);
    expect(kept).toHaveLength(3);
  }, 15_000);
});

describe("alert command failures are never fatal", () => {
  test("a hanging alert command is killed after alertTimeoutMs, logged, and the monitor goes on", async () => {
    const hang = join(dir, "hang.sh");
    writeFileSync(hang, "#!/bin/bash\nsleep 300\n");
    chmodSync(hang, 0o755);
    const { agent, monitor, log } = await startMonitored({ alertCommand: [hang], alertTimeoutMs: 500 });
    const svc = `mon-hang-${RUN}`;
    await deploy(agent, svc);
    await podman("kill", `${svc}-web`);
    const timedOut = () =>
      log
        .lines()
        .filter((l) => l.msg === "alert command timed out after 500 ms and was killed" && l.service === svc);
    await waitFor("the timeout log line", () => timedOut().length === 1, 10_000);
    expect(timedOut()[0]).toMatchObject({ level: 50, alert_type: "drift", component: "web" });
    // the loop keeps ticking afterwards
    const ticks = monitor.stats.ticks;
    await waitFor("more ticks", () => monitor.stats.ticks >= ticks + 3, 5_000);
    expect(monitor.stats.errors).toBe(0);
  }, 30_000);

  test("a missing alert binary is logged, not fatal", async () => {
    const { agent, monitor, log } = await startMonitored({ alertCommand: [join(dir, "no-such-notifier")] });
    const svc = `mon-missing-${RUN}`;
    await deploy(agent, svc);
    await podman("kill", `${svc}-web`);
    const failed = () =>
      log.lines().filter((l) => l.msg === "alert command failed to start" && l.service === svc);
    await waitFor("the failure log line", () => failed().length === 1, 10_000);
    expect(String(failed()[0]?.error)).toContain("no-such-notifier");
    const ticks = monitor.stats.ticks;
    await waitFor("more ticks", () => monitor.stats.ticks >= ticks + 3, 5_000);
    expect(monitor.stats.errors).toBe(0);
  }, 30_000);
});

/** The real podman runtime with a slow list() that records overlap, and optionally fails first. */
class SlowRuntime extends PodmanRuntime {
  active = 0;
  maxActive = 0;
  calls = 0;
  failFirst = 0;
  delayMs = 0;

  override async list(): Promise<ContainerInfo[]> {
    this.calls++;
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      await Bun.sleep(this.delayMs);
      if (this.calls <= this.failFirst) throw new Error("podman: cannot connect to the storage (test)");
      return await super.list();
    } finally {
      this.active--;
    }
  }
}

describe("tick scheduling", () => {
  test("a runtime slower than the interval: ticks never overlap, skipped timer ticks are logged", async () => {
    const runtime = new SlowRuntime({ globalArgs: pe.globalArgs, env: pe.env });
    runtime.delayMs = 3.5 * 100;
    // No event stream: every tick lists (with a live view a tick answers from memory and lists
    // only every SAFETY_NET_MS, so it would never be slow here).
    Object.assign(runtime, { eventSource: undefined });
    const { agent, monitor, log } = await startMonitored({ intervalMs: 100 }, { runtime });
    await waitFor("five ticks", () => monitor.stats.ticks >= 5, 15_000);
    expect(runtime.maxActive).toBe(1);
    const s = monitor.stats;
    expect(s.skipped).toBeGreaterThanOrEqual(2 * s.ticks - 2);
    expect(
      log.lines().filter((l) => l.msg === "monitor tick skipped: previous tick still running").length,
    ).toBe(s.skipped);
    // stop() waits for the tick in flight; nothing runs afterwards
    await waitFor("a tick in flight", () => runtime.active === 1, 2_000);
    await agent.close();
    agents.splice(agents.indexOf(agent), 1);
    expect(runtime.active).toBe(0);
    const after = runtime.calls;
    await Bun.sleep(500);
    expect(runtime.calls).toBe(after);
  }, 30_000);

  test("runtime errors are logged and retried next tick", async () => {
    const runtime = new SlowRuntime({ globalArgs: pe.globalArgs, env: pe.env });
    runtime.failFirst = 2;
    const { monitor, log } = await startMonitored({ intervalMs: 100 }, { runtime });
    await waitFor("a good tick after two failures", () => monitor.stats.ticks >= 1, 10_000);
    expect(monitor.stats.errors).toBe(2);
    const failed = log.lines().filter((l) => l.msg === "monitor tick failed; retrying next tick");
    expect(failed).toHaveLength(2);
    expect(failed[0]?.err).toBe("podman: cannot connect to the storage (test)");
  }, 20_000);
});
