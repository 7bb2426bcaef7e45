// gRPC server over TLS 1.3 only. Registers services from protobuf-es descriptors and wraps
// every handler with the auth+audit interceptor (interceptor.ts). Unimplemented methods
// still authenticate, then answer UNIMPLEMENTED.
import { isIPv6 } from "node:net";
import tls from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { invalidArgument, RpcError, toStatus } from "./errors.ts";
import { audit, authorize, type InterceptorOptions, identify } from "./interceptor.ts";
import { type CallContext, grpcServiceDefinition, methodWires, UndecodableRequest } from "./service.ts";
import { MAX_MESSAGE_BYTES } from "./wire.ts";

// Must be set before any secure context is created: grpc-js accepts TLS 1.2 otherwise.
tls.DEFAULT_MIN_VERSION = "TLSv1.3";

export { MAX_MESSAGE_BYTES };

export interface ServiceRegistration {
  desc: DescService;
  // biome-ignore lint/suspicious/noExplicitAny: handlers are typed at the registration site via Handlers<S>.
  handlers: Record<string, any>;
}

export interface ServerOptions extends InterceptorOptions {
  address: string;
  certPem: string;
  keyPem: string;
  allowAnyAddr?: boolean;
  services: ServiceRegistration[];
}

export interface RunningServer {
  port: number;
  server: grpc.Server;
  close(): Promise<void>;
}

export function splitHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):(\d+)$/.exec(addr);
  if (!m) throw new Error(`bad address "${addr}": expected host:port`);
  return { host: m[1] ?? m[2] ?? "", port: Number(m[3]) };
}

/**
 * True for a host that binds every interface. The resolver accepts many spellings of the
 * unspecified address ("0", "0.0.0.00", "0x0", "[::0]", "[0:0:0:0:0:0:0:0]", "[::ffff:0.0.0.0]"),
 * and each of them really binds 0.0.0.0 or ::, so a literal set of "0.0.0.0"/"::" is not enough.
 */
export function isAnyAddress(host: string): boolean {
  const h = host.toLowerCase().replace(/%.*$/, "");
  if (h === "") return true;
  if (/^[0.x]+$/.test(h)) return true; // IPv4 zero in any inet_aton form
  if (!isIPv6(h)) return false;
  const parts = h.split(/[:.]/).filter((p) => p !== "");
  const mapped = /(^|:)ffff:\d+\.\d+\.\d+\.\d+$/.test(h); // ::ffff:a.b.c.d
  return parts.every((p, i) => /^0+$/.test(p) || (mapped && p === "ffff" && i === parts.length - 5));
}

export function checkBindAddress(addr: string, allowAny: boolean): void {
  const { host } = splitHostPort(addr);
  if (isAnyAddress(host) && !allowAny) {
    throw new Error(
      `refusing to bind ${addr}: the agent binds the overlay address only (pass --allow-any-addr to override)`,
    );
  }
}

function peerOf(call: { getPeer(): string }): string {
  try {
    return call.getPeer();
  } catch {
    return "unknown";
  }
}

/** The decoded request, or INVALID_ARGUMENT for bytes that are not a valid message of its type. */
function decoded(msg: unknown): unknown {
  if (msg instanceof UndecodableRequest)
    throw invalidArgument(`request is not a valid ${msg.typeName}: ${msg.reason}`);
  return msg;
}

async function* streamOf<T>(call: grpc.ServerReadableStream<T, unknown>): AsyncIterable<T> {
  for await (const msg of call) yield decoded(msg) as T;
}

function wrap(opts: ServerOptions, svc: DescService, localName: string, impl: unknown) {
  const wire = methodWires(svc).get(localName)!;
  const kind = wire.method.methodKind;
  const method = wire.path;

  const run = async (
    call:
      | grpc.ServerUnaryCall<unknown, unknown>
      | grpc.ServerWritableStream<unknown, unknown>
      | grpc.ServerReadableStream<unknown, unknown>,
    body: (ctx: CallContext) => Promise<unknown>,
  ): Promise<{ ok: true; value: unknown } | { ok: false; code: number; details: string }> => {
    const started = performance.now();
    const peer = peerOf(call);
    const ac = new AbortController();
    (call as grpc.ServerUnaryCall<unknown, unknown>).on("cancelled", () => ac.abort());
    let caller = "-";
    try {
      const identity = await identify(opts, call.metadata);
      // Named before the policy check: a denied caller is known and the audit line says who.
      caller = identity.name;
      authorize(opts, method, identity);
      if (typeof impl !== "function")
        throw new RpcError(status.UNIMPLEMENTED, `${wire.method.name} is not implemented`);
      const value = await body({ method, identity, peer, signal: ac.signal });
      audit(opts.logger, { method, caller, peer, started, code: status.OK });
      return { ok: true, value };
    } catch (err) {
      const s = ac.signal.aborted
        ? { code: status.CANCELLED, details: "cancelled by client" }
        : toStatus(err);
      audit(opts.logger, { method, caller, peer, started, code: s.code, error: s.details });
      return { ok: false, code: s.code, details: s.details };
    }
  };

  const fn = impl as (...a: unknown[]) => Promise<unknown>;
  if (kind === "unary") {
    return (call: grpc.ServerUnaryCall<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      void run(call, (ctx) => fn(decoded(call.request), ctx)).then((r) =>
        r.ok ? cb(null, r.value) : cb({ code: r.code, details: r.details }),
      );
    };
  }
  if (kind === "server_streaming") {
    return (call: grpc.ServerWritableStream<unknown, unknown>) => {
      const send = (msg: unknown) =>
        new Promise<void>((resolve) => {
          if (call.cancelled || call.destroyed) return resolve();
          if (call.write(msg)) resolve();
          else call.once("drain", () => resolve());
        });
      void run(call, (ctx) => fn(decoded(call.request), ctx, send)).then((r) => {
        if (call.cancelled) return;
        if (r.ok) call.end();
        else call.emit("error", { code: r.code, details: r.details });
      });
    };
  }
  if (kind === "client_streaming") {
    return (call: grpc.ServerReadableStream<unknown, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      void run(call, (ctx) => fn(streamOf(call), ctx)).then((r) =>
        r.ok ? cb(null, r.value) : cb({ code: r.code, details: r.details }),
      );
    };
  }
  throw new Error(`bidi streaming is not used by this API (${method})`);
}

export async function startServer(opts: ServerOptions): Promise<RunningServer> {
  checkBindAddress(opts.address, opts.allowAnyAddr ?? false);
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  });
  for (const reg of opts.services) {
    const impl: Record<string, unknown> = {};
    for (const m of reg.desc.methods)
      impl[m.localName] = wrap(opts, reg.desc, m.localName, reg.handlers[m.localName]);
    server.addService(grpcServiceDefinition(reg.desc), impl as grpc.UntypedServiceImplementation);
  }
  const creds = grpc.ServerCredentials.createSsl(
    null,
    [{ cert_chain: Buffer.from(opts.certPem), private_key: Buffer.from(opts.keyPem) }],
    false,
  );
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(opts.address, creds, (err, p) => (err ? reject(err) : resolve(p))),
  );
  return {
    port,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 3000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      }),
  };
}
