// The wire description of each method, built from protobuf-es service descriptors (no
// proto-loader): path /<typeName>/<Method>, streaming flags from methodKind, toBinary/fromBinary
// for the wire; and the typed handler shapes the server registers.

import type { MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";

export interface MethodWire {
  path: string;
  method: DescMethod;
  requestStream: boolean;
  responseStream: boolean;
  serializeRequest(msg: unknown): Buffer;
  deserializeRequest(buf: Buffer): unknown;
  serializeResponse(msg: unknown): Buffer;
  deserializeResponse(buf: Buffer): unknown;
}

// Handlers may return init shapes (plain objects); create() turns them into messages and
// returns real messages of the same type unchanged.
function serializer(desc: DescMessage) {
  return (msg: unknown) => Buffer.from(toBinary(desc, create(desc, msg as MessageInitShape<typeof desc>)));
}
function deserializer(desc: DescMessage) {
  return (buf: Buffer) => fromBinary(desc, buf);
}

/**
 * A request the server could not decode. Answering a throwing request deserializer with INTERNAL
 * before any interceptor runs would be unauthenticated, unaudited, and blame the server, so the
 * server's deserializer returns this instead and the interceptor answers INVALID_ARGUMENT after
 * authentication (server.ts).
 */
export class UndecodableRequest {
  constructor(
    readonly typeName: string,
    readonly reason: string,
  ) {}
}

function requestDeserializer(desc: DescMessage) {
  return (buf: Buffer): unknown => {
    try {
      return fromBinary(desc, buf);
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      return new UndecodableRequest(desc.typeName, msg.split("\n")[0] ?? "malformed message");
    }
  };
}

const wireCache = new WeakMap<DescService, Map<string, MethodWire>>();

/** Wire description of every method of a service, keyed by localName (e.g. "deploy"). */
export function methodWires(svc: DescService): Map<string, MethodWire> {
  const cached = wireCache.get(svc);
  if (cached) return cached;
  const out = new Map<string, MethodWire>();
  for (const m of svc.methods) {
    out.set(m.localName, {
      path: `/${svc.typeName}/${m.name}`,
      method: m,
      requestStream: m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming",
      responseStream: m.methodKind === "server_streaming" || m.methodKind === "bidi_streaming",
      serializeRequest: serializer(m.input),
      deserializeRequest: requestDeserializer(m.input),
      serializeResponse: serializer(m.output),
      deserializeResponse: deserializer(m.output),
    });
  }
  wireCache.set(svc, out);
  return out;
}

// ---- typed handler shapes -------------------------------------------------------------

export type MethodsOf<S> = S extends GenService<infer M> ? M : never;
type In<M> = M extends { input: infer I extends DescMessage } ? MessageShape<I> : never;
type Out<M> = M extends { output: infer O extends DescMessage } ? MessageInitShape<O> : never;

export interface CallContext {
  /** Fully qualified method path, e.g. /mcp.v1.McpAgent/Deploy. */
  method: string;
  identity: { name: string; roles: string[]; accountType: string };
  peer: string;
  /** Aborted when the client cancels or the deadline passes. */
  signal: AbortSignal;
}

export type HandlerFor<M> = M extends { methodKind: "unary" }
  ? (req: In<M>, ctx: CallContext) => Promise<Out<M>>
  : M extends { methodKind: "server_streaming" }
    ? (req: In<M>, ctx: CallContext, send: (msg: Out<M>) => Promise<void>) => Promise<void>
    : M extends { methodKind: "client_streaming" }
      ? (reqs: AsyncIterable<In<M>>, ctx: CallContext) => Promise<Out<M>>
      : never;

export type Handlers<S extends GenService<GenServiceMethods>> = {
  [K in keyof MethodsOf<S>]: HandlerFor<MethodsOf<S>[K]>;
};
