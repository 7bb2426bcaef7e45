import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { ConfigError } from "../../../src/config/errors.ts";
import {
  formatPortSpec,
  formatVolumeSpec,
  isAnyAddr,
  type PortSpec,
  parseEnvEntry,
  parseHostPort,
  parsePortSpec,
  parseVolumeSpec,
  type VolumeSpec,
} from "../../../src/config/specs.ts";
import { thrown } from "./helpers.ts";

const port = fc.integer({ min: 1, max: 65535 });
const portSpecArb: fc.Arbitrary<PortSpec> = fc.record(
  {
    hostIp: fc.oneof(fc.ipV4(), fc.ipV6()),
    hostPort: port,
    containerPort: port,
    protocol: fc.constantFrom("tcp" as const, "udp" as const),
  },
  { requiredKeys: ["hostPort", "containerPort"] },
);

const pathSegment = fc.stringMatching(/^[A-Za-z0-9 ._@+-]{1,12}$/);
const absPath = fc.array(pathSegment, { maxLength: 4 }).map((s) => `/${s.join("/")}`);
const volumeName = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,15}$/);
const volumeSpecArb: fc.Arbitrary<VolumeSpec> = fc
  .record({
    source: fc.oneof(absPath, volumeName),
    target: absPath,
    options: fc.array(
      fc.constantFrom("ro", "rw", "z", "Z", "U", "O", "rslave", "nocopy", "idmap=uids=0-1-10"),
      {
        maxLength: 3,
      },
    ),
  })
  .map((v) => ({
    source: v.source,
    kind: v.source.startsWith("/") ? "bind" : "volume",
    target: v.target,
    options: v.options,
  }));

/** Strings that look roughly like specs, so the fuzzing reaches deep branches. */
const specLike = fc
  .array(
    fc.oneof(
      fc.constantFrom(
        ":",
        "/",
        "[",
        "]",
        ".",
        ",",
        "tcp",
        "udp",
        "::1",
        "127.0.0.1",
        "0",
        "65535",
        "65536",
        "ro",
        "-",
        " ",
      ),
      fc.integer({ min: 0, max: 99999 }).map(String),
      fc.string({ maxLength: 3 }),
    ),
    { maxLength: 8 },
  )
  .map((parts) => parts.join(""));
const garbage = fc.oneof(specLike, fc.string(), fc.string({ unit: "binary" }));

function expectConfigStyle(e: unknown): void {
  expect(e).toBeInstanceOf(ConfigError);
  expect((e as Error).message).not.toContain("\n");
  expect((e as Error).message.length).toBeGreaterThan(0);
}

describe("parsePortSpec", () => {
  test("examples", () => {
    expect(parsePortSpec("127.0.0.1:8443:8443")).toEqual({
      hostIp: "127.0.0.1",
      hostPort: 8443,
      containerPort: 8443,
    });
    expect(parsePortSpec("8080:80")).toEqual({ hostPort: 8080, containerPort: 80 });
    expect(parsePortSpec("[::1]:53:53/udp")).toEqual({
      hostIp: "::1",
      hostPort: 53,
      containerPort: 53,
      protocol: "udp",
    });
    expect(parsePortSpec("0.0.0.0:1:65535/tcp")).toEqual({
      hostIp: "0.0.0.0",
      hostPort: 1,
      containerPort: 65535,
      protocol: "tcp",
    });
  });
  test("bad specs say what is wrong and the expected form", () => {
    const cases: [string, string][] = [
      ["8443", "wrong number of ':'-separated parts"],
      ["0:80", 'host port "0" is not a port number'],
      ["80:65536", "container port 65536 is out of range"],
      ["1.2.3:80:80", "is not an IPv4 address"],
      ["::1:80:80", "wrong number"],
      ["[::g]:80:80", "is not an IPv6 address"],
      ["80:80/sctp", 'unknown protocol "sctp"'],
      ["256.1.1.1:80:80", "is not an IPv4 address"],
    ];
    for (const [spec, reason] of cases) {
      const e = thrown(() => parsePortSpec(spec));
      expectConfigStyle(e);
      expect(e.message).toContain(reason);
      expect(e.message).toContain("[ip:]hostPort:containerPort[/tcp|/udp]");
    }
  });
  test("property: valid specs parse back to the same string and structure", () => {
    fc.assert(
      fc.property(portSpecArb, (spec) => {
        const text = formatPortSpec(spec);
        const parsed = parsePortSpec(text);
        expect(parsed).toEqual(spec);
        expect(formatPortSpec(parsed)).toBe(text);
      }),
      { numRuns: 500 },
    );
  });
  test("property: garbage either parses canonically or throws a one-line ConfigError", () => {
    fc.assert(
      fc.property(garbage, (s) => {
        let parsed: PortSpec;
        try {
          parsed = parsePortSpec(s);
        } catch (e) {
          expectConfigStyle(e);
          return;
        }
        expect(formatPortSpec(parsed)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("parseVolumeSpec", () => {
  test("examples", () => {
    expect(parseVolumeSpec("/srv/x:/srv/x")).toEqual({
      source: "/srv/x",
      kind: "bind",
      target: "/srv/x",
      options: [],
    });
    expect(parseVolumeSpec("data:/var/lib/data:ro,Z")).toEqual({
      source: "data",
      kind: "volume",
      target: "/var/lib/data",
      options: ["ro", "Z"],
    });
  });
  test("bad specs", () => {
    for (const [spec, reason] of [
      ["/srv/x", "wrong number"],
      ["srv/x:/srv/x", "neither an absolute path nor a volume name"],
      ["/a:b", "is not an absolute path"],
      ["/a:/b:", 'bad mount option ""'],
      ["/a:/b:ro,,z", 'bad mount option ""'],
      ["/a:/b:ro:z", "wrong number"],
    ] as const) {
      const e = thrown(() => parseVolumeSpec(spec));
      expectConfigStyle(e);
      expect(e.message).toContain(reason);
    }
  });
  test("property: valid specs round-trip", () => {
    fc.assert(
      fc.property(volumeSpecArb, (spec) => {
        const text = formatVolumeSpec(spec);
        expect(parseVolumeSpec(text)).toEqual(spec);
      }),
      { numRuns: 500 },
    );
  });
  test("property: garbage either parses canonically or throws a one-line ConfigError", () => {
    fc.assert(
      fc.property(garbage, (s) => {
        let parsed: VolumeSpec;
        try {
          parsed = parseVolumeSpec(s);
        } catch (e) {
          expectConfigStyle(e);
          return;
        }
        expect(formatVolumeSpec(parsed)).toBe(s);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("small parsers", () => {
  test("env entries", () => {
    expect(parseEnvEntry("A=b=c")).toEqual({ key: "A", value: "b=c" });
    expect(parseEnvEntry("_X=")).toEqual({ key: "_X", value: "" });
    for (const bad of ["A", "1A=x", "=x", "A-B=x"]) expectConfigStyle(thrown(() => parseEnvEntry(bad)));
  });
  test("host:port", () => {
    expect(parseHostPort("100.95.252.120:9444")).toEqual({ host: "100.95.252.120", port: 9444 });
    expect(parseHostPort("[::1]:9444")).toEqual({ host: "::1", port: 9444 });
    expect(parseHostPort("rift.ts.net:9555")).toEqual({ host: "rift.ts.net", port: 9555 });
    for (const bad of ["rift", ":9444", "rift:0", "rift:70000", "[::1]9444", "a b:1", "-rift:9444"]) {
      expectConfigStyle(thrown(() => parseHostPort(bad)));
    }
  });
  test("wildcard addresses", () => {
    expect(isAnyAddr("0.0.0.0")).toBe(true);
    expect(isAnyAddr("::")).toBe(true);
    expect(isAnyAddr("0:0:0:0:0:0:0:0")).toBe(true);
    expect(isAnyAddr("127.0.0.1")).toBe(false);
    expect(isAnyAddr("::1")).toBe(false);
    // 0.0.0.0 mapped into IPv6, in every spelling (the review found ::ffff:0:0 let a user bind
    // all interfaces: podman normalises it to 0.0.0.0).
    for (const any of ["::ffff:0:0", "::ffff:0.0.0.0", "0:0:0:0:0:ffff:0:0", "::ffff:0000:0000", "::0.0.0.0"])
      expect(`${any} ${isAnyAddr(any)}`).toBe(`${any} true`);
    for (const one of ["::ffff:127.0.0.1", "::ffff:7f00:1", "fe80::1", "::ffff:0:1", "1::"])
      expect(`${one} ${isAnyAddr(one)}`).toBe(`${one} false`);
  });
});
