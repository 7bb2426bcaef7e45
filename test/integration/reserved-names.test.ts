// Issue 16 finding 3: with srv_root = "/srv" (what provision writes) the service name "mcp" is the
// agent's own home (/srv/mcp: its TLS key, config and registry), and "mcp-master" the master's.
// Here the agent's state really lives in <srv_root>/mcp, as on a provisioned node; push, pull,
// import, export (snapshot) and deploy of "mcp"/"mcp-master" are refused with one line, and the
// agent's files are untouched. Real in-process agent, real TLS gRPC, real SQLite.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { defToSpec } from "../../src/component/proto.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { Code } from "../../src/rpc/wire.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

const token = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
]);
let dir = "";
let srv = "";
let agent: RunningAgent;
let client: TypedClient<typeof McpAgent>;
const KEY = "-----BEGIN PRIVATE KEY-----\nthe agent's key\n-----END PRIVATE KEY-----\n";

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-reserved-"));
  srv = join(dir, "srv");
  const pki = await testPki("reserved");
  const settings = await testAgentSettings(dir, pki, {
    nodeName: "reserved",
    validator,
    pullPolicy: "never",
  });
  // The agent's own home is <srv_root>/mcp, as provision lays it out.
  mkdirSync(join(srv, "mcp", "certs"), { recursive: true });
  writeFileSync(join(srv, "mcp", "certs", "key.pem"), KEY, { mode: 0o600 });
  writeFileSync(join(srv, "mcp", "mcp-agent.toml"), "[agent]\n");
  // A second layout: this agent's config lives in <srv_root>/control (not a reserved name).
  mkdirSync(join(srv, "control"), { recursive: true });
  writeFileSync(join(srv, "control", "agent.toml"), "[agent]\n");
  agent = await startAgent({
    ...settings,
    srvRoot: srv,
    dbPath: join(srv, "mcp", "mcp.db"),
    statePaths: [join(srv, "control", "agent.toml")],
  });
  client = await connect(McpAgent, { addresses: [`127.0.0.1:${agent.port}`], caPem: pki.caPem, token });
});

afterAll(async () => {
  client?.close();
  await agent?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const line = (name: string) =>
  `service name "${name}" is reserved: <srv_root>/${name} holds the MCP daemons' own state; choose another name`;

describe("the daemons' homes are not services", () => {
  for (const name of ["mcp", "mcp-master"]) {
    test(`${name}: pull, push, export, import and deploy are refused with one line`, async () => {
      for (const p of [
        client.pullFile({ service: name, path: "certs/key.pem" }),
        client.pushFile({
          service: name,
          path: "mcp-agent.toml",
          content: Buffer.from("x"),
          mode: 0o644,
          create: true,
        }),
        (async () => {
          for await (const _ of client.exportServiceData({ serviceName: name })) {
            // nothing may arrive
          }
        })(),
        client.importServiceData(
          (async function* () {
            yield { serviceName: name, force: true, data: new Uint8Array() };
          })(),
        ),
      ]) {
        const e = await failure(p);
        expect(e.code).toBe(Code.INVALID_ARGUMENT);
        expect(e.details).toBe(line(name));
      }
      const spec = defToSpec({
        name,
        tier: "worker",
        active: true,
        components: [containerComponent("web", "localhost/nothing:v1")],
      });
      const e = await failure(client.deploy({ service: spec }));
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.details).toContain(line(name));
      expect(agent.registry.getService(name)).toBeNull();
    });
  }

  test("the agent's key and config are untouched", () => {
    expect(readFileSync(join(srv, "mcp", "certs", "key.pem"), "utf8")).toBe(KEY);
    expect(readFileSync(join(srv, "mcp", "mcp-agent.toml"), "utf8")).toBe("[agent]\n");
  });
});

describe("a name whose directory holds the agent's state under another name", () => {
  const held = () =>
    `service name "control" is refused: ${join(srv, "control")} holds this agent's own state (${join(srv, "control", "agent.toml")})`;
  test("control: pull, push, export, import, deploy, sync and adopt are refused with one line", async () => {
    const spec = defToSpec({
      name: "control",
      tier: "worker",
      active: true,
      components: [containerComponent("web", "localhost/nothing:v1")],
    });
    const calls: [string, () => Promise<unknown>][] = [
      ["pull", () => client.pullFile({ service: "control", path: "agent.toml" })],
      [
        "push",
        () =>
          client.pushFile({
            service: "control",
            path: "agent.toml",
            content: Buffer.from("x"),
            mode: 0o644,
            create: true,
          }),
      ],
      [
        "export",
        async () => {
          for await (const _ of client.exportServiceData({ serviceName: "control" })) {
            // nothing may arrive
          }
        },
      ],
      [
        "import",
        () =>
          client.importServiceData(
            (async function* () {
              yield { serviceName: "control", force: true, data: new Uint8Array() };
            })(),
          ),
      ],
      ["deploy", () => client.deploy({ service: spec })],
      ["sync", () => client.syncDesiredState({ services: [spec] })],
      ["adopt", () => client.adoptContainer({ service: "control" })],
    ];
    for (const [what, call] of calls) {
      const e = await failure(call());
      expect(`${what}: ${e.code} ${e.details}`).toBe(`${what}: ${Code.INVALID_ARGUMENT} ${held()}`);
    }
    expect(agent.registry.getService("control")).toBeNull();
    expect(readFileSync(join(srv, "control", "agent.toml"), "utf8")).toBe("[agent]\n");
  });
});
