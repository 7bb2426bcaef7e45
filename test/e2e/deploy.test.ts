// e2e acceptance test of the deploy path through the COMPILED x64 binary: `mcp init --local` plus
// a real agent process, a real OCI registry the image is pulled from, real podman containers
// answering HTTP on published 127.0.0.1 ports. Covers deploy (and its dry run and single-component
// form), ps, stop/start/restart (with the `active` rewrite in the definition file), status with and
// without drift, and deploying with the registry gone (local-copy fallback).
//
// The tests run in file order and share one service: each step starts from the state the
// previous one left, exactly as an operator would drive the tool.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  busyboxImage,
  freePort,
  podman,
  pushToRegistry,
  type Registry,
  startRegistry,
} from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `e2e-${rand()}`;
const WEB = `${SVC}-web`;
const API = `${SVC}-api`;
const VERSION = "v1.2.3";

let agent: LocalAgent;
let registry: Registry | null = null;
let image = ""; // <registry>/e2e-<rand>:v1.2.3
let defFile = "";
const ports = { web: 0, api: 0 };

/** Runs podman with the test environment's global flags; returns exit code and output. */

/** "running", "exited", … or "missing" when there is no such container. */
async function containerState(name: string): Promise<string> {
  const r = await podman("inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout : "missing";
}

async function containerId(name: string): Promise<string> {
  const r = await podman("inspect", "--format", "{{.Id}}", name);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/^[0-9a-f]{64}$/);
  return r.stdout;
}

/** GET / on a published port; retried briefly because httpd starts just after `podman run` returns. */
async function httpGet(port: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 40; i++) {
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

async function expectServing(): Promise<void> {
  for (const port of [ports.web, ports.api]) {
    const r = await httpGet(port);
    expect(r.status).toBe(200);
    expect(r.body).toBe("hello from mcp\n");
  }
}

async function mcpOk(args: string[]): Promise<string> {
  const r = await agent.mcp(args);
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

interface Row {
  service: string;
  component: string;
  image: string;
  desired: string;
  observed: string;
  version: string;
}
interface Drift {
  node: string;
  service: string;
  component: string;
  desired: string;
  observed: string;
}

const mine = (rows: Row[]) =>
  rows
    .filter((r) => r.service === SVC)
    .map((r) => ({
      component: r.component,
      image: r.image,
      desired: r.desired,
      observed: r.observed,
      version: r.version,
    }))
    .sort((a, b) => a.component.localeCompare(b.component));

const expectedRows = (observedApi: string, observedWeb: string, desired = "running") => [
  { component: "api", image, desired, observed: observedApi, version: VERSION },
  { component: "web", image, desired, observed: observedWeb, version: VERSION },
];

/** Output lines in a stable order (lifecycle commands report components in registry order). */
const sortedLines = (out: string) => out.trim().split("\n").sort();

const activeLine = () =>
  readFileSync(defFile, "utf8")
    .split("\n")
    .find((l) => /^active\s*=/.test(l));

beforeAll(async () => {
  const [a, r, local] = await Promise.all([startLocalAgent(), startRegistry(), busyboxImage(VERSION)]);
  agent = a;
  registry = r;
  image = `${r.address}/e2e-${rand()}:${VERSION}`;
  await pushToRegistry(local, image);
  ports.web = await freePort();
  ports.api = await freePort();
  while (ports.api === ports.web) ports.api = await freePort();
  defFile = join(agent.servicesDir, `${SVC}.toml`);
  writeFileSync(
    defFile,
    [
      "# e2e service: two components from the local registry",
      `name = "${SVC}"`,
      "active = true",
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      `ports = ["127.0.0.1:${ports.web}:8080"]`,
      "",
      "[[components]]",
      'name = "api"',
      `image = "${image}"`,
      `ports = ["127.0.0.1:${ports.api}:8080"]`,
      "",
    ].join("\n"),
  );
}, 60_000);

afterAll(async () => {
  await removeContainers([WEB, API]);
  if (image) await podman("rmi", "--force", "--ignore", image);
  await registry?.stop();
  await agent?.stop();
}, 30_000);

describe(`deploy e2e (compiled binary, real registry, real podman)`, () => {
  test("the image is only in the registry, not in the local store, before the first deploy", async () => {
    expect((await podman("image", "exists", image)).code).toBe(1);
  });

  test("deploy --dry-run prints the exact podman argv per component and changes nothing", async () => {
    const r = await agent.mcp(["deploy", SVC, "--dry-run"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`dry run: deploying ${SVC} to local (from ${defFile})`);
    const web = lines.find((l) => l.startsWith("web: "));
    const api = lines.find((l) => l.startsWith("api: "));
    expect(web).toContain("podman --runtime runc run -d --name ");
    expect(web).toContain(`run -d --name ${WEB}`);
    expect(web).toContain(`-p 127.0.0.1:${ports.web}:8080`);
    expect(web?.endsWith(` ${image}`)).toBe(true);
    expect(api).toContain(`run -d --name ${API}`);
    expect(api).toContain(`-p 127.0.0.1:${ports.api}:8080`);
    expect(api?.endsWith(` ${image}`)).toBe(true);

    expect(await containerState(WEB)).toBe("missing");
    expect(await containerState(API)).toBe("missing");
    expect((await podman("image", "exists", image)).code).toBe(1); // not even pulled
    const list = JSON.parse(await mcpOk(["list", "--json"])) as { services: Row[] };
    expect(list.services.filter((s) => s.service === SVC)).toEqual([]);
    expect(await mcpOk(["list"])).not.toContain(SVC);
  }, 20_000);

  test("deploy pulls from the registry and starts both components", async () => {
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`deploying ${SVC} to local (from ${defFile})`);
    for (const comp of ["web", "api"]) {
      const line = lines.find((l) => l.startsWith(`ok   ${comp} `)) ?? "";
      // e.g. "ok   web v1.2.3  pull 52ms (pulled), stop 20ms, run 180ms, inspect 25ms"
      expect(line).toMatch(
        new RegExp(
          `^ok {3}${comp} v1\\.2\\.3 {2}pull \\d+ms \\(pulled\\), stop \\d+ms, run \\d+ms, inspect \\d+ms$`,
        ),
      );
    }
    expect(lines).toHaveLength(3);
    expect((await podman("image", "exists", image)).code).toBe(0); // really pulled
    expect(await containerState(WEB)).toBe("running");
    expect(await containerState(API)).toBe("running");
  }, 30_000);

  test("both published ports answer HTTP 200 'hello from mcp'", async () => {
    await expectServing();
  }, 10_000);

  test("ps --json shows both components observed running at version v1.2.3", async () => {
    const ps = JSON.parse(await mcpOk(["ps", "--json"])) as { containers: Row[]; errors: unknown[] };
    expect(ps.errors).toEqual([]);
    expect(mine(ps.containers)).toEqual(expectedRows("running", "running"));
    const human = await mcpOk(["ps"]);
    expect(human).toMatch(new RegExp(`^${WEB} +local +running +v1\\.2\\.3 `, "m"));
    expect(human).toMatch(new RegExp(`^${API} +local +running +v1\\.2\\.3 `, "m"));
  }, 10_000);

  test("stop stops both containers and writes active = false into the definition", async () => {
    expect(sortedLines(await mcpOk(["stop", SVC]))).toEqual([`ok   stop ${SVC}/api`, `ok   stop ${SVC}/web`]);
    expect(await containerState(WEB)).toBe("exited");
    expect(await containerState(API)).toBe("exited");
    expect(activeLine()).toBe("active = false");
    // The rest of the file (comment, order) is left as the operator wrote it.
    expect(readFileSync(defFile, "utf8").startsWith("# e2e service:")).toBe(true);
    const ps = JSON.parse(await mcpOk(["ps", "--json"])) as { containers: Row[] };
    expect(mine(ps.containers)).toEqual(expectedRows("exited", "exited", "stopped"));
  }, 30_000);

  test("start runs them again and writes active = true", async () => {
    expect(sortedLines(await mcpOk(["start", SVC]))).toEqual([
      `ok   start ${SVC}/api`,
      `ok   start ${SVC}/web`,
    ]);
    expect(await containerState(WEB)).toBe("running");
    expect(await containerState(API)).toBe("running");
    expect(activeLine()).toBe("active = true");
    await expectServing();
  }, 30_000);

  test("restart keeps both running and HTTP answers again", async () => {
    const before = await mcpOk(["ps", "--json"]);
    expect(sortedLines(await mcpOk(["restart", SVC]))).toEqual([
      `ok   restart ${SVC}/api`,
      `ok   restart ${SVC}/web`,
    ]);
    expect(await containerState(WEB)).toBe("running");
    expect(await containerState(API)).toBe("running");
    expect(activeLine()).toBe("active = true"); // restart does not touch the file
    await expectServing();
    const after = JSON.parse(await mcpOk(["ps", "--json"])) as { containers: Row[] };
    expect(mine(after.containers)).toEqual(expectedRows("running", "running"));
    expect(before).toContain(SVC);
  }, 30_000);

  test("status --json reports the service with no drift", async () => {
    const st = JSON.parse(await mcpOk(["status", SVC, "--json"])) as {
      services: Row[];
      drift: Drift[];
      errors: unknown[];
    };
    expect(st.errors).toEqual([]);
    expect(mine(st.services)).toEqual(expectedRows("running", "running"));
    expect(st.drift).toEqual([]);
    const all = JSON.parse(await mcpOk(["status", "--json"])) as { drift: Drift[] };
    expect(all.drift.filter((d) => d.service === SVC)).toEqual([]);
    expect(await mcpOk(["status", SVC])).toEndWith("\nlocal: 1 service, 2 components, 2 running, no drift\n");
  }, 10_000);

  test("deploy <svc>/web --force redeploys only web: api's container is untouched", async () => {
    const webBefore = await containerId(WEB);
    const apiBefore = await containerId(API);
    // Unchanged, web would be left alone (deploy-noop.test.ts): --force recreates it.
    const r = await agent.mcp(["deploy", `${SVC}/web`, "--force"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split("\n");
    expect(lines[0]).toBe(`deploying ${SVC}/web to local (from ${defFile})`);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatch(/^ok {3}web v1\.2\.3 {2}pull \d+ms \(pulled\), stop /);
    expect(await containerId(WEB)).not.toBe(webBefore);
    expect(await containerId(API)).toBe(apiBefore);
    expect(await containerState(API)).toBe("running");
    await expectServing();
  }, 30_000);

  test("a container stopped behind the agent's back shows as drift for exactly that component", async () => {
    const stopped = await podman("stop", "-t", "2", API);
    expect(stopped.code).toBe(0);
    const json = await agent.mcp(["status", SVC, "--json"]);
    expect(json.code).toBe(3); // drift: the documented status/ps code
    const st = JSON.parse(json.stdout) as {
      services: Row[];
      drift: Drift[];
      events: { service: string; component: string; prev: string; next: string }[];
    };
    expect(st.drift).toEqual([
      { node: "local", service: SVC, component: "api", desired: "running", observed: "exited" },
    ]);
    expect(mine(st.services)).toEqual(expectedRows("exited", "running"));
    expect(st.events).toContainEqual(
      expect.objectContaining({ service: SVC, component: "api", prev: "running", next: "exited" }),
    );
    // Drift exits 3 (for scripts and cron), and the human table marks the row.
    const human = await agent.mcp(["status", SVC]);
    expect(human.code).toBe(3);
    // Table rows start with the node name; the header's DRIFT column title is not a row.
    const driftRows = human.stdout.split("\n").filter((l) => l.startsWith("local ") && l.includes("DRIFT"));
    expect(driftRows).toHaveLength(1);
    expect(driftRows[0]).toMatch(new RegExp(`^local +${SVC} +api +running +exited `));
    expect(human.stdout).toContain(`local/${SVC}/api: desired running, observed exited`);
    expect(human.stdout).toEndWith("\nlocal: 1 service, 2 components, 1 running, 1 drift\n");
  }, 20_000);

  test("with the registry gone, deploy still succeeds from the local copy and warns", async () => {
    await registry!.stop();
    registry = null;
    const webBefore = await containerId(WEB);
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.code).toBe(0);
    for (const comp of ["web", "api"]) {
      expect(r.stderr).toContain(`mcp: warning: ${comp}: pull of ${image} failed (`);
    }
    // web runs the same spec from the same (local) image: left alone. api was stopped: recreated.
    expect(r.stdout).toMatch(
      /^ok {3}web v1\.2\.3 {2}unchanged \(same spec and image sha256:[0-9a-f]{12}…\) {2}pull \d+ms \(local \(pull failed\)\)$/m,
    );
    expect(r.stdout).toMatch(
      /^ok {3}api v1\.2\.3 {2}pull \d+ms \(local \(pull failed\)\), stop \d+ms, run /m,
    );
    expect(await containerId(WEB)).toBe(webBefore);
    expect(r.stderr).toContain("; using the local copy");
    expect(await containerState(WEB)).toBe("running");
    expect(await containerState(API)).toBe("running");
    await expectServing();
    const st = JSON.parse(await mcpOk(["status", SVC, "--json"])) as { drift: Drift[] };
    expect(st.drift).toEqual([]);
  }, 60_000);
});
