// The auth + audit interceptor: every RPC of every service passes through here exactly once.
// It extracts the bearer token, validates it (the validator caches by SHA-256), applies the
// per-RPC authorization policy, runs the handler, and writes one audit line per call
// (method, caller, peer, duration, status) — never the token.

import type { Logger } from "pino";
import { RpcError, statusName, toStatus } from "./errors.ts";
import type { CallContext } from "./service.ts";
import { Code as status } from "./wire.ts";

/** Request metadata: the server's view of HTTP/2 headers (a gRPC library's Metadata fits too). */
export interface Metadata {
  get(key: string): unknown[];
}

export interface Identity {
  name: string;
  roles: string[];
  accountType: string;
  /** How the caller proved it: a bearer token (the default) or a verified client certificate. */
  credential?: "token" | "certificate";
}

/** What the server learnt of a client certificate in the TLS handshake. */
export interface PeerCert {
  /** Chains to the server's client CA, valid now, and fit for client authentication. */
  authorized: boolean;
  error: string | null;
  commonName: string;
  extKeyUsage: string[];
  fingerprint: string;
}

/** The one identity a client certificate can carry (SPEC §5.2): the master's. */
export const MASTER_CERT_NAME = "mcp-master";
const CLIENT_AUTH_OID = "1.3.6.1.5.5.7.3.2";

/**
 * The master, from its client certificate; throws RpcError(UNAUTHENTICATED) for a certificate
 * that is presented but not the master's (never falls back to the token: a wrong credential is
 * refused, not ignored).
 */
export function certIdentity(pc: PeerCert): Identity {
  if (!pc.authorized)
    throw new RpcError(
      status.UNAUTHENTICATED,
      `client certificate refused (${pc.error ?? "not verified"}): only the master's certificate from the fleet CA is accepted`,
    );
  if (pc.commonName !== MASTER_CERT_NAME || !pc.extKeyUsage.includes(CLIENT_AUTH_OID))
    throw new RpcError(
      status.UNAUTHENTICATED,
      `client certificate CN=${JSON.stringify(pc.commonName)} is not the master's (CN=${MASTER_CERT_NAME}, clientAuth); operators authenticate with a bearer token`,
    );
  return { name: MASTER_CERT_NAME, roles: [], accountType: "system", credential: "certificate" };
}

export interface Validator {
  validate(token: string): Promise<Identity>;
}

/** Returns null when allowed, or the reason the caller may not call this method. */
export type Policy = (method: string, identity: Identity) => string | null;

export interface InterceptorOptions {
  validator: Validator;
  policy: Policy;
  logger: Logger;
}

export function bearerToken(md: Metadata): string | null {
  const v = md.get("authorization")[0];
  if (typeof v !== "string") return null;
  const m = /^Bearer\s+(\S+)$/i.exec(v.trim());
  return m ? m[1]! : null;
}

/**
 * Resolves the caller: a client certificate when one was presented (the master), else the bearer
 * token; throws RpcError(UNAUTHENTICATED|UNAVAILABLE).
 */
export async function identify(
  opts: InterceptorOptions,
  md: Metadata,
  peerCert: PeerCert | null = null,
): Promise<Identity> {
  if (peerCert) return certIdentity(peerCert);
  const token = bearerToken(md);
  if (!token) throw new RpcError(status.UNAUTHENTICATED, "missing bearer token");
  try {
    const id = await opts.validator.validate(token);
    return { ...id, credential: "token" };
  } catch (err) {
    const s = toStatus(err);
    if (s.code === status.PERMISSION_DENIED) throw new RpcError(s.code, s.details);
    if (s.code === status.UNAUTHENTICATED) throw new RpcError(s.code, s.details);
    // The identity service itself failed: the caller is not authenticated, say why.
    throw new RpcError(status.UNAVAILABLE, `token validation failed: ${s.details}`);
  }
}

/** Applies the policy to a known caller; throws RpcError(PERMISSION_DENIED). */
export function authorize(opts: InterceptorOptions, method: string, identity: Identity): void {
  const denied = opts.policy(method, identity);
  if (denied) throw new RpcError(status.PERMISSION_DENIED, denied);
}

/** Authenticates and authorizes a call; throws RpcError(UNAUTHENTICATED|PERMISSION_DENIED). */
export async function authenticate(
  opts: InterceptorOptions,
  method: string,
  md: Metadata,
): Promise<Identity> {
  const identity = await identify(opts, md);
  authorize(opts, method, identity);
  return identity;
}

export interface AuditRecord {
  method: string;
  caller: string;
  peer: string;
  started: number;
  code: number;
  error?: string;
}

export function audit(logger: Logger, rec: AuditRecord): void {
  const fields = {
    audit: true,
    method: rec.method,
    caller: rec.caller,
    peer: rec.peer,
    duration_ms: Math.round((performance.now() - rec.started) * 100) / 100,
    status: statusName(rec.code),
    ...(rec.error ? { error: rec.error } : {}),
  };
  if (rec.code === status.OK) logger.info(fields, "rpc");
  else logger.warn(fields, "rpc");
}

export type { CallContext };

/**
 * Audit lines of calls refused before the caller was identified (no token, a bad token, the
 * validator down), limited per peer IP: the first `linesPerWindow` of a window are written as
 * usual, the rest are counted and written as one summary line per status when the window ends.
 * Without it, anyone who can reach the port makes the server write one line per stream.
 * Calls from identified callers (OK or not) are never limited: their audit stays complete.
 */
/**
 * Whom a refused call is counted against: an IPv4 address (also when mapped into IPv6), or an IPv6
 * address's /64 — one host can hold a whole /64, so per-address counting would give it 2^64 budgets.
 */
export function peerKey(ip: string): string {
  const h = ip.toLowerCase().replace(/%.*$/, "");
  const mapped =
    /^(?:0{0,4}:){0,5}(?:0{0,4}:)?ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h) ??
    /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
  if (mapped) return mapped[1] as string;
  if (!h.includes(":")) return h;
  const [head = "", tail] = h.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups =
    tail === undefined
      ? left
      : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  const prefix = groups.slice(0, 4).map((g) => (Number.parseInt(g, 16) || 0).toString(16));
  return `${prefix.join(":")}::/64`;
}

export class RefusedAuditLimiter {
  /** Peers tracked at once; beyond it, further peers share one entry (their lines still counted). */
  static readonly MAX_PEERS = 1024;
  private readonly peers = new Map<
    string,
    { logged: number; suppressed: Map<string, number>; timer: ReturnType<typeof setTimeout> }
  >();

  constructor(
    private readonly logger: Logger,
    private readonly linesPerWindow: number,
    private readonly windowMs: number,
  ) {}

  /** Lines written in the current window over all peers: rotating addresses gets no more than this. */
  private allLogged = 0;
  private allWindowEnds = 0;

  /** Writes or counts the audit line of a call from `peerIp` refused with `rec.code`. */
  audit(peerIp: string, rec: AuditRecord): void {
    const source = peerKey(peerIp);
    const key =
      this.peers.has(source) || this.peers.size < RefusedAuditLimiter.MAX_PEERS ? source : "other peers";
    let e = this.peers.get(key);
    if (!e) {
      const timer = setTimeout(() => this.end(key), this.windowMs);
      timer.unref?.();
      e = { logged: 0, suppressed: new Map(), timer };
      this.peers.set(key, e);
    }
    const now = Date.now();
    if (now >= this.allWindowEnds) {
      this.allWindowEnds = now + this.windowMs;
      this.allLogged = 0;
    }
    if (e.logged < this.linesPerWindow && this.allLogged < this.linesPerWindow * 10) {
      e.logged++;
      this.allLogged++;
      audit(this.logger, rec);
      return;
    }
    const name = statusName(rec.code);
    e.suppressed.set(name, (e.suppressed.get(name) ?? 0) + 1);
  }

  /** Writes every pending summary now (the server is closing). */
  flush(): void {
    for (const key of [...this.peers.keys()]) this.end(key);
  }

  private end(key: string): void {
    const e = this.peers.get(key);
    if (!e) return;
    clearTimeout(e.timer);
    this.peers.delete(key);
    const secs = Math.round(this.windowMs / 100) / 10;
    for (const [name, n] of e.suppressed)
      this.logger.warn(
        { audit: true, peer: key, status: name, suppressed: n, window_s: secs },
        `${n} more calls from ${key} refused with ${name} in the last ${secs}s`,
      );
  }
}
