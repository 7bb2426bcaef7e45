// The rooms rules of ARCHITECTURE.md "Direction of dependencies", checked on the real src/ tree by
// scripts/import-graph.ts: no import between the three roles, nothing below the roles imports one
// (src/main.ts dispatches), the adapters do not import each other, rpc/ is transport only, no import
// circle larger than two files; and no export that nothing uses. The checker itself is tested on
// small made-up graphs and sources so a rule that stops firing is noticed.
import { describe, expect, test } from "bun:test";
import {
  checkRules,
  deadExports,
  formatViolation,
  type Graph,
  readGraph,
  roomOf,
  scanSource,
  sccs,
} from "../../../scripts/import-graph.ts";

// KNOWN violations that other parts of issue 15 remove; the lead empties this list when merging
// them. Nothing else may be added here: a new violation is fixed, not allow-listed.
const KNOWN: string[] = [];

describe("the real tree", () => {
  const g = readGraph();
  const found = checkRules(g).map(formatViolation);

  test("reads every file and its imports", () => {
    expect(g.files).toContain("src/main.ts");
    expect(g.files.length).toBeGreaterThan(100);
    // main.ts starts each role through a dynamic import.
    const fromMain = g.edges.filter((e) => e.from === "src/main.ts" && e.dynamic).map((e) => e.to);
    expect(fromMain).toContain("src/roles/agent/daemon.ts");
    expect(fromMain).toContain("src/roles/master/daemon.ts");
    expect(fromMain).toContain("src/roles/cli/index.ts");
  });

  test("no rule is broken beyond the known list", () => {
    expect(found.filter((v) => !KNOWN.includes(v))).toEqual([]);
  });

  test("every known entry is still a violation (a fixed one leaves the list)", () => {
    expect(KNOWN.filter((k) => !found.includes(k))).toEqual([]);
  });

  test("no import circle larger than two files", () => {
    expect(sccs(g).filter((c) => c.length > 2)).toEqual([]);
  });

  test("no dead export: every export is imported somewhere or used in its own file", () => {
    expect(deadExports().filter((d) => !d.usedInside)).toEqual([]);
  });
});

describe("the checker", () => {
  const graph = (edges: [string, string, boolean?][]): Graph => {
    const files = [...new Set([...edges.map((e) => e[0]), ...edges.map((e) => e[1])])].sort();
    return {
      files,
      edges: edges.map(([from, to, typeOnly = false]) => ({ from, to, typeOnly, dynamic: false })),
    };
  };
  const rules = (edges: [string, string, boolean?][]) => checkRules(graph(edges)).map((v) => v.rule);

  test("rooms: a role, a top-level folder, a top-level file", () => {
    expect(roomOf("src/roles/cli/files.ts")).toBe("roles/cli");
    expect(roomOf("src/roles/agent/files/confine.ts")).toBe("roles/agent");
    expect(roomOf("src/rpc/server.ts")).toBe("rpc");
    expect(roomOf("src/main.ts")).toBe("main");
  });

  test("roles importing one another, in every direction and type-only too", () => {
    for (const [a, b] of [
      ["cli", "agent"],
      ["agent", "master"],
      ["master", "cli"],
    ]) {
      expect(rules([[`src/roles/${a}/x.ts`, `src/roles/${b}/y.ts`]])).toEqual(["roles import one another"]);
      expect(rules([[`src/roles/${b}/y.ts`, `src/roles/${a}/x.ts`, true]])).toEqual([
        "roles import one another",
      ]);
    }
    expect(rules([["src/roles/cli/a.ts", "src/roles/cli/b.ts"]])).toEqual([]);
  });

  test("nothing below the roles imports a role, except the dispatch in main.ts", () => {
    expect(rules([["src/config/x.ts", "src/roles/agent/y.ts", true]])).toEqual(["below the roles"]);
    expect(rules([["src/main.ts", "src/roles/agent/daemon.ts"]])).toEqual([]);
    expect(rules([["src/roles/agent/a.ts", "src/registry/b.ts"]])).toEqual([]);
  });

  test("adapters do not import each other; rpc does not import the domain", () => {
    expect(rules([["src/runtime/a.ts", "src/registry/b.ts"]])).toEqual(["adapters import one another"]);
    expect(rules([["src/auth/a.ts", "src/ssh/b.ts"]])).toEqual(["adapters import one another"]);
    expect(rules([["src/auth/a.ts", "src/pki/b.ts"]])).toEqual([]);
    expect(rules([["src/rpc/a.ts", "src/registry/b.ts", true]])).toEqual(["rpc is transport only"]);
    expect(rules([["src/rpc/a.ts", "src/runtime/b.ts"]])).toEqual(["rpc is transport only"]);
    expect(rules([["src/rpc/a.ts", "src/gen/b.ts"]])).toEqual([]);
  });

  test("circles: two files pass, three do not", () => {
    const a = "src/roles/master/a.ts";
    const b = "src/roles/master/b.ts";
    const c = "src/roles/master/c.ts";
    expect(
      rules([
        [a, b],
        [b, a],
      ]),
    ).toEqual([]);
    expect(
      rules([
        [a, b],
        [b, c],
        [c, a, true],
      ]),
    ).toEqual(["import circle of 3 files"]);
    expect(
      sccs(
        graph([
          [a, b],
          [b, c],
          [c, a],
        ]),
      ),
    ).toEqual([[a, b, c]]);
  });

  test("scanSource: static, type-only, re-export, dynamic and side-effect imports; not strings or comments", () => {
    const src = [
      'import { a } from "./a.ts";',
      'import type { B } from "./b.ts";',
      'import { type C } from "./c.ts";',
      "import {",
      "  d,",
      "  type E,",
      '} from "./d.ts";',
      'export { f } from "./f.ts";',
      'export type { G } from "./g.ts";',
      'import "./side.ts";',
      "const s = \"import x from './string.ts'\";",
      '// import y from "./comment.ts";',
      "/*",
      ' import z from "./block.ts";',
      "*/",
      'export async function h() { return (await import("./dyn.ts")).h; }',
      "console.log(a, d, s);",
    ].join("\n");
    const got = Object.fromEntries(scanSource(src).map((i) => [i.spec, { t: i.typeOnly, d: i.dynamic }]));
    expect(got).toEqual({
      "./a.ts": { t: false, d: false },
      "./b.ts": { t: true, d: false },
      "./c.ts": { t: true, d: false },
      "./d.ts": { t: false, d: false },
      "./f.ts": { t: false, d: false },
      "./g.ts": { t: true, d: false },
      "./side.ts": { t: false, d: false },
      "./dyn.ts": { t: false, d: true },
    });
  });
});
