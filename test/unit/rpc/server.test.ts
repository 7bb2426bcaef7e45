// Pure parts of the server: listen-address parsing (config/specs.ts, the one host:port parser)
// and the bind-address rule (SPEC §5.1: the agent binds the overlay address only, any-address
// needs --allow-any-addr).
import { describe, expect, test } from "bun:test";
import { isAnyAddr as isAnyAddress, parseListenAddress as splitHostPort } from "../../../src/config/specs.ts";
import { checkBindAddress } from "../../../src/rpc/server.ts";

describe("parseListenAddress", () => {
  test("IPv4, names, bracketed IPv6, empty host", () => {
    expect(splitHostPort("10.0.0.5:9444")).toEqual({ host: "10.0.0.5", port: 9444 });
    expect(splitHostPort("localhost:0")).toEqual({ host: "localhost", port: 0 });
    expect(splitHostPort("[fd00::1]:9444")).toEqual({ host: "fd00::1", port: 9444 });
    expect(splitHostPort("[::]:1")).toEqual({ host: "::", port: 1 });
    expect(splitHostPort(":9444")).toEqual({ host: "", port: 9444 });
  });

  test("bad addresses say what was expected", () => {
    for (const bad of ["localhost", "10.0.0.5", "fd00::1:9444", ":::9444", "host:port", "[::1]", ""]) {
      expect(() => splitHostPort(bad)).toThrow(`bad address "${bad}": expected host:port`);
    }
  });
});

describe("checkBindAddress", () => {
  test("overlay, loopback and named hosts are allowed", () => {
    for (const ok of ["10.0.0.5:9444", "127.0.0.1:0", "[fd00::1]:9444", "[::1]:9444", "node1.overlay:9444"]) {
      expect(() => checkBindAddress(ok, false)).not.toThrow();
    }
  });

  test("any-address in every spelling is refused without allowAny", () => {
    const anys = [
      "0.0.0.0:9444",
      "[::]:9444",
      ":9444",
      "0:9444",
      "0.0.0.00:9444",
      "0x0:9444",
      "[::0]:9444",
      "[0:0:0:0:0:0:0:0]:9444",
      "[::ffff:0.0.0.0]:9444",
      "[0:0:0:0:0:ffff:0.0.0.0]:9444",
    ];
    for (const a of anys) {
      expect(() => checkBindAddress(a, false)).toThrow(
        `refusing to bind ${a}: the agent binds the overlay address only (pass --allow-any-addr to override)`,
      );
      expect(() => checkBindAddress(a, true)).not.toThrow();
    }
  });

  test("a malformed address is an error even with allowAny", () => {
    expect(() => checkBindAddress("0.0.0.0", true)).toThrow("expected host:port");
  });
});

describe("isAnyAddr (the one any-address check)", () => {
  test("non-zero addresses are not any-address", () => {
    for (const h of [
      "10.0.0.0",
      "0.0.0.1",
      "::1",
      "::ffff:10.0.0.1",
      "fd00::",
      "1::",
      "::ffff:0:1",
      "0a.0.0.0",
    ]) {
      expect(isAnyAddress(h)).toBe(false);
    }
  });

  test("zone ids and upper case do not hide the unspecified address", () => {
    expect(isAnyAddress("0:0:0:0:0:0:0:0%eth0")).toBe(true);
    expect(isAnyAddress("::FFFF:0.0.0.0")).toBe(true);
    expect(isAnyAddress("0X0")).toBe(true);
  });
});
