// Master snapshot bookkeeping without agents: file names, the store's newest-first order,
// staleness (twice the interval, a fresh placement without snapshots is not stale yet) and the
// scheduled loop (busy services skipped, failures logged, prompt stop).
import { describe, expect, test } from "bun:test";
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import type { MasterConfig } from "../../../src/config/master.ts";
import { AgentPool } from "../../../src/roles/master/agents.ts";
import type { MasterContext } from "../../../src/roles/master/context.ts";
import {
  SNAPSHOT_FILE,
  snapshotFileName,
  snapshotSettings,
  staleSnapshots,
  startSnapshotScheduler,
} from "../../../src/roles/master/snapshots.ts";
import { openMasterStore } from "../../../src/roles/master/store.ts";
import { KeyedLock } from "../../../src/util/keyed-lock.ts";

const HOUR = 3600_000;

function fakeCtx(snapshots?: { dir: string; interval: number; retain: number }) {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => lines.push(JSON.parse(s)) });
  const store = openMasterStore(":memory:");
  const shutdown = new AbortController();
  const ctx = {
    settings: { config: { snapshots, timeouts: { snapshot: 1000 } } as unknown as MasterConfig },
    store,
    agents: new AgentPool({ caPem: "", clientCert: null, connectTimeoutMs: 200 }),
    locks: new KeyedLock(),
    logger,
    startedAt: new Date(),
    shutdown: shutdown.signal,
    fleetReport: null,
  } as unknown as MasterContext;
  return { ctx, store, lines, shutdown };
}

test("file names: second resolution, millisecond variant, both of the prunable shape", () => {
  const at = new Date("2026-04-01T00:00:00.123Z");
  expect(snapshotFileName(at)).toBe("2026-04-01T00:00:00Z.tar.zst");
  expect(snapshotFileName(at, true)).toBe("2026-04-01T00:00:00.123Z.tar.zst");
  expect(SNAPSHOT_FILE.test(snapshotFileName(at))).toBe(true);
  expect(SNAPSHOT_FILE.test(snapshotFileName(at, true))).toBe(true);
  expect(SNAPSHOT_FILE.test("../2026-04-01T00:00:00Z.tar.zst")).toBe(false);
});

test("settings: defaults without [snapshots], the section's values with it", () => {
  expect(snapshotSettings(fakeCtx().ctx)).toMatchObject({
    dir: "/srv/mcp-master/snapshots",
    intervalMs: 24 * HOUR,
    retain: 7,
    scheduled: false,
  });
  expect(snapshotSettings(fakeCtx({ dir: "/x", interval: HOUR, retain: 2 }).ctx)).toMatchObject({
    dir: "/x",
    intervalMs: HOUR,
    retain: 2,
    scheduled: true,
  });
});

describe("stale snapshots", () => {
  test("older than twice the interval, or none for a placement older than that", () => {
    const { ctx, store } = fakeCtx({ dir: "/x", interval: HOUR, retain: 7 });
    store.upsertNode({ name: "n1", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
    for (const s of ["fresh", "old", "never"])
      store.upsertPlacement({ service: s, node: "n1", tier: "worker" });
    const now = Date.now() + 10 * HOUR;
    const add = (service: string, agoMs: number, filename: string) =>
      store.addSnapshot({
        service,
        node: "n1",
        filename,
        sizeBytes: 1,
        createdAt: new Date(now - agoMs).toISOString(),
      });
    add("fresh", 5 * HOUR, "a");
    add("fresh", 1 * HOUR, "b");
    add("old", 2 * HOUR + 1000, "c");
    expect(store.listSnapshots("fresh").map((s) => s.filename)).toEqual(["b", "a"]);
    expect(staleSnapshots(ctx, now)).toEqual(["never", "old"]);
    // A placement made just now has had no chance to be snapshotted yet.
    expect(staleSnapshots(ctx, Date.now())).toEqual([]);
  });
});

test("scheduled loop: a busy service is skipped, an unreachable node logged, stop is prompt", async () => {
  const dir = mkdtempSync(join(tmpdir(), "mcp-snap-loop-"));
  const { ctx, store, lines } = fakeCtx({ dir, interval: 50, retain: 2 });
  store.upsertNode({ name: "n1", role: "worker", address: "127.0.0.1:1", arch: "amd64" });
  store.upsertPlacement({ service: "busy", node: "n1", tier: "worker" });
  store.upsertPlacement({ service: "down", node: "n1", tier: "worker" });
  let release!: () => void;
  const held = ctx.locks.run("busy", () => new Promise<void>((r) => (release = r)));
  const bg = startSnapshotScheduler(ctx);
  const deadline = Date.now() + 10_000;
  const seen = (msg: string, svc: string) => lines.some((l) => l.msg === msg && l.service === svc);
  while (
    Date.now() < deadline &&
    !(
      seen("scheduled snapshot skipped: the service is busy", "busy") &&
      seen("scheduled snapshot failed", "down")
    )
  )
    await Bun.sleep(20);
  const t0 = Date.now();
  await bg.stop();
  expect(Date.now() - t0).toBeLessThan(3000);
  release();
  await held;
  expect(seen("scheduled snapshot skipped: the service is busy", "busy")).toBe(true);
  expect(seen("scheduled snapshot failed", "down")).toBe(true);
  expect(store.listSnapshots()).toEqual([]);
  // The node never answered: no partial file is left behind.
  expect(readdirSync(join(dir, "down"))).toEqual([]);
  ctx.agents.close();
  store.close();
  rmSync(dir, { recursive: true, force: true });
});
