// e2e: routes and host ports through the COMPILED binary with real podman. A local agent with a
// narrow custom port_range (and [agent] address) deploys a component with two routes (`grpc` l4,
// an unnamed l7) beside a legacy `ports` entry. Checked from podman's side: $PORT / $PORT_GRPC
// equal the published host ports, published as 127.0.0.1:<hp>:<hp>, inside the range, skipping a
// port another process holds; the busybox httpd listens on $PORT, so HTTP through it answers.
// The ports survive redeploy, stop/start (also when start must recreate the container), and
// recover; undeploy leaves no allocation in the registry (read from the sqlite file read-only).
//
// Tests run in file order and share one service, the way an operator would drive the tool.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { busyboxImage, freePort, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `rt-${rand()}`;
const CONTAINER = `${SVC}-web`;

let agent: LocalAgent;
let image = "";
let legacyPort = 0;
let base = 0; // port_range = [base, base + 5]; base itself is held by `blocker`
let blocker: Server | null = null;
let dbPath = "";
const hostPorts = { grpc: 0, web: 0 };

async function mcpOk(args: string[]): Promise<string> {
  const r = await agent.mcp(args);
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Binds 127.0.0.1:port; resolves null when it is taken. */
function hold(port: number): Promise<Server | null> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(null));
    s.listen(port, "127.0.0.1", () => resolve(s));
  });
}
const release = (s: Server) => new Promise<void>((r) => s.close(() => r()));

/**
 * A base port below the kernel's ephemeral range (so no outgoing connection lands in it) whose
 * six ports are free now; the first one stays held by this process for the whole file.
 */
async function pickRange(): Promise<{ base: number; blocker: Server }> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const b = 20000 + Math.floor(Math.random() * 1200) * 10;
    const held: Server[] = [];
    for (let p = b; p <= b + 5; p++) {
      const s = await hold(p);
      if (!s) break;
      held.push(s);
    }
    if (held.length === 6) {
      for (const s of held.slice(1)) await release(s);
      return { base: b, blocker: held[0]! };
    }
    for (const s of held) await release(s);
  }
  throw new Error("no free block of 6 ports found in 50 attempts");
}

interface Inspected {
  env: Record<string, string>;
  bindings: { container: string; hostIp: string; hostPort: string }[];
  id: string;
}

async function inspect(name: string): Promise<Inspected> {
  const r = await podman("inspect", name);
  expect(r.code).toBe(0);
  const [c] = JSON.parse(r.stdout) as {
    Id: string;
    Config: { Env: string[] };
    HostConfig: { PortBindings: Record<string, { HostIp: string; HostPort: string }[] | null> };
  }[];
  const env: Record<string, string> = {};
  for (const e of c!.Config.Env) env[e.slice(0, e.indexOf("="))] = e.slice(e.indexOf("=") + 1);
  const bindings = Object.entries(c!.HostConfig.PortBindings ?? {}).flatMap(([container, bs]) =>
    (bs ?? []).map((b) => ({ container, hostIp: b.HostIp, hostPort: b.HostPort })),
  );
  bindings.sort((a, b) => a.container.localeCompare(b.container));
  return { env, bindings, id: c!.Id };
}

/** GET / on 127.0.0.1:port; retried briefly because httpd starts just after `podman run`. */
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

/** The allocations the registry holds for the service, straight from the sqlite file. */
function allocations(): { port: number; component: string; route: string }[] {
  const db = new Database(dbPath, { readonly: true });
  try {
    return db
      .query<{ port: number; component: string; route: string }, [string]>(
        "SELECT port, component, route FROM port_allocations WHERE service = ? ORDER BY port",
      )
      .all(SVC);
  } finally {
    db.close();
  }
}

/** The container runs with exactly the allocated ports: env, publish specs, and HTTP on $PORT. */
async function expectWired(): Promise<Inspected> {
  const c = await inspect(CONTAINER);
  expect(c.env["PORT"]).toBe(String(hostPorts.web));
  expect(c.env["PORT_GRPC"]).toBe(String(hostPorts.grpc));
  expect(c.bindings).toEqual(
    [
      { container: `${hostPorts.grpc}/tcp`, hostIp: "127.0.0.1", hostPort: String(hostPorts.grpc) },
      { container: `${hostPorts.web}/tcp`, hostIp: "127.0.0.1", hostPort: String(hostPorts.web) },
      { container: "8080/tcp", hostIp: "127.0.0.1", hostPort: String(legacyPort) },
    ].sort((a, b) => a.container.localeCompare(b.container)),
  );
  const r = await httpGet(hostPorts.web);
  expect(r.status).toBe(200);
  expect(r.body).toBe("hello from mcp\n");
  return c;
}

beforeAll(async () => {
  const [a, img, range] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0"), pickRange()]);
  agent = a;
  image = img;
  base = range.base;
  blocker = range.blocker;
  legacyPort = await freePort();
  // A narrow custom range and an explicit node address: restart the agent with them.
  await agent.stopAgent();
  const cfg = readFileSync(agent.agentConfig, "utf8");
  dbPath = /^path = "(.*)"$/m.exec(cfg)![1]!;
  writeFileSync(
    agent.agentConfig,
    cfg.replace("[agent]\n", `[agent]\naddress = "127.0.0.1"\nport_range = [${base}, ${base + 5}]\n`),
  );
  await agent.startAgent();
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    [
      `name = "${SVC}"`,
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      // Legacy publish beside the routes; nothing listens on 8080 since $PORT is set.
      `ports = ["127.0.0.1:${legacyPort}:8080"]`,
      "",
      "[[components.routes]]",
      'name = "grpc"',
      "port = 9443",
      'mode = "l4"',
      "",
      "[[components.routes]]",
      "port = 443",
      'mode = "l7"',
      "",
    ].join("\n"),
  );
}, 60_000);

afterAll(async () => {
  await removeContainers([CONTAINER]);
  if (blocker) await release(blocker);
  await agent?.stop();
}, 30_000);

describe("routes and host ports e2e (compiled binary, real podman)", () => {
  test("dry run shows the ports a deploy would take and reserves none", async () => {
    const r = await agent.mcp(["deploy", SVC, "--dry-run", "--pull", "never"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const line = r.stdout.split("\n").find((l) => l.startsWith("web: "));
    // `base` is held by another process, so the two routes get the next two, in route order.
    expect(line).toContain(`-p 127.0.0.1:${base + 1}:${base + 1}`);
    expect(line).toContain(`-p 127.0.0.1:${base + 2}:${base + 2}`);
    expect(line).toContain(`-e PORT_GRPC=${base + 1}`);
    expect(line).toContain(`-e PORT=${base + 2}`);
    expect(line).toContain(`-p 127.0.0.1:${legacyPort}:8080`);
    expect(allocations()).toEqual([]);
    expect((await podman("container", "exists", CONTAINER)).code).toBe(1);
  }, 20_000);

  test("deploy allocates in range past the taken port, publishes on the node address, injects $PORT*", async () => {
    const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok +web /m);
    expect(allocations()).toEqual([
      { port: base + 1, component: "web", route: "grpc" },
      { port: base + 2, component: "web", route: "" },
    ]);
    hostPorts.grpc = base + 1;
    hostPorts.web = base + 2;
    for (const p of Object.values(hostPorts)) {
      expect(p).toBeGreaterThan(base); // base is held by another process: skipped
      expect(p).toBeLessThanOrEqual(base + 5);
    }
    await expectWired();
  }, 30_000);

  test("status and ps carry the host ports; the status table has a ROUTES column", async () => {
    type Route = { name: string; port: number; mode: string; hostPort: number };
    const st = JSON.parse(await mcpOk(["status", SVC, "--json"])) as {
      services: { service: string; component: string; routes: Route[] }[];
    };
    const expected = [
      { name: "grpc", port: 9443, mode: "l4", hostname: "", hostPort: hostPorts.grpc, public: false },
      { name: "", port: 443, mode: "l7", hostname: "", hostPort: hostPorts.web, public: false },
    ];
    expect(st.services.find((s) => s.service === SVC)?.routes).toEqual(expected);
    const ps = JSON.parse(await mcpOk(["ps", "--json"])) as {
      containers: { service: string; routes: Route[] }[];
    };
    expect(ps.containers.find((c) => c.service === SVC)?.routes).toEqual(expected);
    const human = await mcpOk(["status", SVC]);
    expect(human.split("\n")[0]).toMatch(/UPTIME +ROUTES +DRIFT/i);
    expect(human).toContain(`grpc:9443→${hostPorts.grpc} l4, 443→${hostPorts.web} l7`);
  }, 20_000);

  test("redeploy keeps the same host ports (a new container, same wiring)", async () => {
    const before = await inspect(CONTAINER);
    // --force: an unchanged spec is otherwise left running as it is (no new container).
    await mcpOk(["deploy", SVC, "--pull", "never", "--force"]);
    const after = await expectWired();
    expect(after.id).not.toBe(before.id);
    expect(allocations().map((a) => a.port)).toEqual([hostPorts.grpc, hostPorts.web]);
  }, 30_000);

  test("stop keeps the allocations; start brings the same ports back", async () => {
    await mcpOk(["stop", SVC]);
    expect(allocations().map((a) => a.port)).toEqual([hostPorts.grpc, hostPorts.web]);
    await mcpOk(["start", SVC]);
    await expectWired();
  }, 30_000);

  test("start recreates a removed container with the same route ports", async () => {
    await mcpOk(["stop", SVC]);
    expect((await podman("rm", "-f", CONTAINER)).code).toBe(0);
    await mcpOk(["start", SVC]);
    await expectWired();
  }, 30_000);

  test("recover recreates a lost container with the same route ports", async () => {
    expect((await podman("rm", "-f", CONTAINER)).code).toBe(0);
    const out = await mcpOk(["agent", "recover", "--service", SVC]);
    expect(out).toContain(`local/${SVC}/web recreated`);
    await expectWired();
  }, 30_000);

  test("undeploy removes the container and frees every allocation", async () => {
    await mcpOk(["undeploy", SVC]);
    expect((await podman("container", "exists", CONTAINER)).code).toBe(1);
    expect(allocations()).toEqual([]);
  }, 30_000);

  test("with every port of the range taken, deploy fails with one clear line and starts nothing", async () => {
    const held: Server[] = [];
    try {
      for (let p = base + 1; p <= base + 5; p++) {
        const s = await hold(p);
        expect(s).not.toBeNull();
        if (s) held.push(s);
      }
      const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr.trim().split("\n")).toEqual([
        `mcp: local: RESOURCE_EXHAUSTED: no free host port in ${base}-${base + 5} on 127.0.0.1 for ${SVC}/web route grpc`,
      ]);
      expect((await podman("container", "exists", CONTAINER)).code).toBe(1);
      expect(allocations()).toEqual([]);
    } finally {
      for (const s of held) await release(s);
    }
  }, 30_000);
});
