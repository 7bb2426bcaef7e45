// Issue 5 acceptance ("What must be shown") through the COMPILED binary, real podman and the four
// fakes as real servers (mc-proxy over its unix socket, Metacrypt/MCNS/MCIAS over HTTPS): the
// agent validates callers with MCIAS and wires a two-route service into the platform — $PORT and
// $PORT_GRPC equal to the published host ports, both routes at mc-proxy with backends
// <node address>:<host port>, the L7 cert (full chain, hostname SAN, key) from Metacrypt, the A
// record in MCNS, HTTP answering. Redeploy keeps ports and cert; stop withdraws routes and DNS,
// start brings them back; undeploy removes everything; re-running stop/undeploy changes nothing.
// Then: a cert with 20 days left is reissued, a Metacrypt 403 fails a deploy with nothing started,
// MCIAS token checks and the 30 s validation cache, and an agent without any integration section
// deploys as before and says once per integration that it is not configured.
//
// The tests run in file order: each step starts from the state the previous one left.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { certInfo, createCA, issueCert } from "../../src/pki/ca.ts";
import { type CallError, connect } from "../../src/rpc/client.ts";
import { type FakeMcias, startFakeMcias } from "../fakes/mcias.ts";
import { type FakeMcns, startFakeMcns } from "../fakes/mcns.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";
import { type FakeMetacrypt, startFakeMetacrypt } from "../fakes/metacrypt.ts";
import { busyboxImage, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const ZONE = "svc.mcp.metacircular.net";
const SVC = `wire-${rand()}`; // the two-route service
const RENEW = `renew-${rand()}`; // pre-placed cert with 20 days left
const DENIED = `denied-${rand()}`; // Metacrypt answers 403
const PLAIN = `plain-${rand()}`; // deployed on the agent without integrations
const HOST = `${SVC}.${ZONE}`;
const CONTAINERS = [`${SVC}-web`, `${RENEW}-web`, `${DENIED}-web`, `${PLAIN}-web`];
const MC_TOKEN = `mc-${rand()}${rand()}`;
const DNS_TOKEN = `dns-${rand()}${rand()}`;

let mcias: FakeMcias;
let metacrypt: FakeMetacrypt;
let mcns: FakeMcns;
let proxy: FakeMcProxy;
let agent: LocalAgent; // with every integration, MCIAS auth
let plain: LocalAgent; // no integration section at all
let image = "";
let certDir = "";
// Where each agent's log of its last (re)start begins: "said once" is per agent start.
const logFrom = { agent: 0, plain: 0 };
let userToken = "";
const timings: Record<string, number> = {};

/** The container's env as a map (podman inspect). */
async function containerEnv(name: string): Promise<Map<string, string>> {
  const r = await podman("inspect", "--format", "{{json .Config.Env}}", name);
  expect(r.code).toBe(0);
  const env = new Map<string, string>();
  for (const e of JSON.parse(r.stdout) as string[])
    env.set(e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1));
  return env;
}

/** Host ports podman publishes for the container: "<container port>/tcp" → "<ip>:<host port>". */
async function published(name: string): Promise<Map<string, string>> {
  const r = await podman("port", name);
  expect(r.code).toBe(0);
  const out = new Map<string, string>();
  for (const line of r.stdout.split("\n").filter(Boolean)) {
    const [k, v] = line.split(" -> ");
    out.set(k!.trim(), v!.trim());
  }
  return out;
}

async function httpGet(port: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 60; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      last = err;
      await Bun.sleep(50);
    }
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${port}: ${String(last)}`);
}

function serviceToml(name: string, routes: string): string {
  return `name = "${name}"
node = "local"

[[components]]
name = "web"
image = "${image}"
restart = "no"
${routes}`;
}

const TWO_ROUTES = `
[[components.routes]]
name = "grpc"
port = 9443
mode = "l4"

[[components.routes]]
port = 443
mode = "l7"
`;

/** Runs the CLI against the integrated agent as an MCIAS user. */
function mcp(args: string[]) {
  return agent.mcp(args, { env: { MCP_TOKEN: userToken } });
}

async function mcpOk(args: string[]): Promise<string> {
  const r = await mcp(args);
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface DeployJson {
  results: {
    component: string;
    success: boolean;
    error?: string;
    steps: { step: string; ms: number; detail?: string }[];
  }[];
}

async function deployJson(a: LocalAgent, svc: string, env: Record<string, string> = {}) {
  const t0 = performance.now();
  const r = await a.mcp(["deploy", svc, "--json"], { env });
  const ms = performance.now() - t0;
  return { ...r, ms, json: r.stdout ? (JSON.parse(r.stdout) as DeployJson) : undefined };
}

/** Time the deploy spent in the cert, route and dns steps. */
const integrationMs = (j: DeployJson) =>
  j.results
    .flatMap((r) => r.steps)
    .filter((s) => ["cert", "route", "dns"].includes(s.step))
    .reduce((a, s) => a + s.ms, 0);

const routesOf = (host: string) => proxy.routes().filter((r) => r.hostname === host);
const aRecords = (name: string) => mcns.records().filter((r) => r.name === name && r.type === "A");
const splitPem = (pem: string) =>
  pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];

beforeAll(async () => {
  const [m, mc, dns, px, img] = await Promise.all([
    startFakeMcias({
      users: [
        { username: "alice", password: "alice-pw", roles: ["user"], accountType: "human" },
        { username: "gus", password: "gus-pw", roles: ["guest"], accountType: "human" },
      ],
    }),
    startFakeMetacrypt({ tokens: [MC_TOKEN] }),
    startFakeMcns({ tokens: [DNS_TOKEN], zone: ZONE }),
    startFakeMcProxy(),
    busyboxImage("v1.0.0"),
  ]);
  mcias = m;
  metacrypt = mc;
  mcns = dns;
  proxy = px;
  image = img;
  userToken = mcias.issueToken("alice");
  [agent, plain] = await Promise.all([startLocalAgent(), startLocalAgent()]);

  // The integrated agent: MCIAS auth and every platform section, pointing at the fakes.
  await agent.stopAgent();
  certDir = join(agent.dir, "mc-proxy-certs");
  mkdirSync(certDir, { recursive: true });
  const mcTokenFile = join(agent.dir, "metacrypt.token");
  const dnsTokenFile = join(agent.dir, "mcns.token");
  writeFileSync(mcTokenFile, `${MC_TOKEN}\n`, { mode: 0o600 });
  writeFileSync(dnsTokenFile, `${DNS_TOKEN}\n`, { mode: 0o600 });
  const base = readFileSync(agent.agentConfig, "utf8")
    .replace('mode = "local"', 'mode = "mcias"')
    .replace('container_runtime = "podman"', 'container_runtime = "podman"\npull = "never"');
  writeFileSync(
    agent.agentConfig,
    `${base}
[mcias]
server_url = ${JSON.stringify(mcias.url)}
ca_cert = ${JSON.stringify(mcias.caCertPath)}
service_name = "mcp-agent"

[mcproxy]
socket = ${JSON.stringify(proxy.socket)}
cert_dir = ${JSON.stringify(certDir)}

[metacrypt]
server_url = ${JSON.stringify(metacrypt.url)}
ca_cert = ${JSON.stringify(metacrypt.caCertPath)}
token_path = ${JSON.stringify(mcTokenFile)}

[mcns]
server_url = ${JSON.stringify(mcns.url)}
ca_cert = ${JSON.stringify(mcns.caCertPath)}
zone = "${ZONE}"
token_path = ${JSON.stringify(dnsTokenFile)}
`,
  );
  logFrom.agent = agent.log().length;
  await agent.startAgent();

  // The plain agent keeps local tokens and has no integration section at all.
  await plain.stopAgent();
  writeFileSync(
    plain.agentConfig,
    readFileSync(plain.agentConfig, "utf8").replace(
      'container_runtime = "podman"',
      'container_runtime = "podman"\npull = "never"',
    ),
  );
  logFrom.plain = plain.log().length;
  await plain.startAgent();

  writeFileSync(join(agent.servicesDir, `${SVC}.toml`), serviceToml(SVC, TWO_ROUTES));
  writeFileSync(join(plain.servicesDir, `${PLAIN}.toml`), serviceToml(PLAIN, TWO_ROUTES));
}, 120_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  await Promise.all([agent?.stop(), plain?.stop()]);
  await Promise.all([mcias?.stop(), metacrypt?.stop(), mcns?.stop(), proxy?.stop()]);
  if (Object.keys(timings).length > 0) console.log("deploy timings (ms):", JSON.stringify(timings));
});

describe("deploy wires a two-route service into the platform", () => {
  const hostPorts = { port: 0, grpc: 0 };

  test("PORT/PORT_GRPC = published host ports; routes, full-chain cert, A record; HTTP answers", async () => {
    const r = await deployJson(agent, SVC, { MCP_TOKEN: userToken });
    timings.withIntegrations = Math.round(r.ms);
    timings.integrationStepsFirstDeploy = integrationMs(r.json!);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const res = r.json!.results[0]!;
    expect(res.success).toBe(true);
    // cert before the container steps, route and dns after them
    const steps = res.steps.map((s) => s.step);
    expect(steps.indexOf("cert")).toBeLessThan(steps.indexOf("run"));
    expect(steps.indexOf("route")).toBeGreaterThan(steps.indexOf("run"));
    expect(steps).toContain("dns");
    expect(res.steps.find((s) => s.step === "cert")?.detail).toBe(`${HOST} issued`);

    const env = await containerEnv(`${SVC}-web`);
    hostPorts.port = Number(env.get("PORT"));
    hostPorts.grpc = Number(env.get("PORT_GRPC"));
    expect(hostPorts.port).toBeGreaterThanOrEqual(10000);
    expect(hostPorts.grpc).toBeGreaterThanOrEqual(10000);
    expect(hostPorts.port).not.toBe(hostPorts.grpc);
    const pub = await published(`${SVC}-web`);
    expect(pub.get(`${hostPorts.port}/tcp`)).toBe(`127.0.0.1:${hostPorts.port}`);
    expect(pub.get(`${hostPorts.grpc}/tcp`)).toBe(`127.0.0.1:${hostPorts.grpc}`);

    expect(routesOf(HOST)).toEqual([
      {
        listener: 443,
        hostname: HOST,
        backend: `127.0.0.1:${hostPorts.port}`,
        mode: "l7",
        tlsCert: join(certDir, `${HOST}.pem`),
        tlsKey: join(certDir, `${HOST}.key`),
        backendTls: false,
      },
      {
        listener: 9443,
        hostname: HOST,
        backend: `127.0.0.1:${hostPorts.grpc}`,
        mode: "l4",
        tlsCert: "",
        tlsKey: "",
        backendTls: false,
      },
    ]);

    const pem = readFileSync(join(certDir, `${HOST}.pem`), "utf8");
    const chain = splitPem(pem);
    expect(chain.length).toBeGreaterThanOrEqual(2);
    expect(chain.slice(1)).toContain(metacrypt.intermediatePem.trim());
    const leaf = certInfo(chain[0]!);
    expect(leaf.dnsNames).toContain(HOST);
    expect(leaf.notAfter.getTime() - Date.now()).toBeGreaterThan(80 * 86_400_000);
    expect(statSync(join(certDir, `${HOST}.key`)).mode & 0o777).toBe(0o600);
    expect(readFileSync(join(certDir, `${HOST}.key`), "utf8")).toContain("PRIVATE KEY");
    expect(metacrypt.issueCalls()).toBe(1);

    expect(aRecords(SVC).map((x) => x.value)).toEqual(["127.0.0.1"]);

    const http = await httpGet(hostPorts.port);
    expect(http.status).toBe(200);
    expect(http.body).toBe("hello from mcp\n");
  }, 60_000);

  test("redeploy keeps the host ports and reuses the certificate", async () => {
    const r = await deployJson(agent, SVC, { MCP_TOKEN: userToken });
    timings.redeployWithIntegrations = Math.round(r.ms);
    timings.integrationStepsRedeploy = integrationMs(r.json!);
    expect(r.code).toBe(0);
    expect(r.json!.results[0]!.steps.find((s) => s.step === "cert")?.detail).toBe(`${HOST} reused`);
    const env = await containerEnv(`${SVC}-web`);
    expect(Number(env.get("PORT"))).toBe(hostPorts.port);
    expect(Number(env.get("PORT_GRPC"))).toBe(hostPorts.grpc);
    expect(metacrypt.issueCalls()).toBe(1);
    expect(routesOf(HOST).map((x) => x.backend)).toEqual([
      `127.0.0.1:${hostPorts.port}`,
      `127.0.0.1:${hostPorts.grpc}`,
    ]);
    expect(aRecords(SVC)).toHaveLength(1);
    expect((await httpGet(hostPorts.port)).status).toBe(200);
  }, 60_000);

  test("stop removes routes and DNS; stopping again changes nothing", async () => {
    await mcpOk(["stop", SVC]);
    expect(routesOf(HOST)).toEqual([]);
    expect(aRecords(SVC)).toEqual([]);
    expect(existsSync(join(certDir, `${HOST}.pem`))).toBe(true); // certs stay until undeploy
    const writes = mcns.writeCalls();
    const proxyCalls = proxy.calls().filter((c) => c.method === "AddRoute").length;
    const again = await mcp(["stop", SVC]);
    expect(again.code).toBe(0);
    expect(routesOf(HOST)).toEqual([]);
    expect(aRecords(SVC)).toEqual([]);
    expect(mcns.writeCalls()).toBe(writes);
    expect(proxy.calls().filter((c) => c.method === "AddRoute").length).toBe(proxyCalls);
  }, 60_000);

  test("start restores routes and DNS on the same host ports", async () => {
    await mcpOk(["start", SVC]);
    expect(routesOf(HOST).map((x) => x.backend)).toEqual([
      `127.0.0.1:${hostPorts.port}`,
      `127.0.0.1:${hostPorts.grpc}`,
    ]);
    expect(aRecords(SVC).map((x) => x.value)).toEqual(["127.0.0.1"]);
    expect(metacrypt.issueCalls()).toBe(1);
    expect((await httpGet(hostPorts.port)).status).toBe(200);
  }, 60_000);

  test("undeploy removes container, routes, DNS and cert files; undeploying again is a no-op", async () => {
    await mcpOk(["undeploy", SVC]);
    expect((await podman("inspect", `${SVC}-web`)).code).not.toBe(0);
    expect(routesOf(HOST)).toEqual([]);
    expect(aRecords(SVC)).toEqual([]);
    expect(existsSync(join(certDir, `${HOST}.pem`))).toBe(false);
    expect(existsSync(join(certDir, `${HOST}.key`))).toBe(false);
    const list = JSON.parse(await mcpOk(["list", "--json"]));
    expect(JSON.stringify(list)).not.toContain(SVC);
    const writes = mcns.writeCalls();
    const calls = proxy.calls().length;
    const again = await mcp(["undeploy", SVC]);
    expect(again.code).toBe(0);
    expect(mcns.writeCalls()).toBe(writes);
    expect(proxy.calls().filter((c, i) => i >= calls && c.method !== "ListRoutes")).toEqual([]);
    expect(metacrypt.issueCalls()).toBe(1);
  }, 60_000);
});

describe("certificates", () => {
  const host = `${RENEW}.${ZONE}`;

  test("a cert with 20 days left is reissued by the deploy", async () => {
    const ca = await createCA({ commonName: "old test CA", days: 400 });
    const old = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      commonName: host,
      dnsNames: [host],
      ipAddresses: [],
      days: 20,
    });
    writeFileSync(join(certDir, `${host}.pem`), `${old.certPem.trim()}\n${ca.certPem.trim()}\n`);
    writeFileSync(join(certDir, `${host}.key`), old.keyPem, { mode: 0o600 });
    writeFileSync(
      join(agent.servicesDir, `${RENEW}.toml`),
      serviceToml(RENEW, '\n[[components.routes]]\nport = 443\nmode = "l7"\n'),
    );
    const before = metacrypt.issueCalls();
    const r = await deployJson(agent, RENEW, { MCP_TOKEN: userToken });
    expect(r.code).toBe(0);
    expect(r.json!.results[0]!.steps.find((s) => s.step === "cert")?.detail).toBe(`${host} issued`);
    expect(metacrypt.issueCalls()).toBe(before + 1);
    const leaf = certInfo(splitPem(readFileSync(join(certDir, `${host}.pem`), "utf8"))[0]!);
    expect(leaf.notAfter.getTime() - Date.now()).toBeGreaterThan(80 * 86_400_000);
    expect(routesOf(host)).toHaveLength(1);
    await mcpOk(["undeploy", RENEW]);
    expect(routesOf(host)).toEqual([]);
  }, 60_000);

  test("a Metacrypt 403 fails the deploy with a clear message and nothing started", async () => {
    const host2 = `${DENIED}.${ZONE}`;
    writeFileSync(join(agent.servicesDir, `${DENIED}.toml`), serviceToml(DENIED, TWO_ROUTES));
    const listBefore = await mcpOk(["list", "--json"]);
    const writes = mcns.writeCalls();
    const adds = proxy.calls().filter((c) => c.method === "AddRoute").length;
    metacrypt.setDenyAll(true);
    try {
      const r = await deployJson(agent, DENIED, { MCP_TOKEN: userToken });
      expect(r.code).not.toBe(0);
      const res = r.json!.results[0]!;
      expect(res.success).toBe(false);
      expect(res.error).toContain(`cert: certificate for ${host2}: metacrypt:`);
      expect(res.error).toMatch(/403|permission denied/);
      // The image is pulled first (a missing tag fails before any cert is asked for).
      expect(res.steps.map((s) => s.step)).toEqual(["pull", "cert"]);
      // the human output is one line for it
      const human = await mcp(["deploy", DENIED]);
      expect(human.code).not.toBe(0);
      expect(`${human.stdout}${human.stderr}`).toContain("permission denied");
    } finally {
      metacrypt.setDenyAll(false);
    }
    expect((await podman("inspect", `${DENIED}-web`)).code).not.toBe(0);
    expect(await mcpOk(["list", "--json"])).toBe(listBefore);
    expect(routesOf(host2)).toEqual([]);
    expect(aRecords(DENIED)).toEqual([]);
    expect(mcns.writeCalls()).toBe(writes);
    expect(proxy.calls().filter((c) => c.method === "AddRoute").length).toBe(adds);
    expect(existsSync(join(certDir, `${host2}.pem`))).toBe(false);
  }, 60_000);
});

describe("MCIAS through the compiled agent", () => {
  const client = (token: string) =>
    connect(McpAgent, { addresses: [agent.address], caPem: agent.caPem, token, defaultTimeoutMs: 10_000 });

  async function codeOf(token: string): Promise<string> {
    const c = await client(token);
    try {
      await c.listServices({});
      return "OK";
    } catch (err) {
      return (err as CallError).message.split(":")[0]!;
    } finally {
      c.close();
    }
  }

  test("expired, invalid and guest tokens are refused", async () => {
    expect(await codeOf(mcias.issueToken("alice", { expired: true }))).toBe("UNAUTHENTICATED");
    expect(await codeOf("not-a-token")).toBe("UNAUTHENTICATED");
    expect(await codeOf(mcias.issueToken("gus"))).toBe("PERMISSION_DENIED");
  }, 30_000);

  test("100 RPCs within 30 s cost one validation", async () => {
    const token = mcias.issueToken("alice");
    const c = await client(token);
    const before = mcias.validateCalls();
    const t0 = Date.now();
    try {
      for (let i = 0; i < 100; i++) await c.listServices({});
    } finally {
      c.close();
    }
    expect(Date.now() - t0).toBeLessThan(30_000);
    expect(mcias.validateCalls() - before).toBe(1);
  }, 40_000);
});

describe("nil-safety: an agent without integration sections", () => {
  test("deploys exactly as before and says once per integration that it is not configured", async () => {
    const r = await deployJson(plain, PLAIN);
    timings.withoutIntegrations = Math.round(r.ms);
    expect(r.code).toBe(0);
    const res = r.json!.results[0]!;
    expect(res.success).toBe(true);
    expect(res.steps.map((s) => s.step)).toEqual(["pull", "stop", "run", "inspect"]);
    const env = await containerEnv(`${PLAIN}-web`);
    const port = Number(env.get("PORT"));
    expect(port).toBeGreaterThanOrEqual(10000);
    expect(Number(env.get("PORT_GRPC"))).toBeGreaterThanOrEqual(10000);
    expect((await httpGet(port)).body).toBe("hello from mcp\n");
    const again = await deployJson(plain, PLAIN);
    timings.redeployWithoutIntegrations = Math.round(again.ms);
    expect(again.code).toBe(0);
    expect((await plain.mcp(["stop", PLAIN])).code).toBe(0);
    expect((await plain.mcp(["undeploy", PLAIN])).code).toBe(0);
    const log = plain.log().slice(logFrom.plain);
    const count = (s: string) => log.split("\n").filter((l) => l.includes(s)).length;
    expect(count("mc-proxy not configured ([mcproxy] socket): route steps skipped")).toBe(1);
    expect(count("Metacrypt not configured ([metacrypt] server_url): cert steps skipped")).toBe(1);
    expect(count("MCNS not configured ([mcns] server_url): DNS steps skipped")).toBe(1);
    // nothing reached the fakes from this agent
    expect(proxy.routes().filter((x) => x.hostname.startsWith(PLAIN))).toEqual([]);
    expect(aRecords(PLAIN)).toEqual([]);
    // the integrated agent logged none of these lines
    expect(agent.log().slice(logFrom.agent)).not.toContain("not configured");
  }, 60_000);
});
