// Observed-state transitions and the event log: events only on change,
// newest-first queries, transition counts, and batched pruning at scale.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ComponentInput, ObservedState, Registry } from "../../../src/registry/index.ts";
import { OBSERVED_STATES, openRegistry } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-reg-ev-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const fresh = (): Registry => openRegistry(join(dir, `r${++n}.db`));

const comp = (name: string): ComponentInput => ({
  name,
  image: "img:v1",
  network: "bridge",
  user: "",
  restart: "unless-stopped",
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

describe("setObservedState", () => {
  test("records an event only when the state changes", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", comp("api"));
    expect(reg.setObservedState("svc", "api", "running")).toEqual({ prev: "unknown", changed: true });
    expect(reg.setObservedState("svc", "api", "running")).toEqual({ prev: "running", changed: false });
    expect(reg.setObservedState("svc", "api", "exited")).toEqual({ prev: "running", changed: true });
    expect(reg.setObservedState("svc", "api", "exited")).toEqual({ prev: "exited", changed: false });
    const evs = reg.recentEvents({ service: "svc", limit: 10 });
    expect(evs.map((e) => [e.prevState, e.newState])).toEqual([
      ["running", "exited"],
      ["unknown", "running"],
    ]);
    expect(reg.getComponent("svc", "api")!.observedState).toBe("exited");
    expect(() => reg.setObservedState("svc", "nope", "running")).toThrow("component svc/nope not found");
    expect(() => reg.setObservedState("svc", "api", "gone" as ObservedState)).toThrow(
      'invalid observed state "gone"',
    );
    reg.close();
  });

  test("any sequence of observations yields exactly one event per change", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", comp("api"));
    // A fixed pseudo-random walk (LCG) over the observed states.
    let seed = 12345;
    let prev: ObservedState = "unknown";
    let changes = 0;
    for (let i = 0; i < 300; i++) {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      const next = OBSERVED_STATES[seed % OBSERVED_STATES.length]!;
      const r = reg.setObservedState("svc", "api", next);
      expect(r).toEqual({ prev, changed: next !== prev });
      if (next !== prev) changes++;
      prev = next;
    }
    expect(reg.countTransitions("svc", "api", new Date(0))).toBe(changes);
    const evs = reg.recentEvents({ limit: 1000 });
    expect(evs).toHaveLength(changes);
    // Newest first, and each event continues from the one before it.
    for (let i = 0; i + 1 < evs.length; i++) expect(evs[i]!.prevState).toBe(evs[i + 1]!.newState);
    reg.close();
  });

  test("upsertComponent with a different observed state also records the transition", () => {
    const reg = fresh();
    reg.upsertService({ name: "svc" });
    reg.upsertComponent("svc", { ...comp("api"), observedState: "running" });
    expect(reg.recentEvents({ limit: 10 })).toEqual([]);
    reg.upsertComponent("svc", { ...comp("api"), observedState: "running" });
    reg.upsertComponent("svc", { ...comp("api"), observedState: "removed" });
    expect(reg.recentEvents({ limit: 10 }).map((e) => e.newState)).toEqual(["removed"]);
    reg.close();
  });
});

describe("event queries", () => {
  test("recentEvents filters by service, component and since, newest first", () => {
    const reg = fresh();
    const t0 = Date.parse("2026-01-01T00:00:00.000Z");
    const at = (min: number) => new Date(t0 + min * 60_000);
    reg.insertEvent({
      service: "a",
      component: "x",
      prevState: "running",
      newState: "exited",
      timestamp: at(1),
    });
    reg.insertEvent({
      service: "a",
      component: "y",
      prevState: "exited",
      newState: "running",
      timestamp: at(2),
    });
    reg.insertEvent({
      service: "b",
      component: "x",
      prevState: "unknown",
      newState: "running",
      timestamp: at(3),
    });
    const id = reg.insertEvent({
      service: "a",
      component: "x",
      prevState: "exited",
      newState: "running",
      timestamp: at(4),
    });
    const all = reg.recentEvents({ limit: 10 });
    expect(all.map((e) => e.timestamp.getTime())).toEqual(
      [at(4), at(3), at(2), at(1)].map((d) => d.getTime()),
    );
    expect(all[0]).toEqual({
      id,
      service: "a",
      component: "x",
      prevState: "exited",
      newState: "running",
      timestamp: at(4),
    });
    expect(reg.recentEvents({ service: "a", limit: 10 })).toHaveLength(3);
    expect(reg.recentEvents({ service: "a", component: "x", limit: 10 })).toHaveLength(2);
    expect(reg.recentEvents({ limit: 2 })).toHaveLength(2);
    // since is inclusive and exact to the millisecond.
    expect(reg.recentEvents({ since: at(2), limit: 10 })).toHaveLength(3);
    expect(reg.recentEvents({ since: new Date(at(2).getTime() + 1), limit: 10 })).toHaveLength(2);
    expect(reg.countTransitions("a", "x", at(0))).toBe(2);
    expect(reg.countTransitions("a", "x", at(2))).toBe(1);
    expect(reg.countTransitions("a", "x", at(5))).toBe(0);
    expect(() => reg.recentEvents({ limit: -1 })).toThrow("event limit must be a non-negative integer");
    reg.close();
  });

  test("events inserted without a timestamp get now, in ISO form", () => {
    const reg = fresh();
    const before = Date.now();
    reg.insertEvent({ service: "s", component: "c", prevState: "unknown", newState: "running" });
    const [e] = reg.recentEvents({ limit: 1 });
    expect(e!.timestamp.getTime()).toBeGreaterThanOrEqual(before - 5);
    expect(e!.timestamp.getTime()).toBeLessThanOrEqual(Date.now() + 5);
    reg.close();
  });
});

describe("pruneEvents", () => {
  test("deletes only events older than the cutoff", () => {
    const reg = fresh();
    const cutoff = new Date("2026-02-01T00:00:00.000Z");
    const ev = (ms: number) => ({
      service: "s",
      component: "c",
      prevState: "a",
      newState: "b",
      timestamp: new Date(cutoff.getTime() + ms),
    });
    for (const ms of [-86_400_000, -1, 0, 1]) reg.insertEvent(ev(ms));
    expect(reg.pruneEvents(cutoff)).toBe(2);
    expect(reg.recentEvents({ limit: 10 }).map((e) => e.timestamp.getTime() - cutoff.getTime())).toEqual([
      1, 0,
    ]);
    expect(reg.pruneEvents(cutoff)).toBe(0);
    reg.close();
  });

  // Speed is measured by the registry benchmark (scripts/bench), not asserted here: this checks
  // that pruning across several delete batches removes exactly the old rows.
  test("prunes 120,000 old events across delete batches and keeps the recent ones", () => {
    const reg = fresh();
    // Old events interleave 50 services x 7 components, the worst case for
    // the (service, component, timestamp) index; 1,000 recent ones must stay.
    reg.db.run(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < 119999)
      INSERT INTO events (service, component, prev_state, new_state, timestamp)
      SELECT 'svc' || (i % 50), 'c' || (i % 7), 'running', 'exited',
             strftime('%Y-%m-%dT%H:%M:%fZ', '2025-01-01', '+' || i || ' seconds') FROM seq`);
    reg.db.run(`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < 999)
      INSERT INTO events (service, component, prev_state, new_state, timestamp)
      SELECT 'keep', 'c', 'exited', 'running',
             strftime('%Y-%m-%dT%H:%M:%fZ', '2026-06-01', '+' || i || ' seconds') FROM seq`);
    const deleted = reg.pruneEvents(new Date("2026-01-01T00:00:00.000Z"));
    expect(deleted).toBe(120_000);
    expect(reg.db.query("SELECT count(*) AS n FROM events").get()).toEqual({ n: 1000 });
    expect(reg.recentEvents({ limit: 1 })[0]!.service).toBe("keep");
    reg.close();
  });
});
