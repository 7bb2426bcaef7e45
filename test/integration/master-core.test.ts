// The master core in-process against three in-process agents (real TLS gRPC, real sqlite, real
// podman): placement (fewest containers with name tie-break, tier core → the master's node,
// pinned → pinned), Status through the agents, Undeploy removing containers and the placement,
// public hostnames refused before anything is deployed, and sync's plan (with each placed spec). Node health is set in
// the store directly (registration and heartbeats are tested with their own modules); the
// multi-process acceptance test is test/e2e/master.test.ts.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { defToSpec, specToDef } from "../../src/component/proto.ts";
import { diffSpecs, renderChanges } from "../../src/component/spec-diff.ts";
import { parseServiceDef } from "../../src/config/service.ts";
import { McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { CallError, connect, type TypedClient } from "../../src/rpc/client.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const operatorToken = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(operatorToken) },
]);
const tag = Math.random().toString(36).slice(2, 8);
const svcName = (s: string) => `mc${tag}-${s}`;
const created: string[] = [];
let dir = "";
let image = "";
let master: RunningMaster;
let client: TypedClient<typeof McpMasterService>;
const agents = new Map<string, RunningAgent>();

function spec(name: string, extra: Record<string, unknown> = {}, routes: unknown[] = []) {
  const def = parseServiceDef({ name, ...extra, components: [{ name: "web", image, routes }] }, "test").def;
  return defToSpec(def);
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

beforeAll(async () => {
  image = await busyboxImage();
  dir = mkdtempSync(join(tmpdir(), "mcp-master-core-"));
  const { ca, leaf, masterClient } = await testPki("master core", { commonName: "node", days: 2 });
  const logger = pino({ level: "silent" });
  for (const name of ["hub", "wa", "wb"]) {
    const sub = join(dir, name);
    const agent = await startAgent(
      await testAgentSettings(
        sub,
        { certPem: leaf.chainPem, keyPem: leaf.keyPem },
        {
          nodeName: name,
          validator,
          portRange: [21000, 21100],
          pullPolicy: "never",
          logger,
          masterCaPem: ca.certPem,
        },
      ),
    );
    agents.set(name, agent);
  }
  const addr = (n: string) => `127.0.0.1:${agents.get(n)!.port}`;
  master = await startMaster({
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: leaf.chainPem,
    tlsKeyPem: leaf.keyPem,
    dbPath: join(dir, "master", "master.db"),
    validator,
    logger,
    version: "0.0.0-test",
    caPem: ca.certPem,
    clientCert: masterClient,
    allowedDomains: ["metacircular.net"],
    timeouts: { deployMs: 60_000, edgeRouteMs: 10_000, healthCheckMs: 5_000, undeployMs: 60_000 },
    heartbeat: { intervalMs: 30_000, miss: 3, probeTimeoutMs: 5_000 },
    registration: { allowedAgents: [], maxNodes: 16 },
    bootstrapNodes: [
      { name: "hub", role: "master", address: addr("hub"), arch: "amd64" },
      // A dead first address: the master falls back to the second one.
      { name: "wa", role: "worker", address: "127.0.0.1:1", addresses: [addr("wa")], arch: "amd64" },
      { name: "wb", role: "worker", address: addr("wb"), arch: "amd64" },
    ],
  });
  client = await connect(McpMasterService, {
    addresses: [`127.0.0.1:${master.port}`],
    caPem: ca.certPem,
    token: operatorToken,
    defaultTimeoutMs: 90_000,
  });
  // Stand-in for registration + heartbeats: healthy, with wa already busier than wb.
  const store = master.ctx.store;
  for (const n of ["hub", "wa", "wb"]) store.setNodeStatus(n, "healthy");
  const hb = { cpuMillicores: 0, memoryBytes: 0, diskBytes: 0 };
  store.recordHeartbeat("wa", { ...hb, containers: 3 });
  store.recordHeartbeat("wb", { ...hb, containers: 1 });
});

afterAll(async () => {
  client?.close();
  await master?.close();
  for (const a of agents.values()) await a.close();
  await removeContainers(created);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function deploy(name: string, extra: Record<string, unknown> = {}) {
  created.push(`${name}-web`);
  const res = await client.deploy({ service: spec(name, extra) });
  expect(res.error).toBe("");
  expect(res.success).toBe(true);
  return res;
}

describe("master core", () => {
  test("placement: fewest containers, name tie-break, core → master node, pinned → pinned", async () => {
    // wb has 1, wa 3: wb; then wb 2: wb; then 3 = 3: wa by name.
    expect((await deploy(svcName("a"))).node).toBe("wb");
    expect((await deploy(svcName("b"))).node).toBe("wb");
    const third = await deploy(svcName("c"));
    expect(third.node).toBe("wa");
    expect(third.deployResult?.success).toBe(true);
    expect(third.components.map((c) => c.success)).toEqual([true]);
    expect((await deploy(svcName("core"), { tier: "core" })).node).toBe("hub");
    expect((await deploy(svcName("pin"), { node: "wb" })).node).toBe("wb");
    // Redeploying keeps the placement even though another node is now less busy.
    expect((await deploy(svcName("a"))).node).toBe("wb");
    const placements = master.ctx.store.listPlacements().map((p) => [p.service, p.node]);
    expect(placements).toEqual([
      [svcName("a"), "wb"],
      [svcName("b"), "wb"],
      [svcName("c"), "wa"],
      [svcName("core"), "hub"],
      [svcName("pin"), "wb"],
    ]);
  }, 120_000);

  test("status lists every placed service as running, through each agent once", async () => {
    const res = await client.status({});
    const rows = res.services.map((s) => [s.name, s.node, s.status]);
    expect(rows).toEqual([
      [svcName("a"), "wb", "running"],
      [svcName("b"), "wb", "running"],
      [svcName("c"), "wa", "running"],
      [svcName("core"), "hub", "running"],
      [svcName("pin"), "wb", "running"],
    ]);
    expect(res.staleSnapshots).toEqual([]);
    const one = await client.status({ serviceName: svcName("core") });
    expect(one.services.map((s) => [s.tier, s.components[0]?.observedState])).toEqual([["core", "running"]]);
    expect((await codeOf(client.status({ serviceName: "nope" }))).code).toBe(status.NOT_FOUND);
    const nodes = await client.listNodes({});
    expect(nodes.nodes.map((n) => [n.name, n.role, n.status])).toEqual([
      ["hub", "master", "healthy"],
      ["wa", "worker", "healthy"],
      ["wb", "worker", "healthy"],
    ]);
  }, 60_000);

  test("public hostname outside the allowed domains is refused before anything is deployed", async () => {
    const name = svcName("pub");
    const bad = spec(name, {}, [
      { port: 8443, mode: "l7", public: true, hostname: "x.evilmetacircular.net" },
    ]);
    const r = await codeOf(client.deploy({ service: bad }));
    expect(r.code).toBe(status.INVALID_ARGUMENT);
    expect(r.message).toContain("x.evilmetacircular.net");
    // Allowed name but no edge node registered: also refused up front.
    const noEdge = spec(name, {}, [{ port: 8443, mode: "l7", public: true, hostname: "x.metacircular.net" }]);
    expect((await codeOf(client.deploy({ service: noEdge }))).code).toBe(status.FAILED_PRECONDITION);
    expect(master.ctx.store.getPlacement(name)).toBeNull();
    for (const a of agents.values()) expect(a.registry.getService(name)).toBeNull();
  });

  test("sync dry run reports the plan without acting, with each placed spec to compare with", async () => {
    const changed = parseServiceDef(
      { name: svcName("c"), components: [{ name: "web", image, env: ["MODE=x"] }] },
      "test",
    ).def;
    const services = [
      spec(svcName("a")),
      spec(svcName("b"), { active: true }),
      defToSpec(changed),
      spec(svcName("new")),
    ];
    const res = await client.sync({ services, dryRun: true });
    expect(res.results.map((r) => r.step)).toEqual([
      `${svcName("a")}: unchanged`,
      `${svcName("b")}: unchanged`,
      `${svcName("c")}: would redeploy`,
      `${svcName("new")}: would deploy`,
      `${svcName("core")}: would undeploy`,
      `${svcName("pin")}: would undeploy`,
    ]);
    expect(res.plan.map((p) => [p.service, p.action, p.node, p.placed !== undefined])).toEqual([
      [svcName("a"), "unchanged", "wb", true],
      [svcName("b"), "unchanged", "wb", true],
      [svcName("c"), "redeploy", "wa", true],
      [svcName("new"), "deploy", "", false],
      [svcName("core"), "undeploy", "hub", true],
      [svcName("pin"), "undeploy", "wb", true],
    ]);
    // The placed spec is the one its deploy recorded: against the definition, only the new env.
    const placedC = specToDef(res.plan[2]!.placed!);
    expect(renderChanges(diffSpecs(placedC, specToDef(defToSpec(changed))), "")).toEqual([
      'web.env.MODE: + "x"',
    ]);
    expect(diffSpecs(specToDef(res.plan[0]!.placed!), specToDef(spec(svcName("a"))))).toEqual([]);
    expect(master.ctx.store.getPlacement(svcName("new"))).toBeNull();
  });

  test("undeploy removes the containers and the placement", async () => {
    for (const s of ["a", "b", "c", "core", "pin"]) {
      const name = svcName(s);
      const node = master.ctx.store.getPlacement(name)!.node;
      const res = await client.undeploy({ serviceName: name });
      expect(res).toMatchObject({ success: true, error: "" });
      expect(master.ctx.store.getPlacement(name)).toBeNull();
      expect(agents.get(node)!.registry.getService(name)).toBeNull();
      const list = await agents.get(node)!.ctx.runtime.list();
      expect(list.some((c) => c.name === `${name}-web`)).toBe(false);
    }
    expect((await codeOf(client.undeploy({ serviceName: svcName("a") }))).code).toBe(status.NOT_FOUND);
    expect((await client.status({})).services).toEqual([]);
  }, 120_000);
});

describe("master deploy and sync reach the agent's unchanged check (issue 19)", () => {
  test("the same definition again: unchanged on the agent, same container; --force recreates; sync changes nothing", async () => {
    const name = svcName("same");
    const first = await deploy(name);
    const agent = agents.get(first.node)!;
    const id = async () => (await agent.ctx.runtime.inspect(`${name}-web`, { imageDefaults: false }))?.id;
    const before = await id();
    expect(before).toBeTruthy();
    const again = await deploy(name);
    expect(again.node).toBe(first.node);
    expect(
      again.components.map((c) => [c.unchanged, c.reason.startsWith("same spec and image sha256:")]),
    ).toEqual([[true, true]]);
    expect(await id()).toBe(before);
    const forced = await client.deploy({ service: spec(name), force: true });
    expect(forced.success).toBe(true);
    expect(forced.components.map((c) => c.unchanged)).toEqual([false]);
    const after = await id();
    expect(after).not.toBe(before);
    const synced = await client.sync({ services: [spec(name)] });
    expect(synced.results.map((r) => [r.step, r.success])).toEqual([[`${name}: unchanged`, true]]);
    expect(await id()).toBe(after);
    expect((await client.undeploy({ serviceName: name })).success).toBe(true);
  }, 120_000);

  test("a first deploy whose image is missing: failed, no placement, nothing on any agent", async () => {
    const name = svcName("gone");
    created.push(`${name}-web`);
    const s = spec(name);
    s.components[0]!.image = `localhost/mcp-test-busybox:nosuch-${tag}`;
    const res = await client.deploy({ service: s });
    expect(res.success).toBe(false);
    expect(res.error).toContain("is not in the local store");
    expect(master.ctx.store.getPlacement(name)).toBeNull();
    for (const a of agents.values()) expect(a.registry.getService(name)).toBeNull();
    expect((await client.status({})).services.map((x) => x.name)).not.toContain(name);
  }, 60_000);
});
