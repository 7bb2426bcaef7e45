// Identity, registration and health of the master over real TLS (architecture-v2 "Security
// Model", "Agent Registration and Health"): an in-process master (real bun:sqlite store, local
// tokens per identity) and an in-process agent (real podman runtime) it probes with HealthCheck.
// Rate limits and heartbeat windows are shortened through the settings so the test takes seconds.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import pino, { type Logger } from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { masterHealthOf } from "../../src/roles/master/health.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { agentLister, reconcileFleet, reconcileReport } from "../../src/roles/master/reconcile.ts";
import { type CallError, connect, type TypedClient } from "../../src/rpc/client.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

function memoryLogger(): { logger: Logger; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const logger = pino({ level: "info" }, { write: (s: string) => void chunks.push(s) });
  const lines = () =>
    chunks
      .join("")
      .split("\n")
      .filter((l) => l.trim() !== "")
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { logger, lines };
}

/** Polls `cond` every 50 ms for at most `ms`. */
async function until(cond: () => boolean | Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await cond()) return true;
    await Bun.sleep(50);
  }
  return cond();
}

const tokens = {
  operator: generateToken(),
  master: generateToken(),
  a: generateToken(),
  b: generateToken(),
  c: generateToken(),
  rogue: generateToken(),
};

const REGISTER_INTERVAL_MS = 1500;
const HEARTBEAT_MIN_MS = 800;

let dir: string;
let caPem: string;
let master: RunningMaster;
let masterLog: ReturnType<typeof memoryLogger>;
let agent: RunningAgent | null = null;
let agentAddress: string;
const clients: TypedClient<typeof McpMasterService>[] = [];

async function masterClient(token: string): Promise<TypedClient<typeof McpMasterService>> {
  const c = await connect(McpMasterService, {
    addresses: [`127.0.0.1:${master.port}`],
    caPem,
    token,
    defaultTimeoutMs: 10_000,
  });
  clients.push(c);
  return c;
}

const nodeStatus = (name: string) => master.ctx.store.getNode(name)?.status;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-master-reg-"));
  const { caPem: ca, leaf, masterClient } = await testPki("master-reg", { commonName: "mcp" });
  caPem = ca;
  const validator = new LocalTokenValidator([
    { name: "kyle", role: "admin", accountType: "human", sha256: hashToken(tokens.operator) },
    { name: "mcp-master", role: "user", accountType: "system", sha256: hashToken(tokens.master) },
    { name: "agent-a", role: "user", accountType: "system", sha256: hashToken(tokens.a) },
    { name: "agent-b", role: "user", accountType: "system", sha256: hashToken(tokens.b) },
    { name: "agent-c", role: "user", accountType: "system", sha256: hashToken(tokens.c) },
    { name: "agent-rogue", role: "user", accountType: "system", sha256: hashToken(tokens.rogue) },
  ]);
  agent = await startAgent(
    await testAgentSettings(dir, leaf, {
      nodeName: "a",
      dbPath: join(dir, "agent.db"),
      validator,
      pullPolicy: "missing",
      masterCaPem: ca,
    }),
  );
  agentAddress = `127.0.0.1:${agent.port}`;
  masterLog = memoryLogger();
  master = await startMaster({
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: leaf.certPem,
    tlsKeyPem: leaf.keyPem,
    dbPath: join(dir, "master.db"),
    validator,
    logger: masterLog.logger,
    version: "0.0.0-test",
    caPem,
    clientCert: masterClient,
    allowedDomains: [],
    timeouts: { deployMs: 10_000, edgeRouteMs: 5_000, healthCheckMs: 2_000, undeployMs: 10_000 },
    // Window 2 × 200 ms; probe answers within 500 ms.
    heartbeat: { intervalMs: 200, miss: 2, probeTimeoutMs: 500 },
    registration: {
      allowedAgents: ["agent-a", "agent-b", "agent-c"],
      maxNodes: 2,
      registerIntervalMs: REGISTER_INTERVAL_MS,
      heartbeatMinIntervalMs: HEARTBEAT_MIN_MS,
    },
    bootstrapNodes: [],
  });
});

afterAll(async () => {
  for (const c of clients) c.close();
  await master?.close();
  await agent?.close();
  rmSync(dir, { recursive: true, force: true });
});

const reg = (name: string, address = agentAddress) => ({
  name,
  role: "worker",
  address,
  arch: "amd64",
  version: "1.2.3",
});

describe("registration", () => {
  test("a human calling Register → PERMISSION_DENIED", async () => {
    const e = await failure((await masterClient(tokens.operator)).register(reg("a")));
    expect(e.code).toBe(status.PERMISSION_DENIED);
    expect(e.details).toContain("kyle is a human account");
  });

  test("mcp-master calling Heartbeat → PERMISSION_DENIED", async () => {
    const e = await failure((await masterClient(tokens.master)).heartbeat({ name: "a" }));
    expect(e.code).toBe(status.PERMISSION_DENIED);
  });

  test("an agent not on the allowlist → PERMISSION_DENIED", async () => {
    const e = await failure((await masterClient(tokens.rogue)).register(reg("rogue")));
    expect(e.code).toBe(status.PERMISSION_DENIED);
    expect(e.details).toContain("agent-rogue is not in [registration] allowed_agents");
    expect(master.ctx.store.getNode("rogue")).toBeNull();
  });

  test("agent-a registering as b → PERMISSION_DENIED, nothing recorded", async () => {
    const e = await failure((await masterClient(tokens.a)).register(reg("b")));
    expect(e.code).toBe(status.PERMISSION_DENIED);
    expect(e.details).toContain('agent-a cannot register as "b"');
    expect(master.ctx.store.getNode("b")).toBeNull();
  });

  test("an address that is not host:port → INVALID_ARGUMENT, nothing recorded", async () => {
    const client = await masterClient(tokens.a);
    for (const address of [
      "10.0.0.5",
      "[::1]",
      "host:0",
      "host:99999",
      "-oProxyCommand=x:22",
      "-evil:22",
      ":9444",
    ]) {
      const e = await failure(client.register({ ...reg("a"), address }));
      expect(e.code).toBe(status.INVALID_ARGUMENT);
      expect(e.details).toContain(`address must be host:port, got ${JSON.stringify(address)}`);
    }
    expect(master.ctx.store.getNode("a")).toBeNull();
  });

  test("agent-a registers as a → accepted, listed healthy with its version", async () => {
    const res = await (await masterClient(tokens.a)).register(reg("a"));
    expect(res.accepted).toBe(true);
    const nodes = (await (await masterClient(tokens.operator)).listNodes({})).nodes;
    const a = nodes.find((n) => n.name === "a");
    expect(a).toMatchObject({
      name: "a",
      role: "worker",
      address: agentAddress,
      status: "healthy",
      version: "1.2.3",
    });
  });

  test("registering twice within the interval → RESOURCE_EXHAUSTED; after it, re-registration warns with the previous address", async () => {
    const c = await masterClient(tokens.a);
    const e = await failure(c.register(reg("a", "127.0.0.1:1")));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toContain("Register rate limit for agent-a");
    expect(master.ctx.store.getNode("a")!.address).toBe(agentAddress);
    await Bun.sleep(REGISTER_INTERVAL_MS + 50);
    expect((await c.register({ ...reg("a"), version: "1.2.4" })).accepted).toBe(true);
    const warn = masterLog.lines().find((l) => l.msg === "node re-registered");
    expect(warn).toMatchObject({ level: 40, node: "a", previous_address: agentAddress, version: "1.2.4" });
  });

  test("max_nodes: a third node → RESOURCE_EXHAUSTED", async () => {
    // b points at a port nobody listens on: it will be probed unhealthy, which is fine here.
    expect((await (await masterClient(tokens.b)).register(reg("b", "127.0.0.1:9"))).accepted).toBe(true);
    const e = await failure((await masterClient(tokens.c)).register(reg("c")));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toContain("max_nodes 2");
    expect(master.ctx.store.getNode("c")).toBeNull();
  });

  test("an agent calling Deploy on the master → PERMISSION_DENIED, and the master's own name by token too; an operator may list nodes", async () => {
    const e = await failure((await masterClient(tokens.a)).deploy({ service: { name: "x" } }));
    expect(e.code).toBe(status.PERMISSION_DENIED);
    expect(e.details).toContain("agent-a is a node's identity");
    const m = await failure((await masterClient(tokens.master)).listNodes({}));
    expect(m.code).toBe(status.PERMISSION_DENIED);
    expect(m.details).toContain("mcp-master by bearer token is refused");
    const nodes = (await (await masterClient(tokens.operator)).listNodes({})).nodes;
    expect(nodes.map((n) => n.name)).toEqual(["a", "b"]);
  });
});

describe("startup reconciliation", () => {
  test("ran at start (warm-up over); a placement not running on its live node is stale, an unreachable node unjudged", async () => {
    expect(await until(() => master.ctx.fleetReport !== null, 5_000)).toBe(true);
    expect(masterHealthOf(master.ctx).warmedUp).toBe(true);
    master.ctx.store.upsertPlacement({ service: "ghost-m2", node: "a", tier: "worker" });
    master.ctx.store.upsertPlacement({ service: "far-m2", node: "b", tier: "worker" });
    const report = await reconcileFleet({
      store: master.ctx.store,
      logger: master.ctx.logger,
      health: masterHealthOf(master.ctx),
      list: agentLister(master.ctx.agents),
      timeoutMs: 5_000,
    });
    expect(report.stalePlacements).toContain("a/ghost-m2");
    // b does not answer: its placement is neither confirmed nor called stale.
    expect(report.stalePlacements).not.toContain("b/far-m2");
    expect(report.unreachable).toEqual(["b"]);
    expect(masterLog.lines().some((l) => l.msg === "reconcile: stale placement (service not running)")).toBe(
      true,
    );
    // Fixed through the master since (placement removed) → no longer reported.
    master.ctx.store.deletePlacement("ghost-m2");
    master.ctx.store.deletePlacement("far-m2");
    expect(reconcileReport(master.ctx.store)!.stalePlacements).not.toContain("a/ghost-m2");
  });
});

describe("heartbeats and health", () => {
  test("heartbeat flood → RESOURCE_EXHAUSTED after the first; a heartbeat for another node → PERMISSION_DENIED", async () => {
    const c = await masterClient(tokens.a);
    const hb = {
      name: "a",
      cpuMillicores: 250n,
      memoryBytes: 1n << 30n,
      diskBytes: 1n << 34n,
      containers: 3,
    };
    const results = await Promise.all(
      Array.from({ length: 6 }, () =>
        c.heartbeat(hb).then(
          () => status.OK,
          (err: CallError) => err.code,
        ),
      ),
    );
    expect(results.filter((r) => r === status.OK).length).toBe(1);
    expect(results.filter((r) => r === status.RESOURCE_EXHAUSTED).length).toBe(5);
    const node = master.ctx.store.getNode("a")!;
    expect(node).toMatchObject({
      containers: 3,
      cpuMillicores: 250,
      memoryBytes: 2 ** 30,
      diskBytes: 2 ** 34,
    });
    expect(node.lastHeartbeat).not.toBeNull();
    const e = await failure(c.heartbeat({ ...hb, name: "b" }));
    expect(e.code).toBe(status.PERMISSION_DENIED);
  });

  test("missed heartbeats → probed: a live agent stays healthy, a dead address turns unhealthy", async () => {
    expect(await until(() => nodeStatus("b") === "unhealthy", 5_000)).toBe(true);
    // a has been silent for longer than the window too, but answers HealthCheck.
    expect(
      await until(
        () =>
          masterLog
            .lines()
            .some((l) => l.msg === "no heartbeat within the window: probing" && l.node === "a"),
        5_000,
      ),
    ).toBe(true);
    expect(nodeStatus("a")).toBe("healthy");
  });

  test("the agent stops → unhealthy after the window and a failed probe; a heartbeat → healthy again", async () => {
    const t0 = Date.now();
    await agent!.close();
    agent = null;
    expect(await until(() => nodeStatus("a") === "unhealthy", 5_000)).toBe(true);
    const detectedMs = Date.now() - t0;
    expect(detectedMs).toBeLessThan(5_000);
    const line = masterLog.lines().find((l) => l.node === "a" && l.to === "unhealthy");
    expect(String(line?.reason)).toContain("health probe failed");
    await Bun.sleep(HEARTBEAT_MIN_MS);
    const res = await (await masterClient(tokens.a)).heartbeat({ name: "a", containers: 0 });
    expect(res.acknowledged).toBe(true);
    expect(nodeStatus("a")).toBe("healthy");
    const nodes = (await (await masterClient(tokens.operator)).listNodes({})).nodes;
    expect(nodes.find((n) => n.name === "a")?.status).toBe("healthy");
  });
});
