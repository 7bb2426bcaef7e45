// CIDR parsing and membership for IPv4 and IPv6, for the edge agent's backend check
// (architecture-v2: a SetupEdgeRoute backend must resolve inside the Tailnet range). Addresses
// are compared as BigInts of 32 or 128 bits; an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// counts as its IPv4 address, so a dual-stack resolver cannot slip a backend past a v4 range.
import { isIP } from "node:net";

export interface Cidr {
  family: 4 | 6;
  /** Network address with the host bits cleared. */
  network: bigint;
  prefix: number;
}

function parseV4(s: string): bigint {
  const parts = s.split(".");
  let n = 0n;
  for (const p of parts) n = (n << 8n) | BigInt(Number(p));
  return n;
}

function parseV6(s: string): bigint {
  // A trailing dotted quad (::ffff:1.2.3.4) is two groups.
  let text = s;
  const lastColon = text.lastIndexOf(":");
  const tail = text.slice(lastColon + 1);
  if (tail.includes(".")) {
    const v4 = parseV4(tail);
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const [head = "", rest] = text.split("::");
  const h = head === "" ? [] : head.split(":");
  const r = rest === undefined || rest === "" ? [] : rest.split(":");
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill("0"), ...r];
  let n = 0n;
  for (const g of groups) n = (n << 16n) | BigInt(Number.parseInt(g, 16));
  return n;
}

/** An IP literal as family + number; IPv4-mapped IPv6 is folded to IPv4. Throws on non-IPs. */
export function parseIp(ip: string): { family: 4 | 6; value: bigint } {
  const bare = ip.replace(/^\[(.*)\]$/, "$1").replace(/%.*$/, "");
  const fam = isIP(bare);
  if (fam === 4) return { family: 4, value: parseV4(bare) };
  if (fam === 6) {
    const v = parseV6(bare);
    if (v >> 32n === 0xffffn) return { family: 4, value: v & 0xffffffffn };
    return { family: 6, value: v };
  }
  throw new Error(`"${ip}" is not an IP address`);
}

/** "a.b.c.d/n" or "x::y/n"; a bare address is a /32 or /128. Throws one line on bad input. */
export function parseCidr(cidr: string): Cidr {
  const m = /^([^/]+)(?:\/(\d{1,3}))?$/.exec(cidr.trim());
  const fam = m ? isIP(m[1]!) : 0;
  if (!m || fam === 0) throw new Error(`"${cidr}" is not a CIDR range such as 100.64.0.0/10`);
  const bits = fam === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? bits : Number(m[2]);
  if (prefix > bits) throw new Error(`"${cidr}": prefix length must be 0-${bits}`);
  const value = fam === 4 ? parseV4(m[1]!) : parseV6(m[1]!);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(bits - prefix);
  return { family: fam as 4 | 6, network: value & mask, prefix };
}

/** Whether `ip` lies inside `cidr` (different families never match). */
export function cidrContains(cidr: Cidr | string, ip: string): boolean {
  const c = typeof cidr === "string" ? parseCidr(cidr) : cidr;
  const a = parseIp(ip);
  if (a.family !== c.family) return false;
  const bits = c.family === 4 ? 32 : 128;
  const shift = BigInt(bits - c.prefix);
  return a.value >> shift === c.network >> shift;
}

/** Whether `ip` lies inside any of `cidrs`. */
export function inAnyCidr(cidrs: readonly string[], ip: string): boolean {
  return cidrs.some((c) => cidrContains(c, ip));
}
