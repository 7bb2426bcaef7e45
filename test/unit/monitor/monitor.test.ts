// The Monitor's tick over a real sqlite registry: the reconcile step is a scripted sequence of
// observed states written through the registry (as the agent's reconcile does), the alert sink
// logs only. Covers what the integration test cannot pin down exactly: the flap count ignores the
// first observation, a dropped (unconfirmed) alert starts no cooldown, tickOnce serializes.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import type { Alert } from "../../../src/monitor/alert.ts";
import type { Transition } from "../../../src/monitor/evaluate.ts";
import { flapCount, Monitor, type MonitorOptions } from "../../../src/monitor/monitor.ts";
import type { ComponentInput, ObservedState, Registry } from "../../../src/registry/index.ts";
import { openRegistry } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-monitor-unit-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;

const comp = (name: string): ComponentInput => ({
  name,
  image: "img:v1",
  network: "",
  user: "",
  restart: "",
  desiredState: "running",
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

/** A registry with svc/api and a reconcile that applies the next scripted state per call. */
function setup(states: ObservedState[], extra: Partial<MonitorOptions> = {}) {
  const reg: Registry = openRegistry(join(dir, `m${++n}.db`));
  reg.upsertService({ name: "svc" });
  reg.upsertComponent("svc", comp("api"));
  let i = 0;
  const reconcile = async () => {
    const transitions: Transition[] = [];
    const next = states[Math.min(i++, states.length - 1)]!;
    const r = reg.setObservedState("svc", "api", next);
    if (r.changed) transitions.push({ service: "svc", component: "api", prev: r.prev, next });
    return { services: reg.listServices(), transitions };
  };
  const logger = pino({ level: "silent" });
  const monitor = new Monitor({
    intervalMs: 60_000,
    cooldownMs: 60_000,
    flapThreshold: 3,
    flapWindowMs: 600_000,
    retentionMs: 86_400_000,
    store: reg,
    reconcile,
    sink: { node: "n", command: [], timeoutMs: 1_000, logger },
    logger,
    ...extra,
  });
  return { reg, monitor };
}

describe("Monitor.tickOnce", () => {
  test("drift on the crash, flapping at the threshold; the first observation is not a flap", async () => {
    const { reg, monitor } = setup(["running", "exited", "running", "exited"], { cooldownMs: 0 });
    const types: (string | number)[][] = [];
    for (let k = 0; k < 4; k++) {
      const r = await monitor.tickOnce();
      types.push(...r.alerts.map((a) => [a.type, a.transitions]));
    }
    // unknown->running (not counted), running->exited (1: drift), exited->running (2), running->exited (3: flapping)
    expect(types).toEqual([
      ["drift", 1],
      ["flapping", 3],
    ]);
    expect(flapCount(reg, "svc", "api", new Date(0))).toBe(3);
    expect(reg.recentEvents({ service: "svc", limit: 10 })).toHaveLength(4);
    reg.close();
  });

  test("an alert the confirm step drops starts no cooldown", async () => {
    const confirmed: boolean[] = [false, true];
    const seen: Alert[] = [];
    const { reg, monitor } = setup(["running", "exited", "running", "exited"], {
      flapThreshold: 10,
      confirm: async (a) => {
        seen.push(a);
        return confirmed.shift() ?? true;
      },
    });
    const sent: string[] = [];
    for (let k = 0; k < 4; k++) sent.push(...(await monitor.tickOnce()).alerts.map((a) => a.type));
    // tick 2: drift dropped (e.g. a deploy replaced the container); tick 4: drift again and sent,
    // well inside the 60 s cooldown the dropped one would have started
    expect(seen.map((a) => `${a.type}:${a.prev}->${a.observed}`)).toEqual([
      "drift:running->exited",
      "drift:running->exited",
    ]);
    expect(sent).toEqual(["drift"]);
    expect(monitor.stats.alerts).toBe(1);
    reg.close();
  });

  test("tickOnce waits for the running tick: never two at once", async () => {
    let active = 0;
    let max = 0;
    const reg = openRegistry(join(dir, `m${++n}.db`));
    const logger = pino({ level: "silent" });
    const monitor = new Monitor({
      intervalMs: 60_000,
      cooldownMs: 1,
      flapThreshold: 3,
      flapWindowMs: 1,
      retentionMs: 1,
      store: reg,
      reconcile: async () => {
        active++;
        max = Math.max(max, active);
        await Bun.sleep(30);
        active--;
        return { services: [], transitions: [] };
      },
      sink: { node: "n", command: [], timeoutMs: 1_000, logger },
      logger,
    });
    await Promise.all([monitor.tickOnce(), monitor.tickOnce(), monitor.tickOnce()]);
    expect(max).toBe(1);
    expect(monitor.stats.ticks).toBe(3);
    await monitor.stop();
    reg.close();
  });
});
