// Edge routes on a real in-process agent (real TLS gRPC server, real sqlite) wired to the
// mc-proxy, Metacrypt and MCNS fakes: SetupEdgeRoute resolves the backend through MCNS, checks it
// against [edge] allowed_backend_cidrs, gets a cert for the public name only, registers the L7
// route with backend_tls and records it; ListEdgeRoutes shows it; RemoveEdgeRoute undoes it all
// (twice: idempotent). Each refusal comes back with its gRPC code and one line, before anything
// is provisioned.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { McnsClient } from "../../src/integrations/mcns.ts";
import { McProxyClient } from "../../src/integrations/mcproxy.ts";
import { MetacryptClient } from "../../src/integrations/metacrypt.ts";
import type { Integrations } from "../../src/integrations/types.ts";
import { certInfo } from "../../src/pki/ca.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { CallError, connect, type TypedClient } from "../../src/rpc/client.ts";
import { type FakeMcns, startFakeMcns } from "../fakes/mcns.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";
import { type FakeMetacrypt, startFakeMetacrypt } from "../fakes/metacrypt.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";

const ZONE = "svc.mcp.metacircular.net";
const token = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
]);
let proxy: FakeMcProxy;
let metacrypt: FakeMetacrypt;
let mcns: FakeMcns;
let dir = "";
let caPem = "";
let pki: { certPem: string; keyPem: string };
const agents: RunningAgent[] = [];
const clients: TypedClient<typeof McpAgent>[] = [];

async function agentWith(
  name: string,
  integrations: Integrations,
): Promise<{ agent: RunningAgent; client: TypedClient<typeof McpAgent> }> {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const agent = await startAgent(
    await testAgentSettings(sub, pki, {
      nodeName: name,
      validator,
      pullPolicy: "never",
      integrations,
      edge: { allowedBackendCidrs: ["127.0.0.0/8"], listener: 443 },
    }),
  );
  agents.push(agent);
  const client = await connect(McpAgent, {
    addresses: [`127.0.0.1:${agent.port}`],
    caPem,
    token,
    defaultTimeoutMs: 15_000,
  });
  clients.push(client);
  return { agent, client };
}

async function codeOf(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CallError) return { code: err.code, message: err.details };
    throw err;
  }
  throw new Error("expected the call to fail");
}

const dnsClient = () =>
  new McnsClient({ serverUrl: mcns.url, caCertPath: mcns.caCertPath, zone: ZONE, token: "dns" });
const full = (certDir: string): Integrations => ({
  proxy: new McProxyClient(proxy.socket),
  certs: new MetacryptClient({
    serverUrl: metacrypt.url,
    caCertPath: metacrypt.caCertPath,
    token: "mc",
    certDir,
  }),
  dns: dnsClient(),
});

beforeAll(async () => {
  [proxy, metacrypt, mcns] = await Promise.all([
    startFakeMcProxy(),
    startFakeMetacrypt({ tokens: ["mc"] }),
    startFakeMcns({ tokens: ["dns"], zone: ZONE }),
  ]);
  dir = mkdtempSync(join(tmpdir(), "mcp-edge-test-"));
  const { caPem: ca, leaf } = await testPki("edge", { commonName: "edge-agent", days: 2 });
  caPem = ca;
  pki = { certPem: leaf.chainPem, keyPem: leaf.keyPem };
  const d = dnsClient();
  await d.upsertA("shop", "127.0.0.1");
  await d.upsertA("outside", "10.1.2.3");
});

afterAll(async () => {
  for (const c of clients) c.close();
  for (const a of agents) await a.close();
  await Promise.all([proxy?.stop(), metacrypt?.stop(), mcns?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("edge routes on the edge agent", () => {
  test("setup → L7 route with backend_tls on 443, public-only cert, listed with serial/expiry; remove undoes all", async () => {
    const certDir = join(dir, "certs-full");
    const { agent, client } = await agentWith("edge", full(certDir));
    const issuedBefore = metacrypt.issueCalls();
    await client.setupEdgeRoute({
      hostname: "shop.metacircular.net",
      backendHostname: `shop.${ZONE}`,
      backendPort: 8443,
      backendTls: true,
    });
    const route = proxy.routes().find((r) => r.hostname === "shop.metacircular.net");
    expect(route).toEqual({
      listener: 443,
      hostname: "shop.metacircular.net",
      backend: "127.0.0.1:8443",
      mode: "l7",
      tlsCert: join(certDir, "shop.metacircular.net.pem"),
      tlsKey: join(certDir, "shop.metacircular.net.key"),
      backendTls: true,
    });
    expect(metacrypt.issueCalls()).toBe(issuedBefore + 1);
    const cert = certInfo(readFileSync(route!.tlsCert, "utf8"));
    // The public name only: internal names never appear on edge certs.
    expect(cert.dnsNames).toEqual(["shop.metacircular.net"]);
    expect(existsSync(route!.tlsKey)).toBe(true);

    const listed = await client.listEdgeRoutes({});
    expect(listed.routes).toHaveLength(1);
    const r = listed.routes[0]!;
    expect([r.hostname, r.backendHostname, r.backendPort]).toEqual([
      "shop.metacircular.net",
      `shop.${ZONE}`,
      8443,
    ]);
    expect(r.certSerial).toBe(cert.serial);
    expect(new Date(r.certExpires).getTime()).toBe(cert.notAfter.getTime());

    // Setting it up again is an upsert: one route, the cert reused (no second issuance).
    await client.setupEdgeRoute({
      hostname: "shop.metacircular.net",
      backendHostname: `shop.${ZONE}`,
      backendPort: 8443,
      backendTls: true,
    });
    expect(proxy.routes().filter((x) => x.hostname === "shop.metacircular.net")).toHaveLength(1);
    expect(metacrypt.issueCalls()).toBe(issuedBefore + 1);
    expect(agent.registry.listEdgeRoutes()).toHaveLength(1);

    await client.removeEdgeRoute({ hostname: "shop.metacircular.net" });
    expect(proxy.routes().filter((x) => x.hostname === "shop.metacircular.net")).toEqual([]);
    expect(existsSync(route!.tlsCert)).toBe(false);
    expect(existsSync(route!.tlsKey)).toBe(false);
    expect((await client.listEdgeRoutes({})).routes).toEqual([]);
    // Idempotent.
    await client.removeEdgeRoute({ hostname: "shop.metacircular.net" });
    expect((await client.listEdgeRoutes({})).routes).toEqual([]);
  });

  test("refusals: backend_tls false, backend outside the zone, backend outside the allowed ranges", async () => {
    const { client } = await agentWith("edge-refuse", full(join(dir, "certs-refuse")));
    const routesBefore = proxy.routes().length;
    const issuedBefore = metacrypt.issueCalls();
    const base = {
      hostname: "shop.metacircular.net",
      backendHostname: `shop.${ZONE}`,
      backendPort: 8443,
      backendTls: true,
    };

    const noTls = await codeOf(client.setupEdgeRoute({ ...base, backendTls: false }));
    expect(noTls.code).toBe(status.INVALID_ARGUMENT);
    expect(noTls.message).toContain("backend_tls must be true");

    const foreign = await codeOf(client.setupEdgeRoute({ ...base, backendHostname: "shop.example.com" }));
    expect(foreign.code).toBe(status.INVALID_ARGUMENT);
    expect(foreign.message).toContain(`must be a name under .${ZONE}`);

    const lookalike = await codeOf(client.setupEdgeRoute({ ...base, backendHostname: `shop.evil${ZONE}` }));
    expect(lookalike.code).toBe(status.INVALID_ARGUMENT);

    const internalPublic = await codeOf(client.setupEdgeRoute({ ...base, hostname: `shop.${ZONE}` }));
    expect(internalPublic.code).toBe(status.INVALID_ARGUMENT);
    expect(internalPublic.message).toContain("internal zone");

    const outside = await codeOf(client.setupEdgeRoute({ ...base, backendHostname: `outside.${ZONE}` }));
    expect(outside.code).toBe(status.FAILED_PRECONDITION);
    expect(outside.message).toContain("10.1.2.3, outside the allowed backend ranges (127.0.0.0/8)");

    for (const m of [noTls, foreign, outside]) expect(m.message).not.toContain("\n");
    expect(proxy.routes()).toHaveLength(routesBefore);
    expect(metacrypt.issueCalls()).toBe(issuedBefore);
    expect((await client.listEdgeRoutes({})).routes).toEqual([]);
  });

  test("without Metacrypt the edge node refuses with FAILED_PRECONDITION", async () => {
    const { client } = await agentWith("edge-nocerts", {
      proxy: new McProxyClient(proxy.socket),
      dns: dnsClient(),
    });
    const res = await codeOf(
      client.setupEdgeRoute({
        hostname: "shop.metacircular.net",
        backendHostname: `shop.${ZONE}`,
        backendPort: 8443,
        backendTls: true,
      }),
    );
    expect(res.code).toBe(status.FAILED_PRECONDITION);
    expect(res.message).toBe("metacrypt is not configured on edge node");
    expect(proxy.routes().filter((x) => x.hostname === "shop.metacircular.net")).toEqual([]);
  });
});
