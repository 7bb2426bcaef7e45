// Issue 16 finding 2: one node's identity must not operate any other node, and the master's
// credential must not be replayable. Two real agents with a [master] (real TLS gRPC, real SQLite),
// each knowing the other's agent-<node> account and the name mcp-master as token accounts, as a
// fleet's MCIAS does; the master's caller presents a real fleet-CA client certificate.
// On the code before the fix: agent-a's token ran SyncDesiredState + StartService on node b (a
// deploy in two calls, with /etc mounted), and the mcp-master bearer token every agent received
// was accepted by every other agent as the master.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { loadMasterConfig } from "../../src/config/master.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { createCA, issueCert, issueMasterClientCert, masterClientCertProblem } from "../../src/pki/ca.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { initLocal } from "../../src/roles/cli/init.ts";
import { type ClientCert, connect, type TypedClient } from "../../src/rpc/client.ts";
import { Code } from "../../src/rpc/wire.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type TestPki, testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

const tokens = { operator: generateToken(), a: generateToken(), b: generateToken(), master: generateToken() };
const validator = new LocalTokenValidator([
  { name: "kyle", role: "admin", accountType: "human", sha256: hashToken(tokens.operator) },
  { name: "agent-a", role: "admin", accountType: "system", sha256: hashToken(tokens.a) },
  { name: "agent-b", role: "admin", accountType: "system", sha256: hashToken(tokens.b) },
  { name: "mcp-master", role: "admin", accountType: "system", sha256: hashToken(tokens.master) },
]);
let dir = "";
let pki: TestPki;
let image = "";
const agents: Record<string, RunningAgent> = {};
const clients: TypedClient<typeof McpAgent>[] = [];

async function agentOn(node: string): Promise<RunningAgent> {
  const closed = await freePort(); // no master listens: the link retries slowly, the policy is what counts
  const a = await startAgent(
    await testAgentSettings(join(dir, node), pki, {
      nodeName: node,
      validator,
      pullPolicy: "never",
      master: {
        address: `127.0.0.1:${closed}`,
        role: "worker",
        heartbeatMs: 60_000,
        caPem: pki.caPem,
        token: node === "a" ? tokens.a : tokens.b,
        backoffBaseMs: 60_000,
        backoffMaxMs: 60_000,
      },
    }),
  );
  agents[node] = a;
  return a;
}

async function client(
  node: string,
  cred: { token?: string; clientCert?: ClientCert; caPem?: string },
): Promise<TypedClient<typeof McpAgent>> {
  const c = await connect(McpAgent, {
    addresses: [`127.0.0.1:${agents[node]!.port}`],
    caPem: cred.caPem ?? pki.caPem,
    ...(cred.token ? { token: cred.token } : {}),
    ...(cred.clientCert ? { clientCert: cred.clientCert } : {}),
    defaultTimeoutMs: 15_000,
  });
  clients.push(c);
  return c;
}

/** The service agent-a tried to run on node b: the host's /etc mounted into a container. */
function etcReader(name: string) {
  return {
    name,
    active: true,
    components: [{ name: "x", image, volumes: ["/etc:/host-etc:ro"], command: ["cat", "/host-etc/shadow"] }],
  };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-master-identity-"));
  pki = await testPki("master identity", { commonName: "mcp-agent" });
  image = await busyboxImage();
  await agentOn("a");
  await agentOn("b");
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const a of Object.values(agents)) await a.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("a node's identity operates no other node", () => {
  test("agent-a on node b: SyncDesiredState then StartService (a deploy in two calls) → PERMISSION_DENIED, nothing recorded", async () => {
    const asA = await client("b", { token: tokens.a });
    const sync = await failure(asA.syncDesiredState({ services: [etcReader("pwn")] }));
    expect(sync.code).toBe(Code.PERMISSION_DENIED);
    expect(sync.details).toContain("reserved for the master");
    const start = await failure(asA.startService({ name: "pwn" }));
    expect(start.code).toBe(Code.PERMISSION_DENIED);
    expect(start.details).toContain("agent-a is a node's identity; nodes may not operate");
    expect(agents.b!.registry.getService("pwn")).toBeNull();
  });

  test("agent-a on node b: every other state-changing RPC → PERMISSION_DENIED", async () => {
    const asA = await client("b", { token: tokens.a });
    const calls: [string, Promise<unknown>][] = [
      ["Deploy", asA.deploy({ service: etcReader("pwn") })],
      ["StopService", asA.stopService({ name: "pwn" })],
      ["RestartService", asA.restartService({ name: "pwn" })],
      ["Rollback", asA.rollback({ service: "pwn" })],
      ["AdoptContainer", asA.adoptContainer({ service: "pwn" })],
      ["UndeployService", asA.undeployService({ name: "pwn" })],
      ["Recover", asA.recover({})],
      ["PushFile", asA.pushFile({ service: "pwn", path: "x", content: new Uint8Array([1]) })],
      ["AddProxyRoute", asA.addProxyRoute({})],
      ["SetupEdgeRoute", asA.setupEdgeRoute({ hostname: "a.example" })],
    ];
    for (const [name, p] of calls) {
      const e = await failure(p);
      expect(`${name}: ${e.code}`).toBe(`${name}: ${Code.PERMISSION_DENIED}`);
    }
    expect(agents.b!.registry.listServices().map((s) => s.name)).not.toContain("pwn");
  });

  test("a node's own account is refused on its own agent too", async () => {
    const e = await failure((await client("a", { token: tokens.a })).listServices({}));
    expect(e.code).toBe(Code.PERMISSION_DENIED);
  });
});

describe("the master's credential cannot be replayed", () => {
  test("the name mcp-master by bearer token (what a node could have received) → PERMISSION_DENIED everywhere", async () => {
    const asToken = await client("b", { token: tokens.master });
    for (const p of [
      asToken.syncDesiredState({ services: [etcReader("pwn2")] }),
      asToken.deploy({ service: etcReader("pwn2") }),
      asToken.listServices({}),
    ]) {
      const e = await failure(p);
      expect(e.code).toBe(Code.PERMISSION_DENIED);
    }
    const e = await failure(asToken.healthCheck({}));
    expect(e.details).toContain("reserved for the master");
    expect(agents.b!.registry.getService("pwn2")).toBeNull();
  });

  test("the master's client certificate is accepted for the master's RPCs, and only for those", async () => {
    const asMaster = await client("b", { clientCert: pki.masterClient });
    expect((await asMaster.listEdgeRoutes({})).routes).toEqual([]);
    await asMaster.healthCheck({});
    const e = await failure(asMaster.pushFile({ service: "x", path: "y", content: new Uint8Array([1]) }));
    expect(e.code).toBe(Code.PERMISSION_DENIED);
    expect(e.details).toContain("mcp-master may call only the master's RPCs");
  });

  test("node a's own TLS certificate and key (fleet CA, serverAuth) presented to node b as a client certificate → UNAUTHENTICATED", async () => {
    const asNodeCert = await client("b", { clientCert: { certPem: pki.certPem, keyPem: pki.keyPem } });
    const e = await failure(asNodeCert.listEdgeRoutes({}));
    expect(e.code).toBe(Code.UNAUTHENTICATED);
    expect(e.details).toContain("client certificate refused");
  });

  test("a node's certificate issued by the fleet CA with CN mcp-master but no clientAuth → UNAUTHENTICATED", async () => {
    const fake = await issueCert({
      caCertPem: pki.ca.certPem,
      caKeyPem: pki.ca.keyPem,
      commonName: "mcp-master",
      dnsNames: ["mcp-master"],
      ipAddresses: [],
      days: 1,
    });
    const e = await failure(
      (await client("b", { clientCert: { certPem: fake.certPem, keyPem: fake.keyPem } })).healthCheck({}),
    );
    expect(e.code).toBe(Code.UNAUTHENTICATED);
  });

  test("a client certificate CN mcp-master from another CA → UNAUTHENTICATED, even with a valid token beside it", async () => {
    const other = await createCA({ commonName: "rogue CA", days: 1 });
    const forged = await issueMasterClientCert(other, 1);
    const c = await client("b", {
      clientCert: { certPem: forged.certPem, keyPem: forged.keyPem },
      token: tokens.operator,
    });
    const e = await failure(c.healthCheck({}));
    expect(e.code).toBe(Code.UNAUTHENTICATED);
    expect(e.details).toContain("client certificate refused");
  });
});

describe("issuing and configuring the master's certificate", () => {
  test("mcp init --local writes a master client certificate agents accept, key 0600", async () => {
    const res = await initLocal({
      dir: join(dir, "init"),
      node: "local",
      listen: "127.0.0.1:9444",
      runtimeArgs: [],
      force: false,
    });
    const pair = {
      certPem: readFileSync(res.masterClientCert, "utf8"),
      keyPem: readFileSync(res.masterClientKey, "utf8"),
    };
    const ca = readFileSync(join(dir, "init", "certs", "ca.pem"), "utf8");
    expect(masterClientCertProblem(pair, ca)).toBeNull();
    expect(statSync(res.masterClientKey).mode & 0o777).toBe(0o600);
    // A server certificate is not a master certificate.
    const agentPair = {
      certPem: readFileSync(join(dir, "init", "certs", "agent.pem"), "utf8"),
      keyPem: readFileSync(join(dir, "init", "certs", "agent.key"), "utf8"),
    };
    expect(masterClientCertProblem(agentPair, ca)).toContain("CN");
  });

  test("a master config with [master] token_path is refused with one line naming the key", () => {
    const file = join(dir, "mcp-master.toml");
    writeFileSync(
      file,
      `[server]\ngrpc_addr = "127.0.0.1:9555"\ntls_cert = "c.pem"\ntls_key = "c.key"\n[auth]\nmode = "local"\n[[auth.tokens]]\nname = "k"\nrole = "admin"\nsha256 = "${hashToken("x")}"\n[master]\ntoken_path = "t"\n`,
    );
    let err: Error | null = null;
    try {
      loadMasterConfig(file);
    } catch (e) {
      err = e as Error;
    }
    expect(err?.message).toContain("master.token_path");
    expect(err?.message).toContain("replay");
    expect(err?.message.split("\n").length).toBe(1);
  });

  test("[auth] operators may not list a node's identity or the master", () => {
    const file = join(dir, "mcp-master-ops.toml");
    writeFileSync(
      file,
      `[server]\ngrpc_addr = "127.0.0.1:9555"\ntls_cert = "c.pem"\ntls_key = "c.key"\n[auth]\nmode = "local"\noperators = ["agent-rift"]\n[[auth.tokens]]\nname = "k"\nrole = "admin"\nsha256 = "${hashToken("x")}"\n`,
    );
    expect(() => loadMasterConfig(file)).toThrow("agent-rift is a node's identity");
  });
});
