// Undecodable request bytes over real TLS (src/rpc/server.ts + service.ts): the caller is
// authenticated first, then told INVALID_ARGUMENT (audited under its name) — not grpc-js's
// default INTERNAL "Error deserializing request", which blamed the server and skipped auth and
// audit. Covers unary, server-streaming and a client stream whose second message is garbage.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import { generateToken } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningServer, startServer } from "../../src/rpc/server.ts";
import { methodWires, UndecodableRequest } from "../../src/rpc/service.ts";
import { testPki } from "../support/pki.ts";
import { rawCall, rawChannel, rawMethods } from "../support/raw-grpc.ts";
import { scriptedServerOptions } from "../support/scripted-server.ts";

const token = generateToken();
const lines: Record<string, unknown>[] = [];
let server: RunningServer;
let caPem: string;
let imported = 0;

// Field 2 claims 100 bytes and the message ends after one: not a valid message of any type.
const TRUNCATED = Buffer.from([0x12, 100, 0x41]);

beforeAll(async () => {
  const pki = await testPki("decode", { caDays: 1 });
  caPem = pki.caPem;
  server = await startServer(
    scriptedServerOptions("127.0.0.1:0", pki, token, lines, {
      listServices: async () => ({ services: [] }),
      logs: async () => {},
      importServiceData: async (reqs: AsyncIterable<unknown>) => {
        for await (const _ of reqs) imported++;
        return {};
      },
    }),
  );
});

afterAll(async () => {
  await server?.close();
});

const method = (name: string) => rawMethods(McpAgent).find((m) => m.name === name)!;

test("the server's request deserializer returns a marker instead of throwing", () => {
  const w = methodWires(McpAgent).get("listServices")!;
  const bad = w.deserializeRequest(TRUNCATED);
  expect(bad).toBeInstanceOf(UndecodableRequest);
  expect((bad as UndecodableRequest).typeName).toBe("mcp.v1.ListServicesRequest");
  expect(w.deserializeRequest(Buffer.alloc(0))).not.toBeInstanceOf(UndecodableRequest);
});

test("garbage to unary, server-streaming and client-streaming methods → INVALID_ARGUMENT, audited", async () => {
  const ch = rawChannel(`127.0.0.1:${server.port}`, caPem);
  try {
    const unary = await rawCall(ch, method("ListServices"), token, [TRUNCATED], 5000);
    expect(unary.code).toBe(status.INVALID_ARGUMENT);
    expect(unary.details).toStartWith("request is not a valid mcp.v1.ListServicesRequest: ");
    expect(unary.details).not.toContain("\n");
    const audit = lines.filter((l) => l.audit === true).at(-1)!;
    expect(audit).toMatchObject({
      method: "/mcp.v1.McpAgent/ListServices",
      caller: "bob",
      status: "INVALID_ARGUMENT",
    });

    const stream = await rawCall(ch, method("Logs"), token, [TRUNCATED], 5000);
    expect(stream.code).toBe(status.INVALID_ARGUMENT);

    const upload = await rawCall(ch, method("ImportServiceData"), token, [Buffer.alloc(0), TRUNCATED], 5000);
    expect(upload.code).toBe(status.INVALID_ARGUMENT);
    expect(upload.details).toContain("mcp.v1.ImportServiceDataChunk");
    expect(imported).toBe(1); // the valid first chunk reached the handler, the garbage did not

    // Valid bytes still work on the same channel.
    expect((await rawCall(ch, method("ListServices"), token, [Buffer.alloc(0)], 5000)).code).toBe(status.OK);
  } finally {
    ch.close();
  }
});

test("garbage without a token → UNAUTHENTICATED (decoding never bypasses auth)", async () => {
  const ch = rawChannel(`127.0.0.1:${server.port}`, caPem);
  try {
    const r = await rawCall(ch, method("ListServices"), null, [TRUNCATED], 5000);
    expect(r.code).toBe(status.UNAUTHENTICATED);
  } finally {
    ch.close();
  }
});
