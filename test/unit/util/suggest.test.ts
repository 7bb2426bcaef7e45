// "Did you mean": the edit distance (with adjacent swaps) and which candidate is close enough.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { closest, didYouMean, editDistance } from "../../../src/util/suggest.ts";

describe("editDistance", () => {
  test("insertions, deletions, substitutions and adjacent swaps cost one each", () => {
    expect(editDistance("deploy", "deploy")).toBe(0);
    expect(editDistance("deplyo", "deploy")).toBe(1); // swap
    expect(editDistance("addres", "address")).toBe(1); // insertion
    expect(editDistance("dryrun", "dry-run")).toBe(1);
    expect(editDistance("stauts", "status")).toBe(1);
    expect(editDistance("imagee", "image")).toBe(1); // deletion
    expect(editDistance("pz", "ps")).toBe(1); // substitution
    expect(editDistance("", "abc")).toBe(3);
    expect(editDistance("abc", "")).toBe(3);
  });

  test("a metric-like function: symmetric, zero only for equal words, bounded by the longer length", () => {
    const w = fc.string({ maxLength: 12 });
    fc.assert(
      fc.property(w, w, (a, b) => {
        const d = editDistance(a, b);
        expect(d).toBe(editDistance(b, a));
        expect(d === 0).toBe(a === b);
        expect(d).toBeLessThanOrEqual(Math.max(a.length, b.length));
        expect(d).toBeGreaterThanOrEqual(Math.abs(a.length - b.length));
      }),
      { numRuns: 500 },
    );
  });
});

describe("closest", () => {
  const commands = ["deploy", "undeploy", "status", "ps", "list", "logs", "node"];

  test("typos of a command, a key, a flag", () => {
    expect(closest("deplyo", commands)).toBe("deploy");
    expect(closest("stauts", commands)).toBe("status");
    expect(closest("addres", ["name", "address", "addresses", "ssh", "arch"])).toBe("address");
    expect(closest("dryrun", ["file", "dry-run", "pull", "strict", "node"])).toBe("dry-run");
    expect(closest("Deploy", commands)).toBe("deploy");
  });

  test("a unique prefix of three or more letters", () => {
    expect(closest("undep", commands)).toBe("undeploy");
    expect(closest("lo", commands)).toBeUndefined(); // too short, and "list", "logs" both fit
  });

  test("nothing for a word far from every candidate, or for the word itself", () => {
    expect(closest("bogus", commands)).toBeUndefined();
    expect(closest("x", commands)).toBeUndefined();
    expect(closest("ps", ["ps"])).toBeUndefined();
    expect(closest("anything", [])).toBeUndefined();
  });

  test("didYouMean wraps it for an error line", () => {
    expect(didYouMean("nodes", ["name", "node", "tier"])).toBe(' (did you mean "node"?)');
    expect(didYouMean("zzz", ["name"])).toBe("");
  });
});
