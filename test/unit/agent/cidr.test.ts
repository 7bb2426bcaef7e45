// CIDR membership for the edge agent's backend check: IPv4 and IPv6 ranges, edges of a range,
// prefixes 0 and full length, IPv4-mapped IPv6 folded to IPv4, and one-line errors for bad input.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { cidrContains, inAnyCidr, parseCidr, parseIp } from "../../../src/roles/agent/cidr.ts";

describe("cidrContains", () => {
  test("IPv4: the Tailnet range 100.64.0.0/10 and its edges", () => {
    expect(cidrContains("100.64.0.0/10", "100.64.0.0")).toBe(true);
    expect(cidrContains("100.64.0.0/10", "100.100.7.9")).toBe(true);
    expect(cidrContains("100.64.0.0/10", "100.127.255.255")).toBe(true);
    expect(cidrContains("100.64.0.0/10", "100.128.0.0")).toBe(false);
    expect(cidrContains("100.64.0.0/10", "100.63.255.255")).toBe(false);
    expect(cidrContains("100.64.0.0/10", "8.8.8.8")).toBe(false);
    expect(cidrContains("127.0.0.0/8", "127.0.0.1")).toBe(true);
    expect(cidrContains("127.0.0.0/8", "128.0.0.1")).toBe(false);
  });

  test("host bits in the range are ignored; /0, /32 and bare addresses", () => {
    expect(cidrContains("100.100.1.1/10", "100.64.0.1")).toBe(true);
    expect(cidrContains("0.0.0.0/0", "203.0.113.9")).toBe(true);
    expect(cidrContains("10.1.2.3/32", "10.1.2.3")).toBe(true);
    expect(cidrContains("10.1.2.3/32", "10.1.2.4")).toBe(false);
    expect(cidrContains("10.1.2.3", "10.1.2.3")).toBe(true);
  });

  test("IPv6: the Tailnet ULA range, ::1, ::/0", () => {
    expect(cidrContains("fd7a:115c:a1e0::/48", "fd7a:115c:a1e0:ab12:4843:cd96:6258:b240")).toBe(true);
    expect(cidrContains("fd7a:115c:a1e0::/48", "fd7a:115c:a1e1::1")).toBe(false);
    expect(cidrContains("::1/128", "::1")).toBe(true);
    expect(cidrContains("::1/128", "::2")).toBe(false);
    expect(cidrContains("::/0", "2001:db8::1")).toBe(true);
    expect(cidrContains("2001:db8::/32", "[2001:db8:0:0:0:0:0:7]")).toBe(true);
    expect(cidrContains("fe80::/10", "fe80::1%eth0")).toBe(true);
  });

  test("families never match each other; IPv4-mapped IPv6 counts as IPv4", () => {
    expect(cidrContains("::/0", "10.0.0.1")).toBe(false);
    expect(cidrContains("0.0.0.0/0", "2001:db8::1")).toBe(false);
    expect(cidrContains("100.64.0.0/10", "::ffff:100.64.1.2")).toBe(true);
    expect(cidrContains("127.0.0.0/8", "::ffff:8.8.8.8")).toBe(false);
    expect(parseIp("::ffff:7f00:1")).toEqual({ family: 4, value: 0x7f000001n });
  });

  test("inAnyCidr checks every range", () => {
    const ranges = ["100.64.0.0/10", "fd7a:115c:a1e0::/48"];
    expect(inAnyCidr(ranges, "100.70.0.1")).toBe(true);
    expect(inAnyCidr(ranges, "fd7a:115c:a1e0::5")).toBe(true);
    expect(inAnyCidr(ranges, "192.168.1.1")).toBe(false);
    expect(inAnyCidr([], "100.70.0.1")).toBe(false);
  });

  test("bad ranges and addresses give one-line errors", () => {
    for (const bad of [
      "",
      "100.64.0.0/33",
      "::/129",
      "100.64.0/10",
      "host.example/8",
      "1.2.3.4/-1",
      "1.2.3.4/",
    ]) {
      expect(() => parseCidr(bad)).toThrow(/CIDR|prefix length/);
    }
    expect(() => cidrContains("10.0.0.0/8", "not-an-ip")).toThrow('"not-an-ip" is not an IP address');
  });

  test("property: an IPv4 address is inside a range iff its top prefix bits match the network's", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 0xffffffff }),
        fc.integer({ min: 0, max: 32 }),
        (net, addr, prefix) => {
          const dotted = (n: number) => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join(".");
          const shift = 32 - prefix;
          const same = prefix === 0 || Math.floor(net / 2 ** shift) === Math.floor(addr / 2 ** shift);
          expect(cidrContains(`${dotted(net)}/${prefix}`, dotted(addr))).toBe(same);
        },
      ),
      { numRuns: 2000 },
    );
  });

  test("property: an IPv6 address is in its own /n for every n and parses like the WHATWG URL form of it", () => {
    fc.assert(
      fc.property(fc.ipV6(), fc.integer({ min: 0, max: 128 }), (ip, prefix) => {
        // URL normalises to the canonical compressed form: both spellings must be the same number.
        // (WHATWG refuses a few spellings node's isIP accepts, such as 0:0::0:0:0.0.0.0.)
        const canonical = URL.canParse(`http://[${ip}]/`) ? new URL(`http://[${ip}]/`).hostname : ip;
        expect(parseIp(canonical)).toEqual(parseIp(ip));
        const p = parseIp(ip);
        if (p.family === 6) expect(cidrContains(`${ip}/${prefix}`, ip)).toBe(true);
        else expect(cidrContains(`0.0.0.0/0`, ip)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
