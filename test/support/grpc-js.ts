// grpc-js (a devDependency) as the interop peer in tests: a grpc-js service definition built from
// a protobuf-es descriptor (for grpc-js servers such as the fake mc-proxy), and a typed grpc-js
// client with the product client's API (src/rpc/client.ts connect), so a test can run the same
// call through both and compare. The product never loads grpc-js.
import net from "node:net";
import tls from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import type { CallOptions, ConnectOptions, TypedClient } from "../../src/rpc/client.ts";
import { methodWires } from "../../src/rpc/service.ts";
import { CallError, MAX_MESSAGE_BYTES } from "../../src/rpc/wire.ts";

/** A grpc-js ServiceDefinition of a protobuf-es service (path, streaming flags, codecs). */
export function grpcServiceDefinition(svc: DescService): grpc.ServiceDefinition {
  const def: Record<string, unknown> = {};
  for (const [, w] of methodWires(svc)) {
    def[w.method.name] = {
      path: w.path,
      requestStream: w.requestStream,
      responseStream: w.responseStream,
      requestSerialize: w.serializeRequest,
      requestDeserialize: w.deserializeRequest,
      responseSerialize: w.serializeResponse,
      responseDeserialize: w.deserializeResponse,
      originalName: w.method.localName,
    };
  }
  return def as grpc.ServiceDefinition;
}

/**
 * grpc-js connection failures read "No connection established. Last error: Error: connect
 * ECONNREFUSED …. Resolution note: " — drop the nested "Error: " and the empty trailing note, as
 * the product client words it.
 */
export function tidyDetails(details: string): string {
  return details
    .replace(/Last error: Error: /g, "Last error: ")
    .replace(/\.?\s*Resolution note:\s*$/, "")
    .trim();
}

function toCallError(err: unknown): CallError {
  const e = err as grpc.ServiceError;
  if (e && typeof e.code === "number") return new CallError(e.code, tidyDetails(e.details || e.message));
  return new CallError(grpc.status.UNKNOWN, (err as Error)?.message ?? String(err));
}

export const GRPC_JS_CHANNEL_OPTIONS = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // Fail fast when a node is down instead of retrying for the default 20 s.
  "grpc.initial_reconnect_backoff_ms": 200,
  "grpc.max_reconnect_backoff_ms": 1000,
};

function hostOf(address: string): string {
  const m = /^(?:\[([^\]]*)\]|([^:]*)):\d+$/.exec(address);
  return m ? (m[1] ?? m[2] ?? address) : address;
}

/** A grpc-js channel trusting caPem; IP targets get an SNI placeholder (Bun refuses an IP there). */
export function grpcJsChannel(
  address: string,
  caPem: string,
  extra: Record<string, number> = {},
): grpc.Client {
  const host = hostOf(address);
  const creds = grpc.credentials.createSsl(Buffer.from(caPem), null, null, {
    checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
  });
  const base = { ...GRPC_JS_CHANNEL_OPTIONS, ...extra };
  const options =
    net.isIP(host) !== 0 ? { ...base, "grpc.ssl_target_name_override": "mcp-agent.invalid" } : base;
  return new grpc.Client(address, creds, options);
}

function waitReady(client: grpc.Client, ms: number): Promise<void> {
  return new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve())),
  );
}

/** The product's connect(), on grpc-js: a typed client; with several addresses, the first that answers. */
export async function connectGrpcJs<S extends GenService<GenServiceMethods>>(
  svc: S,
  opts: ConnectOptions,
  /** grpc-js channel options over the defaults (e.g. "grpc.max_send_message_length": -1). */
  extra: Record<string, number> = {},
): Promise<TypedClient<S>> {
  if (opts.addresses.length === 0) throw new Error("no address to connect to");
  let chosen: grpc.Client | null = null;
  let address = opts.addresses[0]!;
  if (opts.addresses.length === 1) {
    chosen = grpcJsChannel(address, opts.caPem, extra);
  } else {
    const errors: string[] = [];
    for (const a of opts.addresses) {
      const c = grpcJsChannel(a, opts.caPem, extra);
      try {
        await waitReady(c, opts.connectTimeoutMs ?? 2000);
        chosen = c;
        address = a;
        break;
      } catch (err) {
        c.close();
        errors.push(`${a}: ${(err as Error).message}`);
      }
    }
    if (!chosen) throw new CallError(grpc.status.UNAVAILABLE, `no address answered (${errors.join("; ")})`);
  }
  return grpcJsTypedClient(svc, chosen, address, opts);
}

/** Typed methods over a grpc-js client, rejecting with the product's CallError. */
export function grpcJsTypedClient<S extends GenService<GenServiceMethods>>(
  svc: S,
  client: grpc.Client,
  address: string,
  opts: Pick<ConnectOptions, "token" | "defaultTimeoutMs">,
): TypedClient<S> {
  const out: Record<string, unknown> = { address, close: () => client.close() };
  const metadata = () => {
    const md = new grpc.Metadata();
    if (opts.token) md.set("authorization", `Bearer ${opts.token}`);
    return md;
  };
  const callOpts = (o?: CallOptions): grpc.CallOptions => ({
    deadline: Date.now() + (o?.timeoutMs ?? opts.defaultTimeoutMs ?? 60_000),
  });
  for (const [name, w] of methodWires(svc as unknown as DescService)) {
    const ser = (msg: unknown) => w.serializeRequest(msg);
    const de = (buf: Buffer) => w.deserializeResponse(buf);
    if (w.method.methodKind === "unary") {
      out[name] = (req: unknown, o?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = client.makeUnaryRequest(w.path, ser, de, req, metadata(), callOpts(o), (err, res) =>
            err ? reject(toCallError(err)) : resolve(res),
          );
          o?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
        });
    } else if (w.method.methodKind === "server_streaming") {
      out[name] = (req: unknown, o?: CallOptions) => {
        const call = client.makeServerStreamRequest(w.path, ser, de, req, metadata(), {
          deadline: o?.timeoutMs ? Date.now() + o.timeoutMs : Number.POSITIVE_INFINITY,
        });
        if (o?.signal?.aborted) call.cancel();
        else o?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
        return (async function* () {
          try {
            for await (const msg of call) yield msg;
          } catch (err) {
            if ((err as grpc.ServiceError).code === grpc.status.CANCELLED && o?.signal?.aborted) return;
            throw toCallError(err);
          } finally {
            call.cancel();
          }
        })();
      };
    } else if (w.method.methodKind === "client_streaming") {
      out[name] = (reqs: AsyncIterable<unknown>, o?: CallOptions) =>
        new Promise((resolve, reject) => {
          const call = client.makeClientStreamRequest(w.path, ser, de, metadata(), callOpts(o), (err, res) =>
            err ? reject(toCallError(err)) : resolve(res),
          );
          o?.signal?.addEventListener("abort", () => call.cancel(), { once: true });
          void (async () => {
            try {
              for await (const r of reqs) {
                if (!call.write(r)) await new Promise((res) => call.once("drain", res));
              }
              call.end();
            } catch (err) {
              call.cancel();
              reject(toCallError(err));
            }
          })();
        });
    }
  }
  return out as TypedClient<S>;
}
