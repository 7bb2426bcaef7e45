// A raw gRPC client for reliability tests: sends caller-chosen BYTES (identity serializers) to any
// method path over the agent's real TLS, with or without a bearer token, and reports the final
// status of the call whatever its kind (unary, server-, client-streaming). The typed client in
// src/rpc/client.ts cannot send malformed payloads; this one can.
import net from "node:net";
import tls from "node:tls";
import type { DescService } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { methodWires } from "../../src/rpc/service.ts";

export interface RawMethod {
  /** /mcp.v1.McpAgent/Deploy */
  path: string;
  /** "Deploy" */
  name: string;
  requestStream: boolean;
  responseStream: boolean;
  /** Encodes a request init shape with the method's own input type (for valid payloads). */
  encode(msg: unknown): Buffer;
}

export interface RawResult {
  code: number;
  details: string;
  /** Response messages received before the status. */
  messages: number;
}

/** Every method of a service, as the server registers it. */
export function rawMethods(svc: DescService): RawMethod[] {
  return [...methodWires(svc).values()].map((w) => ({
    path: w.path,
    name: w.method.name,
    requestStream: w.requestStream,
    responseStream: w.responseStream,
    encode: (msg: unknown) => w.serializeRequest(msg),
  }));
}

/** A channel trusting `caPem`; IP targets get the same SNI placeholder the product client uses. */
export function rawChannel(
  address: string,
  caPem: string,
  clientCert?: { certPem: string; keyPem: string },
): grpc.Client {
  const host = address.replace(/:\d+$/, "").replace(/^\[|\]$/g, "");
  const key = clientCert ? Buffer.from(clientCert.keyPem) : null;
  const chain = clientCert ? Buffer.from(clientCert.certPem) : null;
  const creds = grpc.credentials.createSsl(Buffer.from(caPem), key, chain, {
    checkServerIdentity: (_name, cert) => tls.checkServerIdentity(host, cert),
  });
  const options: grpc.ChannelOptions = {
    "grpc.max_send_message_length": 64 * 1024 * 1024,
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
  };
  if (net.isIP(host) !== 0) options["grpc.ssl_target_name_override"] = "mcp-agent.invalid";
  return new grpc.Client(address, creds, options);
}

const same = (b: Buffer) => b;

/**
 * Calls `m` with `payloads` (one for unary/server-streaming; every one, then half-close, for
 * client-streaming) and resolves with the final status; never rejects.
 */
export function rawCall(
  ch: grpc.Client,
  m: Pick<RawMethod, "path" | "requestStream" | "responseStream">,
  token: string | null,
  payloads: Buffer[],
  timeoutMs: number,
): Promise<RawResult> {
  const md = new grpc.Metadata();
  if (token !== null) md.set("authorization", `Bearer ${token}`);
  const deadline = Date.now() + timeoutMs;
  let messages = 0;
  return new Promise<RawResult>((resolve) => {
    const done = (err: grpc.ServiceError | null, fallback?: grpc.StatusObject) => {
      if (err) resolve({ code: err.code, details: err.details ?? err.message, messages });
      else resolve({ code: fallback?.code ?? grpc.status.OK, details: fallback?.details ?? "", messages });
    };
    if (!m.requestStream && !m.responseStream) {
      ch.makeUnaryRequest(m.path, same, same, payloads[0] ?? Buffer.alloc(0), md, { deadline }, (err) => {
        if (!err) messages++;
        done(err);
      });
    } else if (!m.requestStream) {
      const call = ch.makeServerStreamRequest(m.path, same, same, payloads[0] ?? Buffer.alloc(0), md, {
        deadline,
      });
      call.on("data", () => void messages++);
      call.on("error", () => {}); // the status event below carries the same code
      call.on("status", (s: grpc.StatusObject) => done(null, s));
    } else if (!m.responseStream) {
      const call = ch.makeClientStreamRequest(m.path, same, same, md, { deadline }, (err) => {
        if (!err) messages++;
        done(err);
      });
      call.on("error", () => {}); // reported through the callback
      for (const p of payloads) call.write(p);
      call.end();
    } else {
      const call = ch.makeBidiStreamRequest(m.path, same, same, md, { deadline });
      call.on("data", () => void messages++);
      call.on("error", () => {});
      call.on("status", (s: grpc.StatusObject) => done(null, s));
      for (const p of payloads) call.write(p);
      call.end();
    }
  });
}

/** Human name of a status code. */
export function codeName(code: number): string {
  return (grpc.status as unknown as Record<number, string>)[code] ?? String(code);
}
