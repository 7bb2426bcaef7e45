import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { masterNodeOf, type NodeView, place } from "../../../src/roles/master/placement.ts";

const nodeArb = fc.record({
  name: fc.stringMatching(/^[a-z][a-z0-9]{0,5}$/),
  role: fc.constantFrom("worker", "edge", "master") as fc.Arbitrary<NodeView["role"]>,
  status: fc.constantFrom("healthy", "unhealthy", "unknown") as fc.Arbitrary<NodeView["status"]>,
  containers: fc.nat(20),
});
const nodesArb = fc.uniqueArray(nodeArb, { selector: (n) => n.name, maxLength: 8 });

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
        const min = Math.min(...eligible.map((n) => n.containers));
        expect(chosen.containers).toBe(min);
        const tied = eligible
          .filter((n) => n.containers === min)
          .map((n) => n.name)
          .sort();
        expect(chosen.name).toBe(tied[0]!);
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
