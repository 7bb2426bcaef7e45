// Heartbeat state machine with an injected clock: window = heartbeat_miss × heartbeat_interval,
// probe when silent for the window, unhealthy on a failed probe, healthy on a heartbeat or a
// passed probe; warnings only after warm-up. The store is a real bun:sqlite database; the probe
// is a function whose answer the test decides (the real HealthCheck is in the integration test).
import { afterEach, describe, expect, test } from "bun:test";
import pino from "pino";
import {
  HeartbeatTracker,
  healthConfigOf,
  MasterHealth,
  nextStatus,
} from "../../../src/roles/master/health.ts";
import { compare } from "../../../src/roles/master/reconcile.ts";
import { type MasterStore, openMasterStore } from "../../../src/roles/master/store.ts";

function clock(start = 5_000_000) {
  let t = start;
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms;
    },
  };
}

function memLog() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(JSON.parse(s)) });
  return { logger, lines };
}

const stores: MasterStore[] = [];
afterEach(() => {
  for (const s of stores.splice(0)) s.close();
});

describe("nextStatus", () => {
  test("any sign of life is healthy, a failed probe is unhealthy", () => {
    for (const prev of ["healthy", "unhealthy", "unknown"] as const) {
      expect(nextStatus(prev, { kind: "heartbeat" })).toBe("healthy");
      expect(nextStatus(prev, { kind: "probe", ok: true })).toBe("healthy");
      expect(nextStatus(prev, { kind: "probe", ok: false })).toBe("unhealthy");
    }
  });
});

describe("healthConfigOf", () => {
  test("v2 defaults: 3 × 30 s window, 5 s probe, check every 5 s; short test intervals clamp at 100 ms", () => {
    const d = healthConfigOf({
      master: { heartbeat_interval: 30_000, heartbeat_miss: 3, probe_timeout: 5_000 },
    });
    expect(d).toEqual({
      heartbeatIntervalMs: 30_000,
      heartbeatMiss: 3,
      probeTimeoutMs: 5_000,
      checkIntervalMs: 5_000,
    });
    const s = healthConfigOf({ master: { heartbeat_interval: 100, heartbeat_miss: 2, probe_timeout: 300 } });
    expect(s.checkIntervalMs).toBe(100);
  });
});

describe("HeartbeatTracker", () => {
  test("due after the window of silence; a heartbeat resets it; a failed probe waits a full window", () => {
    const c = clock();
    const t = new HeartbeatTracker(90_000, c.now);
    // Unknown nodes count from the tracker's start (a restarted master gives a full window).
    expect(t.due(["a", "b"])).toEqual([]);
    c.advance(30_000);
    t.seen("a");
    c.advance(60_000);
    expect(t.due(["a", "b"])).toEqual(["b"]);
    c.advance(29_999);
    expect(t.isDue("a")).toBe(false);
    c.advance(1);
    expect(t.isDue("a")).toBe(true);
    t.probed("a", false);
    expect(t.isDue("a")).toBe(false);
    expect(t.silentFor("a")).toBe(90_000);
    c.advance(90_000);
    expect(t.isDue("a")).toBe(true);
    t.probed("a", true);
    expect(t.silentFor("a")).toBe(0);
    t.forget("a");
    expect(t.silentFor("a")).toBe(c.now() - 5_000_000);
  });
});

describe("MasterHealth", () => {
  function setup() {
    const c = clock();
    const store = openMasterStore(":memory:");
    stores.push(store);
    store.upsertNode({ name: "rift", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
    store.upsertNode({ name: "orion", role: "worker", address: "127.0.0.1:2", arch: "amd64" });
    const log = memLog();
    const answers = new Map<string, boolean>([
      ["rift", true],
      ["orion", true],
    ]);
    const probed: string[] = [];
    const health = new MasterHealth({
      store,
      logger: log.logger,
      config: {
        heartbeatIntervalMs: 30_000,
        heartbeatMiss: 3,
        probeTimeoutMs: 5_000,
        checkIntervalMs: 5_000,
      },
      probe: async (n) => {
        probed.push(n.name);
        if (!answers.get(n.name)) throw new Error("DEADLINE_EXCEEDED: no answer");
      },
      now: c.now,
    });
    return { c, store, log, answers, probed, health };
  }

  test("missed heartbeats → probe → unhealthy; heartbeat → healthy again", async () => {
    const { c, store, log, answers, probed, health } = setup();
    health.heartbeat("rift");
    health.heartbeat("orion");
    expect(store.getNode("rift")!.status).toBe("healthy");
    health.markWarm();
    c.advance(60_000);
    health.heartbeat("orion");
    await health.checkOnce();
    expect(probed).toEqual([]); // nobody silent for 90 s yet
    c.advance(30_000);
    answers.set("rift", false);
    await health.checkOnce();
    expect(probed).toEqual(["rift"]);
    expect(store.getNode("rift")!.status).toBe("unhealthy");
    expect(store.getNode("orion")!.status).toBe("healthy");
    const warn = log.lines.find((l) => l.msg === "node unhealthy");
    expect(warn).toMatchObject({ level: 40, node: "rift", from: "healthy", to: "unhealthy" });
    expect(String(warn!.reason)).toContain("DEADLINE_EXCEEDED");
    // Not probed again on every tick: only after another window.
    c.advance(5_000);
    await health.checkOnce();
    expect(probed).toEqual(["rift"]);
    health.heartbeat("rift");
    expect(store.getNode("rift")!.status).toBe("healthy");
  });

  test("a silent node that answers the probe stays healthy; before warm-up unhealthy is info, not warn", async () => {
    const { c, store, log, answers, health } = setup();
    c.advance(90_000);
    answers.set("orion", false);
    await health.checkOnce();
    expect(store.getNode("rift")!.status).toBe("healthy");
    expect(store.getNode("orion")!.status).toBe("unhealthy");
    expect(log.lines.some((l) => l.level === 40)).toBe(false);
    expect(log.lines.find((l) => l.node === "orion" && l.to === "unhealthy")).toMatchObject({ level: 30 });
  });

  test("a hanging probe is cut off at the probe timeout", async () => {
    const store = openMasterStore(":memory:");
    stores.push(store);
    store.upsertNode({ name: "hung", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
    const health = new MasterHealth({
      store,
      logger: memLog().logger,
      config: { heartbeatIntervalMs: 100, heartbeatMiss: 1, probeTimeoutMs: 50, checkIntervalMs: 100 },
      probe: () => new Promise<void>(() => {}),
    });
    const t0 = performance.now();
    expect(await health.probe(store.getNode("hung")!)).toBe(false);
    expect(performance.now() - t0).toBeLessThan(2_000);
    expect(store.getNode("hung")!.status).toBe("unhealthy");
  });

  test("start/stop: ticks run on the interval and stop waits for the running one", async () => {
    const store = openMasterStore(":memory:");
    stores.push(store);
    store.upsertNode({ name: "n1", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
    let probes = 0;
    const health = new MasterHealth({
      store,
      logger: memLog().logger,
      config: { heartbeatIntervalMs: 100, heartbeatMiss: 1, probeTimeoutMs: 50, checkIntervalMs: 100 },
      probe: async () => {
        probes++;
      },
    });
    const bg = health.start();
    for (let i = 0; i < 50 && probes < 2; i++) await Bun.sleep(50);
    await bg.stop();
    const after = probes;
    expect(after).toBeGreaterThanOrEqual(2);
    await Bun.sleep(300);
    expect(probes).toBe(after);
  });
});

describe("reconcile compare", () => {
  test("stale placements and orphans; unreachable nodes are not judged", () => {
    const placements = [
      { service: "web", node: "rift" },
      { service: "db", node: "rift" },
      { service: "mq", node: "down" },
    ];
    const running = new Map([
      ["rift", new Set(["web", "handmade"])],
      ["orion", new Set(["web"])],
    ]);
    expect(compare(placements, running)).toEqual({
      orphans: ["orion/web", "rift/handmade"],
      stalePlacements: ["rift/db"],
    });
  });
});
