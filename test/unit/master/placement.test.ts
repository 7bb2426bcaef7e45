import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  masterNodeOf,
  type NodeView,
  place,
  type RuntimeNeed,
  runtimeMisfit,
  runtimeNeeds,
} from "../../../src/roles/master/placement.ts";

const nodeArb = fc.record({
  name: fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/),
  role: fc.constantFrom("worker", "edge", "master") as fc.Arbitrary<NodeView["role"]>,
  status: fc.constantFrom("healthy", "unhealthy", "unknown") as fc.Arbitrary<NodeView["status"]>,
  containers: fc.nat(20),
});
const nodesArb = fc.uniqueArray(nodeArb, { selector: (n) => n.name, maxLength: 8 });

/** What a least-loaded choice among `eligible` must be: the fewest containers, ties by name. */
function leastLoaded(eligible: { name: string; containers: number }[]): { containers: number; name: string } {
  const min = Math.min(...eligible.map((n) => n.containers));
  const tied = eligible
    .filter((n) => n.containers === min)
    .map((n) => n.name)
    .sort();
  return { containers: min, name: tied[0]! };
}

describe("place", () => {
  test("worker placement: deterministic, a healthy worker, fewest containers, ties by name", () => {
    fc.assert(
      fc.property(nodesArb, fc.context(), (nodes, _c) => {
        const svc = { name: "svc", tier: "worker" };
        const r = place(svc, nodes);
        // Deterministic, and independent of the order nodes are listed in.
        expect(place(svc, [...nodes].reverse())).toEqual(r);
        const eligible = nodes.filter((n) => n.role === "worker" && n.status === "healthy");
        if (eligible.length === 0) {
          expect("error" in r).toBe(true);
          return;
        }
        if (!("node" in r)) throw new Error("expected a node");
        const chosen = nodes.find((n) => n.name === r.node)!;
        expect(chosen.role).toBe("worker");
        expect(chosen.status).toBe("healthy");
        const least = leastLoaded(eligible);
        expect(chosen.containers).toBe(least.containers);
        expect(chosen.name).toBe(least.name);
      }),
      { numRuns: 2000 },
    );
  });

  test("explicit node wins over tier unless unknown to the master or unhealthy", () => {
    fc.assert(
      fc.property(nodesArb, fc.constantFrom("core", "worker"), fc.nat(10), (nodes, tier, i) => {
        if (nodes.length === 0) return;
        const target = nodes[i % nodes.length]!;
        const r = place({ name: "s", node: target.name, tier }, nodes);
        if (target.status === "unhealthy")
          expect(r).toEqual({ error: `service s: node "${target.name}" is unhealthy` });
        else expect(r).toEqual({ node: target.name });
        expect("error" in place({ name: "s", node: "zz-missing", tier }, nodes)).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  test("tier core → the master's node", () => {
    fc.assert(
      fc.property(nodesArb, (nodes) => {
        const r = place({ name: "s", tier: "core" }, nodes);
        const m = masterNodeOf(nodes);
        const mn = nodes.find((n) => n.name === m);
        if (!mn || mn.status === "unhealthy") expect("error" in r).toBe(true);
        else expect(r).toEqual({ node: m });
      }),
      { numRuns: 1000 },
    );
  });

  test("examples", () => {
    const nodes: NodeView[] = [
      { name: "rift", role: "master", status: "healthy", containers: 9 },
      { name: "w2", role: "worker", status: "healthy", containers: 1 },
      { name: "w1", role: "worker", status: "healthy", containers: 1 },
      { name: "w0", role: "worker", status: "unhealthy", containers: 0 },
      { name: "svc", role: "edge", status: "healthy", containers: 0 },
    ];
    expect(place({ name: "a", tier: "worker" }, nodes)).toEqual({ node: "w1" });
    expect(place({ name: "a", tier: "core" }, nodes)).toEqual({ node: "rift" });
    expect(place({ name: "a", tier: "core" }, nodes, "w2")).toEqual({ node: "w2" });
    expect(place({ name: "a", tier: "worker", node: "svc" }, nodes)).toEqual({ node: "svc" });
    expect(place({ name: "a", tier: "worker", node: "w0" }, nodes)).toEqual({
      error: 'service a: node "w0" is unhealthy',
    });
    expect(place({ name: "a", tier: "worker" }, [])).toEqual({
      error: "service a: no worker node is registered",
    });
  });
});

// Runtime kinds: nodes report theirs (null = never reported: "container" only is assumed).
const kindsArb = fc.option(fc.subarray(["container", "unikernel"]), { nil: null });
const rtNodeArb = fc.record({
  name: fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/),
  role: fc.constantFrom("worker", "edge", "master") as fc.Arbitrary<NodeView["role"]>,
  status: fc.constantFrom("healthy", "unhealthy", "unknown") as fc.Arbitrary<NodeView["status"]>,
  containers: fc.nat(20),
  runtimes: kindsArb,
});
const rtNodesArb = fc.uniqueArray(rtNodeArb, { selector: (n) => n.name, maxLength: 8 });
const needsArb = fc.array(
  fc.record({
    component: fc.constantFrom("web", "vm", "api"),
    kind: fc.constantFrom("container", "unikernel"),
  }),
  { maxLength: 3 },
);
const fits = (n: NodeView, needs: readonly RuntimeNeed[]) =>
  needs.every((x) => (n.runtimes ?? ["container"]).includes(x.kind));

describe("place by runtime kinds", () => {
  test("automatic placement: the least busy healthy worker among those with every needed kind", () => {
    fc.assert(
      fc.property(rtNodesArb, needsArb, (nodes, needs) => {
        const svc = { name: "svc", tier: "worker", needs };
        const r = place(svc, nodes);
        expect(place(svc, [...nodes].reverse())).toEqual(r);
        const eligible = nodes.filter((n) => n.role === "worker" && n.status === "healthy" && fits(n, needs));
        if (eligible.length === 0) {
          expect("error" in r).toBe(true);
          return;
        }
        if (!("node" in r)) throw new Error("expected a node");
        const chosen = nodes.find((n) => n.name === r.node)!;
        expect(fits(chosen, needs)).toBe(true);
        expect(chosen.name).toBe(leastLoaded(eligible).name);
      }),
      { numRuns: 2000 },
    );
  });

  test("a unikernel component never lands on a node that did not report the unikernel runtime", () => {
    fc.assert(
      fc.property(rtNodesArb, fc.constantFrom("core", "worker"), fc.option(fc.nat(10)), (nodes, tier, i) => {
        const node = i === null || nodes.length === 0 ? undefined : nodes[i % nodes.length]!.name;
        const needs = [
          { component: "web", kind: "container" },
          { component: "vm", kind: "unikernel" },
        ];
        const r = place({ name: "s", tier, needs, ...(node ? { node } : {}) }, nodes);
        if ("node" in r) expect(nodes.find((n) => n.name === r.node)!.runtimes ?? []).toContain("unikernel");
      }),
      { numRuns: 2000 },
    );
  });

  test("pinned or core: refused with one line naming the component and the node's runtimes", () => {
    fc.assert(
      fc.property(rtNodesArb, needsArb, fc.nat(10), (nodes, needs, i) => {
        if (nodes.length === 0) return;
        const target = nodes[i % nodes.length]!;
        for (const r of [
          place({ name: "s", node: target.name, tier: "worker", needs }, nodes),
          place({ name: "s", tier: "core", needs }, nodes, target.name),
        ]) {
          if (target.status === "unhealthy") {
            expect("error" in r).toBe(true);
          } else if (fits(target, needs)) {
            expect(r).toEqual({ node: target.name });
          } else {
            const missing = needs.find((x) => !(target.runtimes ?? ["container"]).includes(x.kind))!;
            expect(r).toEqual({ error: runtimeMisfit({ name: "s", tier: "worker", needs }, target)! });
            if (!("error" in r)) throw new Error("expected an error");
            expect(r.error).toStartWith(
              `service s: component ${missing.component} runs as a ${missing.kind}; `,
            );
            expect(r.error).not.toContain("\n");
          }
        }
      }),
      { numRuns: 2000 },
    );
  });

  test("containers only: the same as before runtimes were known, whatever nodes reported or not", () => {
    fc.assert(
      fc.property(nodesArb, fc.nat(3), (nodes, k) => {
        const needs = Array.from({ length: k }, (_, j) => ({ component: `c${j}`, kind: "container" }));
        const unreported = nodes.map((n) => ({ ...n, runtimes: null }));
        const reported = nodes.map((n) => ({ ...n, runtimes: ["container"] }));
        for (const tier of ["worker", "core"]) {
          const before = place({ name: "s", tier }, nodes);
          expect(place({ name: "s", tier, needs }, unreported)).toEqual(before);
          expect(place({ name: "s", tier, needs }, reported)).toEqual(before);
        }
      }),
      { numRuns: 1000 },
    );
  });

  test("runtimeNeeds reads legacy words and an empty kind as container", () => {
    expect(
      runtimeNeeds([
        { name: "a", runtime: "podman" },
        { name: "b", runtime: "" },
        { name: "c" },
        { name: "vm", runtime: "unikernel" },
      ]),
    ).toEqual([
      { component: "a", kind: "container" },
      { component: "b", kind: "container" },
      { component: "c", kind: "container" },
      { component: "vm", kind: "unikernel" },
    ]);
  });

  test("examples", () => {
    const nodes: NodeView[] = [
      { name: "hub", role: "master", status: "healthy", containers: 0, runtimes: ["container"] },
      { name: "a", role: "worker", status: "healthy", containers: 0, runtimes: ["container"] },
      { name: "b", role: "worker", status: "healthy", containers: 5, runtimes: ["container", "unikernel"] },
      { name: "c", role: "worker", status: "healthy", containers: 0, runtimes: null },
    ];
    const needs = runtimeNeeds([
      { name: "web", runtime: "container" },
      { name: "vm", runtime: "unikernel" },
    ]);
    expect(place({ name: "web", tier: "worker", needs }, nodes)).toEqual({ node: "b" });
    expect(place({ name: "web", tier: "worker" }, nodes)).toEqual({ node: "a" });
    expect(place({ name: "web", tier: "worker", node: "a", needs }, nodes)).toEqual({
      error: 'service web: component vm runs as a unikernel; node "a" has runtimes container',
    });
    expect(place({ name: "web", tier: "worker", node: "c", needs }, nodes)).toEqual({
      error: 'service web: component vm runs as a unikernel; node "c" has not reported its runtimes yet',
    });
    expect(place({ name: "web", tier: "core", needs }, nodes)).toEqual({
      error: 'service web: component vm runs as a unikernel; node "hub" has runtimes container',
    });
    expect(place({ name: "web", tier: "worker", needs }, nodes.slice(0, 2).concat(nodes[3]!))).toEqual({
      error:
        "service web: component vm runs as a unikernel; no healthy worker node has that runtime (a: container; c: not reported)",
    });
    const many: NodeView[] = Array.from({ length: 8 }, (_, i) => ({
      name: `w${i}`,
      role: "worker",
      status: "healthy",
      containers: 0,
      runtimes: ["container"],
    }));
    expect(place({ name: "web", tier: "worker", needs }, many)).toEqual({
      error:
        "service web: component vm runs as a unikernel; no healthy worker node has that runtime (w0: container; w1: container; w2: container; w3: container; w4: container; 3 more)",
    });
  });
});
