// The one gRPC client: unary, server- and client-streaming calls over node:http2 with the framing,
// deadlines and status mapping of wire.ts. Targets: TLS 1.3 verified against a CA (agents,
// master), TLS without verification or plaintext h2c (health checks), or a unix socket without TLS
// (mc-proxy's admin API, where file permissions are the auth). One HTTP/2 session per client,
// opened on the first call (or at connect() when there are fallback addresses to choose from) and
// opened again when it died, so a daemon can keep a client for days. An idle session never holds
// a process open (unref); a call in flight does. Errors are one-line CallErrors
// ("UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED …").
import http2 from "node:http2";
import net from "node:net";
import { resolve } from "node:path";
import tls from "node:tls";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { parseHostPort } from "../config/specs.ts";
import { type MethodsOf, methodWires } from "./service.ts";
import {
  CallError,
  Code,
  encodeGrpcTimeout,
  FrameReader,
  frame,
  Http2Error,
  MAX_MESSAGE_BYTES,
  MAX_TIMEOUT_MS,
  statusOf,
} from "./wire.ts";

export { CallError };

tls.DEFAULT_MIN_VERSION = "TLSv1.3";

export interface CallOptions {
  timeoutMs?: number;
  signal?: AbortSignal;
}

type In<M> = M extends { input: infer I extends DescMessage } ? MessageInitShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageShape<O> : never;

type ClientMethod<M> = M extends { methodKind: "unary" }
  ? (req: In<M>, opts?: CallOptions) => Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (req: In<M>, opts?: CallOptions) => AsyncIterable<Out<M>>
    : M extends { methodKind: "client_streaming" }
      ? (reqs: AsyncIterable<In<M>>, opts?: CallOptions) => Promise<Out<M>>
      : never;

export type TypedClient<S extends GenService<GenServiceMethods>> = {
  [K in keyof MethodsOf<S>]: ClientMethod<MethodsOf<S>[K]>;
} & { readonly address: string; close(): void };

export interface ConnectOptions {
  /** Primary address first, then fallbacks. */
  addresses: string[];
  caPem: string;
  token?: string | null;
  /** A client certificate to present (the master's, issued by the fleet CA: SPEC §5.2). */
  clientCert?: ClientCert;
  /** Per-address connect timeout when there is more than one address. */
  connectTimeoutMs?: number;
  defaultTimeoutMs?: number;
}

/** Where a channel's session goes. */
export interface ClientCert {
  certPem: string;
  keyPem: string;
}

export type Target =
  /** TLS 1.3; `caPem` null = no certificate verification (health checks: nothing is trusted). */
  | { kind: "tls"; address: string; caPem: string | null; clientCert?: ClientCert }
  /** Plaintext HTTP/2 (h2c). */
  | { kind: "h2c"; address: string }
  | { kind: "unix"; path: string };

export interface ChannelOptions {
  target: Target;
  token?: string | null;
  /** Deadline of unary and client-streaming calls without timeoutMs (server streams have none). */
  defaultTimeoutMs?: number;
}

const DEFAULT_TIMEOUT_MS = 60_000;
/** How long a session may take to connect when no fallback timeout applies (the common gRPC default). */
const CONNECT_TIMEOUT_MS = 20_000;
/** Received messages a server stream buffers before it pauses (HTTP/2 flow control then holds the server). */
const INBOX_HIGH_WATER = 16;

// Bun refuses an IP address as TLS servername. So the SNI carries a fixed placeholder name and the
// certificate is checked against the real host (DNS or IP SAN) with node's checkServerIdentity.
// Chain verification against the CA is unchanged.
const SNI_PLACEHOLDER = "mcp-agent.invalid";

function targetName(t: Target): string {
  return t.kind === "unix" ? `unix://${t.path}` : t.address;
}

/** Opens an HTTP/2 session; resolves once connected (for TLS: handshake and certificate check done). */
function openSession(
  target: Target,
  timeoutMs: number,
): { session: http2.ClientHttp2Session | null; ready: Promise<http2.ClientHttp2Session> } {
  let session: http2.ClientHttp2Session;
  // A refused 16 MiB upload must not leave the session broken (BUN-NOTES: maxSessionMemory).
  const common = { maxSessionMemory: 64, settings: { enablePush: false } };
  try {
    if (target.kind === "unix") {
      const path = target.path;
      session = http2.connect("http://localhost", { ...common, createConnection: () => net.connect(path) });
    } else {
      const { host, port } = parseHostPort(target.address);
      const authority = `${net.isIPv6(host) ? `[${host}]` : host}:${port}`;
      if (target.kind === "h2c") session = http2.connect(`http://${authority}`, common);
      else
        session = http2.connect(`https://${authority}`, {
          ...common,
          servername: net.isIP(host) !== 0 ? SNI_PLACEHOLDER : host,
          minVersion: "TLSv1.3",
          ...(target.clientCert ? { cert: target.clientCert.certPem, key: target.clientCert.keyPem } : {}),
          ...(target.caPem === null
            ? { rejectUnauthorized: false, checkServerIdentity: () => undefined }
            : {
                ca: target.caPem,
                checkServerIdentity: (_n: string, cert: tls.PeerCertificate) =>
                  tls.checkServerIdentity(host, cert),
              }),
        });
    }
  } catch (err) {
    return { session: null, ready: Promise.reject(err) };
  }
  session.once("remoteSettings", () => remoteSettingsSeen.add(session));
  const ready = new Promise<http2.ClientHttp2Session>((resolve, reject) => {
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error("Failed to connect before the deadline"));
    }, timeoutMs);
    timer.unref();
    session.once("connect", () => {
      clearTimeout(timer);
      session.removeAllListeners("error");
      // Errors after the handshake surface on the calls' streams; a quiet listener keeps an
      // idle session's error from becoming an uncaught exception.
      session.on("error", () => {});
      resolve(session);
    });
    session.once("error", (err) => {
      clearTimeout(timer);
      session.destroy();
      reject(err);
    });
  });
  return { session, ready };
}

interface StreamSlot {
  session: http2.ClientHttp2Session;
  /** Gives the slot back (idempotent): on the stream's close, or when no stream was opened. */
  free: () => void;
}

interface SlotGate {
  open: number;
  waiters: Array<() => void>;
}

/** Streams assumed before the server's SETTINGS arrive: our servers' default, not HTTP/2's "unlimited". */
const ASSUMED_STREAM_LIMIT = 100;

/** The peer's advertised concurrent-stream limit, once its SETTINGS frame arrived. */
function streamLimit(s: http2.ClientHttp2Session): number {
  const n = s.remoteSettings?.maxConcurrentStreams;
  if (!remoteSettingsSeen.has(s) || typeof n !== "number" || n <= 0) return ASSUMED_STREAM_LIMIT;
  return n;
}

const remoteSettingsSeen = new WeakSet<http2.ClientHttp2Session>();

const noConnection = (err: unknown) =>
  new CallError(Code.UNAVAILABLE, `No connection established. Last error: ${(err as Error)?.message ?? err}`);

type Headers = http2.IncomingHttpHeaders;

/**
 * One HTTP/2 session to one target, reopened when it died; calls on raw message bytes. The typed
 * client (makeClient) and the gRPC health check sit on it.
 */
export class Channel {
  readonly address: string;
  private session: http2.ClientHttp2Session | null = null;
  private opening: Promise<http2.ClientHttp2Session> | null = null;
  private openingSession: http2.ClientHttp2Session | null = null;
  private active = 0;
  private closed = false;
  private readonly gates = new Map<http2.ClientHttp2Session, SlotGate>();

  constructor(
    private readonly opts: ChannelOptions,
    connected?: http2.ClientHttp2Session,
  ) {
    this.address = targetName(opts.target);
    if (connected) this.adopt(connected);
  }

  /** Connects now (multi-address fallback); rejects with the connect error. */
  async connect(timeoutMs: number): Promise<void> {
    const { session, ready } = openSession(this.opts.target, timeoutMs);
    this.openingSession = session;
    try {
      this.adopt(await ready);
    } finally {
      this.openingSession = null;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.openingSession?.destroy();
    if (this.session && !this.session.destroyed) this.session.close();
  }

  private adopt(s: http2.ClientHttp2Session): void {
    this.session = s;
    const forget = () => {
      if (this.session === s) this.session = null;
    };
    // A GOAWAY lets streams in flight finish but takes no new ones: the next call opens afresh.
    s.once("goaway", forget);
    s.once("close", forget);
    if (this.active === 0) s.unref();
    if (this.closed) s.close();
  }

  private usable(s: http2.ClientHttp2Session | null): s is http2.ClientHttp2Session {
    return s !== null && !s.closed && !s.destroyed;
  }

  /** The live session, opening one (shared by concurrent callers) when there is none. */
  private getSession(): Promise<http2.ClientHttp2Session> {
    if (this.closed) return Promise.reject(new CallError(Code.UNAVAILABLE, "Channel has been shut down"));
    if (this.usable(this.session)) return Promise.resolve(this.session);
    if (!this.opening) {
      const { session, ready } = openSession(this.opts.target, CONNECT_TIMEOUT_MS);
      this.openingSession = session;
      if (session && this.active === 0) session.unref();
      this.opening = ready.then(
        (s) => {
          this.opening = null;
          this.openingSession = null;
          this.adopt(s);
          return s;
        },
        (err) => {
          this.opening = null;
          this.openingSession = null;
          throw noConnection(err);
        },
      );
    }
    return this.opening;
  }

  /**
   * A stream slot on the live session. The server advertises how many concurrent streams it takes
   * (our servers: 100) and refuses the rest with REFUSED_STREAM — and Bun's server closes a whole
   * connection that keeps opening refused streams — so calls beyond the limit wait here for a
   * stream of the same session to close, as grpc-js queues them.
   */
  /** Calls queued for a stream slot (the server's concurrent-stream limit reached). */
  waitingForSlot(): number {
    let n = 0;
    for (const g of this.gates.values()) n += g.waiters.length;
    return n;
  }

  private async streamSlot(gaveUp: AbortSignal): Promise<StreamSlot | null> {
    // Bounded: each pass either takes a slot or waits for one to free (or the session to die, or
    // the call to end: a call that settled while waiting takes its place in the queue away).
    for (;;) {
      if (gaveUp.aborted) return null;
      const s = await this.getSession();
      let gate = this.gates.get(s);
      if (!gate) {
        const g: SlotGate = { open: 0, waiters: [] };
        gate = g;
        this.gates.set(s, g);
        s.once("close", () => {
          this.gates.delete(s);
          for (const w of g.waiters.splice(0)) w();
        });
      }
      if (gate.open < streamLimit(s)) {
        const g = gate;
        g.open++;
        let freed = false;
        return {
          session: s,
          free: () => {
            if (freed) return;
            freed = true;
            g.open--;
            g.waiters.shift()?.();
          },
        };
      }
      const waiters = gate.waiters;
      await new Promise<void>((resolve) => {
        const leave = () => {
          const i = waiters.indexOf(wake);
          if (i >= 0) waiters.splice(i, 1);
          resolve();
        };
        const wake = () => {
          gaveUp.removeEventListener("abort", leave);
          resolve();
        };
        waiters.push(wake);
        gaveUp.addEventListener("abort", leave, { once: true });
      });
    }
  }

  // An idle session must not keep the process alive; a call in flight (or waiting to connect) must.
  private hold(): void {
    if (this.active++ === 0) {
      this.session?.ref();
      this.openingSession?.ref();
    }
  }

  private release(): void {
    if (--this.active === 0) {
      if (this.session && !this.session.destroyed) this.session.unref();
      if (this.openingSession && !this.openingSession.destroyed) this.openingSession.unref();
    }
  }

  private start(path: string, o: CallOptions | undefined, deadlineMs: number | null): RawCall {
    return new RawCall(
      path,
      o?.signal,
      deadlineMs,
      this.opts.token ?? null,
      (gaveUp) => this.streamSlot(gaveUp),
      () => this.hold(),
      () => this.release(),
    );
  }

  private deadline(o?: CallOptions): number {
    return o?.timeoutMs ?? this.opts.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  async unary(path: string, body: Uint8Array, o?: CallOptions): Promise<Buffer> {
    const call = this.start(path, o, this.deadline(o));
    call.send(body);
    call.end();
    return call.single();
  }

  /** The response messages; a server stream has no deadline unless timeoutMs is given. An abort ends it quietly. */
  async *serverStream(path: string, body: Uint8Array, o?: CallOptions): AsyncGenerator<Buffer> {
    const call = this.start(path, o, o?.timeoutMs ?? null);
    try {
      call.send(body);
      call.end();
      for (let m = await call.next(); m !== null; m = await call.next()) yield m;
    } catch (err) {
      if (o?.signal?.aborted && (err as CallError).code === Code.CANCELLED) return;
      throw err;
    } finally {
      call.cancel(new CallError(Code.CANCELLED, "Cancelled on client"));
    }
  }

  async clientStream(path: string, bodies: AsyncIterable<Uint8Array>, o?: CallOptions): Promise<Buffer> {
    const call = this.start(path, o, this.deadline(o));
    const result = call.single();
    result.catch(() => {}); // awaited below; the writer may still be running when it settles
    try {
      for await (const b of bodies) {
        if (call.finished) break;
        await call.write(b);
      }
      call.end();
    } catch (err) {
      call.cancel(
        err instanceof CallError ? err : new CallError(Code.UNKNOWN, (err as Error)?.message ?? String(err)),
      );
    }
    return result;
  }
}

/** One call on one HTTP/2 stream: request messages out, response messages and the status in. */
class RawCall {
  finished = false;
  private stream: http2.ClientHttp2Stream | null = null;
  private ready: Promise<http2.ClientHttp2Stream | null>;
  private readonly reader = new FrameReader();
  private readonly inbox: Buffer[] = [];
  /** Aborted when the call settles: it no longer waits for a stream slot. */
  private readonly quit = new AbortController();
  private error: CallError | null = null;
  private ended = false;
  private paused = false;
  private wake: (() => void) | null = null;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly started = Date.now();
  private readonly onAbort = () => this.cancel(new CallError(Code.CANCELLED, "Cancelled on client"));

  constructor(
    path: string,
    private readonly signal: AbortSignal | undefined,
    deadlineMs: number | null,
    token: string | null,
    slot: (gaveUp: AbortSignal) => Promise<StreamSlot | null>,
    hold: () => void,
    private readonly release: () => void,
  ) {
    hold();
    if (deadlineMs !== null)
      this.timer = setTimeout(
        () =>
          this.cancel(
            new CallError(
              Code.DEADLINE_EXCEEDED,
              `Deadline exceeded after ${((Date.now() - this.started) / 1000).toFixed(3)}s`,
            ),
          ),
        Math.min(Math.max(0, deadlineMs), MAX_TIMEOUT_MS),
      );
    if (signal?.aborted) {
      this.onAbort();
      this.ready = Promise.resolve(null);
      return;
    }
    signal?.addEventListener("abort", this.onAbort, { once: true });
    this.ready = slot(this.quit.signal).then(
      (got) => {
        if (!got) return null; // settled while waiting for a stream slot
        const { session: s, free } = got;
        if (this.finished) {
          free();
          return null;
        }
        const headers: http2.OutgoingHttpHeaders = {
          ":method": "POST",
          ":path": path,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-accept-encoding": "identity",
        };
        if (deadlineMs !== null)
          headers["grpc-timeout"] = encodeGrpcTimeout(deadlineMs - (Date.now() - this.started));
        if (token) headers.authorization = `Bearer ${token}`;
        try {
          this.stream = s.request(headers);
        } catch (err) {
          free();
          this.settle(noConnection(err));
          return null;
        }
        this.stream.once("close", free);
        this.listen(this.stream, s);
        return this.stream;
      },
      (err) => {
        this.settle(err instanceof CallError ? err : noConnection(err));
        return null;
      },
    );
  }

  private listen(st: http2.ClientHttp2Stream, session: http2.ClientHttp2Session): void {
    let headers: Headers | null = null;
    let trailers: Headers | null = null;
    let streamError: Error | null = null;
    st.on("response", (h) => {
      headers = h;
    });
    st.on("trailers", (t) => {
      trailers = t;
    });
    st.on("data", (chunk: Buffer) => {
      if (this.finished) return;
      try {
        for (const m of this.reader.push(chunk)) this.inbox.push(m);
      } catch (err) {
        this.cancel(err as CallError);
        return;
      }
      if (this.inbox.length >= INBOX_HIGH_WATER && !this.paused) {
        this.paused = true;
        st.pause();
      }
      this.notify();
    });
    st.on("error", (err) => {
      // The status is decided on "close"; a session failure has no reset code to go by.
      streamError = err;
    });
    st.on("close", () => {
      if (this.finished) return;
      const rst = st.rstCode ?? null;
      if (!headers && !trailers) {
        const code = (streamError as NodeJS.ErrnoException | null)?.code;
        // No answer at all and the session is gone (Bun closes its streams with CANCEL then): the
        // connection went away under the call. A reset on a live session is the server's answer.
        if (
          session.destroyed ||
          rst === null ||
          rst === Http2Error.NO_ERROR ||
          (streamError && code !== "ERR_HTTP2_STREAM_ERROR")
        )
          return this.settle(
            new CallError(
              Code.UNAVAILABLE,
              streamError ? `Connection dropped: ${streamError.message}` : "Connection dropped",
            ),
          );
      }
      const s = statusOf(trailers, headers, rst);
      if (s.code !== Code.OK) return this.settle(new CallError(s.code, s.details));
      if (this.reader.partial) return this.settle(new CallError(Code.INTERNAL, "Truncated gRPC message"));
      this.settle(null);
    });
  }

  /** Ends the call: null = OK (messages already received stay readable), else the error. */
  private settle(err: CallError | null): void {
    if (this.finished) return;
    this.finished = true;
    this.error = err;
    this.ended = true;
    clearTimeout(this.timer);
    this.quit.abort();
    this.signal?.removeEventListener("abort", this.onAbort);
    this.release();
    this.notify();
  }

  /** Stops the call with `err` (deadline, cancel, a refused message); a finished call is left alone. */
  cancel(err: CallError): void {
    if (this.finished) return;
    const st = this.stream;
    if (st && !st.destroyed) st.close(http2.constants.NGHTTP2_CANCEL);
    this.inbox.length = 0;
    this.settle(err);
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private checkSize(msg: Uint8Array): boolean {
    if (msg.length <= MAX_MESSAGE_BYTES) return true;
    this.cancel(
      new CallError(
        Code.RESOURCE_EXHAUSTED,
        `Sent message larger than max (${msg.length} vs. ${MAX_MESSAGE_BYTES})`,
      ),
    );
    return false;
  }

  /** Queues one message without waiting (unary and server-streaming requests). */
  send(msg: Uint8Array): void {
    if (!this.checkSize(msg)) return;
    const framed = frame(msg);
    void this.ready.then((st) => {
      if (st && !this.finished && !st.destroyed) st.write(framed);
    });
  }

  /** Sends one message; resolves when the stream takes more (flow control) or the call is over. */
  async write(msg: Uint8Array): Promise<void> {
    if (!this.checkSize(msg)) return;
    const st = await this.ready;
    if (!st || this.finished || st.destroyed || st.closed) return;
    if (st.write(frame(msg))) return;
    await new Promise<void>((resolve) => {
      const go = () => {
        st.off("drain", go);
        st.off("close", go);
        resolve();
      };
      st.on("drain", go);
      st.on("close", go);
    });
  }

  /** Half-closes the request side. */
  end(): void {
    void this.ready.then((st) => {
      if (st && !this.finished && !st.destroyed) st.end();
    });
  }

  /** The next response message; null once the call ended OK; throws the call's CallError. */
  async next(): Promise<Buffer | null> {
    // Bounded: every wake-up is a message, the end, or an error.
    for (;;) {
      const m = this.inbox.shift();
      if (m) {
        if (this.paused && this.inbox.length <= INBOX_HIGH_WATER / 4) {
          this.paused = false;
          this.stream?.resume();
        }
        return m;
      }
      if (this.error) throw this.error;
      if (this.ended) return null;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }

  /** The one response message of a unary or client-streaming call. */
  async single(): Promise<Buffer> {
    const first = await this.next();
    if (first === null) throw new CallError(Code.UNIMPLEMENTED, "No message received");
    if ((await this.next()) !== null) throw new CallError(Code.UNIMPLEMENTED, "Too many responses received");
    return first;
  }
}

/** Creates a typed client; with several addresses, connects to the first that answers. */
export async function connect<S extends GenService<GenServiceMethods>>(
  svc: S,
  opts: ConnectOptions,
): Promise<TypedClient<S>> {
  if (opts.addresses.length === 0) throw new Error("no address to connect to");
  const channelFor = (address: string) =>
    new Channel({
      target: {
        kind: "tls",
        address,
        caPem: opts.caPem,
        ...(opts.clientCert ? { clientCert: opts.clientCert } : {}),
      },
      token: opts.token,
      defaultTimeoutMs: opts.defaultTimeoutMs,
    });
  if (opts.addresses.length === 1) return makeClient(svc, channelFor(opts.addresses[0]!));
  const errors: string[] = [];
  for (const a of opts.addresses) {
    const ch = channelFor(a);
    try {
      await ch.connect(opts.connectTimeoutMs ?? 2000);
      return makeClient(svc, ch);
    } catch (err) {
      ch.close();
      errors.push(`${a}: ${(err as Error).message}`);
    }
  }
  throw new CallError(Code.UNAVAILABLE, `no address answered (${errors.join("; ")})`);
}

/**
 * A typed client over a local unix socket without TLS: for local admin sockets (mc-proxy) whose
 * file permissions are the access control. Connects lazily on the first call; `socketPath` is
 * made absolute, and the client's address reads unix:///abs/path.
 */
export function connectUnix<S extends GenService<GenServiceMethods>>(
  svc: S,
  socketPath: string,
  opts: { defaultTimeoutMs?: number } = {},
): TypedClient<S> {
  return makeClient(
    svc,
    new Channel({
      target: { kind: "unix", path: resolve(socketPath) },
      defaultTimeoutMs: opts.defaultTimeoutMs,
    }),
  );
}

/** The typed methods of a service on a channel (protobuf-es descriptors: path, kind, codecs). */
export function makeClient<S extends GenService<GenServiceMethods>>(svc: S, ch: Channel): TypedClient<S> {
  // channel: not in TypedClient's type; tests read its queue (waitingForSlot).
  const out: Record<string, unknown> = { address: ch.address, close: () => ch.close(), channel: ch };
  for (const [name, w] of methodWires(svc as unknown as DescService)) {
    const ser = (msg: unknown): Buffer => {
      try {
        return w.serializeRequest(msg);
      } catch (err) {
        throw new CallError(
          Code.INTERNAL,
          `Request message serialization failure: ${(err as Error).message}`,
        );
      }
    };
    const de = (buf: Buffer): unknown => {
      try {
        return w.deserializeResponse(buf);
      } catch (err) {
        throw new CallError(Code.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
      }
    };
    if (w.method.methodKind === "unary") {
      out[name] = async (req: unknown, o?: CallOptions) => de(await ch.unary(w.path, ser(req), o));
    } else if (w.method.methodKind === "server_streaming") {
      out[name] = (req: unknown, o?: CallOptions) =>
        (async function* () {
          for await (const m of ch.serverStream(w.path, ser(req), o)) yield de(m);
        })();
    } else if (w.method.methodKind === "client_streaming") {
      out[name] = async (reqs: AsyncIterable<unknown>, o?: CallOptions) =>
        de(
          await ch.clientStream(
            w.path,
            (async function* () {
              for await (const r of reqs) yield ser(r);
            })(),
            o,
          ),
        );
    }
  }
  return out as TypedClient<S>;
}
