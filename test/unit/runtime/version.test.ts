// extractVersion: examples from the reference plus properties over generated image references
// (registry with or without port, nested paths, tags, digests).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { extractVersion } from "../../../src/runtime/version.ts";

describe("extractVersion examples", () => {
  test.each([
    ["mcr.svc:8443/metacrypt:v1.7.0", "v1.7.0"],
    ["mcr.svc.mcp.metacircular.net:8443/mc-proxy:v0.4.2", "v0.4.2"],
    ["metacrypt:v1", "v1"],
    ["localhost/mcp-test-busybox:v1.0.0", "v1.0.0"],
    ["127.0.0.1:5000/a/b/c:1.2.3-rc.1", "1.2.3-rc.1"],
    ["metacrypt", ""],
    ["mcr.svc:8443/metacrypt", ""],
    ["127.0.0.1:5000/busybox", ""],
    ["busybox@sha256:" + "a".repeat(64), ""],
    ["mcr.svc:8443/x@sha256:" + "b".repeat(64), ""],
    ["mcr.svc:8443/x:v2@sha256:" + "c".repeat(64), "v2"],
    ["  metacrypt:v3 ", "v3"],
    ["", ""],
  ])("%p → %p", (image, want) => {
    expect(extractVersion(image)).toBe(want);
  });
});

// Generators following the reference grammar closely enough: hosts never contain "/" or "@",
// path components are lowercase alnum with separators, tags are [\w][\w.-]{0,127}.
const alnum = fc.stringMatching(/^[a-z0-9]{1,8}$/);
const component = fc.stringMatching(/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/).filter((s) => s.length <= 20);
const host = fc.oneof(
  fc.constant("localhost"),
  fc.ipV4(),
  fc.array(alnum, { minLength: 2, maxLength: 4 }).map((p) => p.join(".")),
);
const registry = fc.option(
  fc
    .tuple(host, fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
    .map(([h, p]) => (p === undefined ? h : `${h}:${p}`)),
  { nil: undefined },
);
const path = fc.array(component, { minLength: 1, maxLength: 4 }).map((c) => c.join("/"));
const tag = fc.stringMatching(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}$/);
const digest = fc.stringMatching(/^[a-f0-9]{64}$/).map((h) => `sha256:${h}`);

const runs = { numRuns: 2000 };

describe("extractVersion properties", () => {
  test("returns the tag, never part of the registry host:port", () => {
    fc.assert(
      fc.property(registry, path, fc.option(tag, { nil: undefined }), (reg, p, t) => {
        const image = `${reg ? `${reg}/` : ""}${p}${t ? `:${t}` : ""}`;
        expect(extractVersion(image)).toBe(t ?? "");
      }),
      runs,
    );
  });

  test("digest-only references have no version; tag+digest keeps the tag", () => {
    fc.assert(
      fc.property(registry, path, fc.option(tag, { nil: undefined }), digest, (reg, p, t, d) => {
        const image = `${reg ? `${reg}/` : ""}${p}${t ? `:${t}` : ""}@${d}`;
        expect(extractVersion(image)).toBe(t ?? "");
      }),
      runs,
    );
  });

  test("total: any string gives a string without '/' or '@'", () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 60 }), (s) => {
        const v = extractVersion(s);
        expect(typeof v).toBe("string");
        expect(v.includes("/") || v.includes("@")).toBe(false);
      }),
      runs,
    );
  });
});
