// e2e acceptance test of safe deploys (issue 8 items 1-4) through the COMPILED binary, a real
// local agent and real podman: health-gated deploys, automatic rollback of an image whose
// endpoint answers 404 (and of one that exits while it is waited for), the service answering on its port throughout a
// failed attempt except for the restart windows, `--no-rollback`, the spec history and
// `mcp rollback` (itself health-gated), and an exec health check.
//
// Images: the busybox test image plus, built FROM it here, v1/v3 with /www/healthz (healthy),
// v2 without it (GET /healthz answers 404) and "crash" whose CMD exits after a second. Each has its own
// /www/version.txt, so a GET tells which one answers. Tests run in file order on shared services.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyboxImage, freePort, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const ID = rand();
const SVC = `h8-${ID}`;
const EXEC_SVC = `h8x-${ID}`;
const REPO = `localhost/mcp-h8-${ID}`;
const IMG = { v1: `${REPO}:v1`, v2: `${REPO}:v2`, v3: `${REPO}:v3`, crash: `${REPO}:crash` };

let agent: LocalAgent;
let port = 0;
let execPort = 0;
let ctxDir = "";

/** Builds REPO:<tag> FROM the busybox test image: version.txt, optionally healthz, optionally a CMD. */
async function buildImage(base: string, tag: string, healthz: boolean, cmd?: string[]): Promise<void> {
  const dir = join(ctxDir, tag);
  mkdirp(dir);
  writeFileSync(join(dir, "version.txt"), `${tag}\n`);
  writeFileSync(join(dir, "healthz"), "ok\n");
  const lines = [`FROM ${base}`, "COPY version.txt /www/version.txt"];
  if (healthz) lines.push("COPY healthz /www/healthz");
  if (cmd) lines.push(`CMD ${JSON.stringify(cmd)}`);
  writeFileSync(join(dir, "Containerfile"), `${lines.join("\n")}\n`);
  const r = await podman("build", "-q", "-t", `${REPO}:${tag}`, dir);
  if (r.code !== 0) throw new Error(`podman build ${tag} failed: ${r.stderr}`);
}

function mkdirp(dir: string): void {
  Bun.spawnSync(["mkdir", "-p", dir]);
}

interface HealthOpts {
  type?: string;
  retries?: number;
  interval?: string;
  startPeriod?: string;
  cmd?: string[];
}

function writeDef(svc: string, image: string, hostPort: number, h: HealthOpts = {}): void {
  const lines = [
    `name = "${svc}"`,
    "",
    "[[components]]",
    'name = "web"',
    `image = "${image}"`,
    `ports = ["127.0.0.1:${hostPort}:8080"]`,
    "",
    "[components.health]",
  ];
  if ((h.type ?? "http") === "exec") {
    lines.push('type = "exec"', `cmd = ${JSON.stringify(h.cmd ?? ["cat", "/www/healthz"])}`);
  } else {
    lines.push('type = "http"', "port = 8080", 'path = "/healthz"');
  }
  lines.push(
    `interval = "${h.interval ?? "300ms"}"`,
    'timeout = "1s"',
    `retries = ${h.retries ?? 3}`,
    `start_period = "${h.startPeriod ?? "0s"}"`,
  );
  writeFileSync(join(agent.servicesDir, `${svc}.toml`), `${lines.join("\n")}\n`);
}

async function version(p: number): Promise<string | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${p}/version.txt`, { signal: AbortSignal.timeout(500) });
    return res.status === 200 ? (await res.text()).trim() : null;
  } catch {
    return null;
  }
}

/** GET version.txt every 50 ms while `during` runs (and until it answers again); returns the samples. */
async function pollDuring<T>(
  p: number,
  during: () => Promise<T>,
): Promise<{ value: T; samples: { t: number; v: string | null }[] }> {
  const samples: { t: number; v: string | null }[] = [];
  let stop = false;
  const loop = (async () => {
    // Bounded: a deploy here ends within the CLI timeout; 20 000 × 50 ms is far beyond it.
    for (let i = 0; i < 20_000 && !stop; i++) {
      samples.push({ t: performance.now(), v: await version(p) });
      await Bun.sleep(50);
    }
  })();
  const value = await during();
  stop = true;
  await loop;
  // A sample in flight while the deploy finished may have missed the restored container by a
  // moment: keep sampling until one answers (bounded), so the last window is measured, not open.
  for (let i = 0; i < 40 && samples[samples.length - 1]?.v === null; i++) {
    await Bun.sleep(50);
    samples.push({ t: performance.now(), v: await version(p) });
  }
  return { value, samples };
}

/** The longest stretch (ms) between the first unanswered sample of a run and the next answered one. */
function longestGap(samples: { t: number; v: string | null }[]): number {
  let longest = 0;
  let since: number | null = null;
  for (const s of samples) {
    if (s.v === null) since ??= s.t;
    else if (since !== null) {
      longest = Math.max(longest, s.t - since);
      since = null;
    }
  }
  return since === null ? longest : Infinity;
}

async function imageOf(container: string): Promise<string> {
  const r = await podman("inspect", "--format", "{{.ImageName}}", container);
  return r.code === 0 ? r.stdout : "missing";
}

async function registryRow(svc: string): Promise<{ image: string; desired: string; version: string }> {
  const r = await agent.mcp(["list", "--json"]);
  expect(r.code).toBe(0);
  const rows = JSON.parse(r.stdout).services as {
    service: string;
    image: string;
    desired: string;
    version: string;
  }[];
  const row = rows.find((x) => x.service === svc);
  if (!row) throw new Error(`${svc} not in mcp list`);
  return row;
}

interface Entry {
  k: number;
  id: number;
  deployedAt: string;
  caller: string;
  images: string;
  kind: string;
  rolledBack: boolean;
  detail?: string;
}

async function history(svc: string): Promise<Entry[]> {
  const r = await agent.mcp(["history", svc, "--json"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout).entries as Entry[];
}

beforeAll(async () => {
  ctxDir = mkdtempSync(join(tmpdir(), "mcp-h8-images-"));
  const base = await busyboxImage("h8-base");
  await buildImage(base, "v1", true);
  await buildImage(base, "v2", false);
  await buildImage(base, "v3", true);
  await buildImage(base, "crash", true, ["/bin/sh", "-c", "echo crashing soon; sleep 1; exit 3"]);
  agent = await startLocalAgent();
  port = await freePort();
  execPort = await freePort();
}, 120_000);

afterAll(async () => {
  await removeContainers([`${SVC}-web`, `${EXEC_SVC}-web`]);
  await agent?.stop();
  for (const img of Object.values(IMG)) await podman("rmi", "-f", img);
  if (ctxDir) rmSync(ctxDir, { recursive: true, force: true });
});

describe("health-gated deploy with automatic rollback", () => {
  test("v1 deploys health-gated: the CLI says it waits, the result shows the health step", async () => {
    writeDef(SVC, IMG.v1, port);
    const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("waiting for health: web (http port 8080 /healthz, every 300ms, 3 retries)");
    expect(r.stdout).toMatch(
      /ok {3}web v1 .*health \d+ms \(healthy after \d+ checks? \(http GET http:\/\/127\.0\.0\.1:\d+\/healthz answered 200\)\)/,
    );
    expect(await version(port)).toBe("v1");
  }, 60_000);

  test("v2 (GET /healthz → 404) is rolled back to v1; the port keeps answering except for the restart windows", async () => {
    writeDef(SVC, IMG.v2, port);
    const t0 = performance.now();
    const { value: r, samples } = await pollDuring(port, () => agent.mcp(["deploy", SVC, "--pull", "never"]));
    const took = performance.now() - t0;
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("FAIL web: unhealthy: http GET");
    expect(r.stdout).toContain("answered 404 (3 consecutive failures)");
    expect(r.stdout).toContain(`rolled back to ${IMG.v1}`);
    expect(r.stdout).toMatch(/rollback \d+ms \(restored [^ ]+:v1 \(healthy after/);
    expect(r.stderr).toContain(`mcp: deploy of ${SVC} failed for web (rolled back to ${IMG.v1})`);
    // The service answered (v1, then v2 while it was checked, then v1 again) and was unreachable
    // only while a container was replaced.
    const seen = new Set(samples.map((s) => s.v));
    expect(seen.has("v1")).toBe(true);
    expect(samples.length).toBeGreaterThan(10);
    const gap = longestGap(samples);
    const down = samples.filter((s) => s.v === null).length * 50;
    console.log(
      `failed deploy took ${Math.round(took)} ms; longest gap ${Math.round(gap)} ms; ~${down} ms unanswered of ${samples.length} samples`,
    );
    expect(gap).toBeLessThan(5000);
    expect(samples[samples.length - 1]!.v).toBe("v1");
    expect(await version(port)).toBe("v1");
    expect(await imageOf(`${SVC}-web`)).toBe(IMG.v1);
    // The registry is truthful: the old image and version, desired running.
    expect(await registryRow(SVC)).toMatchObject({ image: IMG.v1, desired: "running", version: "v1" });
  }, 90_000);

  test("history shows the v1 deploy, the failed v2 attempt and the rollback (newest first, with caller)", async () => {
    const h = await history(SVC);
    expect(h.map((e) => [e.k, e.kind, e.images])).toEqual([
      [1, "rollback", `web=${IMG.v1}`],
      [2, "failed", `web=${IMG.v2}`],
      [3, "deploy", `web=${IMG.v1}`],
    ]);
    expect(h[0]!.rolledBack).toBe(true);
    expect(h[0]!.detail).toContain(`rolled back to ${IMG.v1}`);
    expect(h.every((e) => e.caller !== "")).toBe(true);
    const text = await agent.mcp(["history", SVC]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^K +DEPLOYED +AGE +CALLER +KIND +IMAGES +DETAIL/);
    expect(text.stdout).toContain(`web=${IMG.v2}`);
    expect(text.stdout).toContain(`web=${IMG.v1}`);
  }, 30_000);

  test("rollback (default: the previous differing spec) goes back to v1 after a healthy v3, health-gated", async () => {
    writeDef(SVC, IMG.v3, port);
    const d = await agent.mcp(["deploy", SVC, "--pull", "never"]);
    expect(d.code).toBe(0);
    expect(await version(port)).toBe("v3");
    const r = await agent.mcp(["rollback", SVC]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`rolling back ${SVC} on local to the previous spec`);
    expect(r.stdout).toMatch(/ok {3}web v1 .*health \d+ms \(healthy after/);
    expect(await version(port)).toBe("v1");
    const h = await history(SVC);
    expect(h[0]).toMatchObject({ k: 1, kind: "rollback", images: `web=${IMG.v1}` });
    // Named by its K in the list as shown now: the automatic rollback row, k=2 when rolled back to.
    expect(h[0]!.detail).toBe(
      `rollback to k=3 (the spec restored at ${h[2]!.deployedAt.replace(/\.\d+Z$/, "Z")}, web=${IMG.v1})`,
    );
    expect(h[2]).toMatchObject({ kind: "rollback", images: `web=${IMG.v1}` });
    expect(h[1]).toMatchObject({ kind: "deploy", images: `web=${IMG.v3}` });
  }, 60_000);

  test("rollback --to an entry whose spec is unhealthy is itself rolled back", async () => {
    const h = await history(SVC);
    const bad = h.find((e) => e.kind === "failed")!;
    const r = await agent.mcp(["rollback", SVC, "--to", String(bad.k)]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`to entry ${bad.k} (web=${IMG.v2})`);
    expect(r.stdout).toContain("answered 404");
    expect(r.stdout).toContain(`rolled back to ${IMG.v1}`);
    expect(await version(port)).toBe("v1");
    expect((await history(SVC))[0]).toMatchObject({ kind: "rollback", images: `web=${IMG.v1}` });
    const none = await agent.mcp(["rollback", SVC, "--to", "99"]);
    expect(none.code).toBe(2);
    expect(none.stderr.trim().split("\n")).toHaveLength(1);
    expect(none.stderr).toContain("--to 99 is not one");
  }, 60_000);

  test("a container that exits during the wait is detected at once, not after start_period and retries", async () => {
    // Without exit detection this gate would wait start_period (60 s) plus retries.
    writeDef(SVC, IMG.crash, port, { startPeriod: "60s", retries: 10, interval: "1s" });
    const t0 = performance.now();
    const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
    const took = performance.now() - t0;
    console.log(`exiting container: deploy + rollback took ${Math.round(took)} ms`);
    expect(r.code).toBe(1);
    // It runs at first (the gate starts), then exits: the gate's container watch sees it.
    expect(r.stdout).toMatch(
      /FAIL web: container (exited|stopped|exited and was restarted)[^;]* after \d+ checks? \(last: http GET/,
    );
    expect(r.stdout).toContain(`rolled back to ${IMG.v1}`);
    expect(took).toBeLessThan(15_000);
    expect(await version(port)).toBe("v1");
  }, 60_000);

  test("--no-rollback leaves the failed container for inspection and exits non-zero", async () => {
    writeDef(SVC, IMG.v2, port);
    const r = await agent.mcp(["deploy", SVC, "--pull", "never", "--no-rollback"]);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain("left for inspection (no rollback)");
    expect(r.stdout).not.toContain("rolled back to");
    expect(await imageOf(`${SVC}-web`)).toBe(IMG.v2);
    const state = await podman("inspect", "--format", "{{.State.Status}}", `${SVC}-web`);
    expect(state.stdout).toBe("running");
    expect(await version(port)).toBe("v2");
    expect(await registryRow(SVC)).toMatchObject({ image: IMG.v2, version: "v2" });
    expect((await history(SVC))[0]).toMatchObject({ kind: "failed", images: `web=${IMG.v2}` });
    // Default rollback goes to the previous spec that ran: v1.
    const back = await agent.mcp(["rollback", SVC]);
    expect(back.code).toBe(0);
    expect(await version(port)).toBe("v1");
  }, 60_000);
});

describe("exec health check", () => {
  test("exec runs inside the container: v1 (has /www/healthz) passes, v2 fails and is rolled back", async () => {
    writeDef(EXEC_SVC, IMG.v1, execPort, { type: "exec" });
    const ok = await agent.mcp(["deploy", EXEC_SVC, "--pull", "never"]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain("waiting for health: web (exec cat /www/healthz");
    expect(ok.stdout).toContain('exec ["cat","/www/healthz"] exited 0');
    writeDef(EXEC_SVC, IMG.v2, execPort, { type: "exec" });
    const bad = await agent.mcp(["deploy", EXEC_SVC, "--pull", "never"]);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(
      /unhealthy: exec \["cat","\/www\/healthz"\] exited 1: cat: can't open '\/www\/healthz'/,
    );
    expect(bad.stdout).toContain(`rolled back to ${IMG.v1}`);
    expect(await version(execPort)).toBe("v1");
  }, 60_000);
});
