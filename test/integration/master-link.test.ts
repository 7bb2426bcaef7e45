// The agent's link to mcp-master, against a real grpc-js McpMasterService server (startServer,
// TLS, local tokens) that plays the master: registration retried with exponential backoff while
// the master refuses, heartbeats every [master] heartbeat with real resources and the running
// container count (two real podman containers), an agent that keeps serving while the master is
// down and registers again with a restarted master that forgot it, and close() that stops the
// loop at once even in the middle of a long backoff. Intervals are shortened through settings.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import {
  type HeartbeatRequest,
  McpAgent,
  McpMasterService,
  type RegisterRequest,
} from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import type { MasterLinkSettings } from "../../src/roles/agent/context.ts";
import { masterLinkState } from "../../src/roles/agent/master-link.ts";
import { connect } from "../../src/rpc/client.ts";
import { notFound, unavailable } from "../../src/rpc/errors.ts";
import { type RunningServer, startServer } from "../../src/rpc/server.ts";
import type { Handlers } from "../../src/rpc/service.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { ContainerInfo } from "../../src/runtime/runtime.ts";
import { busyboxImage, freePort, type PodmanEnv, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const PREFIX = `mlink-${RUN}-`;
const HEARTBEAT = 250;
const BACKOFF = 150;
const containers = [`${PREFIX}a`, `${PREFIX}b`];
const agentToken = generateToken();
const operatorToken = generateToken();
const masterValidator = new LocalTokenValidator([
  { name: "agent-ml", role: "user", accountType: "system", sha256: hashToken(agentToken) },
]);
const agentValidator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(operatorToken) },
]);
let dir = "";
let pe: PodmanEnv;
let ca: { certPem: string; keyPem: string };
let leaf: { certPem: string; keyPem: string };
const agents: RunningAgent[] = [];
const masters: RunningServer[] = [];

/** This test's containers only: other tests share the podman store and run at the same time. */
class ScopedPodman extends PodmanRuntime {
  override async list(): Promise<ContainerInfo[]> {
    return (await super.list()).filter((c) => c.name.startsWith(PREFIX));
  }
}

interface FakeMaster {
  server: RunningServer;
  address: string;
  registers: { at: number; req: RegisterRequest }[];
  heartbeats: { at: number; req: HeartbeatRequest }[];
  close(): Promise<void>;
}

/** A master that refuses the first `refuse` Register calls and forgets nothing until restarted. */
async function startFakeMaster(port: number, refuse = 0): Promise<FakeMaster> {
  const registers: FakeMaster["registers"] = [];
  const heartbeats: FakeMaster["heartbeats"] = [];
  const known = new Set<string>();
  const handlers: Partial<Handlers<typeof McpMasterService>> = {
    async register(req) {
      registers.push({ at: performance.now(), req });
      if (registers.length <= refuse) throw unavailable("master is warming up");
      known.add(req.name);
      return { accepted: true };
    },
    async heartbeat(req) {
      if (!known.has(req.name)) throw notFound(`node ${req.name} is not registered`);
      heartbeats.push({ at: performance.now(), req });
      return { acknowledged: true };
    },
  };
  const server = await startServer({
    address: `127.0.0.1:${port}`,
    certPem: leaf.certPem,
    keyPem: leaf.keyPem,
    validator: masterValidator,
    policy: () => null,
    logger: pino({ level: "silent" }),
    services: [{ desc: McpMasterService, handlers }],
  });
  masters.push(server);
  return { server, address: `127.0.0.1:${server.port}`, registers, heartbeats, close: () => server.close() };
}

async function startLinkedAgent(
  master: Partial<MasterLinkSettings> & { address: string },
): Promise<RunningAgent> {
  const sub = mkdtempSync(join(dir, "agent-"));
  const port = await freePort();
  const agent = await startAgent({
    nodeName: "ml",
    grpcAddr: `127.0.0.1:${port}`,
    allowAnyAddr: false,
    tlsCertPem: leaf.certPem,
    tlsKeyPem: leaf.keyPem,
    dbPath: join(sub, "mcp.db"),
    validator: agentValidator,
    runtime: new ScopedPodman({ globalArgs: pe.globalArgs, env: pe.env }),
    srvRoot: join(sub, "srv"),
    portRange: [20000, 20100],
    pullPolicy: "never",
    logger: pino({ level: "silent" }),
    version: "1.2.3-test",
    master: {
      role: "worker",
      heartbeatMs: HEARTBEAT,
      caPem: ca.certPem,
      token: agentToken,
      backoffBaseMs: BACKOFF,
      backoffMaxMs: 4 * BACKOFF,
      ...master,
    },
  });
  agents.push(agent);
  // The heartbeat counts running containers of MANAGED services: record the two hand-started
  // containers as services of this agent (a component named like its service runs as <service>).
  for (const name of containers) {
    agent.registry.upsertService({ name, active: true });
    agent.registry.upsertComponent(name, {
      name,
      image: "localhost/mcp-test-busybox:v1.0.0",
      network: "",
      user: "",
      restart: "",
      desiredState: "running",
      version: "v1.0.0",
      ports: [],
      volumes: [],
      cmd: [],
      env: [],
      routes: [],
      runtime: "container",
      memory: "",
      vcpus: 0,
    });
  }
  return agent;
}

async function waitFor(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

beforeAll(async () => {
  let image: string;
  [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-master-link-"));
  const { ca: issuer, leaf: issued } = await testPki("master-link", { commonName: "master-link", days: 2 });
  ca = issuer;
  leaf = { certPem: issued.chainPem, keyPem: issued.keyPem };
  for (const name of containers)
    await runOk(
      ["podman", ...pe.globalArgs, "run", "-d", "--name", name, image, "/bin/sh", "-c", "sleep 600"],
      {
        env: pe.env,
        timeoutMs: 60_000,
      },
    );
}, 120_000);

afterAll(async () => {
  for (const a of agents) await a.close();
  for (const m of masters) await m.close();
  await removeContainers(containers);
  rmSync(dir, { recursive: true, force: true });
});

describe("agent → master link", () => {
  test("registers with backoff, heartbeats with resources, survives the master going away, re-registers", async () => {
    const port = await freePort();
    let master = await startFakeMaster(port, 2);
    const agent = await startLinkedAgent({ address: master.address });

    // Two refusals, then accepted: the retries come after ≈ 1×, then 2× the base delay.
    await waitFor("registration", () => master.registers.length >= 3, 5_000);
    const [r0, r1, r2] = master.registers;
    const gap1 = r1!.at - r0!.at;
    const gap2 = r2!.at - r1!.at;
    expect(gap1).toBeGreaterThanOrEqual(BACKOFF - 10);
    expect(gap1).toBeLessThan(BACKOFF + 400);
    expect(gap2).toBeGreaterThanOrEqual(2 * BACKOFF - 10);
    expect(gap2).toBeLessThan(2 * BACKOFF + 400);
    expect(gap2).toBeGreaterThan(gap1);
    const reg = r2!.req;
    expect([reg.name, reg.role, reg.address, reg.arch, reg.version]).toEqual([
      "ml",
      "worker",
      `127.0.0.1:${agent.port}`,
      process.arch === "x64" ? "amd64" : process.arch,
      "1.2.3-test",
    ]);

    // Heartbeats every HEARTBEAT ms with real numbers and the running container count.
    await waitFor("three heartbeats", () => master.heartbeats.length >= 3, 5_000);
    const hb = master.heartbeats.slice(0, 3);
    for (let i = 1; i < hb.length; i++) {
      const gap = hb[i]!.at - hb[i - 1]!.at;
      expect(gap).toBeGreaterThanOrEqual(HEARTBEAT - 10);
      expect(gap).toBeLessThan(HEARTBEAT + 1_500);
    }
    for (const { req } of hb) {
      expect(req.name).toBe("ml");
      expect(req.memoryBytes).toBeGreaterThan(0n);
      expect(req.diskBytes).toBeGreaterThan(0n);
      expect(req.cpuMillicores).toBeGreaterThanOrEqual(0n);
      expect(req.containers).toBe(2);
    }
    const st = masterLinkState(agent.ctx)!;
    expect(st.registered).toBe(true);
    expect(st.registrations).toBe(1);
    expect(st.heartbeats).toBeGreaterThanOrEqual(3);
    expect(st.lastError).toBeNull();

    // The master goes away: the agent keeps serving and its containers keep running.
    await master.close();
    await waitFor(
      "a failed heartbeat",
      () => (masterLinkState(agent.ctx)!.lastError ?? "").includes("UNAVAILABLE"),
      5_000,
    );
    await Bun.sleep(3 * HEARTBEAT);
    const client = await connect(McpAgent, {
      addresses: [`127.0.0.1:${agent.port}`],
      caPem: ca.certPem,
      token: operatorToken,
      defaultTimeoutMs: 15_000,
    });
    try {
      const ns = await client.nodeStatus({});
      expect(ns.nodeName).toBe("ml");
      expect(ns.runningContainers).toBe(2);
      // The engine, and the component runtime kinds this node runs.
      expect(ns.runtime).toBe("podman");
      expect(ns.runtimes).toEqual(["container"]);
    } finally {
      client.close();
    }

    // A restarted master that lost its node list: the next heartbeat is NOT_FOUND → register again.
    master = await startFakeMaster(port, 0);
    await waitFor("re-registration", () => master.registers.length >= 1, 10_000);
    await waitFor("heartbeats to the new master", () => master.heartbeats.length >= 2, 10_000);
    expect(master.registers[0]!.req.address).toBe(`127.0.0.1:${agent.port}`);
    expect(master.heartbeats[0]!.req.containers).toBe(2);
    const after = masterLinkState(agent.ctx)!;
    expect(after.registrations).toBe(2);
    expect(after.registered).toBe(true);

    const t0 = performance.now();
    await agent.close();
    expect(performance.now() - t0).toBeLessThan(2_000);
    agents.splice(agents.indexOf(agent), 1);
    // Nothing more arrives once the agent is closed.
    const count = master.heartbeats.length + master.registers.length;
    await Bun.sleep(2 * HEARTBEAT);
    expect(master.heartbeats.length + master.registers.length).toBe(count);
  }, 40_000);

  test("close() ends a long registration backoff at once", async () => {
    const port = await freePort(); // nothing listens here
    const agent = await startLinkedAgent({
      address: `127.0.0.1:${port}`,
      backoffBaseMs: 60_000,
      backoffMaxMs: 60_000,
    });
    await waitFor(
      "a failed registration",
      () => (masterLinkState(agent.ctx)?.lastError ?? "") !== "",
      10_000,
    );
    expect(masterLinkState(agent.ctx)!.registered).toBe(false);
    const t0 = performance.now();
    await agent.close();
    expect(performance.now() - t0).toBeLessThan(1_500);
    agents.splice(agents.indexOf(agent), 1);
  }, 20_000);
});
