// Pure parsers for the small string syntaxes inside config files: container
// port publications, volume mounts, KEY=value env entries and host:port
// addresses. Each returns a structured value whose format* twin prints the
// exact input back, and fails only with a ConfigError (no file/key: callers
// re-anchor it with err.at(file, key)).
import { isIPv6 } from "node:net";
import { ConfigError } from "./errors.ts";

export type Protocol = "tcp" | "udp";

export interface PortSpec {
  /** IPv4 address, or IPv6 address without brackets; undefined = all interfaces. */
  hostIp?: string;
  hostPort: number;
  containerPort: number;
  /** Only set when the spec names it (podman's default is tcp). */
  protocol?: Protocol;
}

export const PORT_SPEC_FORM = "[ip:]hostPort:containerPort[/tcp|/udp]";

function portError(s: string, reason: string): ConfigError {
  return new ConfigError(
    "",
    "",
    `${reason} in port spec ${JSON.stringify(s)}; expected ${PORT_SPEC_FORM} with ports 1-65535`,
  );
}

function parsePort(
  s: string,
  what: string,
  spec: string,
  err: (s: string, r: string) => ConfigError,
): number {
  if (!/^[1-9][0-9]{0,4}$/.test(s)) {
    throw err(spec, `${what} ${JSON.stringify(s)} is not a port number`);
  }
  const n = Number(s);
  if (n > 65535) throw err(spec, `${what} ${s} is out of range`);
  return n;
}

export function isIPv4(s: string): boolean {
  const parts = s.split(".");
  return parts.length === 4 && parts.every((p) => /^(0|[1-9][0-9]{0,2})$/.test(p) && Number(p) <= 255);
}

/** Parses `[ip:]hostPort:containerPort[/tcp|/udp]`; IPv6 host addresses are bracketed. */
export function parsePortSpec(s: string): PortSpec {
  if (typeof s !== "string") throw portError(String(s), "not a string");
  let rest = s;
  let protocol: Protocol | undefined;
  const slash = rest.lastIndexOf("/");
  if (slash >= 0) {
    const p = rest.slice(slash + 1);
    if (p !== "tcp" && p !== "udp") throw portError(s, `unknown protocol ${JSON.stringify(p)}`);
    protocol = p;
    rest = rest.slice(0, slash);
  }
  let hostIp: string | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw portError(s, "unclosed [ in IPv6 address");
    hostIp = rest.slice(1, close);
    if (!isIPv6(hostIp)) throw portError(s, `${JSON.stringify(hostIp)} is not an IPv6 address`);
    if (rest[close + 1] !== ":") throw portError(s, "missing ':' after IPv6 address");
    rest = rest.slice(close + 2);
  }
  const parts = rest.split(":");
  if (hostIp === undefined && parts.length === 3) {
    hostIp = parts.shift()!;
    if (!isIPv4(hostIp))
      throw portError(s, `${JSON.stringify(hostIp)} is not an IPv4 address (bracket IPv6)`);
  }
  if (parts.length !== 2) throw portError(s, "wrong number of ':'-separated parts");
  const hostPort = parsePort(parts[0]!, "host port", s, portError);
  const containerPort = parsePort(parts[1]!, "container port", s, portError);
  const out: PortSpec = { hostPort, containerPort };
  if (hostIp !== undefined) out.hostIp = hostIp;
  if (protocol !== undefined) out.protocol = protocol;
  return out;
}

export function formatPortSpec(p: PortSpec): string {
  const ip = p.hostIp === undefined ? "" : p.hostIp.includes(":") ? `[${p.hostIp}]:` : `${p.hostIp}:`;
  return `${ip}${p.hostPort}:${p.containerPort}${p.protocol ? `/${p.protocol}` : ""}`;
}

export interface VolumeSpec {
  /** Absolute host path (bind mount) or a named volume. */
  source: string;
  kind: "bind" | "volume";
  /** Absolute path inside the container. */
  target: string;
  /** Mount options in file order (ro, z, Z, U, ...); empty when none were given. */
  options: string[];
}

export const VOLUME_SPEC_FORM = "src:dst[:opts] (src an absolute path or volume name, dst an absolute path)";
const VOLUME_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const OPTION_RE = /^[A-Za-z][A-Za-z0-9_.=-]*$/;

function volumeError(s: string, reason: string): ConfigError {
  return new ConfigError(
    "",
    "",
    `${reason} in volume spec ${JSON.stringify(s)}; expected ${VOLUME_SPEC_FORM}`,
  );
}

function isAbsPath(p: string): boolean {
  // Control characters never belong in a mount path and would garble podman's argv.
  if (!p.startsWith("/")) return false;
  for (let i = 0; i < p.length; i++) {
    const c = p.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return false;
  }
  return true;
}

export function parseVolumeSpec(s: string): VolumeSpec {
  if (typeof s !== "string") throw volumeError(String(s), "not a string");
  const parts = s.split(":");
  if (parts.length < 2 || parts.length > 3) throw volumeError(s, "wrong number of ':'-separated parts");
  const [source, target, opts] = parts as [string, string, string | undefined];
  let kind: VolumeSpec["kind"];
  if (isAbsPath(source)) kind = "bind";
  else if (VOLUME_NAME_RE.test(source)) kind = "volume";
  else throw volumeError(s, `source ${JSON.stringify(source)} is neither an absolute path nor a volume name`);
  if (!isAbsPath(target)) throw volumeError(s, `target ${JSON.stringify(target)} is not an absolute path`);
  const options = opts === undefined ? [] : opts.split(",");
  for (const o of options) {
    if (!OPTION_RE.test(o)) throw volumeError(s, `bad mount option ${JSON.stringify(o)}`);
  }
  return { source, kind, target, options };
}

export function formatVolumeSpec(v: VolumeSpec): string {
  return `${v.source}:${v.target}${v.options.length > 0 ? `:${v.options.join(",")}` : ""}`;
}

export const ENV_KEY_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** `KEY=value` (the value may be empty and may contain '='). */
export function parseEnvEntry(s: string): { key: string; value: string } {
  const eq = s.indexOf("=");
  const key = eq < 0 ? s : s.slice(0, eq);
  if (eq < 0 || !ENV_KEY_RE.test(key)) {
    throw new ConfigError(
      "",
      "",
      `expected KEY=value with KEY matching [A-Za-z_][A-Za-z0-9_]*, got ${JSON.stringify(s)}`,
    );
  }
  return { key, value: s.slice(eq + 1) };
}

// Memory limits: podman and docker take bytes with an optional binary unit (k = 1024, ...).
const MEMORY_UNITS = [
  ["g", 1024 ** 3],
  ["m", 1024 ** 2],
  ["k", 1024],
  ["b", 1],
] as const;
export const MEMORY_FORM = 'a whole number with an optional unit b, k, m or g, such as "64m" or "1g"';

/**
 * `64m` → 67108864 (units are binary, as podman and docker read them; `64M` is the same). Zero is
 * "no limit", as for podman.
 */
export function parseMemorySize(s: string): number {
  const m = /^([0-9]+)([bkmgBKMG]?)$/.exec(s);
  const bytes = m
    ? Number(m[1]) * (MEMORY_UNITS.find(([u]) => u === m[2]!.toLowerCase())?.[1] ?? 1)
    : Number.NaN;
  if (!Number.isSafeInteger(bytes))
    throw new ConfigError("", "", `expected a memory size, ${MEMORY_FORM}, got ${JSON.stringify(s)}`);
  return bytes;
}

/** Bytes in the shortest form parseMemorySize reads back exactly: 67108864 → "64m", 1000 → "1000b". */
export function formatMemorySize(bytes: number): string {
  if (bytes === 0) return "0b";
  for (const [unit, size] of MEMORY_UNITS) if (bytes % size === 0) return `${bytes / size}${unit}`;
  return `${bytes}b`;
}

export interface HostPort {
  /** Host name or IP (IPv6 without brackets). */
  host: string;
  port: number;
}

function addrError(s: string, reason: string): ConfigError {
  return new ConfigError(
    "",
    "",
    `${reason} in address ${JSON.stringify(s)}; expected host:port (IPv6 as [addr]:port)`,
  );
}

export interface HostPortOptions {
  /**
   * A listen address: an empty host (":9444", every interface) and port 0 (any free port) are
   * allowed. Dialled addresses need both.
   */
  listen?: boolean;
}

/** `host:port` or `[v6]:port`: the one host:port parser (config values, listen and dial addresses). */
export function parseHostPort(s: string, opts: HostPortOptions = {}): HostPort {
  let host: string;
  let portStr: string;
  if (s.startsWith("[")) {
    const close = s.indexOf("]");
    if (close < 0 || s[close + 1] !== ":") throw addrError(s, "malformed bracketed IPv6 address");
    host = s.slice(1, close);
    if (!isIPv6(host)) throw addrError(s, `${JSON.stringify(host)} is not an IPv6 address`);
    portStr = s.slice(close + 2);
  } else {
    const colon = s.lastIndexOf(":");
    if (colon < 0) throw addrError(s, "missing port");
    host = s.slice(0, colon);
    portStr = s.slice(colon + 1);
    // No leading '-': no host name or address starts with one, and it reads as an option anywhere
    // the host is passed on.
    if ((host === "" && !opts.listen) || !/^(?:[A-Za-z0-9._][A-Za-z0-9._-]*)?$/.test(host))
      throw addrError(s, `bad host ${JSON.stringify(host)}`);
  }
  if (opts.listen && portStr === "0") return { host, port: 0 };
  return { host, port: parsePort(portStr, "port", s, addrError) };
}

/**
 * A listen address (parseHostPort with `listen`), failing with a plain Error that names it: for
 * daemons and the server, where it is not read from a config key.
 */
export function parseListenAddress(addr: string): HostPort {
  try {
    return parseHostPort(addr, { listen: true });
  } catch (err) {
    throw new Error(`bad address "${addr}": expected host:port (${(err as Error).message})`);
  }
}

/**
 * True for a host that binds (or means) every interface: the agent refuses to bind one without
 * allow_any_addr, and a published port on one is reached through the node's address. The resolver
 * accepts many spellings of the unspecified address ("0", "0.0.0.00", "0x0", "::0",
 * "0:0:0:0:0:0:0:0", "::ffff:0.0.0.0"), and each of them really binds 0.0.0.0 or ::, so a literal
 * set of "0.0.0.0"/"::" is not enough.
 */
export function isAnyAddr(host: string): boolean {
  const h = host.toLowerCase().replace(/%.*$/, "");
  if (h === "") return true;
  if (/^[0.x]+$/.test(h)) return true; // IPv4 zero in any inet_aton form
  if (!isIPv6(h)) return false;
  const g = ipv6Groups(h);
  if (g === null) return false;
  // :: itself, and 0.0.0.0 mapped into IPv6 in any spelling (::ffff:0:0, ::ffff:0.0.0.0, …):
  // the kernel and podman treat both as every interface.
  const head = g.slice(0, 5).every((x) => x === 0);
  return head && (g[5] === 0 || g[5] === 0xffff) && g[6] === 0 && g[7] === 0;
}

/** The eight 16-bit groups of an IPv6 address (a dotted IPv4 tail counts as two), or null. */
function ipv6Groups(h: string): number[] | null {
  let text = h;
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [left = "", right] = text.split("::");
  const l = left === "" ? [] : left.split(":");
  const r = right === undefined || right === "" ? [] : right.split(":");
  const groups = right === undefined ? l : [...l, ...Array(8 - l.length - r.length).fill("0"), ...r];
  if (groups.length !== 8) return null;
  const out = groups.map((x) => Number.parseInt(x, 16));
  return out.some((x) => !Number.isInteger(x) || x < 0 || x > 0xffff) ? null : out;
}

/** An http(s) URL with a host, such as `https://mcias.example.net:8443`. */
export function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === "https:" || u.protocol === "http:") && u.hostname !== "";
  } catch {
    return false;
  }
}

/**
 * True when a bearer-token `server_url` would go out in clear: an http:// URL without the
 * section's `insecure_http = true` (checkHttpsUnlessInsecure refuses it).
 */
export function clearTextUrl(serverUrl: string, insecureHttp: boolean | undefined): boolean {
  if (insecureHttp || !URL.canParse(serverUrl)) return false;
  return new URL(serverUrl).protocol === "http:";
}
