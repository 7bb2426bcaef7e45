// Live state from runtime events, in a real in-process agent (real podman and a real Docker
// engine, real sqlite, real alert command) with the monitor interval at 60 s, so that nothing
// here can come from a tick after the first one:
//   - a container's process killed from outside: the view says exited and the alert command has
//     run within 2 s; `podman rm -f` behind the agent's back: removed within 2 s;
//   - the event stream the agent reads is killed: the agent notices, answers listings from the
//     runtime meanwhile, starts the stream again and resynchronises, and what changed in the gap
//     is recorded (the registry equals a full listing);
//   - 200 containers started and stopped in a burst: the view equals `podman ps -a` afterwards and
//     the registry holds every transition of each in order, written in batches.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { toComponentInput } from "../../src/component/registry.ts";
import type { ServiceDef } from "../../src/config/service.ts";
import { Monitor } from "../../src/monitor/monitor.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import { SAFETY_NET_MS } from "../../src/roles/agent/monitor.ts";
import { DockerRuntime } from "../../src/runtime/docker.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { PodmanRuntime, parsePs } from "../../src/runtime/podman.ts";
import type { ContainerInfo, Runtime } from "../../src/runtime/runtime.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { type Dockerd, dockerBusyboxImage, dockerCli, startDockerd } from "../support/docker.ts";
import { busyboxImage, type PodmanEnv, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const BURST = Number(process.env.MCP_BURST_N ?? 200);

let dir = "";
let pe: PodmanEnv;
let image = "";
let pki: { certPem: string; keyPem: string };
let dockerd: Dockerd | undefined;
const agents: RunningAgent[] = [];
const podmanNames: string[] = [];
const dockerNames: string[] = [];
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(generateToken()) },
]);

/** An alert command appending "<ms> <type> <service> <observed>" per alert to `out`. */
function alertScript(out: string): string {
  const p = join(dir, `alert-${Math.random().toString(36).slice(2, 8)}.sh`);
  writeFileSync(
    p,
    `#!/bin/bash\necho "$(date +%s%3N) $MCP_ALERT_TYPE $MCP_SERVICE $MCP_OBSERVED" >> "${out}"\n`,
  );
  chmodSync(p, 0o755);
  return p;
}

function alertsFor(out: string, service: string): string[][] {
  if (!existsSync(out)) return [];
  return readFileSync(out, "utf8")
    .split("\n")
    .map((l) => l.split(" "))
    .filter((w) => w[2] === service);
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

interface Engine {
  name: "podman" | "docker";
  runtime: () => Runtime;
  image: () => string;
  cli: (...args: string[]) => Promise<string>;
  names: string[];
}

const podmanEngine: Engine = {
  name: "podman",
  runtime: () => new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env, api: true }),
  image: () => image,
  cli: async (...args) =>
    (await runOk(["podman", ...pe.globalArgs, ...args], { env: pe.env, timeoutMs: 120_000 })).stdout,
  names: podmanNames,
};

let dockerImage = "";
const dockerEngine: Engine = {
  name: "docker",
  runtime: () => new DockerRuntime({ binary: dockerd!.binary, globalArgs: dockerd!.globalArgs }),
  image: () => dockerImage,
  cli: async (...args) => {
    const r = await dockerCli(dockerd!, ...args);
    if (r.code !== 0) throw new Error(`docker ${args.join(" ")}: ${r.stderr.trim()}`);
    return r.stdout;
  },
  names: dockerNames,
};

async function startLive(engine: Engine, out: string): Promise<{ agent: RunningAgent; monitor: Monitor }> {
  const sub = mkdtempSync(join(dir, `${engine.name}-`));
  const agent = await startAgent(
    await testAgentSettings(sub, pki, {
      nodeName: `live-${engine.name}`,
      validator,
      runtime: engine.runtime(),
      pullPolicy: "never",
      monitor: {
        intervalMs: 60_000,
        alertCommand: [alertScript(out)],
        cooldownMs: 60_000,
        flapThreshold: 10,
        flapWindowMs: 60_000,
        retentionMs: 3_600_000,
        alertTimeoutMs: 5_000,
      },
    }),
  );
  agents.push(agent);
  const monitor = (await agent.startup).find((b): b is Monitor => b instanceof Monitor);
  if (!monitor) throw new Error("agent started without a monitor");
  await waitFor("the live view", () => agent.ctx.live?.status().current === true, 15_000);
  return { agent, monitor };
}

async function deploy(agent: RunningAgent, engine: Engine, svc: string): Promise<void> {
  engine.names.push(`${svc}-web`);
  const def = {
    name: svc,
    tier: "worker",
    active: true,
    components: [{ ...containerComponent("web", engine.image()), cmd: ["sleep", "3600"] }],
  } as ServiceDef;
  const res = await deployService(agent.ctx, def, { pullPolicy: "never" });
  expect(res.map((r) => r.success)).toEqual([true]);
}

/** Deploys svc/web and waits until the agent's view has its container running; its name. */
async function deployRunning(agent: RunningAgent, engine: Engine, svc: string): Promise<string> {
  await deploy(agent, engine, svc);
  const name = `${svc}-web`;
  await waitFor("the view after the deploy", async () => (await viewState(agent, name)) === "running", 5_000);
  return name;
}

function observed(agent: RunningAgent, svc: string): string | undefined {
  return agent.registry.getComponent(svc, "web")?.observedState;
}

function viewState(agent: RunningAgent, name: string): Promise<string> {
  return agent.ctx.runtime.list().then((l) => l.find((c) => c.name === name)?.state ?? "removed");
}

beforeAll(async () => {
  [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-live-test-"));
  pki = await testPki("live");
}, 60_000);

afterAll(async () => {
  for (const a of agents) await a.close();
  for (const a of agents) a.ctx.settings.runtime.close?.();
  await removeContainers(podmanNames);
  if (dockerd) for (const n of dockerNames) await dockerCli(dockerd, "rm", "-f", n);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 180_000);

for (const engine of [podmanEngine, dockerEngine]) {
  describe(`${engine.name}: drift from events with monitor.interval = 60s`, () => {
    let agent: RunningAgent;
    let monitor: Monitor;
    let out = "";

    beforeAll(async () => {
      if (engine.name === "docker") {
        dockerd = await startDockerd();
        dockerImage = await dockerBusyboxImage(dockerd);
      }
      out = join(dir, `${engine.name}-alerts.log`);
      ({ agent, monitor } = await startLive(engine, out));
    }, 120_000);

    test("a process killed from outside: view exited and the alert has run within 2 s", async () => {
      const svc = `live-kill-${engine.name}-${RUN}`;
      const name = await deployRunning(agent, engine, svc);
      const pid = (await engine.cli("inspect", "--format", "{{.State.Pid}}", name)).trim();
      expect(Number(pid)).toBeGreaterThan(0);
      const ticks = monitor.stats.ticks;
      const listings = agent.ctx.live!.status().listings;

      process.kill(Number(pid), "SIGKILL");
      await waitFor("the alert", () => alertsFor(out, svc).length > 0, 2_000);
      await waitFor("the view", async () => (await viewState(agent, name)) === "exited", 2_000);
      expect(alertsFor(out, svc).map((a) => [a[1], a[3]])).toEqual([["drift", "exited"]]);
      expect(observed(agent, svc)).toBe("exited");
      expect(
        agent.registry.recentEvents({ service: svc, limit: 10 }).map((e) => `${e.prevState}->${e.newState}`),
      ).toEqual(["running->exited", "unknown->running"]);
      // From the event stream: no tick ran, and the view answered without listing.
      expect(monitor.stats.ticks).toBe(ticks);
      expect(agent.ctx.live!.status().listings).toBe(listings);
    }, 30_000);

    test("the monitor tick lists only when the view was last confirmed SAFETY_NET_MS ago (the events keep it)", async () => {
      const live = agent.ctx.live!;
      await live.resync();
      const listings = live.status().listings;
      await monitor.tickOnce();
      expect(live.status().listings).toBe(listings);
      expect(await live.resyncIfOlder(SAFETY_NET_MS, Date.now() + SAFETY_NET_MS - 5_000)).toBe(false);
      expect(live.status().listings).toBe(listings);
      expect(await live.resyncIfOlder(SAFETY_NET_MS, Date.now() + SAFETY_NET_MS + 1_000)).toBe(true);
      expect(live.status().listings).toBe(listings + 1);
    }, 30_000);

    test("`rm -f` behind the agent's back: removed within 2 s", async () => {
      const svc = `live-rm-${engine.name}-${RUN}`;
      const name = await deployRunning(agent, engine, svc);
      // podman rm -f waits out the stop timeout for a process ignoring SIGTERM: kill at once.
      await engine.cli(...(engine.name === "podman" ? ["rm", "-f", "-t", "0"] : ["rm", "-f"]), name);
      await waitFor("removed in the registry", () => observed(agent, svc) === "removed", 2_000);
      expect(await viewState(agent, name)).toBe("removed");
      // The runtime reports the death before the removal: both transitions, in order, and one
      // drift alert (the second falls inside the component's cooldown).
      expect(
        agent.registry.recentEvents({ service: svc, limit: 10 }).map((e) => `${e.prevState}->${e.newState}`),
      ).toEqual(["exited->removed", "running->exited", "unknown->running"]);
      await waitFor("the alert", () => alertsFor(out, svc).length > 0, 2_000);
      expect(alertsFor(out, svc).map((a) => a[1])).toEqual(["drift"]);
    }, 30_000);

    test("the event stream killed: listings meanwhile, then resubscribed and resynchronised, no transition missed", async () => {
      const live = agent.ctx.live!;
      const svc = `live-gap-${engine.name}-${RUN}`;
      const name = await deployRunning(agent, engine, svc);
      // podman: the stream reads the agent's REST service (stop that service); docker: its child.
      const rt = agent.ctx.settings.runtime;
      const pid =
        rt instanceof PodmanRuntime && !(rt instanceof DockerRuntime) ? rt.apiPid : live.status().pid;
      expect(live.status().via).toBe(engine.name === "podman" ? "api" : "child");
      expect(pid).toBeGreaterThan(0);
      process.kill(pid!, "SIGKILL");
      await waitFor("the stream noticed down", () => !live.status().streaming, 2_000);
      // While it is down, a listing goes to the runtime (never the stale view)…
      const before = live.status().listings;
      const listed = await agent.ctx.runtime.list();
      expect(live.status().listings).toBe(before + 1);
      expect(listed.find((c) => c.name === name)?.state).toBe("running");
      // …and a change in the gap is found by the resync when the stream is back.
      await engine.cli("stop", "-t", "0", name);
      await waitFor("the stream back and the view current", () => live.status().current, 10_000);
      // Back: docker through a new child; podman through a `podman events` child while its REST
      // service waits out its restart delay.
      expect(live.status().pid).toBeGreaterThan(0);
      expect(live.status().pid).not.toBe(pid);
      await waitFor("the gap's transition recorded", () => observed(agent, svc) === "exited", 3_000);
      expect(
        agent.registry.recentEvents({ service: svc, limit: 10 }).map((e) => `${e.prevState}->${e.newState}`),
      ).toEqual(["running->exited", "unknown->running"]);
      // The view equals a full listing of the runtime (for this file's containers: others on the
      // machine may be changing while the two are taken).
      const fresh = await agent.ctx.settings.runtime.list();
      const byName = (l: ContainerInfo[]) =>
        Object.fromEntries(
          l
            .filter((c) => c.name.includes(RUN))
            .map((c) => [c.name, `${c.id} ${c.state}`])
            .sort(),
        );
      expect(byName(await agent.ctx.runtime.list())).toEqual(byName(fresh));
    }, 60_000);
  });
}

describe("a burst: 200 containers started and stopped", () => {
  test(`the view equals podman ps -a and the registry holds every transition in order (N=${BURST})`, async () => {
    const out = join(dir, "burst-alerts.log");
    const { agent } = await startLive(podmanEngine, out);
    const names = Array.from(
      { length: BURST },
      (_, i) => `mcptest-burst-${RUN}-${String(i).padStart(3, "0")}`,
    );
    podmanNames.push(...names);
    // Each one a component the agent knows (service = component = container name, as discovery
    // records them; desired `ignore`: watched, never alerted on). Containers the registry does
    // not have stay in the view until a reconcile discovers them.
    agent.registry.withTransaction(() => {
      for (const n of names) {
        agent.registry.upsertService({ name: n, active: false });
        agent.registry.upsertComponent(
          n,
          toComponentInput(containerComponent(n, image), {
            desiredState: "ignore",
            observedState: "removed",
            version: "",
          }),
        );
      }
    });
    const recorder = agent.ctx.recorder!;
    const batches0 = recorder.stats.batches;
    // Created four at a time, then started and stopped in single podman calls: a real burst.
    // No network: a network namespace per container would triple the run's time.
    for (let i = 0; i < names.length; i += 4)
      await Promise.all(
        names
          .slice(i, i + 4)
          .map((n) => podmanEngine.cli("create", "--network", "none", "--name", n, image, "sleep", "3600")),
      );
    await podmanEngine.cli("start", ...names);
    await podmanEngine.cli("stop", "-t", "0", ...names);

    await waitFor(
      "every container exited in the registry",
      () => names.every((n) => agent.registry.getComponent(n, n)?.observedState === "exited"),
      60_000,
    );
    await recorder.settle();
    const ps = parsePs(await podmanEngine.cli("ps", "-a", "--format", "json"));
    const mine = (l: ContainerInfo[]) =>
      l
        .filter((c) => names.includes(c.name))
        .map((c) => `${c.name} ${c.id} ${c.state} ${c.exitCode}`)
        .sort();
    expect(agent.ctx.live!.status().current).toBe(true);
    expect(mine(await agent.ctx.runtime.list())).toEqual(mine(ps));
    expect(mine(ps)).toHaveLength(BURST);
    for (const n of names) {
      const events = agent.registry
        .recentEvents({ service: n, limit: 10 })
        .reverse()
        .map((e) => `${e.prevState}->${e.newState}`);
      expect(`${n}: ${events.join(" ")}`).toBe(`${n}: removed->stopped stopped->running running->exited`);
    }
    // Written in batches: fewer transactions than transitions (creates come one at a time, four
    // in flight; the start and the stop of all of them are bursts).
    const s = recorder.stats;
    expect(s.batches - batches0).toBeLessThan(3 * BURST);
    expect(s.batches - batches0).toBeLessThan(s.transitions);
    await removeContainers(names);
  }, 600_000);
});
