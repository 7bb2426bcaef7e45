// gRPC server over TLS 1.3 only, speaking the gRPC-over-HTTP/2 protocol on node:http2 directly.
// Registers services from protobuf-es descriptors and wraps every handler with the auth+audit
// interceptor (interceptor.ts). Unimplemented methods still authenticate, then answer
// UNIMPLEMENTED; a path no service has is UNIMPLEMENTED without a handler.
//
// Framing, deadlines and grpc-message encoding come from wire.ts, shared with the one client
// (client.ts). No gRPC library: grpc-js cost the agent ~11 MB of its ~62 MB resident set and
// connect-node more (BUN-NOTES.md), and this API needs only what is here:
// unary, server- and client-streaming calls, identity encoding, grpc-timeout deadlines,
// cancellation, a 16 MiB message limit and trailers (test/integration/server-h2.test.ts checks
// it and grpc-interop.test.ts against grpc-js, the reference peer; every other RPC test goes
// through it too).
//
// HTTP/2 limits (ServerLimits; test/integration/server-limits.test.ts probes each): a bounded
// number of concurrent streams and header-list size per connection (advertised in SETTINGS and
// enforced by the runtime), a TLS-handshake timeout, an idle-connection timeout, a rapid-reset
// guard, a clamp on grpc-timeout, and audit lines of unauthenticated refusals limited per peer.
import http2 from "node:http2";
import { isIPv6 } from "node:net";
import tls from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import { isAnyAddr, parseListenAddress } from "../config/specs.ts";
import { invalidArgument, RpcError, toStatus } from "./errors.ts";
import {
  audit,
  authorize,
  type InterceptorOptions,
  identify,
  type Metadata,
  type PeerCert,
  RefusedAuditLimiter,
} from "./interceptor.ts";
import { type CallContext, type MethodWire, methodWires, UndecodableRequest } from "./service.ts";
import {
  Code,
  encodeGrpcMessage,
  FrameReader,
  frame,
  MAX_MESSAGE_BYTES,
  MAX_TIMEOUT_MS,
  parseGrpcTimeout,
} from "./wire.ts";

// Must be set before any secure context is created: any other TLS client in this process would
// accept TLS 1.2 otherwise; the server below also asks for 1.3.
tls.DEFAULT_MIN_VERSION = "TLSv1.3";

export { MAX_MESSAGE_BYTES };

export interface ServiceRegistration {
  desc: DescService;
  // biome-ignore lint/suspicious/noExplicitAny: handlers are typed at the registration site via Handlers<S>.
  handlers: Record<string, any>;
}

/** Per-connection resource limits of the server (see DEFAULT_SERVER_LIMITS). */
export interface ServerLimits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS: advertised; streams past it are refused by the runtime. */
  maxConcurrentStreams: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE in bytes: a request with a larger header list is refused. */
  maxHeaderListBytes: number;
  /** A connection that has not finished its TLS handshake after this long is dropped. */
  handshakeTimeoutMs: number;
  /** A connection with no open stream for this long is closed (also one that never sends a request). */
  idleTimeoutMs: number;
  /**
   * Rapid-reset guard: a connection on which more than `resetBurst` streams close, within a
   * `resetWindowMs` window, having carried no request bytes within 1 s of opening (reset or
   * abandoned by the client) gets GOAWAY ENHANCE_YOUR_CALM and is dropped.
   */
  resetBurst: number;
  resetWindowMs: number;
  /** Audit lines of calls refused before the caller was identified, per peer IP per window. */
  refusedLinesPerPeer: number;
  refusedWindowMs: number;
}

export const DEFAULT_SERVER_LIMITS: Readonly<ServerLimits> = Object.freeze({
  maxConcurrentStreams: 100,
  maxHeaderListBytes: 16 * 1024,
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  resetBurst: 200,
  resetWindowMs: 10_000,
  refusedLinesPerPeer: 10,
  refusedWindowMs: 60_000,
});

export interface ServerOptions extends InterceptorOptions {
  address: string;
  certPem: string;
  keyPem: string;
  allowAnyAddr?: boolean;
  services: ServiceRegistration[];
  /**
   * The CA whose client certificates identify the master (SPEC §5.2: the master authenticates to
   * agents with a fleet-CA client certificate, never a replayable token). Unset: none is asked for.
   */
  clientCaPem?: string;
  /** Overrides of DEFAULT_SERVER_LIMITS (tests shorten the timeouts). */
  limits?: Partial<ServerLimits>;
}

/** The effective limits; a value that is not a positive integer is refused, not ignored. */
export function serverLimits(over: Partial<ServerLimits> = {}): ServerLimits {
  const out = { ...DEFAULT_SERVER_LIMITS, ...over };
  for (const [k, v] of Object.entries(out)) {
    if (!Number.isSafeInteger(v) || v <= 0)
      throw new Error(`server limit ${k} must be a positive integer, got ${String(v)}`);
  }
  if (out.maxConcurrentStreams > 2 ** 31 - 1 || out.maxHeaderListBytes > 2 ** 31 - 1)
    throw new Error("server limits maxConcurrentStreams and maxHeaderListBytes must be below 2^31");
  for (const k of ["handshakeTimeoutMs", "idleTimeoutMs", "resetWindowMs", "refusedWindowMs"] as const)
    if (out[k] > MAX_TIMEOUT_MS) throw new Error(`server limit ${k} must be at most ${MAX_TIMEOUT_MS} ms`);
  return out;
}

export interface RunningServer {
  port: number;
  /** Calls whose grpc-timeout timer is still pending (each holds its call in memory until it fires). */
  pendingDeadlines(): number;
  /** Stops listening, lets calls in flight finish (3 s at most), then drops the connections. */
  close(): Promise<void>;
}

export function checkBindAddress(addr: string, allowAny: boolean): void {
  const { host } = parseListenAddress(addr);
  if (isAnyAddr(host) && !allowAny) {
    throw new Error(
      `refusing to bind ${addr}: the agent binds the overlay address only (pass --allow-any-addr to override)`,
    );
  }
}

/** The decoded request, or INVALID_ARGUMENT for bytes that are not a valid message of its type. */
function decoded(msg: unknown): unknown {
  if (msg instanceof UndecodableRequest)
    throw invalidArgument(`request is not a valid ${msg.typeName}: ${msg.reason}`);
  return msg;
}

const RESPONSE_HEADERS = {
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity",
};

/** A client reset this close to (or after) the call's deadline counts as the deadline passing. */
const DEADLINE_SLACK_MS = 50;

/** Request messages kept before the stream is paused (HTTP/2 flow control then holds the client). */
const INBOX_HIGH_WATER = 8;

/** One call on one HTTP/2 stream: the request's messages in, messages and the status out. */
/** The client certificate of each TLS session, as the handshake left it (null: none presented). */
const peerCerts = new WeakMap<http2.Http2Session, PeerCert | null>();

function readPeerCert(sock: (tls.TLSSocket & { authorizationError?: unknown }) | undefined): PeerCert | null {
  try {
    const c = sock?.getPeerCertificate?.();
    if (!sock || !c?.subject) return null;
    return {
      authorized: sock.authorized === true,
      error: sock.authorizationError ? String(sock.authorizationError) : null,
      commonName: typeof c.subject.CN === "string" ? c.subject.CN : "",
      extKeyUsage: Array.isArray(c.ext_key_usage) ? c.ext_key_usage : [],
      fingerprint: c.fingerprint256 ?? "",
    };
  } catch {
    return null;
  }
}

class Call {
  readonly signal: AbortSignal;
  /** Why the call was aborted: CANCELLED by the client or DEADLINE_EXCEEDED. */
  abortCode: number | null = null;
  private readonly ac = new AbortController();
  private readonly reader = new FrameReader((code, message) => new RpcError(code, message));
  private readonly inbox: Buffer[] = [];
  private inboxEnded = false;
  private inboxError: RpcError | null = null;
  private wake: (() => void) | null = null;
  private paused = false;
  private requestEnded = false;
  private headersSent = false;
  private done = false;
  private trailers: Record<string, string> = {};
  private deadline: ReturnType<typeof setTimeout> | undefined;
  private deadlineAt: number | null = null;
  private admitted = false;

  constructor(
    private readonly stream: http2.ServerHttp2Stream,
    readonly headers: http2.IncomingHttpHeaders,
    /** The server's calls with a pending deadline timer (RunningServer.pendingDeadlines). */
    private readonly pendingDeadlines: Set<Call>,
  ) {
    this.signal = this.ac.signal;
    stream.on("error", () => {}); // a reset by the client ends the call below ('close')
    stream.on("close", () => {
      // A client resets the stream at its own deadline, which is ours give or take the latency:
      // a reset that close to the deadline is the deadline passing, not a cancel.
      const late = this.deadlineAt !== null && Date.now() >= this.deadlineAt - DEADLINE_SLACK_MS;
      if (!this.done) this.abort(late ? Code.DEADLINE_EXCEEDED : Code.CANCELLED);
      this.done = true;
      // A pending deadline timer would keep the call (its stream and buffers) alive until it fired:
      // up to MAX_TIMEOUT_MS (~24.8 days) for a reset call that asked for a long deadline.
      this.clearDeadline();
      this.failInbox(new RpcError(Code.CANCELLED, "cancelled by client"));
    });
    // Nothing of the body is read before admit(): an unauthenticated caller's bytes wait in the
    // HTTP/2 flow-control window (64 KiB a stream) instead of this process's memory while its
    // token is being checked (which may take seconds against MCIAS).
    stream.pause();
    const timeout = parseGrpcTimeout(headers["grpc-timeout"]);
    if (timeout !== null) {
      this.deadlineAt = Date.now() + timeout;
      this.deadline = setTimeout(() => {
        this.deadline = undefined;
        this.pendingDeadlines.delete(this);
        this.abort(Code.DEADLINE_EXCEEDED);
        this.finish(Code.DEADLINE_EXCEEDED, "Deadline exceeded");
      }, timeout);
      this.pendingDeadlines.add(this);
    }
  }

  /** Starts reading the request body: called once the caller is authenticated and authorized. */
  admit(): void {
    if (this.admitted || this.done) return;
    this.admitted = true;
    const stream = this.stream;
    stream.on("data", (chunk: Buffer) => {
      if (this.inboxError) return; // refused already: drain without buffering
      try {
        for (const m of this.reader.push(chunk)) this.inbox.push(m);
      } catch (err) {
        this.failInbox(err as RpcError);
        return;
      }
      if (this.inbox.length >= INBOX_HIGH_WATER && !this.paused) {
        this.paused = true;
        stream.pause();
      }
      this.notify();
    });
    stream.on("end", () => {
      this.requestEnded = true;
      if (this.reader.partial)
        this.failInbox(
          invalidArgument("the request ended inside a message (truncated length-prefixed frame)"),
        );
      this.inboxEnded = true;
      this.notify();
    });
    if (!this.paused) stream.resume();
  }

  private clearDeadline(): void {
    if (this.deadline === undefined) return;
    clearTimeout(this.deadline);
    this.deadline = undefined;
    this.pendingDeadlines.delete(this);
  }

  /** Metadata view of the request headers (authorization and friends). */
  get metadata(): Metadata {
    return {
      get: (key: string) => {
        const v = this.headers[key.toLowerCase()];
        return v === undefined ? [] : Array.isArray(v) ? v : [v];
      },
    };
  }

  get peer(): string {
    try {
      const s = this.stream.session?.socket;
      const addr = s?.remoteAddress;
      if (!addr) return "unknown";
      return isIPv6(addr) ? `[${addr}]:${s.remotePort}` : `${addr}:${s.remotePort}`;
    } catch {
      return "unknown";
    }
  }

  /** The client certificate the peer presented, or null (none, or the server does not ask). */
  get peerCert(): PeerCert | null {
    const session = this.stream.session;
    if (!session) return null;
    // Fixed for the connection's life: read once per session, not once per call.
    if (peerCerts.has(session)) return peerCerts.get(session) ?? null;
    const pc = readPeerCert(session.socket as tls.TLSSocket & { authorizationError?: unknown });
    peerCerts.set(session, pc);
    return pc;
  }

  /** The peer's IP address alone (the key of per-peer limits). */
  get peerIp(): string {
    try {
      return this.stream.session?.socket?.remoteAddress ?? "unknown";
    } catch {
      return "unknown";
    }
  }

  private abort(code: number): void {
    if (this.abortCode !== null) return;
    this.abortCode = code;
    this.ac.abort();
  }

  private failInbox(err: RpcError): void {
    if (!this.inboxError) this.inboxError = err;
    if (this.paused) {
      this.paused = false;
      this.stream.resume();
    }
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** The next request message; null at the end of the request. */
  async next(): Promise<Buffer | null> {
    for (;;) {
      if (this.inboxError) throw this.inboxError;
      const m = this.inbox.shift();
      if (m) {
        if (this.paused && this.inbox.length <= INBOX_HIGH_WATER / 4) {
          this.paused = false;
          this.stream.resume();
        }
        return m;
      }
      if (this.inboxEnded) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** The one request message of a unary or server-streaming call. */
  async single(): Promise<Buffer> {
    const first = await this.next();
    if (first === null) throw invalidArgument("no request message");
    if ((await this.next()) !== null)
      throw invalidArgument("more than one request message for a unary request");
    return first;
  }

  private sendHeaders(): void {
    if (this.headersSent) return;
    this.headersSent = true;
    this.stream.respond(RESPONSE_HEADERS, { waitForTrailers: true });
    this.stream.on("wantTrailers", () => {
      try {
        this.stream.sendTrailers(this.trailers);
      } catch {
        // the client is gone
      }
    });
  }

  /** Sends one response message; resolves when the stream can take more (or the call is over). */
  write(msg: Uint8Array): Promise<void> {
    if (this.done || this.stream.destroyed) return Promise.resolve();
    this.sendHeaders();
    if (this.stream.write(frame(msg))) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const go = () => {
        this.stream.off("drain", go);
        this.stream.off("close", go);
        resolve();
      };
      this.stream.on("drain", go);
      this.stream.on("close", go);
    });
  }

  /** Ends the call with a status (the first status wins; later ones are ignored). */
  finish(code: number, details: string): void {
    this.clearDeadline();
    if (this.done) return;
    this.done = true;
    if (this.stream.destroyed || this.stream.closed) return;
    const status: Record<string, string> = { "grpc-status": String(code) };
    if (details) status["grpc-message"] = encodeGrpcMessage(details);
    try {
      if (!this.headersSent) {
        this.headersSent = true;
        this.stream.respond({ ...RESPONSE_HEADERS, ...status }, { endStream: true });
      } else {
        this.trailers = status;
        this.stream.end();
      }
    } catch {
      return; // the client is gone
    }
    // Answered before the client finished sending (an early error): keep draining what it sends
    // so its writes complete; a client that never stops is reset after a grace period.
    if (!this.requestEnded) {
      this.inboxError ??= new RpcError(code, details);
      // Never admitted (refused before authentication passed): drain without reading.
      if (this.paused || !this.admitted) {
        this.paused = false;
        this.stream.resume();
      }
      setTimeout(() => {
        if (!this.stream.closed) this.stream.close(http2.constants.NGHTTP2_CANCEL);
      }, 5000).unref();
    }
  }
}

async function* requestsOf(call: Call, wire: MethodWire): AsyncIterable<unknown> {
  for (let m = await call.next(); m !== null; m = await call.next())
    yield decoded(wire.deserializeRequest(m));
}

type Route = (call: Call) => void;

function route(
  opts: ServerOptions,
  refused: RefusedAuditLimiter,
  svc: DescService,
  localName: string,
  impl: unknown,
): Route {
  const wire = methodWires(svc).get(localName)!;
  const kind = wire.method.methodKind;
  const method = wire.path;
  if (kind === "bidi_streaming") throw new Error(`bidi streaming is not used by this API (${method})`);
  const fn = impl as (...a: unknown[]) => Promise<unknown>;

  const body = (call: Call, ctx: CallContext): Promise<unknown> => {
    if (kind === "client_streaming") return fn(requestsOf(call, wire), ctx);
    return call.single().then((buf) => {
      const req = decoded(wire.deserializeRequest(buf));
      if (kind === "unary") return fn(req, ctx);
      return fn(req, ctx, (msg: unknown) => call.write(wire.serializeResponse(msg)));
    });
  };

  return (call: Call) => {
    const started = performance.now();
    const peer = call.peer;
    let caller = "-";
    void (async () => {
      try {
        const identity = await identify(opts, call.metadata, opts.clientCaPem ? call.peerCert : null);
        // Named before the policy check: a denied caller is known and the audit line says who.
        caller = identity.name;
        authorize(opts, method, identity);
        call.admit();
        if (typeof impl !== "function")
          throw new RpcError(Code.UNIMPLEMENTED, `${wire.method.name} is not implemented`);
        const value = await body(call, { method, identity, peer, signal: call.signal });
        if (call.abortCode !== null) throw new Error("aborted");
        if (kind !== "server_streaming") await call.write(wire.serializeResponse(value));
        audit(opts.logger, { method, caller, peer, started, code: Code.OK });
        call.finish(Code.OK, "");
      } catch (err) {
        const s =
          call.abortCode === Code.DEADLINE_EXCEEDED
            ? { code: Code.DEADLINE_EXCEEDED, details: "Deadline exceeded" }
            : call.abortCode !== null
              ? { code: Code.CANCELLED, details: "cancelled by client" }
              : toStatus(err);
        const rec = { method, caller, peer, started, code: s.code, error: s.details };
        // Not identified (no token, a bad one, the validator down): limited per peer IP.
        if (caller === "-") refused.audit(call.peerIp, rec);
        else audit(opts.logger, rec);
        call.finish(s.code, s.details);
      }
    })();
  };
}

function refuse(stream: http2.ServerHttp2Stream, httpStatus: number): void {
  try {
    stream.respond({ ":status": httpStatus }, { endStream: true });
    // Answered: the stream is over even if the client keeps its side open (an open stream would
    // keep the connection from ever counting as idle).
    stream.close(http2.constants.NGHTTP2_NO_ERROR);
  } catch {
    // the client is gone
  }
}

function listenAddress(address: string): { host: string | undefined; port: number } {
  const { host, port } = parseListenAddress(address);
  // "" and every spelling of the unspecified address: all interfaces (checkBindAddress allowed it).
  return { host: isAnyAddr(host) ? undefined : host, port };
}

/** What the limits track per connection. */
interface SessionState {
  /** Streams open now. */
  open: number;
  /** When the last stream closed (or the connection opened). */
  idleSince: number;
  /** Start of the rapid-reset window and the empty streams closed in it. */
  resetWindowStart: number;
  resets: number;
}

/** A stream closed this soon after opening with no request bytes counts against the reset guard. */
const EMPTY_STREAM_MS = 1000;

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  checkBindAddress(opts.address, opts.allowAnyAddr ?? false);
  const limits = serverLimits(opts.limits);
  const refused = new RefusedAuditLimiter(opts.logger, limits.refusedLinesPerPeer, limits.refusedWindowMs);
  const routes = new Map<string, Route>();
  const deadlines = new Set<Call>();
  for (const reg of opts.services)
    for (const m of reg.desc.methods) {
      const wire = methodWires(reg.desc).get(m.localName)!;
      routes.set(wire.path, route(opts, refused, reg.desc, m.localName, reg.handlers[m.localName]));
    }

  const server = http2.createSecureServer({
    cert: opts.certPem,
    key: opts.keyPem,
    minVersion: "TLSv1.3",
    allowHTTP1: false,
    // A client certificate is asked for, never required: operators come with bearer tokens, and
    // the interceptor decides per call (an unverified certificate is refused, not ignored).
    ...(opts.clientCaPem ? { ca: opts.clientCaPem, requestCert: true, rejectUnauthorized: false } : {}),
    // A 16 MiB message in flight must not trip the session memory guard.
    maxSessionMemory: 64,
    handshakeTimeout: limits.handshakeTimeoutMs,
    settings: {
      maxConcurrentStreams: limits.maxConcurrentStreams,
      maxHeaderListSize: limits.maxHeaderListBytes,
    },
  });
  const sessions = new Map<http2.ServerHttp2Session, SessionState>();
  server.on("session", (s: http2.ServerHttp2Session) => {
    const now = Date.now();
    sessions.set(s, { open: 0, idleSince: now, resetWindowStart: now, resets: 0 });
    s.on("error", () => {});
    s.on("close", () => sessions.delete(s));
  });
  // Idle connections: one sweep for all of them (a timer per stream would cost every call).
  const sweep = setInterval(
    () => {
      const now = Date.now();
      for (const [s, st] of sessions)
        if (st.open === 0 && now - st.idleSince >= limits.idleTimeoutMs && !s.closed) {
          s.close(); // GOAWAY NO_ERROR; no stream is open, so the connection ends now
          setTimeout(() => s.destroyed || s.destroy(), 1000).unref();
        }
    },
    Math.max(50, Math.min(10_000, Math.floor(limits.idleTimeoutMs / 4))),
  );
  sweep.unref();

  /** Counts the stream in its connection's state; a rapid-reset flood ends the connection. */
  const track = (stream: http2.ServerHttp2Stream): void => {
    const s = stream.session as http2.ServerHttp2Session | undefined;
    const st = s ? sessions.get(s) : undefined;
    if (!s || !st) return;
    st.open++;
    const opened = Date.now();
    let bytes = 0;
    stream.on("data", (chunk: Buffer) => {
      bytes += chunk.length;
    });
    stream.on("close", () => {
      const now = Date.now();
      if (--st.open === 0) st.idleSince = now;
      // Counted by bytes, not by rstCode: under Bun a cancel that arrives after the answer leaves
      // rstCode 0 (BUN-NOTES "gRPC libraries measured"); every gRPC request carries bytes.
      if (bytes > 0 || now - opened >= EMPTY_STREAM_MS) return;
      if (now - st.resetWindowStart >= limits.resetWindowMs) {
        st.resetWindowStart = now;
        st.resets = 0;
      }
      if (++st.resets !== limits.resetBurst + 1) return;
      let peer = "unknown";
      try {
        peer = s.socket?.remoteAddress ?? peer;
      } catch {}
      opts.logger.warn(
        { peer, streams: st.resets, window_s: limits.resetWindowMs / 1000 },
        `closing the HTTP/2 connection from ${peer}: more than ${limits.resetBurst} streams reset or abandoned without a request within ${limits.resetWindowMs / 1000}s (rapid reset)`,
      );
      try {
        s.goaway(http2.constants.NGHTTP2_ENHANCE_YOUR_CALM);
      } catch {}
      // Let the GOAWAY reach the wire, then drop the connection whatever the client does.
      setTimeout(() => s.destroyed || s.destroy(), 20);
    });
  };
  server.on("sessionError", () => {});
  server.on("tlsClientError", () => {});
  server.on("unknownProtocol", (socket: { destroy(): void }) => socket.destroy());
  server.on("stream", (stream: http2.ServerHttp2Stream, headers: http2.IncomingHttpHeaders) => {
    stream.on("error", () => {});
    track(stream);
    if (headers[":method"] !== "POST") return refuse(stream, 405);
    if (!String(headers["content-type"] ?? "").startsWith("application/grpc")) return refuse(stream, 415);
    const path = String(headers[":path"] ?? "");
    const call = new Call(stream, headers, deadlines);
    const encoding = headers["grpc-encoding"];
    if (encoding !== undefined && encoding !== "identity") {
      call.finish(Code.UNIMPLEMENTED, `grpc-encoding ${String(encoding)} is not supported (identity only)`);
      return;
    }
    const r = routes.get(path);
    if (!r) call.finish(Code.UNIMPLEMENTED, `The server does not implement the method ${path}`);
    else r(call);
  });

  const { host, port } = listenAddress(opts.address);
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(new Error(`cannot listen on ${opts.address}: ${err.message}`));
    server.once("error", onError);
    server.listen({ port, host }, () => {
      server.off("error", onError);
      resolve();
    });
  });
  const addr = server.address();
  const bound = typeof addr === "object" && addr ? addr.port : port;
  let closing: Promise<void> | null = null;
  return {
    port: bound,
    pendingDeadlines: () => deadlines.size,
    close: () => {
      closing ??= (async () => {
        server.close();
        clearInterval(sweep);
        for (const s of sessions.keys()) s.close();
        const deadline = Date.now() + 3000;
        while (sessions.size > 0 && Date.now() < deadline) await Bun.sleep(20);
        for (const s of sessions.keys()) s.destroy();
        refused.flush();
      })();
      return closing;
    },
  };
}
