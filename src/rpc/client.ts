// Typed gRPC clients over TLS (CA-verified) with a bearer token, built from the same
// protobuf-es descriptors as the server. Multi-address nodes: addresses are tried in order
// with a short connect timeout and the first that connects is used. connectUnix: the same typed
// client over a local unix socket (mc-proxy's admin API), where file permissions are the auth.
import net from "node:net";
import { resolve } from "node:path";
import tls from "node:tls";
import type { DescMessage, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import * as grpc from "@grpc/grpc-js";
import { type MethodsOf, methodWires } from "./service.ts";
import { CallError, MAX_MESSAGE_BYTES } from "./wire.ts";

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

/**
 * grpc-js connection failures read "No connection established. Last error: Error: connect
 * ECONNREFUSED …. Resolution note: " — drop the nested "Error: " and the empty trailing note so
 * the operator's one line stays readable.
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

export interface ConnectOptions {
  /** Primary address first, then fallbacks. */
  addresses: string[];
  caPem: string;
  token?: string | null;
  /** Per-address connect timeout when there is more than one address. */
  connectTimeoutMs?: number;
  defaultTimeoutMs?: number;
}

const CHANNEL_OPTIONS = {
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

// Bun refuses an IP address as TLS servername, and grpc-js uses the target host as SNI. So the
// SNI carries a fixed placeholder name and the certificate is checked against the real host
// (DNS or IP SAN) with node's own checkServerIdentity. Chain verification against the CA is
// unchanged.
const SNI_PLACEHOLDER = "mcp-agent.invalid";

function newChannel(address: string, caPem: string): grpc.Client {
  const host = hostOf(address);
  const isIp = net.isIP(host) !== 0;
  const creds = grpc.credentials.createSsl(Buffer.from(caPem), null, null, {
    checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
  });
  const options = isIp
    ? { ...CHANNEL_OPTIONS, "grpc.ssl_target_name_override": SNI_PLACEHOLDER }
    : CHANNEL_OPTIONS;
  return new grpc.Client(address, creds, options);
}

function waitReady(client: grpc.Client, ms: number): Promise<void> {
  return new Promise((resolve, reject) =>
    client.waitForReady(Date.now() + ms, (err) => (err ? reject(err) : resolve())),
  );
}

/** Creates a typed client; with several addresses, connects to the first that answers. */
export async function connect<S extends GenService<GenServiceMethods>>(
  svc: S,
  opts: ConnectOptions,
): Promise<TypedClient<S>> {
  if (opts.addresses.length === 0) throw new Error("no address to connect to");
  let chosen: grpc.Client | null = null;
  let address = opts.addresses[0]!;
  if (opts.addresses.length === 1) {
    chosen = newChannel(address, opts.caPem);
  } else {
    const errors: string[] = [];
    for (const a of opts.addresses) {
      const c = newChannel(a, opts.caPem);
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
  return makeClient(svc, chosen, address, opts);
}

/**
 * A typed client over a local unix socket with insecure channel credentials: for local admin
 * sockets (mc-proxy) whose file permissions are the access control. Connects lazily on the
 * first call; `socketPath` is made absolute so the target is always unix:///abs/path.
 */
export function connectUnix<S extends GenService<GenServiceMethods>>(
  svc: S,
  socketPath: string,
  opts: { defaultTimeoutMs?: number } = {},
): TypedClient<S> {
  const target = `unix://${resolve(socketPath)}`;
  const client = new grpc.Client(target, grpc.credentials.createInsecure(), CHANNEL_OPTIONS);
  return makeClient(svc, client, target, opts);
}

function makeClient<S extends GenService<GenServiceMethods>>(
  svc: S,
  client: grpc.Client,
  address: string,
  opts: Pick<ConnectOptions, "token" | "defaultTimeoutMs">,
): TypedClient<S> {
  const out: Record<string, unknown> = {
    address,
    close: () => client.close(),
  };
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
        // An already-aborted signal never fires "abort": cancel at once (Ctrl-C during connect).
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
