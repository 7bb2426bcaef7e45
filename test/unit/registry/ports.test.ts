// Host-port allocation: reuse per route, no collisions, range and isFree
// respected, persistence across reopen; checked by example and as a
// fast-check property against a model.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { openRegistry } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-reg-ports-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const path = () => join(dir, `r${++n}.db`);
const always = () => true;

describe("allocatePort", () => {
  test("returns the same port for the same route, also after reopening", () => {
    const p = path();
    const reg = openRegistry(p);
    const a = reg.allocatePort("svc", "api", "web", [20000, 20009], always);
    expect(a).toBe(20000);
    expect(reg.allocatePort("svc", "api", "web", [20000, 20009], always)).toBe(a);
    // Reuse does not consult isFree: the port is ours (our container may hold it).
    expect(reg.allocatePort("svc", "api", "web", [20000, 20009], () => false)).toBe(a);
    reg.close();
    const again = openRegistry(p);
    expect(again.allocatePort("svc", "api", "web", [20000, 20009], always)).toBe(a);
    expect(again.allocatedPorts("svc")).toEqual([
      { port: a, service: "svc", component: "api", route: "web" },
    ]);
    again.close();
  });

  test("skips ports already allocated and ports isFree rejects", () => {
    const reg = openRegistry(path());
    const probed: number[] = [];
    expect(reg.allocatePort("s", "c", "r1", [20000, 20009], always)).toBe(20000);
    const p = reg.allocatePort("s", "c", "r2", [20000, 20009], (port) => {
      probed.push(port);
      return port !== 20001 && port !== 20002;
    });
    expect(p).toBe(20003);
    expect(probed).toEqual([20001, 20002, 20003]); // 20000 is known taken, never probed
    reg.close();
  });

  test("an exhausted range fails with one line and writes nothing", () => {
    const reg = openRegistry(path());
    reg.allocatePort("s", "c", "a", [20000, 20001], always);
    reg.allocatePort("s", "c", "b", [20000, 20001], always);
    expect(() => reg.allocatePort("s", "c", "x", [20000, 20001], always)).toThrow(
      "no free host port in 20000-20001 for s/c route x",
    );
    expect(() => reg.allocatePort("s", "c", "y", [30000, 30005], () => false)).toThrow("no free host port");
    expect(reg.allocatedPorts("s").map((a) => a.port)).toEqual([20000, 20001]);
    expect(() => reg.allocatePort("s", "c", "z", [5, 1], always)).toThrow("invalid port range 5-1");
    expect(() => reg.allocatePort("s", "c", "z", [0, 10], always)).toThrow("invalid port range 0-10");
    reg.close();
  });

  test("releasePorts frees a component's or a whole service's ports", () => {
    const reg = openRegistry(path());
    reg.allocatePort("s", "a", "r", [20000, 20100], always);
    reg.allocatePort("s", "b", "r", [20000, 20100], always);
    reg.allocatePort("t", "a", "r", [20000, 20100], always);
    expect(reg.releasePorts("s", "a")).toBe(1);
    expect(reg.allocatedPorts("s").map((a) => a.component)).toEqual(["b"]);
    // The freed port is handed out again.
    expect(reg.allocatePort("u", "x", "r", [20000, 20100], always)).toBe(20000);
    expect(reg.releasePorts("s")).toBe(1);
    expect(reg.allocatedPorts("s")).toEqual([]);
    expect(reg.allocatedPorts("t")).toHaveLength(1);
    reg.close();
  });

  test("two connections to one file never hand out the same port", () => {
    const p = path();
    const a = openRegistry(p);
    const b = openRegistry(p);
    const got: number[] = [];
    for (let i = 0; i < 20; i++) {
      const reg = i % 2 === 0 ? a : b;
      got.push(reg.allocatePort("s", `c${i}`, "r", [20000, 20100], always));
    }
    expect(new Set(got).size).toBe(20);
    expect(b.allocatedPorts("s")).toHaveLength(20);
    a.close();
    b.close();
  });

  test("an allocation inside a failed transaction is rolled back", () => {
    const reg = openRegistry(path());
    expect(() =>
      reg.withTransaction(() => {
        reg.allocatePort("s", "c", "r", [20000, 20010], always);
        throw new Error("deploy failed");
      }),
    ).toThrow("deploy failed");
    expect(reg.allocatedPorts("s")).toEqual([]);
    reg.close();
  });

  test("property: never collides, stays in range, respects isFree, reuses per route", () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant("alloc" as const),
        svc: fc.constantFrom("s1", "s2", "s3"),
        comp: fc.constantFrom("a", "b"),
        route: fc.constantFrom("http", "grpc"),
        lo: fc.integer({ min: 20000, max: 20020 }),
        width: fc.integer({ min: 0, max: 15 }),
        busy: fc.uniqueArray(fc.integer({ min: 20000, max: 20035 }), { maxLength: 10 }),
      }),
      fc.record({ kind: fc.constant("release" as const), svc: fc.constantFrom("s1", "s2", "s3") }),
    );
    let run = 0;
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 30 }), (ops) => {
        const reg = openRegistry(join(dir, `prop${++run}.db`));
        // Model: owner key -> port.
        const model = new Map<string, number>();
        try {
          for (const o of ops) {
            if (o.kind === "release") {
              for (const k of [...model.keys()]) if (k.startsWith(`${o.svc}/`)) model.delete(k);
              reg.releasePorts(o.svc);
              continue;
            }
            const key = `${o.svc}/${o.comp}/${o.route}`;
            const hi = o.lo + o.width;
            const busy = new Set(o.busy);
            const held = new Set(model.values());
            const expected =
              model.get(key) ??
              (() => {
                for (let p = o.lo; p <= hi; p++) if (!held.has(p) && !busy.has(p)) return p;
                return null;
              })();
            let got: number | null;
            try {
              got = reg.allocatePort(o.svc, o.comp, o.route, [o.lo, hi], (p) => !busy.has(p));
            } catch {
              got = null;
            }
            expect(got).toBe(expected);
            if (got !== null) {
              if (!model.has(key)) {
                expect(got).toBeGreaterThanOrEqual(o.lo);
                expect(got).toBeLessThanOrEqual(hi);
                expect(busy.has(got)).toBe(false);
              }
              model.set(key, got);
            }
          }
          const stored = ["s1", "s2", "s3"].flatMap((s) => reg.allocatedPorts(s));
          expect(new Set(stored.map((a) => a.port)).size).toBe(stored.length);
          expect(stored.length).toBe(model.size);
          for (const a of stored) expect(model.get(`${a.service}/${a.component}/${a.route}`)).toBe(a.port);
        } finally {
          reg.close();
        }
      }),
      { numRuns: 60 },
    );
  });
});

describe("edge routes", () => {
  test("upsert, list and delete keep every field", () => {
    const reg = openRegistry(path());
    const expires = new Date("2026-09-01T12:00:00.000Z");
    reg.upsertEdgeRoute({
      hostname: "b.example.net",
      backendHostname: "node1",
      backendPort: 20001,
      certSerial: "01ab",
      certExpires: expires,
    });
    reg.upsertEdgeRoute({
      hostname: "a.example.net",
      backendHostname: "node2",
      backendPort: 20002,
      certSerial: "",
      certExpires: null,
    });
    const created = reg.listEdgeRoutes()[1]!.createdAt;
    reg.upsertEdgeRoute({
      hostname: "b.example.net",
      backendHostname: "node3",
      backendPort: 20003,
      certSerial: "02cd",
      certExpires: expires,
    });
    const list = reg.listEdgeRoutes();
    expect(list.map((r) => r.hostname)).toEqual(["a.example.net", "b.example.net"]);
    expect(list[1]).toEqual({
      hostname: "b.example.net",
      backendHostname: "node3",
      backendPort: 20003,
      certSerial: "02cd",
      certExpires: expires,
      createdAt: created,
    });
    expect(list[0]!.certExpires).toBeNull();
    expect(reg.deleteEdgeRoute("a.example.net")).toBe(true);
    expect(reg.deleteEdgeRoute("a.example.net")).toBe(false);
    expect(reg.listEdgeRoutes()).toHaveLength(1);
    reg.close();
  });
});
