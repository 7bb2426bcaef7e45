// e2e: an agent configured with container_runtime = "docker" (the reference edge node runs Docker)
// drives a real Docker engine through the COMPILED binary: `mcp init --local`, then the agent
// config is switched to docker with the engine's socket in runtime_args, the agent restarted, and
// a one-component service deployed from a real registry. ps/node list report it, stop/start work,
// HTTP answers on the published 127.0.0.1 port, podman never sees the container, and a redeploy
// of the same spec leaves it alone (docker's image ids and the mcp.spec label).
//
// The agent finds `docker` on PATH, so this also exercises whatever client the machine has there
// (Debian's 20.10, or a newer one that negotiates the engine's API version).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Dockerd, dockerBusyboxImage, dockerCli, dockerPush, startDockerd } from "../support/docker.ts";
import { freePort, podmanEnv, type Registry, startRegistry } from "../support/env.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `e2edk-${rand()}`;
const WEB = `${SVC}-web`;
const VERSION = "v2.0.1";

let dockerd: Dockerd;
let agent: LocalAgent;
let registry: Registry | null = null;
let image = "";
let port = 0;

async function dockerState(name: string): Promise<string> {
  const r = await dockerCli(dockerd, "container", "inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout.trim() : "missing";
}

async function mcpOk(args: string[]): Promise<string> {
  const r = await agent.mcp(args);
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

async function httpGet(p: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 40; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${p}/`, { signal: AbortSignal.timeout(1000) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      last = err;
      await Bun.sleep(50);
    }
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${p}: ${String(last)}`);
}

interface Row {
  service: string;
  component: string;
  image: string;
  desired: string;
  observed: string;
  version: string;
  started: string | null;
}

async function myRows(): Promise<Row[]> {
  const ps = JSON.parse(await mcpOk(["ps", "--json"])) as { containers: Row[]; errors: unknown[] };
  expect(ps.errors).toEqual([]);
  return ps.containers.filter((r) => r.service === SVC);
}

beforeAll(async () => {
  const [d, r, a] = await Promise.all([startDockerd(), startRegistry(), startLocalAgent()]);
  dockerd = d;
  registry = r;
  agent = a;
  image = `${r.address}/e2edk-${rand()}:${VERSION}`;
  await dockerPush(d, await dockerBusyboxImage(d, VERSION), image);
  port = await freePort();

  // Switch the agent to docker: the engine endpoint travels in runtime_args as docker's global -H.
  await agent.stopAgent();
  const cfg = readFileSync(agent.agentConfig, "utf8");
  const switched = cfg
    .replace(/^container_runtime = .*$/m, 'container_runtime = "docker"')
    .replace(/^runtime_args = .*$/m, `runtime_args = ${JSON.stringify(d.globalArgs)}`);
  expect(switched).toContain('container_runtime = "docker"');
  expect(switched).toContain(`runtime_args = ["-H","${d.host}"]`);
  writeFileSync(agent.agentConfig, switched);
  await agent.startAgent();

  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    [
      `name = "${SVC}"`,
      "active = true",
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      `ports = ["127.0.0.1:${port}:8080"]`,
      "",
    ].join("\n"),
  );
}, 60_000);

afterAll(async () => {
  if (dockerd) await dockerCli(dockerd, "rm", "-f", WEB);
  await registry?.stop();
  await agent?.stop();
  await dockerd?.stop();
}, 60_000);

describe("an agent with container_runtime = docker (compiled binary, real engine)", () => {
  test("node list reports the docker engine and its version", async () => {
    const out = JSON.parse(await mcpOk(["node", "list", "--json"])) as {
      nodes: { reachable: boolean; runtime: string; runtimeVersion: string }[];
    };
    expect(out.nodes).toHaveLength(1);
    expect(out.nodes[0]).toMatchObject({
      reachable: true,
      runtime: "docker",
      runtimeVersion: dockerd.version,
    });
  }, 20_000);

  test("deploy --dry-run prints the docker argv", async () => {
    const r = await agent.mcp(["deploy", SVC, "--dry-run"]);
    expect(r.code).toBe(0);
    const web = r.stdout.split("\n").find((l) => l.startsWith("web: ")) ?? "";
    // The agent adds its default restart policy, as with podman.
    // mcp.spec: the key of what the container runs (a later deploy of the same spec leaves it be).
    const [head, tail] = web.split(/ --label mcp\.spec=[0-9a-f]{16} /);
    expect(head).toBe(
      `web: docker -H ${dockerd.host} run -d --name ${WEB} --label mcp.service=${SVC} --label mcp.component=web`,
    );
    expect(tail).toBe(`--restart unless-stopped -p 127.0.0.1:${port}:8080 ${image}`);
    expect(await dockerState(WEB)).toBe("missing");
  }, 20_000);

  test("deploy pulls from the registry into docker and starts the component", async () => {
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ok {3}web v2\.0\.1 {2}pull \d+ms \(pulled\), stop \d+ms, run \d+ms, inspect \d+ms$/m,
    );
    expect(await dockerState(WEB)).toBe("running");
    // It went to docker, not podman.
    const pe = await podmanEnv();
    const p = Bun.spawn(["podman", ...pe.globalArgs, "container", "exists", WEB], {
      env: { ...process.env, ...pe.env },
      stdout: "ignore",
      stderr: "ignore",
    });
    expect(await p.exited).toBe(1);
  }, 60_000);

  test("HTTP answers on the published port", async () => {
    expect(await httpGet(port)).toEqual({ status: 200, body: "hello from mcp\n" });
  }, 10_000);

  test("ps --json shows it running at its version with a start time", async () => {
    const rows = await myRows();
    expect(rows.map((r) => [r.component, r.image, r.desired, r.observed, r.version])).toEqual([
      ["web", image, "running", "running", VERSION],
    ]);
    const started = Date.parse(rows[0]!.started ?? "");
    expect(Date.now() - started).toBeLessThan(120_000);
    expect(Date.now() - started).toBeGreaterThanOrEqual(-2000);
    expect(await mcpOk(["ps"])).toMatch(new RegExp(`^${WEB} +local +running +v2\\.0\\.1 `, "m"));
  }, 20_000);

  test("stop stops the container; ps says exited", async () => {
    expect((await mcpOk(["stop", SVC])).trim()).toBe(`ok   stop ${SVC}/web`);
    expect(await dockerState(WEB)).toBe("exited");
    const rows = await myRows();
    expect(rows.map((r) => [r.desired, r.observed])).toEqual([["stopped", "exited"]]);
  }, 30_000);

  test("start brings it back and HTTP answers again", async () => {
    expect((await mcpOk(["start", SVC])).trim()).toBe(`ok   start ${SVC}/web`);
    expect(await dockerState(WEB)).toBe("running");
    expect(await httpGet(port)).toEqual({ status: 200, body: "hello from mcp\n" });
    const rows = await myRows();
    expect(rows.map((r) => [r.desired, r.observed, r.version])).toEqual([["running", "running", VERSION]]);
  }, 30_000);

  test("the same spec again: unchanged (docker's image ids), the same container; --force recreates it", async () => {
    const id = async () =>
      (await dockerCli(dockerd, "container", "inspect", "--format", "{{.Id}}", WEB)).stdout;
    const before = await id();
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ok {3}web v2\.0\.1 {2}unchanged \(same spec and image sha256:[0-9a-f]{12}…\) {2}pull \d+ms \(pulled\)$/m,
    );
    expect(await id()).toBe(before);
    expect((await agent.mcp(["deploy", SVC, "--force"])).code).toBe(0);
    expect(await id()).not.toBe(before);
    expect(await dockerState(WEB)).toBe("running");
  }, 60_000);
});
