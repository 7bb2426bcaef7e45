// The one image-reference rule (src/config/image.ts): parseImageRef and what is read through it
// (extractVersion, imagePin, canonicalImage), examples from the reference plus properties over
// generated image references (registry with or without port, nested paths, tags, digests).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { canonicalImage, extractVersion, imagePin, parseImageRef } from "../../../src/config/image.ts";

const D = `sha256:${"d".repeat(64)}`;

// [image, registry, repository, tag, digest] as parseImageRef splits it, grouped by what they show.
const PARSED: Record<string, [string, string, string, string, string][]> = {
  "registry with port, nested repository, tag and digest": [
    [
      "mcr.svc.mcp.metacircular.net:8443/myservice:v1.0.0",
      "mcr.svc.mcp.metacircular.net:8443",
      "myservice",
      "v1.0.0",
      "",
    ],
    ["127.0.0.1:5000/team/web-ui:v2", "127.0.0.1:5000", "team/web-ui", "v2", ""],
    ["localhost/x@sha256:abc", "localhost", "x", "", "sha256:abc"],
  ],
  "a registry with a port and no tag: the port is never the tag": [
    ["127.0.0.1:5000/x", "127.0.0.1:5000", "x", "", ""],
    ["registry:5000/a/b", "registry:5000", "a/b", "", ""],
  ],
  "digests: digest only, and tag plus digest keeps both": [
    [`busybox@${D}`, "docker.io", "library/busybox", "", D],
    [`127.0.0.1:5000/x:tag@${D}`, "127.0.0.1:5000", "x", "tag", D],
    [`x:tag@${D}`, "docker.io", "library/x", "tag", D],
  ],
  "unqualified names resolve to docker.io (library/ for single names)": [
    ["busybox", "docker.io", "library/busybox", "", ""],
    ["kisom/tool:1", "docker.io", "kisom/tool", "1", ""],
  ],
};

describe("parseImageRef", () => {
  for (const [title, cases] of Object.entries(PARSED))
    test(title, () => {
      for (const [image, registry, repository, tag, digest] of cases)
        expect(parseImageRef(image)).toEqual({ registry, repository, tag, digest });
    });

  test("docker.io/<single name> gets library/ too", () => {
    expect(parseImageRef("docker.io/nginx:1.25").repository).toBe("library/nginx");
  });
});

describe("imagePin (is a definition's image pinned?)", () => {
  test("a tag or a digest pins; a registry port does not", () => {
    expect(imagePin("a/b:v1")).toBe("v1");
    expect(imagePin("host:5000/b")).toBeUndefined();
    expect(imagePin("127.0.0.1:5000/x")).toBeUndefined();
    expect(imagePin("b@sha256:abc")).toBe("sha256:abc");
    expect(imagePin(`x:latest@${D}`)).toBe(D);
    expect(imagePin("x:latest")).toBe("latest");
  });
});

describe("canonicalImage", () => {
  test("fills in podman's defaults, keeps what is given", () => {
    expect(canonicalImage("busybox")).toBe("docker.io/library/busybox:latest");
    expect(canonicalImage("docker.io/nginx:1.25")).toBe("docker.io/library/nginx:1.25");
    expect(canonicalImage("127.0.0.1:5000/x")).toBe("127.0.0.1:5000/x:latest");
    expect(canonicalImage(`127.0.0.1:5000/x@${D}`)).toBe(`127.0.0.1:5000/x@${D}`);
    expect(canonicalImage(`x:tag@${D}`)).toBe(`docker.io/library/x:tag@${D}`);
  });
});

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

  test("parse and canonical form agree: canonicalImage is a fixed point and keeps the tag", () => {
    fc.assert(
      fc.property(
        registry,
        path,
        fc.option(tag, { nil: undefined }),
        fc.option(digest, { nil: undefined }),
        (reg, p, t, d) => {
          const image = `${reg ? `${reg}/` : ""}${p}${t ? `:${t}` : ""}${d ? `@${d}` : ""}`;
          const c = canonicalImage(image);
          expect(canonicalImage(c)).toBe(c);
          expect(parseImageRef(c)).toEqual({ ...parseImageRef(image), tag: t ?? (d ? "" : "latest") });
          expect(imagePin(image)).toBe(d ?? t);
        },
      ),
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
