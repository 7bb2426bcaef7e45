// Issue 7 acceptance ("What must be shown") through the COMPILED binary on one machine: a master
// process and agents in separate processes (own ports, srv roots, databases and podman stores),
// roles master (the master's own node "hub"), worker, worker, edge; real podman; the integration
// fakes (per-node mc-proxy, shared Metacrypt and MCNS). Heartbeat 1 s, 3 misses, 1 s probe.
//   - agents register; `mcp node list` through the master: every node healthy, with its version
//   - five worker services without `node` → fewest containers, ties by name (exact sequence);
//     tier = "core" → the master's node; a pinned service → its pin
//   - a public route → edge route on the edge agent (fake mc-proxy route, public cert file),
//     shown by `mcp status`; a hostname outside allowed domains is refused before any container
//   - SIGSTOP of the worker placement would pick → probed, unhealthy, the next deploy avoids it;
//     SIGCONT → healthy again
//   - master killed → containers keep running, `mcp --direct ps` works; restarted → the fleet
//     view is back and a hand-started container shows as an orphan
//   - Register as another node, a non-allowlisted agent and a heartbeat flood are refused
// Tests run in file order: each step starts from the state the previous one left.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { certInfo } from "../../src/pki/ca.ts";
import { type CallError, connect } from "../../src/rpc/client.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type LocalFleet, startLocalFleet, waitFor } from "../support/master.ts";

const WORKERS = ["w1", "w2", "w3", "w4", "w5"];
const CORE = "coresvc";
const PINNED = "pinned";
const PUB = "pub";
const PUB_HOST = "pub.metacircular.net";
const EVIL = "evil";
const EVIL_HOST = "evilmetacircular.net";
const LATE = "late"; // deployed while a worker is stopped
const STRAY = "stray"; // started by hand, no placement
const ALL = [...WORKERS, CORE, PINNED, PUB, EVIL, LATE];
const CONTAINERS = [...ALL.map((s) => `${s}-web`), STRAY];

let fleet: LocalFleet;
let image = "";
/** service → node it was placed on, as the deploys reported it. */
const placed = new Map<string, string>();

interface NodeJson {
  name: string;
  role: string;
  address: string;
  arch: string;
  status: string;
  containers: number;
  lastHeartbeat: string | null;
  version: string;
  runtimes: string[] | null;
  unikernelAccel: string | null;
}
interface StepJson {
  step: string;
  success: boolean;
  error?: string;
}
interface DeployJson {
  service: string;
  node: string | null;
  success: boolean;
  error?: string;
  steps: { deploy: StepJson | null; edgeRoute: StepJson | null; dns: StepJson | null };
  results: { component: string; success: boolean; error?: string }[];
}
interface StatusJson {
  services: {
    service: string;
    node: string;
    tier: string;
    status: string;
    components: { component: string; observed: string }[];
    edgeRoutes: { hostname: string; edgeNode: string; certExpires: string | null }[];
  }[];
  orphans: string[];
  stalePlacements: string[];
}

function writeDef(name: string, extra: { node?: string; tier?: string; route?: string } = {}): void {
  const lines = [`name = "${name}"`];
  if (extra.node) lines.push(`node = "${extra.node}"`);
  if (extra.tier) lines.push(`tier = "${extra.tier}"`);
  lines.push("", "[[components]]", 'name = "web"', `image = "${image}"`, 'restart = "no"');
  if (extra.route) lines.push("", extra.route);
  writeFileSync(join(fleet.servicesDir, `${name}.toml`), `${lines.join("\n")}\n`);
}

const publicRoute = (host: string) => `[[components.routes]]
port = 443
mode = "l7"
hostname = "${host}"
public = true`;

async function mcpJson<T>(
  args: string[],
  timeoutMs = 120_000,
): Promise<{ code: number; json: T; stderr: string }> {
  const r = await fleet.mcp([...args, "--json"], { timeoutMs });
  let json: T;
  try {
    json = JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`mcp ${args.join(" ")} --json: exit ${r.code}, no JSON; stderr: ${r.stderr.trim()}`);
  }
  return { code: r.code, json, stderr: r.stderr };
}

async function nodes(): Promise<NodeJson[]> {
  const r = await mcpJson<{ nodes: NodeJson[] }>(["node", "list"], 30_000);
  if (r.code !== 0) throw new Error(`node list: ${r.stderr.trim()}`);
  return r.json.nodes;
}

async function deploy(name: string): Promise<DeployJson & { code: number; stderr: string }> {
  const r = await mcpJson<DeployJson>(["deploy", name]);
  return { ...r.json, code: r.code, stderr: r.stderr };
}

async function status(): Promise<StatusJson> {
  const r = await mcpJson<StatusJson>(["status"], 60_000);
  if (r.code !== 0) throw new Error(`status: ${r.stderr.trim()}`);
  return r.json;
}

/** Waits until `name` has `want` status in the master's node list. */
function nodeStatus(name: string, want: string, ms: number): Promise<NodeJson> {
  return waitFor(
    `${name} ${want} in mcp node list`,
    async () => (await nodes()).find((n) => n.name === name && n.status === want),
    ms,
    300,
  );
}

/**
 * Waits for a heartbeat of `node` sampled after `since` and for its container count to equal the
 * services placed there: the master also refreshes the count right after a deploy, but a
 * heartbeat sampled before the deploy can still arrive after that refresh and overwrite it.
 */
async function settled(node: string, since: number): Promise<void> {
  const want = [...placed.values()].filter((n) => n === node).length;
  await waitFor(
    `${node}: a fresh heartbeat with ${want} containers`,
    async () => {
      const n = (await nodes()).find((x) => x.name === node);
      // +1 s: last_heartbeat may be stored at second resolution.
      return n?.lastHeartbeat && Date.parse(n.lastHeartbeat) >= since + 1000 && n.containers === want;
    },
    15_000,
    200,
  );
}

async function running(node: string, container: string): Promise<boolean> {
  const r = await fleet.node(node).podman("inspect", "--format", "{{.State.Running}}", container);
  return r.code === 0 && r.stdout === "true";
}

/** The master's pino JSON lines written since `from` (a character offset into its stderr). */
function masterLog(from: number): Record<string, unknown>[] {
  return fleet.master
    .log()
    .slice(from)
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function masterClient(token: string) {
  return connect(McpMasterService, { addresses: [fleet.master.address], caPem: fleet.caPem, token });
}

async function callCode(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "OK";
  } catch (err) {
    return (err as CallError).message.split(":")[0] ?? "";
  }
}

beforeAll(async () => {
  image = await busyboxImage("v1.0.0");
  fleet = await startLocalFleet({ workers: 2, edge: true, images: [image] });
}, 180_000);

afterAll(async () => {
  if (!fleet) return;
  fleet.master.resume();
  for (const n of fleet.nodes) n.resume();
  await fleet.removeContainers(CONTAINERS);
  await fleet.stop();
}, 120_000);

describe("master e2e: a master and agents on one machine", () => {
  test("agents register; mcp node list through the master shows every node healthy with its version", async () => {
    const all = await waitFor(
      "every node healthy",
      async () => {
        const list = await nodes();
        return list.length === fleet.nodes.length &&
          list.every((n) => n.status === "healthy" && n.lastHeartbeat)
          ? list
          : null;
      },
      30_000,
      300,
    );
    expect(all.map((n) => [n.name, n.role]).sort()).toEqual(
      [
        ["edge", "edge"],
        ["hub", "master"],
        ["node-a", "worker"],
        ["node-b", "worker"],
      ].sort(),
    );
    const ver = (await fleet.mcp(["--version"])).stdout.trim();
    for (const n of all) {
      expect(n.version).not.toBe("");
      expect(ver).toContain(n.version);
      expect(n.address).toBe(fleet.node(n.name).address);
      expect(n.lastHeartbeat).not.toBeNull();
      // Every agent reported its runtime kinds with its registration/heartbeats: containers only.
      expect(n.runtimes).toEqual(["container"]);
      expect(n.unikernelAccel).toBeNull();
    }
    const text = await fleet.mcp(["node", "list"]);
    expect(text.code).toBe(0);
    for (const n of fleet.nodes) expect(text.stdout).toMatch(new RegExp(`${n.name}\\s+\\S+\\s+.*healthy`));
    expect(text.stdout.split("\n")[0]).toMatch(/\bCONTAINERS\s+RUNTIMES\s+HEARTBEAT\b/);
    for (const n of fleet.nodes)
      expect(text.stdout).toMatch(new RegExp(`${n.name}\\s.*healthy\\s+\\d+\\s+container\\s`));
  }, 60_000);

  test("five worker services without a node go to the fewest containers, ties by name", async () => {
    const sequence: string[] = [];
    for (const w of WORKERS) {
      writeDef(w);
      const r = await deploy(w);
      expect(r.error ?? "").toBe("");
      expect(r.success).toBe(true);
      expect(r.code).toBe(0);
      sequence.push(r.node ?? "");
      placed.set(w, r.node ?? "");
      expect(await running(r.node!, `${w}-web`)).toBe(true);
      await settled(r.node!, Date.now());
    }
    // Both workers start empty: node-a wins the tie, then they alternate.
    expect(sequence).toEqual(["node-a", "node-b", "node-a", "node-b", "node-a"]);
    // The containers exist only on the node they were placed on.
    for (const w of WORKERS) {
      const other = placed.get(w) === "node-a" ? "node-b" : "node-a";
      expect((await fleet.node(other).podman("container", "exists", `${w}-web`)).code).toBe(1);
    }
  }, 180_000);

  test('tier = "core" lands on the master\'s node; a pinned service lands where pinned', async () => {
    writeDef(CORE, { tier: "core" });
    const core = await deploy(CORE);
    expect(core.success).toBe(true);
    expect(core.node).toBe(fleet.masterNode);
    expect(await running("hub", `${CORE}-web`)).toBe(true);
    placed.set(CORE, core.node!);

    // node-a has 3 containers and node-b 2: automatic placement would pick node-b.
    writeDef(PINNED, { node: "node-a" });
    const pin = await deploy(PINNED);
    expect(pin.success).toBe(true);
    expect(pin.node).toBe("node-a");
    expect(await running("node-a", `${PINNED}-web`)).toBe(true);
    placed.set(PINNED, "node-a");
    await settled("node-a", Date.now());

    const st = await status();
    const where = Object.fromEntries(st.services.map((s) => [s.service, [s.node, s.tier]]));
    expect(where[CORE]).toEqual(["hub", "core"]);
    expect(where[PINNED]).toEqual(["node-a", "worker"]);
  }, 120_000);

  test("a public route creates the edge route on the edge agent with a public cert", async () => {
    writeDef(PUB, { route: publicRoute(PUB_HOST) });
    const r = await deploy(PUB);
    expect(r.error ?? "").toBe("");
    expect(r.success).toBe(true);
    expect(r.steps.deploy?.success).toBe(true);
    expect(r.steps.edgeRoute?.success).toBe(true);
    placed.set(PUB, r.node!);
    await settled(r.node!, Date.now());
    expect(["node-a", "node-b"]).toContain(r.node!);

    const edge = fleet.node("edge");
    const route = edge.proxy.routes().find((x) => x.hostname === PUB_HOST);
    expect(route).toBeDefined();
    expect(route!.backendTls).toBe(true);
    expect(route!.mode).toBe("l7");
    expect(route!.backend).toMatch(/^127\.0\.0\.1:\d+$/);
    // The public cert is on the edge node, with the public hostname as SAN.
    expect(route!.tlsCert).toStartWith(edge.certDir);
    const pem = readFileSync(route!.tlsCert, "utf8");
    expect(certInfo(pem).dnsNames).toContain(PUB_HOST);
    expect(readdirSync(edge.certDir).length).toBeGreaterThan(0);

    // The worker serves the INTERNAL name (what the edge forwards to) with an internal cert;
    // the public name never appears on the worker (architecture v2 "Certificate Model").
    const worker = fleet.node(r.node!);
    const internal = `${PUB}.svc.mcp.metacircular.net`;
    const workerRoutes = worker.proxy.routes();
    expect(workerRoutes.map((x) => x.hostname)).toContain(internal);
    expect(workerRoutes.map((x) => x.hostname)).not.toContain(PUB_HOST);
    const workerRoute = workerRoutes.find((x) => x.hostname === internal)!;
    expect(certInfo(readFileSync(workerRoute.tlsCert, "utf8")).dnsNames).toEqual([internal]);

    const st = await status();
    const svc = st.services.find((s) => s.service === PUB);
    expect(svc?.edgeRoutes.map((e) => [e.hostname, e.edgeNode])).toEqual([[PUB_HOST, "edge"]]);
    const text = await fleet.mcp(["status"]);
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`${PUB_HOST}@edge`);
  }, 120_000);

  test("a hostname outside the allowed domains is refused before anything is deployed", async () => {
    writeDef(EVIL, { route: publicRoute(EVIL_HOST) });
    const r = await fleet.mcp(["deploy", EVIL]);
    expect(r.code).not.toBe(0);
    expect(r.stderr + r.stdout).toContain(EVIL_HOST);
    for (const n of fleet.nodes) expect((await n.podman("container", "exists", `${EVIL}-web`)).code).toBe(1);
    for (const n of fleet.nodes) expect(n.proxy.routes().some((x) => x.hostname === EVIL_HOST)).toBe(false);
    const st = await status();
    expect(st.services.some((s) => s.service === EVIL)).toBe(false);
    rmSync(join(fleet.servicesDir, `${EVIL}.toml`)); // later syncs declare only deployable services
  }, 60_000);

  test("SIGSTOP: the worker placement would pick is probed, marked unhealthy and avoided; SIGCONT heals it", async () => {
    // Which worker would get the next service now (fewest containers, then name)?
    const workers = (await nodes()).filter((n) => n.role === "worker");
    const target = [...workers].sort(
      (a, b) => a.containers - b.containers || a.name.localeCompare(b.name),
    )[0]!;
    const other = workers.find((n) => n.name !== target.name)!;
    const node = fleet.node(target.name);
    const logFrom = fleet.master.log().length;
    const t0 = Date.now();
    node.pause();
    try {
      await nodeStatus(target.name, "unhealthy", 30_000);
      const detectMs = Date.now() - t0;
      // Not before the heartbeat window (3 × 1 s) has passed.
      expect(detectMs).toBeGreaterThanOrEqual(2_000);
      console.log(`${target.name} marked unhealthy ${detectMs} ms after SIGSTOP`);
      // The master probed it (HealthCheck) before calling it unhealthy.
      const lines = masterLog(logFrom).filter((l) => l.node === target.name);
      const probing = lines.findIndex((l) => l.msg === "no heartbeat within the window: probing");
      const down = lines.findIndex((l) => l.to === "unhealthy");
      expect(probing).toBeGreaterThanOrEqual(0);
      expect(down).toBeGreaterThan(probing);

      writeDef(LATE);
      const r = await deploy(LATE);
      expect(r.success).toBe(true);
      expect(r.node).toBe(other.name);
      placed.set(LATE, other.name);
    } finally {
      node.resume();
    }
    const t1 = Date.now();
    await nodeStatus(target.name, "healthy", 30_000);
    console.log(`${target.name} healthy again ${Date.now() - t1} ms after SIGCONT`);
  }, 120_000);

  test("undeploy through the master removes the edge route and the containers", async () => {
    const r = await mcpJson<{ undeployed: boolean }>(["undeploy", PUB]);
    expect(r.code).toBe(0);
    expect(r.json.undeployed).toBe(true);
    expect(
      fleet
        .node("edge")
        .proxy.routes()
        .some((x) => x.hostname === PUB_HOST),
    ).toBe(false);
    expect((await fleet.node(placed.get(PUB)!).podman("container", "exists", `${PUB}-web`)).code).toBe(1);
    const st = await status();
    expect(st.services.some((s) => s.service === PUB)).toBe(false);
    placed.delete(PUB);
    rmSync(join(fleet.servicesDir, `${PUB}.toml`));
  }, 120_000);

  test("master killed: services keep running and mcp --direct ps works", async () => {
    await fleet.master.kill();
    const down = await fleet.mcp(["ps"]);
    expect(down.code).not.toBe(0);
    expect(down.stderr).toContain("master");

    for (const [svc, node] of placed) expect(await running(node, `${svc}-web`)).toBe(true);
    const ps = await mcpJson<{ containers: { node: string; service: string; observed: string }[] }>([
      "--direct",
      "ps",
    ]);
    expect(ps.code).toBe(0);
    for (const [svc, node] of placed) {
      const row = ps.json.containers.find((c) => c.service === svc);
      expect(row?.node).toBe(node);
      expect(row?.observed).toBe("running");
    }
  }, 60_000);

  test("master restarted: reconciliation restores the fleet view and reports a hand-started orphan", async () => {
    // A container named like a service, started by hand on node-b while the master is down.
    const run = await fleet
      .node("node-b")
      .podman("run", "-d", "--name", STRAY, image, "/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait");
    expect(run.code).toBe(0);

    await fleet.master.start();
    const st = await waitFor(
      "fleet view and orphan after master restart",
      async () => {
        const s = await status();
        return s.orphans.includes(`node-b/${STRAY}`) &&
          [...placed].every(([svc]) => s.services.find((x) => x.service === svc)?.status === "running")
          ? s
          : null;
      },
      30_000,
      500,
    );
    const where = Object.fromEntries(st.services.map((s) => [s.service, s.node]));
    for (const [svc, node] of placed) expect(where[svc]).toBe(node);
    expect(st.stalePlacements).toEqual([]);
    await waitFor(
      "every node healthy after master restart",
      async () => (await nodes()).every((n) => n.status === "healthy"),
      30_000,
      300,
    );
    const text = await fleet.mcp(["status"]);
    expect(text.stdout).toContain("orphans");
    expect(text.stdout).toContain(`node-b/${STRAY}`);
  }, 90_000);

  test("sync --dry-run through the master reports without changing anything", async () => {
    const before = await status();
    const r = await mcpJson<{ dryRun: boolean; results: StepJson[] }>(["sync", "--dry-run"]);
    expect(r.code).toBe(0);
    expect(r.json.dryRun).toBe(true);
    const after = await status();
    expect(after.services.map((s) => [s.service, s.node]).sort()).toEqual(
      before.services.map((s) => [s.service, s.node]).sort(),
    );
    // A changed definition: the plan says what changes against the spec placed, field by field.
    const file = join(fleet.servicesDir, "w1.toml");
    const text = readFileSync(file, "utf8");
    writeFileSync(file, text.replace('restart = "no"', 'restart = "always"'));
    try {
      const plan = await fleet.mcp(["sync", "--dry-run"], { timeoutMs: 120_000 });
      expect(plan.code).toBe(0);
      const lines = plan.stdout.split("\n");
      const at = lines.indexOf(`w1: would redeploy on ${placed.get("w1")}, changes against its placed spec:`);
      expect(at).toBeGreaterThan(0);
      expect(lines[at + 1]).toBe("  web.restart: no -> always");
      // An unchanged service is only its table row ("w2: unchanged  ok"), no plan lines.
      expect(lines.filter((l) => l.startsWith("w2:"))).toEqual([
        expect.stringMatching(/^w2: unchanged +ok$/),
      ]);
    } finally {
      writeFileSync(file, text);
    }
  }, 60_000);

  test("wrong identity, a non-allowlisted agent and a heartbeat flood are rejected with the right codes", async () => {
    const a = fleet.node("node-a");
    const asA = await masterClient(a.agentToken);
    const rogue = await masterClient(fleet.tokens.rogue);
    const operator = await masterClient(fleet.tokens.operator);
    try {
      // agent-node-a registering as node-b.
      expect(
        await callCode(
          asA.register({ name: "node-b", role: "worker", address: a.address, arch: "amd64", version: "x" }),
        ),
      ).toBe("PERMISSION_DENIED");
      // A valid token whose identity is not in [registration] allowed_agents.
      expect(
        await callCode(
          rogue.register({
            name: "rogue",
            role: "worker",
            address: "127.0.0.1:1",
            arch: "amd64",
            version: "x",
          }),
        ),
      ).toBe("PERMISSION_DENIED");
      // An operator is not an agent.
      expect(await callCode(operator.heartbeat({ name: "node-a", containers: 1 }))).toBe("PERMISSION_DENIED");
      // Agents may not call CLI RPCs.
      expect(await callCode(asA.listNodes({}))).toBe("PERMISSION_DENIED");
      // Heartbeat flood: the agent's own beats plus these exceed 1 per heartbeat_min_interval.
      const codes: string[] = [];
      for (let i = 0; i < 6; i++)
        codes.push(await callCode(asA.heartbeat({ name: "node-a", containers: 1 })));
      expect(codes).toContain("RESOURCE_EXHAUSTED");
      // The flood does not make node-a unhealthy or unknown.
      expect((await nodes()).find((n) => n.name === "node-a")?.status).toBe("healthy");
    } finally {
      asA.close();
      rogue.close();
      operator.close();
    }
  }, 60_000);

  test("CLI: master fallback address, text views through the master, --direct and --dry-run rules", async () => {
    // A CLI config whose [master] primary address is dead: the fallback answers.
    const dead = `127.0.0.1:${await freePort()}`;
    const cfg = join(fleet.dir, "mcp-fallback.toml");
    writeFileSync(
      cfg,
      readFileSync(fleet.cliConfig, "utf8").replace(
        `address = "${fleet.master.address}"`,
        `address = "${dead}"\naddresses = ["${fleet.master.address}"]`,
      ),
    );
    const viaFallback = await fleet.mcp(["node", "list", "--json"], { env: { MCP_CONFIG: cfg } });
    expect(viaFallback.stderr).toBe("");
    expect(viaFallback.code).toBe(0);
    expect((JSON.parse(viaFallback.stdout) as { nodes: unknown[] }).nodes.length).toBe(fleet.nodes.length);

    const ps = await fleet.mcp(["ps"]);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toMatch(new RegExp(`${CORE}-web\\s+hub\\s+running`));
    const list = await fleet.mcp(["list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(new RegExp(`${placed.get("w2")}\\s+w2\\s+web\\s+running\\s+running`));

    // --direct: no master to place, so a definition without a node is refused on the CLI side...
    const noNode = await fleet.mcp(["--direct", "deploy", "w1"]);
    expect(noNode.code).toBe(2);
    expect(noNode.stderr).toContain("needs a node");
    // ...and an agent with a master keeps Deploy for mcp-master.
    const direct = await fleet.mcp(["deploy", PINNED, "--direct"]);
    expect(direct.code).toBe(1);
    expect(direct.stderr).toContain("PERMISSION_DENIED");
    // A dry run is an agent feature.
    const dry = await fleet.mcp(["deploy", "w1", "--dry-run"]);
    expect(dry.code).toBe(2);
    expect(dry.stderr).toContain("--direct");
  }, 60_000);
});
