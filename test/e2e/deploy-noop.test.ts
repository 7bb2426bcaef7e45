// e2e (issue 19, stumbles 2 and 5) through the COMPILED binary, a real agent, real podman and a
// real OCI registry:
// - a first deploy that fails before any container ran (a tag the registry lacks, no tag with no
//   :latest, a container that cannot start) leaves nothing: not in `mcp list`/`ps`, no drift in
//   `mcp status`, no registry rows (service, components, host ports, history), no container;
// - a failed redeploy keeps what ran: the old container (a missing tag) or the old spec restored
//   (a container that cannot start), and the registry's spec stays the old one;
// - a redeploy of the unchanged spec is "unchanged": exit 0, the same container (id, start time),
//   no history row; --force recreates; the tag pushed again with another image is redeployed and
//   says the digest changed (and with --pull missing the local image still counts: unchanged).
//
// The tests run in file order and share one agent and registry, as an operator would go.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import {
  busyboxImage,
  freePort,
  podman,
  pushToRegistry,
  type Registry,
  startRegistry,
} from "../support/env.ts";
import {
  type LocalAgent,
  NO_REGISTRY_ROWS,
  registryRows,
  removeContainers,
  startLocalAgent,
} from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const PREFIX = `noop-${rand()}`;
const SVC = PREFIX;
const WEB = `${SVC}-web`;
const MISSING = `${PREFIX}-missing`; // a tag the registry does not have
const NOTAG = `${PREFIX}-notag`; // no tag, and the repository has no :latest
const NOSTART = `${PREFIX}-nostart`; // an image that is there, a container that cannot start
const CONTAINERS = [WEB, `${MISSING}-web`, `${NOTAG}-web`, `${NOSTART}-web`];

let agent: LocalAgent;
let registry: Registry;
let repo = ""; // <registry>/noop-<rand>
let image = ""; // <repo>:v1
let port = 0;

function writeDef(name: string, img: string, extra: string[] = []): string {
  const file = join(agent.servicesDir, `${name}.toml`);
  writeFileSync(
    file,
    [`name = "${name}"`, "", "[[components]]", 'name = "web"', `image = "${img}"`, ...extra, ""].join("\n"),
  );
  return file;
}

const svcDef = (extra: string[] = [], img = image) =>
  writeDef(SVC, img, [`ports = ["127.0.0.1:${port}:8080"]`, ...extra]);

/** An l4 route: the deploy allocates a host port for it (a row in port_allocations). */
const ROUTE = ["", "[[components.routes]]", "port = 8080", 'mode = "l4"'];

async function container(name: string): Promise<{ id: string; started: string; image: string } | null> {
  const r = await podman("inspect", "--format", "{{.Id}}|{{.State.StartedAt}}|{{.Image}}", name);
  if (r.code !== 0) return null;
  const [id = "", started = "", image = ""] = r.stdout.split("|");
  return { id, started, image };
}

async function state(name: string): Promise<string> {
  const r = await podman("inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout : "missing";
}

/** GET /version.txt on the published port; retried briefly (httpd starts just after run). */
async function served(): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 40; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/version.txt`, { signal: AbortSignal.timeout(1000) });
      return (await res.text()).trim();
    } catch (err) {
      last = err;
      await Bun.sleep(50);
    }
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${port}: ${String(last)}`);
}

interface Row {
  service: string;
  component: string;
  image: string;
  desired: string;
  observed: string;
}

async function json<T>(args: string[]): Promise<T> {
  const r = await agent.mcp([...args, "--json"]);
  expect(r.stderr).toBe("");
  return JSON.parse(r.stdout) as T;
}

/** What list, ps and status say of `name` (rows and drift), and what the registry holds of it. */
async function seenAs(name: string) {
  const list = await json<{ services: Row[] }>(["list"]);
  const ps = await json<{ containers: Row[] }>(["ps"]);
  const st = await json<{ services: Row[]; drift: Row[] }>(["status"]);
  const text = await Promise.all([agent.mcp(["list"]), agent.mcp(["ps"])]);
  return {
    list: list.services.filter((r) => r.service === name),
    ps: ps.containers.filter((r) => r.service === name),
    status: st.services.filter((r) => r.service === name),
    drift: st.drift.filter((r) => r.service === name),
    text: text.filter((r) => r.stdout.includes(name)).length,
    rows: registryRows(agent, name),
    container: await state(`${name}-web`),
  };
}

const NOTHING = {
  list: [],
  ps: [],
  status: [],
  drift: [],
  text: 0,
  rows: NO_REGISTRY_ROWS,
  container: "missing",
};

async function specImage(): Promise<string> {
  const def = await json<{ components: { image: string }[] }>(["service", "show", SVC]);
  return def.components[0]!.image;
}

beforeAll(async () => {
  const [a, r, v1] = await Promise.all([startLocalAgent(), startRegistry(), busyboxImage("v1.0.0")]);
  agent = a;
  registry = r;
  repo = `${r.address}/${PREFIX}`;
  image = `${repo}:v1`;
  await pushToRegistry(v1, image);
  port = await freePort();
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  if (repo) await podman("rmi", "--ignore", image);
  await registry?.stop();
  await agent?.stop();
}, 30_000);

describe("a first deploy that fails before anything ran leaves nothing", () => {
  test("a tag the registry does not have: exit 1, one FAIL line; not listed, no drift, no rows", async () => {
    const file = writeDef(MISSING, `${repo}:nosuch`, ROUTE);
    const r = await agent.mcp(["deploy", MISSING]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL web: .*nosuch.* {2}\(pull \d+ms\)$/m);
    expect(r.stderr).toContain(`mcp: deploy of ${MISSING} failed for web`);
    expect(await seenAs(MISSING)).toEqual(NOTHING);
    rmSync(file);
  }, 60_000);

  test("no tag and no :latest in the registry: the same", async () => {
    const file = writeDef(NOTAG, `${repo}-none`);
    const r = await agent.mcp(["deploy", NOTAG]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL web: /m);
    expect(await seenAs(NOTAG)).toEqual(NOTHING);
    rmSync(file);
  }, 60_000);

  test("a container that cannot start (no such user): the created container, its port and its rows go", async () => {
    const file = writeDef(NOSTART, image, ['user = "nosuchuser"', ...ROUTE]);
    const r = await agent.mcp(["deploy", NOSTART]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL web: .*nosuchuser/m);
    expect(r.stdout).not.toContain("rolled back");
    expect(await seenAs(NOSTART)).toEqual(NOTHING);
    rmSync(file);
  }, 60_000);
});

describe("redeploys: unchanged is left alone, a failure keeps what ran", () => {
  let first: { id: string; started: string; image: string };

  test("the first deploy of the service runs v1", async () => {
    svcDef();
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ok {3}web v1 {2}pull \d+ms \(pulled\), stop \d+ms, run \d+ms, inspect \d+ms$/m,
    );
    expect(await served()).toBe("v1.0.0");
    first = (await container(WEB))!;
    expect(first.id).toMatch(/^[0-9a-f]{64}$/);
    expect(registryRows(agent, SVC)).toEqual({ services: 1, components: 1, ports: 0, history: 1 });
  }, 60_000);

  test("the same spec again: unchanged, exit 0, the same container (id, start time), no history row", async () => {
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const id12 = first.image.replace(/^sha256:/, "").slice(0, 12);
    expect(r.stdout).toMatch(
      new RegExp(
        `^ok {3}web v1 {2}unchanged \\(same spec and image sha256:${id12}…\\) {2}pull \\d+ms \\(pulled\\)$`,
        "m",
      ),
    );
    expect(r.stdout).toContain(`${SVC}: unchanged, nothing redeployed (mcp deploy --force recreates)`);
    expect(await container(WEB)).toEqual(first);
    expect(registryRows(agent, SVC).history).toBe(1);
    const j = await json<{ results: { component: string; unchanged?: boolean; reason?: string }[] }>([
      "deploy",
      SVC,
    ]);
    expect(j.results).toEqual([
      expect.objectContaining({
        component: "web",
        unchanged: true,
        reason: `same spec and image sha256:${id12}…`,
      }),
    ]);
    expect(await container(WEB)).toEqual(first);
  }, 60_000);

  test("--force recreates it: a new container of the same image", async () => {
    const r = await agent.mcp(["deploy", SVC, "--force"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^ok {3}web v1 {2}pull \d+ms \(pulled\), stop \d+ms, run \d+ms, inspect \d+ms$/m,
    );
    const now = (await container(WEB))!;
    expect(now.id).not.toBe(first.id);
    expect(now.image).toBe(first.image);
    expect(await served()).toBe("v1.0.0");
    first = now;
  }, 60_000);

  test("a redeploy whose tag is missing fails and keeps the old container and the old spec", async () => {
    const rows = registryRows(agent, SVC);
    svcDef([], `${repo}:nosuch`);
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL web: .*nosuch/m);
    expect(await container(WEB)).toEqual(first);
    expect(await state(WEB)).toBe("running");
    expect(await specImage()).toBe(image);
    const st = await json<{ services: Row[]; drift: Row[] }>(["status", SVC]);
    expect(st.services.map((s) => [s.component, s.image, s.desired, s.observed])).toEqual([
      ["web", image, "running", "running"],
    ]);
    expect(st.drift).toEqual([]);
    expect(registryRows(agent, SVC)).toEqual(rows);
    expect(await served()).toBe("v1.0.0");
  }, 60_000);

  test("a redeploy whose container cannot start is rolled back: the old spec runs again", async () => {
    svcDef(['user = "nosuchuser"']);
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/^FAIL web: .*nosuchuser.*; rolled back to /m);
    expect(r.stdout).toContain(`rolled back to ${image}`);
    const now = (await container(WEB))!;
    expect(await state(WEB)).toBe("running");
    expect(now.image).toBe(first.image);
    expect(await specImage()).toBe(image);
    const user = await podman("inspect", "--format", "{{.Config.User}}", WEB);
    expect(user.stdout).toBe("");
    expect(await served()).toBe("v1.0.0");
    const st = await json<{ drift: Row[] }>(["status", SVC]);
    expect(st.drift).toEqual([]);
    first = now;
  }, 60_000);

  test("back to the deployed spec: unchanged (the restored container is that spec)", async () => {
    svcDef();
    const r = await agent.mcp(["deploy", SVC]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${SVC}: unchanged, nothing redeployed`);
    expect(await container(WEB)).toEqual(first);
  }, 60_000);

  test("the tag pushed again with another image: --pull missing keeps the local one; a pull redeploys and says so", async () => {
    await pushToRegistry(await busyboxImage("v1.0.1"), image);
    const cached = await agent.mcp(["deploy", SVC, "--pull", "missing"]);
    expect(cached.code).toBe(0);
    expect(cached.stdout).toMatch(
      /^ok {3}web v1 {2}unchanged \(same spec and image sha256:[0-9a-f]{12}…\) {2}pull \d+ms \(cached\)$/m,
    );
    expect(await container(WEB)).toEqual(first);

    const r = await agent.mcp(["deploy", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const pulled = await podman("image", "inspect", "--format", "{{.Id}}", image);
    const newId = pulled.stdout.replace(/^sha256:/, "");
    const oldId = first.image.replace(/^sha256:/, "");
    expect(newId).not.toBe(oldId);
    expect(r.stdout).toContain(
      `ok   web v1  image digest changed: sha256:${oldId.slice(0, 12)}… -> sha256:${newId.slice(0, 12)}…  pull `,
    );
    const now = (await container(WEB))!;
    expect(now.id).not.toBe(first.id);
    expect(now.image.replace(/^sha256:/, "")).toBe(newId);
    expect(await served()).toBe("v1.0.1");
    expect(registryRows(agent, SVC).history).toBeGreaterThan(1);
  }, 60_000);
});
