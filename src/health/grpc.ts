// gRPC health: the standard grpc.health.v1.Health/Check with an empty service name (the server
// as a whole), healthy only when it answers SERVING. Fleet services mostly speak TLS, some
// plaintext (h2c): the check tries plaintext first and falls back to TLS when the plaintext
// attempt fails at the transport (UNAVAILABLE). TLS is used WITHOUT certificate verification —
// this asks "is it serving", it sends no secrets and trusts nothing it reads beyond the status.
// The call goes through the project's own client (rpc/client.ts Channel) on raw bytes.
// The two messages are hand-encoded (no generated code for one enum field):
//   HealthCheckRequest  { string service = 1; }  — "" is the proto3 default → zero bytes
//   HealthCheckResponse { ServingStatus status = 1; }  UNKNOWN=0 SERVING=1 NOT_SERVING=2 SERVICE_UNKNOWN=3
import { BinaryReader, WireType } from "@bufbuild/protobuf/wire";
import { Channel, type Target } from "../rpc/client.ts";
import { CallError, Code, codeName } from "../rpc/wire.ts";
import { firstLine, type HealthResult, hostPort } from "./result.ts";

export const HEALTH_CHECK_METHOD = "/grpc.health.v1.Health/Check";

export const SERVING_STATUS = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"] as const;

/** Encodes HealthCheckRequest{service}: field 1, length-delimited; "" encodes to nothing. */
export function encodeHealthRequest(service = ""): Buffer {
  if (service === "") return Buffer.alloc(0);
  const bytes = Buffer.from(service, "utf8");
  const len: number[] = [];
  let n = bytes.length;
  while (n > 0x7f) {
    len.push((n & 0x7f) | 0x80);
    n >>>= 7;
  }
  len.push(n);
  return Buffer.concat([Buffer.from([0x0a, ...len]), bytes]);
}

/** Decodes HealthCheckResponse.status (field 1, varint); absent = 0 (UNKNOWN); other fields skipped. */
export function decodeHealthStatus(buf: Uint8Array): number {
  const r = new BinaryReader(buf);
  let status = 0;
  while (r.pos < r.len) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === WireType.Varint) status = r.int32();
    else r.skip(wire, field);
  }
  return status;
}

export function statusWord(status: number): string {
  return SERVING_STATUS[status] ?? `status ${status}`;
}

/** One Check over a fresh channel (one check = one connection, closed after the answer). */
async function call(target: Target, deadline: number): Promise<{ status: number } | { error: CallError }> {
  const ch = new Channel({ target });
  try {
    const res = await ch.unary(HEALTH_CHECK_METHOD, encodeHealthRequest(""), {
      timeoutMs: Math.max(1, deadline - Date.now()),
    });
    try {
      return { status: decodeHealthStatus(res) };
    } catch (e) {
      return { error: new CallError(Code.INTERNAL, `bad health response: ${firstLine(e)}`) };
    }
  } catch (err) {
    return { error: err instanceof CallError ? err : new CallError(Code.UNKNOWN, firstLine(err)) };
  } finally {
    ch.close();
  }
}

export async function checkGrpc(host: string, port: number, timeoutMs: number): Promise<HealthResult> {
  const t0 = performance.now();
  const deadline = Date.now() + Math.max(1, timeoutMs);
  const target = hostPort(host, port);
  const done = (healthy: boolean, what: string): HealthResult => ({
    healthy,
    detail: `grpc ${target} ${what}`,
    ms: Math.round(performance.now() - t0),
  });
  const plain = await call({ kind: "h2c", address: target }, deadline);
  let res = plain;
  let via = "plaintext";
  // UNAVAILABLE is what a TLS listener looks like to a plaintext client (and what a closed port
  // looks like — the TLS attempt then fails the same way, quickly).
  if ("error" in plain && plain.error.code === Code.UNAVAILABLE && Date.now() < deadline) {
    res = await call({ kind: "tls", address: target, caPem: null }, deadline);
    via = "tls";
  }
  if ("status" in res) {
    return done(res.status === 1, `${statusWord(res.status)} (${via})`);
  }
  const e = res.error;
  return done(false, `${codeName(e.code)}: ${firstLine(e.details)} (${via})`);
}
