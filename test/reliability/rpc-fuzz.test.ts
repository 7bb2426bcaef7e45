// Reliability (issue 10), bad input, RPC half: every method of the agent's gRPC service gets
// malformed request bytes with a VALID token — seeded random bytes (fast-check) and
// structured-but-wrong protobuf (wrong wire types, huge length prefixes, unknown fields, deeply
// nested garbage, truncation, empty). Each call must end in a proper status (INVALID_ARGUMENT,
// NOT_FOUND, …), never UNKNOWN/INTERNAL and never a stack trace in the details; afterwards the
// same agent process still answers a normal status RPC.
// Bounded: 27 methods × 16 payloads (+1 multi-message stream per client-streaming method, +1
// oversized message), 4 methods at a time, 10 s deadline per call; ~10 s on a 2-core box.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { connect } from "../../src/rpc/client.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";
import {
  codeName,
  type RawMethod,
  type RawResult,
  rawCall,
  rawChannel,
  rawMethods,
} from "../support/raw-grpc.ts";
import { recordSuite } from "../support/reliability.ts";

const SEED = Number(process.env.MCP_FUZZ_SEED ?? 20_251_010);
const RANDOM_PER_METHOD = 6;
const CALL_TIMEOUT_MS = 10_000;
const PARALLEL_METHODS = 4;

// A proper answer to a malformed request. DEADLINE_EXCEEDED only for a stream that decoded into
// a valid "follow" request and so legitimately stays open; UNKNOWN and INTERNAL are never proper.
const PROPER = new Set<number>([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.PERMISSION_DENIED,
  status.ALREADY_EXISTS,
  status.OUT_OF_RANGE,
  status.UNIMPLEMENTED,
  status.RESOURCE_EXHAUSTED,
  status.DEADLINE_EXCEEDED,
]);

/** protobuf varint encoding (non-negative, up to 2^53). */
function varint(n: number): number[] {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return out;
}
const tag = (field: number, wire: number) => varint(field * 8 + wire);
const len = (field: number, body: number[]) => [...tag(field, 2), ...varint(body.length), ...body];

function nested(depth: number): number[] {
  let body = [0xff, 0xfe, 0x00, 0x01]; // invalid UTF-8 at the core
  for (let i = 0; i < depth; i++) body = len(1 + (i % 3), body);
  return body;
}

/** Structured-but-wrong protobuf, the same for every method (named for the failure message). */
const STRUCTURED: [string, Buffer][] = [
  ["empty", Buffer.alloc(0)],
  [
    "wrong wire types (varint/fixed32/fixed64 for fields 1-3)",
    Buffer.from([...tag(1, 0), 0x96, 0x01, ...tag(2, 5), 1, 2, 3, 4, ...tag(3, 1), 1, 2, 3, 4, 5, 6, 7, 8]),
  ],
  ["huge length prefix (4 GiB) on field 1", Buffer.from([...tag(1, 2), ...varint(2 ** 32), 0x41, 0x42])],
  ["length prefix past the end on field 2", Buffer.from([...tag(2, 2), 100, 0x41])],
  [
    "unknown fields only",
    Buffer.from([...len(1000, [0x78]), ...tag(999, 0), 0x01, ...tag(536_870_911, 5), 0, 0, 0, 0]),
  ],
  ["deeply nested garbage (200 levels)", Buffer.from(nested(200))],
  ["truncated varint", Buffer.from([...tag(1, 0), 0xff, 0xff])],
  ["unterminated group", Buffer.from([...tag(1, 3), ...tag(2, 0), 0x01])],
  ["field number 0", Buffer.from([0x00, 0x01])],
  [
    "10-byte overlong varint",
    Buffer.from([...tag(1, 0), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
  ],
];

let agent: LocalAgent;

beforeAll(async () => {
  agent = await startLocalAgent({ node: "fuzz" });
}, 60_000);

afterAll(async () => {
  await agent?.stop();
});

interface Failure {
  method: string;
  payload: string;
  result: RawResult;
}

test("every agent RPC answers malformed requests with a proper status and the agent stays up", async () => {
  console.log(`rpc-fuzz: seed ${SEED} (set MCP_FUZZ_SEED to replay)`);
  const methods = rawMethods(McpAgent);
  expect(methods.length).toBeGreaterThanOrEqual(27);
  const random = fc.sample(fc.uint8Array({ minLength: 1, maxLength: 512 }), {
    seed: SEED,
    numRuns: RANDOM_PER_METHOD * methods.length,
  });
  const ch = rawChannel(agent.address, agent.caPem);
  const failures: Failure[] = [];
  const seen = new Map<string, number>();
  let sent = 0;

  const check = (m: RawMethod, payload: string, r: RawResult) => {
    sent++;
    const key = `${m.name} ${codeName(r.code)}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    const stack = /\n\s+at /.test(r.details);
    const deadlineOk = r.code !== status.DEADLINE_EXCEEDED || m.responseStream;
    if (!PROPER.has(r.code) || stack || !deadlineOk) failures.push({ method: m.name, payload, result: r });
  };

  const fuzzMethod = async (m: RawMethod, idx: number) => {
    const cases: [string, Buffer[]][] = STRUCTURED.map(([name, b]) => [name, [b]]);
    for (let i = 0; i < RANDOM_PER_METHOD; i++) {
      const bytes = random[idx * RANDOM_PER_METHOD + i]!;
      cases.push([`random #${i} ${Buffer.from(bytes).toString("hex").slice(0, 40)}`, [Buffer.from(bytes)]]);
    }
    if (m.requestStream) {
      // A well-formed first message followed by garbage: the decode error arrives mid-stream.
      const r0 = random[idx * RANDOM_PER_METHOD]!;
      cases.push([
        "valid empty message, then garbage",
        [Buffer.alloc(0), Buffer.from(r0), Buffer.from([0xff])],
      ]);
    }
    for (const [name, payloads] of cases) {
      check(m, name, await rawCall(ch, m, agent.token, payloads, CALL_TIMEOUT_MS));
    }
  };

  const queue = methods.map((m, i) => [m, i] as const);
  await Promise.all(
    Array.from({ length: PARALLEL_METHODS }, async () => {
      for (let next = queue.shift(); next; next = queue.shift()) await fuzzMethod(next[0], next[1]);
    }),
  );

  // One message over the server's 16 MiB limit: refused by size, not decoded.
  const deploy = methods.find((m) => m.name === "Deploy")!;
  const big = await rawCall(ch, deploy, agent.token, [Buffer.alloc(17 * 1024 * 1024, 0x41)], 30_000);
  check(deploy, "17 MiB message", big);
  // Undecodable bytes must be the caller's fault (INVALID_ARGUMENT), not the server's, and
  // decoding comes after authentication: garbage without a token is UNAUTHENTICATED.
  const truncated = await rawCall(ch, deploy, agent.token, [STRUCTURED[3]![1]], CALL_TIMEOUT_MS);
  const anon = await rawCall(ch, deploy, null, [STRUCTURED[3]![1]], CALL_TIMEOUT_MS);
  ch.close();

  const summary = [...seen.entries()].map(([k, n]) => `${k}×${n}`).join(", ");
  console.log(`rpc-fuzz: ${sent} calls: ${summary}`);
  if (failures.length > 0) {
    for (const f of failures.slice(0, 20))
      console.log(
        `rpc-fuzz FAIL ${f.method} [${f.payload}] → ${codeName(f.result.code)}: ${f.result.details}`,
      );
  }
  expect(failures.map((f) => `${f.method} [${f.payload}] → ${codeName(f.result.code)}`)).toEqual([]);
  expect(codeName(big.code)).toBe("RESOURCE_EXHAUSTED");
  expect(codeName(truncated.code)).toBe("INVALID_ARGUMENT");
  expect(codeName(anon.code)).toBe("UNAUTHENTICATED");

  // The same agent process still serves a normal status RPC and logged no crash.
  const c = await connect(McpAgent, { addresses: [agent.address], caPem: agent.caPem, token: agent.token });
  try {
    const st = await c.nodeStatus({}, { timeoutMs: 10_000 });
    expect(st.nodeName).toBe("fuzz");
    expect(Array.isArray((await c.listServices({}, { timeoutMs: 10_000 })).services)).toBe(true);
  } finally {
    c.close();
  }
  const log = agent.log();
  expect(log.match(/"agent listening"/g)?.length ?? 0).toBe(1); // never restarted
  expect(log).not.toMatch(/uncaught|unhandled/i);

  recordSuite({
    suite: "rpc-fuzz",
    cases: sent,
    faults: sent,
    dataLost: 0,
    detail: `${methods.length} methods, seed ${SEED}, agent stayed up`,
  });
}, 120_000);
