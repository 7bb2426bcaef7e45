// grpc-js service definitions built from the protobuf-es descriptors: every McpAgent method's
// path and streaming flags are checked against the .proto source itself (an independent reading
// of the contract), and the wire functions round-trip messages and init shapes.
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { create, toBinary } from "@bufbuild/protobuf";
import {
  ImportServiceDataChunkSchema,
  ListServicesResponseSchema,
  LogLineSchema,
  McpAgent,
  McpMasterService,
} from "../../../src/gen/mcp/v1/mcp_pb.ts";
import { methodWires } from "../../../src/rpc/service.ts";
import { grpcServiceDefinition } from "../../support/grpc-js.ts";

interface ProtoRpc {
  name: string;
  clientStream: boolean;
  serverStream: boolean;
}

/** The rpc lines of one service block in proto/mcp/v1/mcp.proto. */
function protoRpcs(service: string): ProtoRpc[] {
  const text = readFileSync(
    join(import.meta.dir, "..", "..", "..", "proto", "mcp", "v1", "mcp.proto"),
    "utf8",
  );
  const start = text.indexOf(`service ${service} {`);
  expect(start).toBeGreaterThanOrEqual(0);
  const body = text.slice(start, text.indexOf("\n}", start));
  const out: ProtoRpc[] = [];
  for (const m of body.matchAll(
    /rpc\s+(\w+)\s*\(\s*(stream\s+)?[\w.]+\s*\)\s*returns\s*\(\s*(stream\s+)?[\w.]+\s*\)/g,
  )) {
    out.push({ name: m[1]!, clientStream: Boolean(m[2]), serverStream: Boolean(m[3]) });
  }
  return out;
}

describe("grpcServiceDefinition(McpAgent)", () => {
  const rpcs = protoRpcs("McpAgent");
  const def = grpcServiceDefinition(McpAgent) as unknown as Record<
    string,
    { path: string; requestStream: boolean; responseStream: boolean; originalName: string }
  >;

  test("has exactly the methods of the proto", () => {
    expect(rpcs.length).toBeGreaterThanOrEqual(25);
    expect(Object.keys(def).sort()).toEqual(rpcs.map((r) => r.name).sort());
  });

  test("path and streaming flags of every method match the proto", () => {
    for (const r of rpcs) {
      const d = def[r.name]!;
      expect(d.path).toBe(`/mcp.v1.McpAgent/${r.name}`);
      expect({ name: r.name, req: d.requestStream, res: d.responseStream }).toEqual({
        name: r.name,
        req: r.clientStream,
        res: r.serverStream,
      });
      // originalName is the camelCase handler key grpc-js uses to find the implementation.
      expect(d.originalName).toBe(r.name.charAt(0).toLowerCase() + r.name.slice(1));
    }
  });

  test("the streaming methods are the ones the spec names", () => {
    expect(def.Logs).toMatchObject({ requestStream: false, responseStream: true });
    expect(def.ExportServiceData).toMatchObject({ requestStream: false, responseStream: true });
    expect(def.ImportServiceData).toMatchObject({ requestStream: true, responseStream: false });
    expect(def.Deploy).toMatchObject({ requestStream: false, responseStream: false });
  });

  test("McpMasterService paths follow the same rule", () => {
    const m = grpcServiceDefinition(McpMasterService) as unknown as Record<string, { path: string }>;
    const names = protoRpcs("McpMasterService").map((r) => r.name);
    expect(Object.keys(m).sort()).toEqual([...names].sort());
    for (const n of names) expect(m[n]!.path).toBe(`/mcp.v1.McpMasterService/${n}`);
  });
});

describe("methodWires", () => {
  test("are keyed by localName and cached per service", () => {
    const w = methodWires(McpAgent);
    expect(w.get("listServices")?.path).toBe("/mcp.v1.McpAgent/ListServices");
    expect(w.get("ListServices")).toBeUndefined();
    expect(methodWires(McpAgent)).toBe(w);
  });

  test("responses round-trip and init shapes serialize like messages", () => {
    const w = methodWires(McpAgent).get("listServices")!;
    const init = {
      services: [{ name: "web", active: true, components: [{ name: "web", image: "img:v1" }] }],
    };
    const bytes = w.serializeResponse(init);
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(
      bytes.equals(
        Buffer.from(toBinary(ListServicesResponseSchema, create(ListServicesResponseSchema, init))),
      ),
    ).toBe(true);
    const back = w.deserializeResponse(bytes) as {
      services: { name: string; components: { image: string }[] }[];
    };
    expect(back.services[0]!.name).toBe("web");
    expect(back.services[0]!.components[0]!.image).toBe("img:v1");
    // A real message passes through unchanged.
    const msg = create(ListServicesResponseSchema, init);
    expect(w.serializeResponse(msg).equals(bytes)).toBe(true);
  });

  test("streaming wires carry their element types", () => {
    const logs = methodWires(McpAgent).get("logs")!;
    const line = logs.deserializeResponse(logs.serializeResponse({ component: "api", line: "hello" }));
    expect(line).toMatchObject({ $typeName: LogLineSchema.typeName, component: "api", line: "hello" });
    const imp = methodWires(McpAgent).get("importServiceData")!;
    const chunk = imp.deserializeRequest(
      imp.serializeRequest({ serviceName: "svc", data: new Uint8Array([1, 2, 3]) }),
    );
    expect(chunk).toMatchObject({ $typeName: ImportServiceDataChunkSchema.typeName, serviceName: "svc" });
    expect([...(chunk as { data: Uint8Array }).data]).toEqual([1, 2, 3]);
  });

  test("an empty buffer decodes to the default message", () => {
    const w = methodWires(McpAgent).get("nodeStatus")!;
    expect(w.serializeRequest({}).length).toBe(0);
    expect(w.deserializeResponse(Buffer.alloc(0))).toMatchObject({ nodeName: "", serviceCount: 0 });
  });
});
