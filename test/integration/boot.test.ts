// Boot sequencing with real podman and a real in-process agent (gRPC, TLS, sqlite registry):
// - three stages where stage 2 really depends on stage 1's TCP port (its container, on the host
//   network, polls stage 1's published port before it serves) — stage timings are ordered, every
//   stage ends healthy, the services are registered like a deploy; a restart of the agent keeps
//   the running containers and only health-checks them;
// - a failed non-foundation stage is logged and the boot moves on;
// - a foundation stage that never gets healthy blocks the later stages, raises "boot" alerts
//   through the alert command on every failed attempt, and close() ends the retry loop promptly.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino, { type Logger } from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import type { BootStage } from "../../src/config/agent.ts";
import type { ComponentDef, ServiceDef } from "../../src/config/service.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { bootStatus, type StageResult } from "../../src/roles/agent/boot.ts";
import type { MonitorSettings } from "../../src/roles/agent/context.ts";
import { connect } from "../../src/rpc/client.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, freePort, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const ID = `boot${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const created: string[] = [];
const dirs: string[] = [];
const agents: RunningAgent[] = [];

let image = "";
let runtime: PodmanRuntime;
let tls: { certPem: string; keyPem: string; caPem: string };
const token = generateToken();

function memoryLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void chunks.push(s) });
  const lines = () =>
    chunks
      .join("")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines };
}

function comp(name: string, over: Partial<ComponentDef> = {}): ComponentDef {
  return containerComponent(name, image, over);
}

function service(name: string, components: ComponentDef[]): ServiceDef {
  for (const c of components) created.push(c.name === name ? name : `${name}-${c.name}`);
  return { name, tier: "core", active: true, components };
}

/** A shell command that exits at once on SIGTERM (sh as PID 1 ignores it otherwise). */
function sh(script: string): string[] {
  return ["/bin/sh", "-c", `trap 'exit 0' TERM; ${script}`];
}

async function bootAgent(
  dir: string,
  stages: BootStage[],
  monitor?: MonitorSettings,
): Promise<{ agent: RunningAgent; lines: () => Record<string, unknown>[] }> {
  const log = memoryLogger();
  const agent = await startAgent(
    await testAgentSettings(dir, tls, {
      nodeName: "bootnode",
      validator: new LocalTokenValidator([
        { name: "ops", role: "admin", accountType: "human", sha256: hashToken(token) },
      ]),
      runtime,
      pullPolicy: "always", // boot must still not pull: its images are pre-staged ("missing")
      logger: log.logger,
      bootSequence: stages,
      ...(monitor ? { monitor } : {}),
    }),
  );
  agents.push(agent);
  return { agent, lines: log.lines };
}

async function within<T>(ms: number, what: string, fn: () => T | undefined | false): Promise<T> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const v = fn();
    if (v) return v;
    await Bun.sleep(50);
  }
  throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), "mcp-boot-test-"));
  dirs.push(d);
  return d;
}

beforeAll(async () => {
  const pe = await podmanEnv();
  image = await busyboxImage("v1.0.0");
  runtime = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  tls = await testPki("boot", { caDays: 1 });
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.close().catch(() => undefined);
  await removeContainers(created);
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}, 60_000);

describe("boot sequencing (real podman, in-process agent)", () => {
  test("three stages come up in order; stage 2 waits on stage 1's TCP port; a restart keeps them", async () => {
    const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
    // Stage 1 takes 1.5 s before it listens: if stage 2 started early, its container would see
    // the port closed at start.
    const foundation = service(`${ID}-dns`, [
      comp("dns", {
        ports: [`127.0.0.1:${p1}:8080`],
        cmd: sh("sleep 1.5 & wait; httpd -f -p 8080 -h /www & wait"),
      }),
    ]);
    // Host network: the container reaches stage 1's published 127.0.0.1 port like any host
    // process would; its own port is declared (podman drops publications on the host network,
    // the health check uses the declared host port).
    const probeDep = `timeout 2 nc -w 1 127.0.0.1 ${p1} </dev/null >/dev/null 2>&1`;
    const core = service(`${ID}-pki`, [
      comp("pki", {
        network: "host",
        ports: [`127.0.0.1:${p2}:${p2}`],
        cmd: sh(
          [
            `if ${probeDep}; then echo dep-up-at-start; else echo dep-down-at-start; fi`,
            `i=0; until ${probeDep}; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.1; done`,
            "echo dep-ok",
            `httpd -f -p 127.0.0.1:${p2} -h /www & wait`,
          ].join("; "),
        ),
      }),
    ]);
    const apps = service(`${ID}-app`, [
      comp("web", { ports: [`127.0.0.1:${p3}:8080`] }),
      comp("worker", { cmd: sh("sleep 600 & wait") }), // nothing published: running = healthy
    ]);
    const stages: BootStage[] = [
      { name: "foundation", services: [foundation], timeout: 20_000, health: "tcp" },
      { name: "core", services: [core], timeout: 20_000, health: "http" },
      { name: "apps", services: [apps], timeout: 20_000, health: "tcp" },
    ];
    const dir = tempDir();
    const t0 = Date.now();
    const { agent, lines } = await bootAgent(dir, stages);
    await within(60_000, "the boot to finish", () => lines().some((l) => l.msg === "boot sequence finished"));
    const st = bootStatus(agent.ctx);
    console.log(
      `boot timings (ms from agent start): ${st
        .map((s) => `${s.name} ${s.startedAt.getTime() - t0}→${(s.endedAt?.getTime() ?? 0) - t0}`)
        .join(", ")}`,
    );
    expect(st.map((s) => [s.name, s.status, s.attempts])).toEqual([
      ["foundation", "healthy", 1],
      ["core", "healthy", 1],
      ["apps", "healthy", 1],
    ]);
    const [s1, s2, s3] = st as [StageResult, StageResult, StageResult];
    // Order: each stage starts only after the previous one was healthy.
    expect(s2.startedAt.getTime()).toBeGreaterThanOrEqual(s1.endedAt!.getTime());
    expect(s3.startedAt.getTime()).toBeGreaterThanOrEqual(s2.endedAt!.getTime());
    expect(s1.endedAt!.getTime() - s1.startedAt.getTime()).toBeGreaterThanOrEqual(1500);
    expect(st.flatMap((s) => s.components.map((c) => [c.component, c.deploy, c.healthy]))).toEqual([
      ["dns", "started", true],
      ["pki", "started", true],
      ["web", "started", true],
      ["worker", "started", true],
    ]);
    expect(s2.components[0]!.detail).toBe(`http GET http://127.0.0.1:${p2}/ answered 200`);
    expect(s3.components[1]!.detail).toContain(`container ${ID}-app-worker is running`);

    // Stage 2's container found stage 1 already listening when it started.
    const logs = Bun.spawnSync(["podman", "--runtime", "runc", "logs", `${ID}-pki-pki`], {
      env: { ...process.env, ...(await podmanEnv()).env },
    });
    const out = logs.stdout.toString();
    expect(out).toContain("dep-up-at-start");
    expect(out).toContain("dep-ok");
    expect((await fetch(`http://127.0.0.1:${p3}/`)).status).toBe(200);

    // Stage logs carry start/end with durations.
    const stageLines = lines().filter((l) => typeof l.boot_stage === "string");
    for (const name of ["foundation", "core", "apps"]) {
      expect(stageLines.some((l) => l.boot_stage === name && l.msg === "boot stage starting")).toBe(true);
      const done = stageLines.find((l) => l.boot_stage === name && l.msg === "boot stage healthy");
      expect(typeof done?.durationMs).toBe("number");
    }

    // Registered like a deploy: visible through the agent's API, desired and observed running.
    const client = await connect(McpAgent, {
      addresses: [`127.0.0.1:${agent.port}`],
      caPem: tls.caPem,
      token,
      defaultTimeoutMs: 10_000,
    });
    try {
      const res = await client.listServices({});
      const mine = res.services.filter((s) => s.name.startsWith(ID));
      expect(mine.map((s) => s.name).sort()).toEqual([`${ID}-app`, `${ID}-dns`, `${ID}-pki`]);
      for (const s of mine) {
        for (const c of s.components) {
          expect([c.desiredState, c.observedState, c.version]).toEqual(["running", "running", "v1.0.0"]);
        }
      }
    } finally {
      client.close();
    }

    // Restart of the agent alone (a reboot where podman kept the containers): nothing is
    // recreated, every component is only health-checked.
    const names = [`${ID}-dns-dns`, `${ID}-pki-pki`, `${ID}-app-web`, `${ID}-app-worker`];
    const ids = () => Promise.all(names.map(async (n) => (await runtime.inspect(n))?.id));
    const before = await ids();
    await agent.close();
    const again = await bootAgent(dir, stages);
    await within(30_000, "the second boot to finish", () =>
      again.lines().some((l) => l.msg === "boot sequence finished"),
    );
    const st2 = bootStatus(again.agent.ctx);
    expect(st2.map((s) => s.status)).toEqual(["healthy", "healthy", "healthy"]);
    expect(st2.flatMap((s) => s.components.map((c) => c.deploy))).toEqual(["kept", "kept", "kept", "kept"]);
    expect(await ids()).toEqual(before);
    await again.agent.close();
  }, 120_000);

  test("a failed later stage is logged and the boot continues", async () => {
    const [pa, pb, pc] = [await freePort(), await freePort(), await freePort()];
    const first = service(`${ID}-base`, [comp("base", { ports: [`127.0.0.1:${pa}:8080`] })]);
    // Publishes a port nothing listens on.
    const broken = service(`${ID}-mute`, [
      comp("mute", { ports: [`127.0.0.1:${pb}:8080`], cmd: sh("sleep 600 & wait") }),
    ]);
    const last = service(`${ID}-tail`, [comp("tail", { ports: [`127.0.0.1:${pc}:8080`] })]);
    const { agent, lines } = await bootAgent(tempDir(), [
      { name: "base", services: [first], timeout: 15_000, health: "tcp" },
      { name: "optional", services: [broken], timeout: 1000, health: "tcp" },
      { name: "tail", services: [last], timeout: 15_000, health: "tcp" },
    ]);
    await within(60_000, "the boot to finish", () => lines().some((l) => l.msg === "boot sequence finished"));
    const st = bootStatus(agent.ctx);
    expect(st.map((s) => [s.name, s.status, s.attempts, s.blocking])).toEqual([
      ["base", "healthy", 1, true],
      ["optional", "failed", 1, false],
      ["tail", "healthy", 1, false],
    ]);
    expect(st[1]!.components[0]!.detail).toContain(`tcp 127.0.0.1:${pb}`);
    expect(
      lines().some((l) => l.boot_stage === "optional" && l.msg === "boot stage failed" && l.level === 50),
    ).toBe(true);
    expect((await fetch(`http://127.0.0.1:${pc}/`)).status).toBe(200);
    await agent.close();
  }, 90_000);

  test("a foundation stage that never gets healthy blocks later stages, alerts, and stops on close()", async () => {
    const dir = tempDir();
    const alertsFile = join(dir, "alerts.log");
    const script = join(dir, "alert.sh");
    writeFileSync(script, '#!/bin/sh\n{ env | grep "^MCP_" | sort; echo ---; } >> "$1"\n');
    chmodSync(script, 0o755);
    const [pb, pl] = [await freePort(), await freePort()];
    const bad = service(`${ID}-bad`, [
      comp("bad", { ports: [`127.0.0.1:${pb}:8080`], cmd: sh("sleep 600 & wait") }),
    ]);
    const late = service(`${ID}-late`, [comp("late", { ports: [`127.0.0.1:${pl}:8080`] })]);
    const monitor: MonitorSettings = {
      intervalMs: 60_000,
      alertCommand: [script, alertsFile],
      cooldownMs: 60_000,
      flapThreshold: 3,
      flapWindowMs: 60_000,
      retentionMs: 86_400_000,
      alertTimeoutMs: 5000,
    };
    const { agent, lines } = await bootAgent(
      dir,
      [
        { name: "foundation", services: [bad], timeout: 1500, health: "tcp" },
        { name: "later", services: [late], timeout: 10_000, health: "tcp" },
      ],
      monitor,
    );
    const alerts = () =>
      existsSync(alertsFile)
        ? readFileSync(alertsFile, "utf8")
            .split("---\n")
            .filter((b) => b.trim() !== "")
            .map((b) =>
              Object.fromEntries(
                b
                  .trim()
                  .split("\n")
                  .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
              ),
            )
        : [];
    // Attempt 1 (~1.5 s), 1 s backoff, attempt 2 (~1.5 s): two alerts within a bounded window.
    await within(20_000, "two boot alerts", () => alerts().length >= 2);
    const [a1, a2] = alerts() as [Record<string, string>, Record<string, string>];
    expect(a1).toMatchObject({
      MCP_ALERT_TYPE: "boot",
      MCP_SERVICE: `${ID}-bad`,
      MCP_COMPONENT: "bad",
      MCP_NODE: "bootnode",
      MCP_DESIRED: "running",
      MCP_OBSERVED: "running",
    });
    expect(a1.MCP_DETAIL).toStartWith("boot stage foundation attempt 1 failed: tcp 127.0.0.1:");
    expect(a2.MCP_DETAIL).toStartWith("boot stage foundation attempt 2 failed:");

    // The later stage was never started: no container, nothing registered, not in the status.
    expect(await runtime.inspect(`${ID}-late-late`)).toBeNull();
    expect(agent.registry.getService(`${ID}-late`)).toBeNull();
    const st = bootStatus(agent.ctx);
    expect(st.map((s) => s.name)).toEqual(["foundation"]);
    expect(st[0]!.blocking).toBe(true);
    expect(st[0]!.attempts).toBeGreaterThanOrEqual(2);
    expect(lines().some((l) => l.msg === "foundation boot stage failed; later stages wait for it")).toBe(
      true,
    );

    const t0 = performance.now();
    await agent.close();
    const closeMs = performance.now() - t0;
    console.log(`close() during a blocked boot took ${Math.round(closeMs)} ms`);
    expect(closeMs).toBeLessThan(3000);
    expect(bootStatus(agent.ctx)[0]!.status).toBe("aborted");
    const count = alerts().length;
    await Bun.sleep(1500);
    expect(alerts().length).toBe(count); // the retry loop is gone
    expect(await runtime.inspect(`${ID}-late-late`)).toBeNull();
  }, 90_000);
});
