// Refused-call audit lines are limited per source (security review of issue 15): an IPv6 peer is
// one source per /64 (a host can hold a whole /64 and rotate addresses), an IPv4-mapped address is
// its IPv4 address, and a window's lines over all sources are capped too.
import { describe, expect, test } from "bun:test";
import pino from "pino";
import { normalizeRuntimeKind } from "../../../src/config/runtime-kind.ts";
import { peerKey, RefusedAuditLimiter } from "../../../src/rpc/interceptor.ts";
import { Code } from "../../../src/rpc/wire.ts";

const rec = (peer: string) => ({ method: "/m", caller: "-", peer, started: 0, code: Code.UNAUTHENTICATED });

describe("peerKey", () => {
  test("IPv4 as is, mapped IPv4 unwrapped, IPv6 by /64", () => {
    expect(peerKey("10.0.0.1")).toBe("10.0.0.1");
    expect(peerKey("::ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(peerKey("0:0:0:0:0:ffff:10.0.0.1")).toBe("10.0.0.1");
    expect(peerKey("2001:db8:1:2::5")).toBe("2001:db8:1:2::/64");
    expect(peerKey("2001:DB8:1:2:aaaa:bbbb:cccc:dddd")).toBe("2001:db8:1:2::/64");
    expect(peerKey("2001:db8:1:3::5")).not.toBe(peerKey("2001:db8:1:2::5"));
    expect(peerKey("fe80::1%eth0")).toBe("fe80:0:0:0::/64");
  });
});

describe("RefusedAuditLimiter", () => {
  function limiter() {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (s: string) => void lines.push(s) });
    return { l: new RefusedAuditLimiter(logger, 10, 60_000), lines };
  }

  test("5,000 addresses of one /64 get one source's budget", () => {
    const { l, lines } = limiter();
    for (let i = 0; i < 5000; i++) l.audit(`2001:db8:1:2::${i.toString(16)}`, rec("x"));
    l.flush();
    // 10 lines, then one summary line for the rest.
    expect(lines.length).toBe(11);
    expect(lines.at(-1)).toContain("4990 more calls from 2001:db8:1:2::/64 refused with UNAUTHENTICATED");
  });

  test("many sources together write at most ten budgets of lines per window", () => {
    const { l, lines } = limiter();
    // 1,000 distinct /64s (and IPv4s), 10 calls each: 10,000 refused calls.
    for (let i = 0; i < 1000; i++)
      for (let k = 0; k < 10; k++)
        l.audit(i % 2 ? `2001:db8:${i.toString(16)}::1` : `10.0.${i >> 8}.${i & 255}`, rec("x"));
    const written = lines.length;
    expect(written).toBe(100);
    l.flush();
    // Every suppressed call is still counted in a summary line.
    const counted = lines
      .slice(written)
      .map((s) => Number(/"suppressed":(\d+)/.exec(s)?.[1] ?? 0))
      .reduce((a, b) => a + b, 0);
    expect(written + counted).toBe(10_000);
  });
});

describe("normalizeRuntimeKind", () => {
  test("object-prototype words are not legacy aliases", () => {
    expect(normalizeRuntimeKind("constructor")).toBe("constructor");
    expect(normalizeRuntimeKind("toString")).toBe("toString");
    expect(normalizeRuntimeKind("podman")).toBe("container");
  });
});
