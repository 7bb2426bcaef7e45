// The CLI config's plain check (cli-fast.ts) against its zod schema (cli-schema.ts): whatever the
// plain check accepts, the schema accepts without a warning and returns the same value (same key
// order); and the configs mcp itself writes (init, the SPEC example) take the plain path.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { plainCliConfig } from "../../../src/config/cli-fast.ts";
import { cliSchema } from "../../../src/config/cli-schema.ts";
import { parseWith } from "../../../src/config/load.ts";
import { parseTomlText } from "../../../src/config/toml.ts";
import { SPEC_EXAMPLE } from "./helpers.ts";

type Outcome = { ok: true; value: unknown; warnings: string[] } | { ok: false; error: string };

function bySchema(data: unknown): Outcome {
  const warnings: string[] = [];
  try {
    const value = parseWith(cliSchema, data, "mcp.toml", {
      unknownKeys: "warn",
      onWarn: (w) => warnings.push(w),
    });
    return { ok: true, value, warnings };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  }
}

/** Holds plainCliConfig to the schema for one input; true when the plain check accepted it. */
function agrees(data: unknown): boolean {
  const plain = plainCliConfig(data);
  if (plain === null) return false;
  const schema = bySchema(data);
  expect(schema).toEqual({ ok: true, value: plain, warnings: [] });
  if (schema.ok) expect(JSON.stringify(plain)).toBe(JSON.stringify(schema.value));
  return true;
}

// Values of every kind a TOML file can hold, valid and invalid for each key.
const anyValue = fc.oneof(
  fc.constantFrom(
    "",
    "x",
    "/abs/path",
    "rel/path",
    "~/p",
    "rift",
    "Rift",
    "-bad",
    "a".repeat(63),
    "a".repeat(64),
    "amd64",
    "arm64",
    "x86",
    "10.0.0.5:9444",
    "[fd7a:115c::1]:9444",
    "[nope]:1",
    "host:0",
    "host:70000",
    "noport",
    "-h:1",
    "https://mcias.example.net:8443",
    "http://127.0.0.1:1",
    "ftp://x",
    "https://",
  ),
  fc.integer({ min: -2, max: 70000 }),
  fc.boolean(),
  fc.constant(new Date("2024-01-02T03:04:05Z")),
  fc.constant([]),
  fc.constant(["10.0.0.6:9444"]),
  fc.constant(["bad"]),
  fc.constant({}),
);

const maybe = (keys: string[], value: fc.Arbitrary<unknown>) =>
  fc.record(Object.fromEntries(keys.map((k) => [k, value])), { requiredKeys: [] });

const nodeArb = maybe(["name", "address", "addresses", "ssh", "arch", "bogus"], anyValue);
const configArb = fc.record(
  {
    services: fc.oneof(maybe(["dir", "bogus"], anyValue), anyValue),
    mcias: fc.oneof(
      maybe(["server_url", "ca_cert", "service_name", "insecure_http", "bogus"], anyValue),
      anyValue,
    ),
    auth: fc.oneof(maybe(["token_path", "username", "password_file", "bogus"], anyValue), anyValue),
    tls: fc.oneof(maybe(["ca_cert", "bogus"], anyValue), anyValue),
    master: fc.oneof(maybe(["address", "addresses", "bogus"], anyValue), anyValue),
    nodes: fc.oneof(fc.array(nodeArb, { maxLength: 3 }), anyValue),
    bogus: anyValue,
  },
  { requiredKeys: [] },
);

// Mostly well-formed configs, so the accepted side is exercised as much as the refused one.
const goodNode = fc.record(
  {
    name: fc.constantFrom("rift", "orion", "a-1"),
    address: fc.constantFrom("10.0.0.5:9444", "[fd7a:115c::1]:9444", "rift.example.ts.net:9444"),
    addresses: fc.constantFrom([], ["192.168.88.181:9444"]),
    ssh: fc.constantFrom("rift", "root@10.0.0.5:22"),
    arch: fc.constantFrom("amd64", "arm64"),
  },
  { requiredKeys: ["name", "address"] },
);
const goodConfig = fc.record(
  {
    services: maybe(["dir"], fc.constantFrom("/srv/services", "services")),
    mcias: fc.record(
      {
        server_url: fc.constantFrom("https://mcias.example.net:8443", "http://127.0.0.1:8443"),
        ca_cert: fc.constantFrom("", "/ca.pem"),
        service_name: fc.constantFrom("mcp", "ops"),
        insecure_http: fc.boolean(),
      },
      { requiredKeys: ["server_url"] },
    ),
    auth: maybe(["token_path", "username", "password_file"], fc.constantFrom("token", "/t", "op")),
    tls: maybe(["ca_cert"], fc.constantFrom("", "/ca.pem")),
    master: fc.record(
      { address: fc.constantFrom("rift:9555"), addresses: fc.constantFrom([], ["10.0.0.1:9555"]) },
      { requiredKeys: ["address"] },
    ),
    nodes: fc.array(goodNode, { maxLength: 3 }),
  },
  { requiredKeys: [] },
);

describe("plainCliConfig", () => {
  test("what it accepts, the schema accepts with the same value and no warning (random configs)", () => {
    fc.assert(
      fc.property(configArb, (data) => {
        agrees(data);
      }),
      { numRuns: 3000, seed: 18 },
    );
  });

  test("well-formed configs: same value as the schema, and refused only where the schema refuses", () => {
    let accepted = 0;
    fc.assert(
      fc.property(goodConfig, (data) => {
        if (agrees(data)) accepted++;
        else expect(bySchema(data).ok).toBe(false);
      }),
      { numRuns: 1000, seed: 18 },
    );
    expect(accepted).toBeGreaterThan(500);
  });

  test("the configs mcp writes and the SPEC example take the plain path", () => {
    const written = `# MCP CLI, embedded local mode (written by mcp init --local).
[services]
dir = "/tmp/x/services"

[auth]
token_path = "/tmp/x/token"

[tls]
ca_cert = "/tmp/x/certs/ca.pem"

[[nodes]]
name = "local"
address = "127.0.0.1:46837"
arch = "amd64"
`;
    const spec = SPEC_EXAMPLE;
    for (const text of [written, spec, ""]) expect(agrees(parseTomlText(text, "mcp.toml"))).toBe(true);
  });

  test("unknown keys, duplicate nodes and bad values are left to the schema", () => {
    for (const data of [
      { bogus: 1 },
      { services: { dir: "" } },
      {
        nodes: [
          { name: "a", address: "h:1" },
          { name: "a", address: "h:2" },
        ],
      },
      { nodes: [{ name: "a", address: "h:1", arch: "x86" }] },
      { mcias: { server_url: "http://mcias:1" } },
      { tls: { ca_cert: new Date() } },
      { master: { address: "noport" } },
    ]) {
      expect(plainCliConfig(data)).toBeNull();
      expect(
        bySchema(data).ok === false || (bySchema(data) as { warnings: string[] }).warnings.length > 0,
      ).toBe(true);
    }
  });
});
