// The one-shot RPC client for CLI processes: unary calls over one bare node:http2 session (gRPC
// framing: 5-byte message prefix, grpc-status/grpc-message trailers, grpc-timeout plus a local
// deadline timer). A CLI process makes a handful of calls and exits, and grpc-js costs it ~25 ms
// (its load, channel/resolver/load-balancer/subchannel setup, all cold code) before the first
// byte is sent; this client costs a TLS handshake. Streaming methods (logs, export/import) are
// delegated to a grpc-js client created on their first use. Errors read like grpc-js's
// ("UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED …") and the same
// address fallback applies (client.ts connect). Daemons keep grpc-js (reconnects, keepalive).
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { CallOptions, ConnectOptions, TypedClient } from "./client.ts";
import { type MethodWire, methodWires } from "./service.ts";
import { CallError, Code, MAX_MESSAGE_BYTES } from "./wire.ts";

tls.DEFAULT_MIN_VERSION = "TLSv1.3";

// As in client.ts: Bun refuses an IP address as TLS servername, so the SNI carries a placeholder
// and the certificate is checked against the real host (DNS or IP SAN).
const SNI_PLACEHOLDER = "mcp-agent.invalid";
const DEFAULT_TIMEOUT_MS = 60_000;

function hostOf(address: string): string {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):\d+$/.exec(address);
  return m ? (m[1] ?? m[2] ?? address) : address;
}

/** Opens a TLS HTTP/2 session; resolves once the handshake (and certificate check) is done. */
function openSession(address: string, caPem: string, timeoutMs: number): Promise<http2.ClientHttp2Session> {
  const host = hostOf(address);
  return new Promise((resolve, reject) => {
    const session = http2.connect(`https://${address}`, {
      ca: caPem,
      servername: net.isIP(host) !== 0 ? SNI_PLACEHOLDER : host,
      minVersion: "TLSv1.3",
      checkServerIdentity: (_name: string, cert: tls.PeerCertificate) => tls.checkServerIdentity(host, cert),
    });
    const timer = setTimeout(() => {
      session.destroy();
      reject(new Error("Failed to connect before the deadline"));
    }, timeoutMs);
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
}

const unavailable = (err: unknown) =>
  new CallError(Code.UNAVAILABLE, `No connection established. Last error: ${(err as Error)?.message ?? err}`);

/** grpc-js's mapping of an HTTP status without grpc-status. */
function fromHttpStatus(status: number): CallError {
  const code =
    status === 400
      ? Code.INTERNAL
      : status === 401
        ? Code.UNAUTHENTICATED
        : status === 403
          ? Code.PERMISSION_DENIED
          : status === 404
            ? Code.UNIMPLEMENTED
            : [429, 502, 503, 504].includes(status)
              ? Code.UNAVAILABLE
              : Code.UNKNOWN;
  return new CallError(code, `Received HTTP status code ${status}`);
}

/** grpc-js's mapping of a stream reset without a status. */
function fromRstCode(rst: number): CallError {
  const c = http2.constants;
  if (rst === c.NGHTTP2_REFUSED_STREAM) return new CallError(Code.UNAVAILABLE, "Stream refused by server");
  if (rst === c.NGHTTP2_CANCEL) return new CallError(Code.CANCELLED, "Call cancelled");
  if (rst === c.NGHTTP2_ENHANCE_YOUR_CALM)
    return new CallError(Code.RESOURCE_EXHAUSTED, "Bandwidth exhausted or memory limit exceeded");
  if (rst === c.NGHTTP2_INADEQUATE_SECURITY)
    return new CallError(Code.PERMISSION_DENIED, "Protocol not secure enough");
  return new CallError(Code.INTERNAL, `Received RST_STREAM with code ${rst}`);
}

/** grpc-message is percent-encoded; grpc-js decodes it with decodeURI and keeps it raw if that fails. */
export function decodeGrpcMessage(raw: string): string {
  try {
    return decodeURI(raw);
  } catch {
    return raw;
  }
}

/** The grpc-timeout header: at most 8 digits, so long deadlines go in seconds. */
export function grpcTimeout(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  return t <= 99_999_999 ? `${t}m` : `${Math.min(Math.ceil(t / 1000), 99_999_999)}S`;
}

function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(5 + payload.length);
  out[0] = 0;
  out.writeUInt32BE(payload.length, 1);
  out.set(payload, 5);
  return out;
}

/** The messages of a gRPC body; throws CallError for a malformed or compressed one. */
export function unframe(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  // Bounded: each pass consumes at least the 5-byte prefix.
  while (at < body.length) {
    if (body.length - at < 5) throw new CallError(Code.INTERNAL, "Truncated gRPC message prefix");
    if (body[at] !== 0)
      throw new CallError(Code.INTERNAL, "Received compressed message but no encoding negotiated");
    const len = body.readUInt32BE(at + 1);
    if (len > MAX_MESSAGE_BYTES)
      throw new CallError(
        Code.RESOURCE_EXHAUSTED,
        `Received message larger than max (${len} vs ${MAX_MESSAGE_BYTES})`,
      );
    if (body.length - at - 5 < len) throw new CallError(Code.INTERNAL, "Truncated gRPC message");
    out.push(body.subarray(at + 5, at + 5 + len));
    at += 5 + len;
  }
  return out;
}

type Headers = http2.IncomingHttpHeaders;

/** The call's status from its trailers (or a trailers-only response), else from HTTP/RST. */
function statusOf(trailers: Headers | null, headers: Headers | null, rst: number | null): CallError | null {
  const src =
    trailers?.["grpc-status"] !== undefined
      ? trailers
      : headers?.["grpc-status"] !== undefined
        ? headers
        : null;
  if (src) {
    const code = Number(src["grpc-status"]);
    if (code === Code.OK) return null;
    const msg = src["grpc-message"];
    return new CallError(
      Number.isInteger(code) ? code : Code.UNKNOWN,
      decodeGrpcMessage(typeof msg === "string" ? msg : ""),
    );
  }
  if (rst !== null && rst !== http2.constants.NGHTTP2_NO_ERROR) return fromRstCode(rst);
  const http = Number(headers?.[":status"]);
  if (headers && http !== 200) return fromHttpStatus(http);
  return new CallError(Code.UNKNOWN, "No status information received");
}

/** A typed client whose unary calls go over node:http2; see the module comment. */
export async function connectOneShot<S extends GenService<GenServiceMethods>>(
  svc: S,
  opts: ConnectOptions,
): Promise<TypedClient<S>> {
  if (opts.addresses.length === 0) throw new Error("no address to connect to");
  let address = opts.addresses[0]!;
  let session: http2.ClientHttp2Session | null = null;
  if (opts.addresses.length > 1) {
    const errors: string[] = [];
    for (const a of opts.addresses) {
      try {
        session = await openSession(a, opts.caPem, opts.connectTimeoutMs ?? 2000);
        address = a;
        break;
      } catch (err) {
        errors.push(`${a}: ${(err as Error).message}`);
      }
    }
    if (!session) throw new CallError(Code.UNAVAILABLE, `no address answered (${errors.join("; ")})`);
  }
  let pending: Promise<http2.ClientHttp2Session> | null = session ? Promise.resolve(session) : null;
  let active = 0;
  let closed = false;

  // One session, opened on the first call (as grpc-js connects lazily) and opened again if it died.
  const getSession = (deadlineMs: number): Promise<http2.ClientHttp2Session> => {
    if (pending && session && (session.closed || session.destroyed)) pending = null;
    pending ??= openSession(address, opts.caPem, deadlineMs).then(
      (s) => {
        session = s;
        if (active === 0) s.unref();
        return s;
      },
      (err) => {
        pending = null;
        throw unavailable(err);
      },
    );
    return pending;
  };
  // An idle session must not keep the process alive; a call in flight must.
  const hold = (s: http2.ClientHttp2Session) => {
    if (active++ === 0) s.ref();
  };
  const release = (s: http2.ClientHttp2Session) => {
    if (--active === 0 && !s.destroyed) s.unref();
  };
  if (session) session.unref();

  const unary = (w: MethodWire, req: unknown, o?: CallOptions): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const timeoutMs = o?.timeoutMs ?? opts.defaultTimeoutMs ?? DEFAULT_TIMEOUT_MS;
      const started = Date.now();
      let stream: http2.ClientHttp2Stream | null = null;
      let held: http2.ClientHttp2Session | null = null;
      let done = false;
      const finish = (err: CallError | null, value?: unknown) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        o?.signal?.removeEventListener("abort", onAbort);
        if (held) release(held);
        if (err) reject(err);
        else resolve(value);
      };
      const cancel = (err: CallError) => {
        if (stream && !stream.destroyed) stream.close(http2.constants.NGHTTP2_CANCEL);
        finish(err);
      };
      const onAbort = () => cancel(new CallError(Code.CANCELLED, "Cancelled on client"));
      const timer = setTimeout(
        () =>
          cancel(
            new CallError(
              Code.DEADLINE_EXCEEDED,
              `Deadline exceeded after ${((Date.now() - started) / 1000).toFixed(3)}s`,
            ),
          ),
        timeoutMs,
      );
      if (o?.signal?.aborted) return onAbort();
      o?.signal?.addEventListener("abort", onAbort, { once: true });
      let body: Buffer;
      try {
        body = frame(w.serializeRequest(req));
      } catch (err) {
        return finish(
          new CallError(Code.INTERNAL, `Request message serialization failure: ${(err as Error).message}`),
        );
      }
      getSession(timeoutMs).then((s) => {
        if (done) return;
        held = s;
        hold(s);
        const headers: http2.OutgoingHttpHeaders = {
          ":method": "POST",
          ":path": w.path,
          "content-type": "application/grpc",
          te: "trailers",
          "grpc-accept-encoding": "identity",
          "grpc-timeout": grpcTimeout(timeoutMs - (Date.now() - started)),
        };
        if (opts.token) headers["authorization"] = `Bearer ${opts.token}`;
        let st: http2.ClientHttp2Stream;
        try {
          st = s.request(headers);
        } catch (err) {
          return finish(unavailable(err));
        }
        stream = st;
        let resHeaders: Headers | null = null;
        let trailers: Headers | null = null;
        const chunks: Buffer[] = [];
        let size = 0;
        st.on("response", (h) => {
          resHeaders = h;
        });
        st.on("trailers", (t) => {
          trailers = t;
        });
        st.on("data", (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_MESSAGE_BYTES + 5)
            cancel(
              new CallError(
                Code.RESOURCE_EXHAUSTED,
                `Received message larger than max (${size - 5} vs ${MAX_MESSAGE_BYTES})`,
              ),
            );
          else chunks.push(chunk);
        });
        st.on("error", () => {
          // The status is decided on "close" (rstCode); a session failure has none.
        });
        st.on("close", () => {
          if (done) return;
          if (
            !resHeaders &&
            !trailers &&
            (st.rstCode === undefined || st.rstCode === http2.constants.NGHTTP2_NO_ERROR)
          )
            return finish(new CallError(Code.UNAVAILABLE, "Connection dropped"));
          const err = statusOf(trailers, resHeaders, st.rstCode ?? null);
          if (err) return finish(err);
          let msgs: Buffer[];
          try {
            msgs = unframe(Buffer.concat(chunks));
          } catch (e) {
            return finish(e as CallError);
          }
          if (msgs.length === 0) return finish(new CallError(Code.UNIMPLEMENTED, "No message received"));
          if (msgs.length > 1)
            return finish(new CallError(Code.UNIMPLEMENTED, "Too many responses received"));
          try {
            finish(null, w.deserializeResponse(msgs[0]!));
          } catch (e) {
            finish(new CallError(Code.INTERNAL, `Response message parsing error: ${(e as Error).message}`));
          }
        });
        st.end(body);
      }, finish);
    });

  // Streaming methods: a grpc-js client on the chosen address, created on first use.
  let grpcClient: Promise<TypedClient<S>> | null = null;
  const streaming = () => {
    grpcClient ??= import("./client.ts").then((m) => m.connect(svc, { ...opts, addresses: [address] }));
    return grpcClient as Promise<Record<string, (...a: unknown[]) => unknown>>;
  };

  const out: Record<string, unknown> = {
    address,
    close: () => {
      if (closed) return;
      closed = true;
      if (session && !session.destroyed) session.close();
      void grpcClient?.then((c) => c.close());
    },
  };
  for (const [name, w] of methodWires(svc as unknown as DescService)) {
    if (w.method.methodKind === "unary") {
      out[name] = (req: unknown, o?: CallOptions) => unary(w, req, o);
    } else if (w.method.methodKind === "server_streaming") {
      out[name] = (req: unknown, o?: CallOptions) =>
        (async function* () {
          const c = await streaming();
          yield* c[name]!(req, o) as AsyncIterable<unknown>;
        })();
    } else if (w.method.methodKind === "client_streaming") {
      out[name] = async (reqs: AsyncIterable<unknown>, o?: CallOptions) =>
        (await streaming())[name]!(reqs, o);
    }
  }
  return out as TypedClient<S>;
}
