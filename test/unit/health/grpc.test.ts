// gRPC health check against real grpc-js servers implementing grpc.health.v1.Health/Check with
// hand-written serializers: plaintext and TLS (self-signed by a throwaway CA the checker does
// not know), SERVING vs NOT_SERVING, a server without the health service, a refused port and a
// port that never answers. Also the wire encoding of the two messages.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import * as grpc from "@grpc/grpc-js";
import { decodeHealthStatus, encodeHealthRequest, HEALTH_CHECK_METHOD } from "../../../src/health/grpc.ts";
import { checkGrpc } from "../../../src/health/index.ts";
import { createCA, issueCert } from "../../../src/pki/ca.ts";
import { freePort } from "../../support/env.ts";
import { stuckListener } from "./stuck-listener.ts";

/** HealthCheckRequest.service (field 1, string) — enough decoding for a test server. */
function decodeService(buf: Buffer): string {
  if (buf.length === 0) return "";
  if (buf[0] !== 0x0a) throw new Error("unexpected field");
  return buf.subarray(2, 2 + (buf[1] ?? 0)).toString("utf8");
}

interface HealthServer {
  port: number;
  requests: string[];
  status: number;
  server: grpc.Server;
}

async function startHealthServer(creds: grpc.ServerCredentials, withHealth = true): Promise<HealthServer> {
  const server = new grpc.Server();
  const hs: HealthServer = { port: 0, requests: [], status: 1, server };
  const definition: grpc.ServiceDefinition = {
    Check: {
      path: HEALTH_CHECK_METHOD,
      requestStream: false,
      responseStream: false,
      requestSerialize: (b: Buffer) => b,
      requestDeserialize: (b: Buffer) => b,
      responseSerialize: (status: number) => (status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, status])),
      responseDeserialize: (b: Buffer) => b,
    },
  };
  if (withHealth) {
    server.addService(definition, {
      Check: (call: grpc.ServerUnaryCall<Buffer, number>, cb: grpc.sendUnaryData<number>) => {
        hs.requests.push(decodeService(call.request));
        cb(null, hs.status);
      },
    });
  }
  hs.port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", creds, (err, port) => (err ? reject(err) : resolve(port))),
  );
  return hs;
}

let plain: HealthServer;
let secure: HealthServer;
let bare: HealthServer;

beforeAll(async () => {
  const ca = await createCA({ commonName: "health test CA", days: 1 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "svc",
    dnsNames: ["svc.example"],
    ipAddresses: [],
    days: 1,
  });
  plain = await startHealthServer(grpc.ServerCredentials.createInsecure());
  secure = await startHealthServer(
    grpc.ServerCredentials.createSsl(null, [
      { cert_chain: Buffer.from(leaf.chainPem), private_key: Buffer.from(leaf.keyPem) },
    ]),
  );
  bare = await startHealthServer(grpc.ServerCredentials.createInsecure(), false);
});

afterAll(() => {
  for (const s of [plain, secure, bare]) s?.server.forceShutdown();
});

describe("health message encoding", () => {
  test("an empty service name encodes to zero bytes; a name to field 1", () => {
    expect(encodeHealthRequest("")).toHaveLength(0);
    expect([...encodeHealthRequest("ab")]).toEqual([0x0a, 2, 0x61, 0x62]);
    expect(encodeHealthRequest("x".repeat(200)).subarray(0, 3)).toEqual(Buffer.from([0x0a, 0xc8, 0x01]));
  });

  test("status decodes from field 1; absent is UNKNOWN; unknown fields are skipped", () => {
    expect(decodeHealthStatus(new Uint8Array([0x08, 0x01]))).toBe(1);
    expect(decodeHealthStatus(new Uint8Array([]))).toBe(0);
    expect(decodeHealthStatus(new Uint8Array([0x12, 0x01, 0x7a, 0x08, 0x02]))).toBe(2);
  });
});

describe("checkGrpc", () => {
  test("a plaintext server answering SERVING is healthy; the request names no service", async () => {
    plain.status = 1;
    const r = await checkGrpc("127.0.0.1", plain.port, 2000);
    expect(r).toMatchObject({ healthy: true, detail: `grpc 127.0.0.1:${plain.port} SERVING (plaintext)` });
    expect(plain.requests.at(-1)).toBe("");
  });

  test("a TLS server with a certificate from an unknown CA is checked over TLS", async () => {
    secure.status = 1;
    const r = await checkGrpc("127.0.0.1", secure.port, 3000);
    expect(r.detail).toBe(`grpc 127.0.0.1:${secure.port} SERVING (tls)`);
    expect(r.healthy).toBe(true);
  });

  test("NOT_SERVING and UNKNOWN are unhealthy", async () => {
    plain.status = 2;
    expect(await checkGrpc("127.0.0.1", plain.port, 2000)).toMatchObject({
      healthy: false,
      detail: `grpc 127.0.0.1:${plain.port} NOT_SERVING (plaintext)`,
    });
    secure.status = 0;
    expect(await checkGrpc("127.0.0.1", secure.port, 3000)).toMatchObject({
      healthy: false,
      detail: `grpc 127.0.0.1:${secure.port} UNKNOWN (tls)`,
    });
    plain.status = 1;
    secure.status = 1;
  });

  test("a server without the health service is unhealthy (UNIMPLEMENTED, no TLS retry)", async () => {
    const r = await checkGrpc("127.0.0.1", bare.port, 2000);
    expect(r.healthy).toBe(false);
    expect(r.detail).toStartWith(`grpc 127.0.0.1:${bare.port} UNIMPLEMENTED:`);
    expect(r.detail).toEndWith("(plaintext)");
  });

  test("a refused port is unhealthy quickly", async () => {
    const port = await freePort();
    const r = await checkGrpc("127.0.0.1", port, 2000);
    expect(r.healthy).toBe(false);
    expect(r.detail).toContain("UNAVAILABLE");
    expect(r.ms).toBeLessThan(1500);
  });

  test("a port that never answers ends at the timeout", async () => {
    const stuck = await stuckListener();
    try {
      // Fill the zero-length backlog so the check's own SYN goes unanswered.
      const filler = await Bun.connect({ hostname: "127.0.0.1", port: stuck.port, socket: { data() {} } });
      const t0 = performance.now();
      const r = await checkGrpc("127.0.0.1", stuck.port, 400);
      expect(r.healthy).toBe(false);
      expect(r.detail).toContain("DEADLINE_EXCEEDED");
      expect(performance.now() - t0).toBeLessThan(1500);
      filler.end();
    } finally {
      stuck.stop();
    }
  });
});
