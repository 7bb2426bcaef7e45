// The monitor's health watch in a real in-process agent (real podman, real sqlite, real TLS
// server) with short intervals and a real alert command (a bash script appending its MCP_*
// environment). A busybox httpd that turns unhealthy while running (its checked file deleted with
// podman exec, so GET answers 404) gives exactly one `unhealthy` alert with the right variables,
// healthy<->unhealthy events in the status' recent events, silence while it flips again within
// the cooldown, and a new alert after the cooldown. An exec check (run inside the container
// through the runtime) goes unhealthy the same way.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import type { HealthDef, ServiceDef } from "../../src/config/service.ts";
import { Monitor } from "../../src/monitor/monitor.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import { serviceStatus } from "../../src/roles/agent/status.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, freePort, type PodmanEnv, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const NODE = "health-node";
const MONITOR_INTERVAL = 300;
const CHECK_INTERVAL = 250;
const COOLDOWN = 6_000;

const containers: string[] = [];
let agent: RunningAgent;
let monitor: Monitor;
let dir = "";
let out = "";
let pe: PodmanEnv;
let image = "";
const logChunks: string[] = [];

/** An alert command that appends its MCP_* environment (sorted KEY=value lines) and a blank line. */
function recorderScript(file: string): string {
  const p = join(dir, "record.sh");
  // One printf: one small O_APPEND write per alert, so two alert commands running at once never
  // interleave their lines (sort and echo wrote separately, and a reader saw a mixed block).
  writeFileSync(
    p,
    `#!/bin/bash\nblock=$(env | grep '^MCP_' | sort)\nprintf '%s\\n\\n' "$block" >> "${file}"\n`,
  );
  chmodSync(p, 0o755);
  return p;
}

function readAlerts(service: string): Record<string, string>[] {
  if (!existsSync(out)) return [];
  return readFileSync(out, "utf8")
    .split("\n\n")
    .filter((b) => b.trim() !== "")
    .map((b) =>
      Object.fromEntries(b.split("\n").map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)])),
    )
    .filter((a) => a.MCP_SERVICE === service);
}

function logLines(): Record<string, unknown>[] {
  return logChunks
    .join("")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
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

/** Health events (healthy/unhealthy) of one component, oldest first, as "prev->new". */
function healthEvents(service: string, component: string): string[] {
  return agent.registry
    .recentEvents({ service, component, limit: 100 })
    .filter((e) => e.newState === "healthy" || e.newState === "unhealthy")
    .reverse()
    .map((e) => `${e.prevState}->${e.newState}`);
}

/** The first check of a component came back healthy (the watch's baseline, logged at debug). */
function baselineSeen(service: string, component: string): boolean {
  return logLines().some(
    (l) => l.msg === "health: first check healthy" && l.service === service && l.component === component,
  );
}

async function deploy(svc: string, hostPort: number, health: HealthDef): Promise<void> {
  containers.push(`${svc}-web`);
  const web = containerComponent("web", image, { ports: [`127.0.0.1:${hostPort}:8080`], health });
  const def = { name: svc, tier: "worker", active: true, components: [web] } as ServiceDef;
  const res = await deployService(agent.ctx, def, { pullPolicy: "never" });
  expect(res.map((r) => r.success)).toEqual([true]);
}

beforeAll(async () => {
  [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-monitor-health-"));
  out = join(dir, "alerts.env");
  const pki = await testPki("health");
  agent = await startAgent(
    await testAgentSettings(dir, pki, {
      nodeName: NODE,
      validator: new LocalTokenValidator([
        { name: "alice", role: "admin", accountType: "human", sha256: hashToken(generateToken()) },
      ]),
      portRange: [20100, 20200],
      pullPolicy: "never",
      logger: pino({ level: "debug" }, { write: (s: string) => void logChunks.push(s) }),
      monitor: {
        intervalMs: MONITOR_INTERVAL,
        alertCommand: [recorderScript(out)],
        cooldownMs: COOLDOWN,
        flapThreshold: 3,
        flapWindowMs: 20_000,
        retentionMs: 3_600_000,
        alertTimeoutMs: 2_000,
      },
    }),
  );
  const m = (await agent.startup).find((b): b is Monitor => b instanceof Monitor);
  if (!m) throw new Error("agent started without a monitor");
  monitor = m;
}, 60_000);

afterAll(async () => {
  await agent?.close();
  await removeContainers(containers);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("health checks in the monitor", () => {
  test("http check: one unhealthy alert, silence within the cooldown, a new alert after it", async () => {
    const svc = `health-http-${RUN}`;
    const name = `${svc}-web`;
    const port = await freePort();
    await deploy(svc, port, {
      type: "http",
      port: 8080,
      path: "/version.txt",
      intervalMs: CHECK_INTERVAL,
      timeoutMs: 1_000,
      retries: 2,
      startPeriodMs: 0,
    });
    await waitFor("the first healthy check", () => baselineSeen(svc, "web"), 5_000);
    expect(readAlerts(svc)).toEqual([]);

    // Unhealthy while running: the checked file disappears, GET answers 404.
    await podman("exec", name, "rm", "/www/version.txt");
    await waitFor("the unhealthy alert", () => readAlerts(svc).length > 0, 10_000);
    const alertAt = Date.now();
    expect(readAlerts(svc)[0]).toEqual({
      MCP_ALERT_TYPE: "unhealthy",
      MCP_SERVICE: svc,
      MCP_COMPONENT: "web",
      MCP_NODE: NODE,
      MCP_DESIRED: "running",
      MCP_OBSERVED: "unhealthy",
      MCP_PREV_STATE: "healthy",
      MCP_TRANSITIONS: "2", // the consecutive failed checks (retries) that decided it
      MCP_DETAIL: `http GET http://127.0.0.1:${port}/version.txt answered 404`,
    });
    expect(healthEvents(svc, "web")).toEqual(["healthy->unhealthy"]);
    // Visible in `mcp status`: the agent's status answer lists it among recent events.
    const status = await serviceStatus(agent.ctx, svc);
    expect(status.recentEvents.map((e) => `${e.component}:${e.prevState}->${e.newState}`)).toContain(
      "web:healthy->unhealthy",
    );

    // Staying unhealthy for several more check and monitor intervals: no more alerts.
    await Bun.sleep(4 * Math.max(CHECK_INTERVAL, MONITOR_INTERVAL));
    expect(readAlerts(svc)).toHaveLength(1);

    // Healthy again, then unhealthy again inside the cooldown: recorded, but silent.
    await podman("exec", name, "sh", "-c", "echo v1.0.0 > /www/version.txt");
    await waitFor("the healthy event", () => healthEvents(svc, "web").length === 2, 5_000);
    expect(healthEvents(svc, "web")).toEqual(["healthy->unhealthy", "unhealthy->healthy"]);
    await podman("exec", name, "rm", "/www/version.txt");
    await waitFor("the second unhealthy event", () => healthEvents(svc, "web").length === 3, 5_000);
    expect(Date.now() - alertAt).toBeLessThan(COOLDOWN - 1_000); // still inside the cooldown
    await Bun.sleep(3 * CHECK_INTERVAL);
    expect(readAlerts(svc)).toHaveLength(1);
    expect(
      logLines().filter(
        (l) => l.msg === "alert suppressed by cooldown" && l.service === svc && l.alert_type === "unhealthy",
      ),
    ).toHaveLength(1);

    // Healthy again; unhealthy once more after the cooldown: a new alert.
    await podman("exec", name, "sh", "-c", "echo v1.0.0 > /www/version.txt");
    await waitFor("healthy again", () => healthEvents(svc, "web").length === 4, 5_000);
    await Bun.sleep(Math.max(0, alertAt + COOLDOWN - Date.now()));
    await podman("exec", name, "rm", "/www/version.txt");
    await waitFor("the second alert", () => readAlerts(svc).length === 2, 10_000);
    expect(readAlerts(svc)[1]).toMatchObject({ MCP_ALERT_TYPE: "unhealthy", MCP_PREV_STATE: "healthy" });
    expect(healthEvents(svc, "web")).toEqual([
      "healthy->unhealthy",
      "unhealthy->healthy",
      "healthy->unhealthy",
      "unhealthy->healthy",
      "healthy->unhealthy",
    ]);

    // The container itself never changed state: no drift or flap alert, and the health events
    // did not count as flaps.
    expect(readAlerts(svc).map((a) => a.MCP_ALERT_TYPE)).toEqual(["unhealthy", "unhealthy"]);
    expect(agent.registry.getComponent(svc, "web")?.observedState).toBe("running");
    expect(monitor.stats.errors).toBe(0);
  }, 40_000);

  test("exec check: runs inside the container through the runtime", async () => {
    const svc = `health-exec-${RUN}`;
    const port = await freePort();
    await deploy(svc, port, {
      type: "exec",
      cmd: ["test", "-f", "/www/index.html"],
      intervalMs: CHECK_INTERVAL,
      timeoutMs: 5_000,
      retries: 1,
      startPeriodMs: 0,
    });
    await waitFor("the first healthy check", () => baselineSeen(svc, "web"), 10_000);
    await podman("exec", `${svc}-web`, "rm", "/www/index.html");
    await waitFor("the unhealthy alert", () => readAlerts(svc).length > 0, 10_000);
    expect(readAlerts(svc)[0]).toMatchObject({
      MCP_ALERT_TYPE: "unhealthy",
      MCP_COMPONENT: "web",
      MCP_PREV_STATE: "healthy",
      MCP_DETAIL: `exec ["test","-f","/www/index.html"] exited 1`,
    });
    expect(healthEvents(svc, "web")).toEqual(["healthy->unhealthy"]);
  }, 20_000);
});
