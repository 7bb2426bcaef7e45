// e2e of the unikernel runtime (issue 17, "What must be shown") through the COMPILED binary, a real
// agent process with `[runtimes.unikernel]` (accel = "auto": TCG on these machines, printed below),
// real QEMU, the Nanos files from ../shared/unikernel (nanosDir()), and a real OCI registry holding
// FROM scratch images of test/fixtures/unikernel/httpd.c (gcc -static).
//
// One service (component "web": runtime "unikernel", network "user", a route so $PORT is allocated,
// a volume <srv_root>/<svc> baked at /srv/<svc>) is shared by the tests in file order, as an operator
// would drive it: push before deploy → served; ps/status/logs; push + restart → new content; kill -9
// of QEMU → drift + alert command; start; agent SIGKILLed → the restarted agent adopts the VM (one
// QEMU); stop/start. Then a service with a container and a unikernel component; the staging walk
// (an image symlink to /etc/hostname and a volume symlink to a host file stay links, checked with
// `dump` on the built image and from inside the VM); the refusals (one line, nothing created). Last,
// with the VM's state destroyed and the registry stopped, `mcp agent recover` boots it again, and
// undeploy leaves no QEMU, no state dir and no port. VM boots are kept few: CI time matters.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/runtime/exec.ts";
import type { RunResult } from "../support/binary.ts";
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
import {
  buildHttpdImage,
  nanosDir,
  qemuPidsNamed,
  removeHttpdImages,
  requireTools,
} from "../support/unikernel.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const RUN = rand();
const SVC = `uk-${RUN}`;
const VM = `${SVC}-web`;
const MIX = `ukmix-${RUN}`;
const LEAK = `ukleak-${RUN}`;
const TAG = "v1.0.0";
const MONITOR_INTERVAL_MS = 500;

let agent: LocalAgent;
let registry: Registry | null = null;
let image = ""; // <registry>/mcp-test-httpd:v1.0.0
let busybox = "";
let work = ""; // operator-side files and the alert recorder
let alertsFile = "";
let hostPort = 0; // the route's allocated host port ($PORT in the guest)
let accel = "";

// ---- helpers -----------------------------------------------------------------------------------

async function mcpOk(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await agent.mcp(args, { cwd: work, timeoutMs });
  if (r.code !== 0) throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Exactly one non-empty stderr line, no stack frames; returns it. */
function oneLine(r: RunResult): string {
  expect(r.code).not.toBe(0);
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.split("\n").filter((l) => l.trim() !== "");
  expect(lines).toHaveLength(1);
  return lines[0] ?? "";
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** One GET with a short timeout: status and body, or null when nothing answered. */
async function get(port: number, path: string): Promise<{ status: number; body: string } | null> {
  try {
    const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(1000) });
    return { status: r.status, body: await r.text() };
  } catch {
    return null;
  }
}

/** GET until it answers 200 (slirp accepts before the guest listens); bounded. */
async function get200(port: number, path: string, ms = 20_000): Promise<string> {
  let last: { status: number; body: string } | null = null;
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    last = await get(port, path);
    if (last?.status === 200) return last.body;
    await Bun.sleep(50);
  }
  throw new Error(`no 200 for GET 127.0.0.1:${port}${path} within ${ms} ms (last: ${JSON.stringify(last)})`);
}

/** True when something accepts TCP on 127.0.0.1:port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    const done = (v: boolean) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.on("connect", () => done(true));
    s.on("error", () => done(false));
  });
}

const alive = (pid: number) => existsSync(`/proc/${pid}`) && !readProcState(pid).startsWith("Z");
function readProcState(pid: number): string {
  try {
    return /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? "";
  } catch {
    return "";
  }
}

/** The one QEMU process started with `-name <name>`; fails unless there is exactly one. */
function onlyQemu(name: string): number {
  const pids = qemuPidsNamed(name);
  expect(pids).toHaveLength(1);
  return pids[0] ?? 0;
}

/** Directories under the agent's unikernel state_dir (depth ≤ 3) whose name mentions `name`. */
function vmStateDirs(name: string): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 3 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const p = join(dir, e.name);
      if (e.name === name || e.name.startsWith(`${name}.`) || e.name.startsWith(`${name}-`)) out.push(p);
      else walk(p, depth + 1);
    }
  };
  walk(agent.unikernelStateDir, 0);
  return out;
}

/** Built Nanos images (*.img) under the state dir, newest first. */
function builtImages(): string[] {
  const out: string[] = [];
  const walk = (dir: string, depth: number) => {
    if (depth > 4 || !existsSync(dir)) return;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) walk(p, depth + 1);
      else if (e.isFile() && e.name.endsWith(".img")) out.push(p);
    }
  };
  walk(agent.unikernelStateDir, 0);
  return out.sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs);
}

interface Row {
  service: string;
  component: string;
  observed: string;
  desired: string;
  runtime?: string;
  memory?: string;
  routes: { hostPort: number }[];
}

/** `mcp <args> --json` of ps or status: exit 0, or 3 exactly when a node's state is not "ok" (drift). */
async function fleetJson<T>(args: string[]): Promise<T & { nodes: { state: string }[] }> {
  const r = await agent.mcp([...args, "--json"], { cwd: work, timeoutMs: 60_000 });
  if (r.code !== 0 && r.code !== 3)
    throw new Error(`mcp ${args.join(" ")} exited ${r.code}: ${r.stderr.trim()}`);
  const out = JSON.parse(r.stdout) as T & { nodes: { state: string }[] };
  expect(r.code).toBe(out.nodes.some((n) => n.state !== "ok") ? 3 : 0);
  return out;
}
async function statusJson(svc: string): Promise<{ services: Row[]; drift: Row[] }> {
  return fleetJson<{ services: Row[]; drift: Row[] }>(["status", svc]);
}
async function psRows(svc: string): Promise<Row[]> {
  const ps = await fleetJson<{ containers: Row[] }>(["ps"]);
  return ps.containers.filter((c) => c.service === svc);
}

interface Alert {
  type: string;
  service: string;
  component: string;
  observed: string;
}
function readAlerts(service: string): Alert[] {
  if (!existsSync(alertsFile)) return [];
  return readFileSync(alertsFile, "utf8")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Alert)
    .filter((a) => a.service === service);
}

/** Pushes `content` as <svc>:<name> through `mcp push` (the operator's way of feeding a volume). */
async function pushFile(svc: string, name: string, content: string, create = false): Promise<void> {
  const f = join(work, `${name}.${rand()}`);
  writeFileSync(f, content);
  await mcpOk(["push", f, svc, name, ...(create ? ["--create"] : [])]);
}

function writeDef(svc: string, lines: string[]): void {
  writeFileSync(join(agent.servicesDir, `${svc}.toml`), `${[`name = "${svc}"`, "", ...lines].join("\n")}\n`);
}

/** A unikernel component "web" of `svc` serving its volume /srv/<svc> on the route's $PORT. */
function vmComponent(svc: string, img: string, extra: string[] = []): string[] {
  return [
    "[[components]]",
    'name = "web"',
    `image = "${img}"`,
    'runtime = "unikernel"',
    'network = "user"',
    'memory = "64m"',
    "vcpus = 1",
    'restart = "no"',
    `volumes = ["${join(agent.dir, "srv", svc)}:/srv/${svc}"]`,
    `env = ["DATA_DIR=/srv/${svc}"]`,
    ...extra,
    "",
    "[[components.routes]]",
    "port = 443",
    "",
  ];
}

// ---- setup ---------------------------------------------------------------------------------------

beforeAll(async () => {
  requireTools();
  nanosDir(); // fails clearly when the Nanos files are missing
  work = mkdtempSync(join(tmpdir(), "mcp-uk-e2e-"));
  alertsFile = join(work, "alerts.jsonl");
  const recorder = join(work, "record.sh");
  writeFileSync(
    recorder,
    `#!/bin/bash
printf '{"type":"%s","service":"%s","component":"%s","observed":"%s"}\\n' \\
  "$MCP_ALERT_TYPE" "$MCP_SERVICE" "$MCP_COMPONENT" "$MCP_OBSERVED" >> "${alertsFile}"
`,
  );
  chmodSync(recorder, 0o755);
  const [a, r, bb] = await Promise.all([
    startLocalAgent({
      unikernel: true,
      appendConfig: [
        "[monitor]",
        `interval = "${MONITOR_INTERVAL_MS}ms"`,
        `alert_command = ["${recorder}"]`,
        'cooldown = "1s"',
        'alert_timeout = "5s"',
      ].join("\n"),
    }),
    startRegistry(),
    busyboxImage(TAG),
  ]);
  agent = a;
  registry = r;
  // Built once per process; the leak and refusal variants too, before the registry is stopped.
  [image] = await Promise.all([
    buildHttpdImage(r.address, TAG),
    buildHttpdImage(r.address, TAG, "leak"),
    buildHttpdImage(r.address, TAG, "script"),
    buildHttpdImage(r.address, TAG, "arm64"),
  ]);
  busybox = `${r.address}/mcp-test-busybox-${RUN}:${TAG}`;
  await pushToRegistry(bb, busybox);
  writeDef(SVC, vmComponent(SVC, image));
}, 180_000);

afterAll(async () => {
  // Our own QEMU processes only (by -name), then containers by name.
  for (const name of [VM, `${MIX}-vm`, `${LEAK}-web`]) {
    for (const pid of qemuPidsNamed(name)) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
    }
  }
  await removeContainers([`${MIX}-box`]);
  if (busybox) await podman("rmi", "--force", "--ignore", busybox);
  await removeHttpdImages(); // every variant built for this file (plain, leak, script, arm64)
  await registry?.stop();
  await agent?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
}, 60_000);

// ---- the shared service --------------------------------------------------------------------------

describe("a unikernel service (compiled binary, real QEMU, Nanos)", () => {
  test("the agent offers the unikernel runtime and says which accelerator it uses", async () => {
    const out = await mcpOk(["agent", "status"]);
    const m = /\b(tcg|kvm)\b/.exec(out);
    expect(out).toContain("unikernel");
    expect(m).not.toBeNull();
    accel = m?.[1] ?? "";
    console.log(`unikernel accel: ${accel} (accel = "auto")`);
  }, 30_000);

  test("a file pushed before the deploy is served by the VM over the forwarded $PORT", async () => {
    const content = `first ${rand()}\n`;
    await pushFile(SVC, "msg.txt", content, true);
    const t0 = performance.now();
    const r = await agent.mcp(["deploy", SVC], { timeoutMs: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ok +web /m);
    const st = await statusJson(SVC);
    hostPort = st.services.find((s) => s.component === "web")?.routes[0]?.hostPort ?? 0;
    expect(hostPort).toBeGreaterThan(0);
    expect(await get200(hostPort, `/file/msg.txt`)).toBe(content);
    console.log(`deploy → first answer: ${Math.round(performance.now() - t0)} ms (${accel})`);
    expect(await get200(hostPort, "/env/PORT")).toBe(String(hostPort));
    expect(await get200(hostPort, "/")).toBe("hello from nanos\n");
    // One QEMU, named for the node's process list, and nothing from podman.
    onlyQemu(VM);
    expect((await podman("container", "exists", VM)).code).toBe(1);
  }, 120_000);

  test("ps and status show it running as a unikernel with its memory; logs read the serial console", async () => {
    const want = { service: SVC, component: "web", desired: "running", observed: "running" };
    const ps = await psRows(SVC);
    expect(ps).toHaveLength(1);
    expect(ps[0]).toMatchObject({ ...want, runtime: "unikernel", memory: "64m" });
    const st = await statusJson(SVC);
    expect(st.services).toHaveLength(1);
    expect(st.services[0]).toMatchObject({ ...want, runtime: "unikernel", memory: "64m" });
    expect(st.drift).toEqual([]);
    const human = (await mcpOk(["ps"])).split("\n").find((l) => l.startsWith(VM)) ?? "";
    expect(human).toContain("running");
    expect(human).toContain("unikernel");
    const logs = await mcpOk(["logs", SVC]);
    expect(logs).toContain(`httpd: listening on ${hostPort}`);
    // The serial console's lines carry no time: --since is refused in one line, not ignored.
    const since = await agent.mcp(["logs", SVC, "--since", "10m"], { cwd: work });
    expect(oneLine(since)).toMatch(
      /component .*\/web: the unikernel runtime \(qemu\) cannot show logs since a time/,
    );
  }, 30_000);

  test("mcp push of a new file + mcp restart: the new content is served (volumes re-staged)", async () => {
    const before = onlyQemu(VM);
    const content = `second ${rand()}\n`;
    await pushFile(SVC, "msg.txt", content);
    await pushFile(SVC, "new.txt", "new file\n");
    // The running VM's disk is its built image: the push does not reach it before a restart.
    expect(await get200(hostPort, "/file/msg.txt")).not.toBe(content);
    await mcpOk(["restart", SVC], 120_000);
    expect(await get200(hostPort, "/file/msg.txt")).toBe(content);
    expect(await get200(hostPort, "/file/new.txt")).toBe("new file\n");
    const after = onlyQemu(VM);
    expect(after).not.toBe(before);
    expect(alive(before)).toBe(false);
  }, 120_000);

  test("kill -9 of the QEMU process is drift, and the alert command runs", async () => {
    const pid = onlyQemu(VM);
    process.kill(pid, "SIGKILL");
    await waitFor("QEMU gone", () => !alive(pid), 10_000);
    await waitFor("the drift alert", () => readAlerts(SVC).some((a) => a.type === "drift"), 20_000);
    const alert = readAlerts(SVC).find((a) => a.type === "drift");
    expect(alert).toMatchObject({ type: "drift", service: SVC, component: "web" });
    expect(alert?.observed).not.toBe("running");
    const st = await statusJson(SVC);
    expect(st.drift.map((d) => ({ component: d.component, desired: d.desired }))).toEqual([
      { component: "web", desired: "running" },
    ]);
    expect(qemuPidsNamed(VM)).toEqual([]); // restart = "no": it stays down
  }, 60_000);

  test("mcp start boots it again; no drift", async () => {
    await mcpOk(["start", SVC], 120_000);
    expect(await get200(hostPort, "/file/new.txt")).toBe("new file\n");
    onlyQemu(VM);
    await waitFor("drift cleared", async () => (await statusJson(SVC)).drift.length === 0, 10_000);
  }, 120_000);

  test("the agent SIGKILLed while the VM runs: the VM keeps serving, the restarted agent finds it (one QEMU)", async () => {
    const pid = onlyQemu(VM);
    await agent.kill("SIGKILL");
    expect(alive(pid)).toBe(true);
    expect(await get200(hostPort, "/")).toBe("hello from nanos\n");
    await agent.startAgent();
    // A few monitor ticks: a restarted agent that lost the VM would start a second one or report drift.
    await Bun.sleep(4 * MONITOR_INTERVAL_MS);
    expect(qemuPidsNamed(VM)).toEqual([pid]);
    const ps = await psRows(SVC);
    expect(ps).toHaveLength(1);
    expect(ps[0]).toMatchObject({ observed: "running", runtime: "unikernel" });
    expect((await statusJson(SVC)).drift).toEqual([]);
    expect(await get200(hostPort, "/")).toBe("hello from nanos\n");
  }, 60_000);

  test("mcp stop leaves no QEMU process and no listening port; mcp start serves again", async () => {
    const pid = onlyQemu(VM);
    await mcpOk(["stop", SVC], 60_000);
    expect(alive(pid)).toBe(false);
    expect(qemuPidsNamed(VM)).toEqual([]);
    expect(await listening(hostPort)).toBe(false);
    expect((await psRows(SVC))[0]).toMatchObject({ desired: "stopped" });
    // A stopped VM keeps its state dir (serial log for `mcp logs`, like a stopped container) but
    // nothing of a running QEMU: no pid file, no QMP socket.
    const dirs = vmStateDirs(VM);
    expect(dirs.flatMap((d) => ["qemu.pid", "qmp.sock"].filter((f) => existsSync(join(d, f))))).toEqual([]);
    await mcpOk(["start", SVC], 120_000);
    expect(await get200(hostPort, "/file/new.txt")).toBe("new file\n");
    onlyQemu(VM);
  }, 120_000);
});

// ---- a container and a VM in one service -----------------------------------------------------------

describe("one service, a container component and a unikernel component", () => {
  test("both run and both are shown", async () => {
    const boxPort = await freePort();
    let vmPort = await freePort();
    while (vmPort === boxPort) vmPort = await freePort();
    writeDef(MIX, [
      "[[components]]",
      'name = "box"',
      `image = "${busybox}"`,
      `ports = ["127.0.0.1:${boxPort}:8080"]`,
      "",
      "[[components]]",
      'name = "vm"',
      `image = "${image}"`,
      'runtime = "unikernel"',
      'network = "user"',
      'memory = "48m"',
      `ports = ["127.0.0.1:${vmPort}:8080"]`,
      "",
      // The deploy gates on an http check through the forwarded port, as for a container.
      "[components.health]",
      'type = "http"',
      "port = 8080",
      'path = "/"',
      'timeout = "1s"',
      'interval = "200ms"',
      "retries = 50",
    ]);
    const deployed = JSON.parse(await mcpOk(["deploy", MIX, "--json"], 120_000)) as {
      results: { component: string; success: boolean; steps: { step: string; detail?: string }[] }[];
    };
    const vmSteps = deployed.results.find((r) => r.component === "vm")!.steps;
    expect(vmSteps.find((st) => st.step === "health")?.detail).toContain(`http://127.0.0.1:${vmPort}/`);
    try {
      expect(await get200(boxPort, "/")).toBe("hello from mcp\n");
      expect(await get200(vmPort, "/")).toBe("hello from nanos\n");
      onlyQemu(`${MIX}-vm`);
      expect(
        (await podman("container", "inspect", "--format", "{{.State.Status}}", `${MIX}-box`)).stdout,
      ).toBe("running");
      const ps = (await psRows(MIX)).sort((a, b) => a.component.localeCompare(b.component));
      expect(ps.map((r) => ({ component: r.component, observed: r.observed, runtime: r.runtime }))).toEqual([
        { component: "box", observed: "running", runtime: "container" },
        { component: "vm", observed: "running", runtime: "unikernel" },
      ]);
      expect(ps[1]).toMatchObject({ memory: "48m" });
      const st = (await statusJson(MIX)).services.map((r) => `${r.component} ${r.observed}`).sort();
      expect(st).toEqual(["box running", "vm running"]);
    } finally {
      await mcpOk(["undeploy", MIX], 60_000);
    }
    expect(qemuPidsNamed(`${MIX}-vm`)).toEqual([]);
    expect((await podman("container", "exists", `${MIX}-box`)).code).toBe(1);
  }, 180_000);
});

// ---- the staging walk ------------------------------------------------------------------------------

describe("the staging walk: symlinks stay links, host files never enter the image", () => {
  test("an image link to /etc/hostname and a volume link to a host file are links in the VM's image", async () => {
    const leakImage = await buildHttpdImage(registry?.address ?? "", TAG, "leak");
    // A host file outside the volume with a unique marker; the volume holds a link to it.
    const marker = `host secret ${rand()}${rand()}`;
    const secret = join(work, "secret.txt");
    writeFileSync(secret, `${marker}\n`);
    const vol = join(agent.dir, "srv", LEAK);
    mkdirSync(vol, { recursive: true });
    symlinkSync(secret, join(vol, "hostlink"));
    const baked = `baked ${rand()}${rand()}`;
    writeFileSync(join(vol, "plain.txt"), `${baked}\n`);
    writeDef(LEAK, vmComponent(LEAK, leakImage));
    const before = new Set(builtImages());
    await mcpOk(["deploy", LEAK], 120_000);
    try {
      const st = await statusJson(LEAK);
      const port = st.services[0]?.routes[0]?.hostPort ?? 0;
      expect(await get200(port, "/file/plain.txt")).toBe(`${baked}\n`);
      // Inside the guest the link points at a path the guest does not have: nothing is served.
      expect((await get(port, "/file/hostlink"))?.status).toBe(404);

      const fresh = builtImages().filter((p) => !before.has(p));
      expect(fresh.length).toBeGreaterThan(0);
      const img = fresh[0] ?? "";
      const dump = await run([join(nanosDir(), "dump"), "-t", img], { timeoutMs: 30_000 });
      expect(dump.code).toBe(0);
      // biome-ignore lint/suspicious/noControlCharactersInRegex: dump -t writes ANSI colour codes
      const tree = dump.stdout.replace(/\x1b\[[0-9;]*m/g, "");
      expect(tree).toMatch(/^\s*leak -> \/etc\/hostname$/m);
      expect(tree).toMatch(new RegExp(`^\\s*hostlink -> ${secret.replaceAll("/", "\\/")}$`, "m"));
      const bytes = readFileSync(img);
      expect(bytes.includes(Buffer.from(baked))).toBe(true); // positive control
      expect(bytes.includes(Buffer.from(marker))).toBe(false);
      // The image's metadata holds /etc/leak as a link (no extents: no content of its own), and an
      // extraction gives no file there (dump -d writes files and directories only).
      const out = mkdtempSync(join(work, "dump-"));
      const x = await run([join(nanosDir(), "dump"), "-d", out, img], { timeoutMs: 30_000 });
      expect(x.code).toBe(0);
      expect(x.stdout).toMatch(/\bleak:\(linktarget:\/etc\/hostname\)/);
      const leak = join(out, "etc", "leak");
      expect(existsSync(leak) && lstatSync(leak).isFile()).toBe(false);
      expect(readFileSync(join(out, "srv", LEAK, "plain.txt"), "utf8")).toBe(`${baked}\n`);
    } finally {
      await mcpOk(["undeploy", LEAK], 60_000);
    }
  }, 180_000);
});

// ---- refusals ------------------------------------------------------------------------------------

describe("refusals: one clear line, exit non-zero, nothing created", () => {
  /** The refusal's line with the service name cut out (so a word in the name cannot match). */
  const refusal = (r: RunResult, svc: string): string => {
    const summary = oneLine(r);
    // A definition check refuses in that one stderr line; an agent-side refusal is the deploy's
    // one "FAIL web: ..." line on stdout beside it.
    const fails = r.stdout.split("\n").filter((l) => l.startsWith("FAIL"));
    expect(fails.length).toBeLessThanOrEqual(1);
    const line = (fails[0] ?? summary).replaceAll(svc, "<svc>");
    // Names the component: "<svc>-web"/"<svc>/web" from the agent, `component "web"` from the check.
    expect(line).toMatch(/<svc>[-/]web|component "web"/);
    // The agent does have the runtime: this must be the specific refusal, not the missing runtime.
    expect(line).not.toContain("is not available on node");
    return line;
  };
  const expectNothing = async (svc: string) => {
    const rows = registryRows(agent, svc);
    // Whatever a failed refusal left is cleaned up, so the later tests start clean.
    if ((rows.services ?? 0) > 0) await agent.mcp(["undeploy", svc], { timeoutMs: 60_000 });
    expect(rows).toEqual(NO_REGISTRY_ROWS);
    expect(qemuPidsNamed(`${svc}-web`)).toEqual([]);
    expect(vmStateDirs(`${svc}-web`)).toEqual([]);
  };

  test('runtime = "unikernel" on an agent without [runtimes.unikernel]', async () => {
    const plain = await startLocalAgent();
    try {
      const svc = `uknone-${RUN}`;
      writeFileSync(
        join(plain.servicesDir, `${svc}.toml`),
        [`name = "${svc}"`, "", ...vmComponent(svc, image)].join("\n"),
      );
      const r = await plain.mcp(["deploy", svc], { timeoutMs: 60_000 });
      const line = oneLine(r);
      expect(line).toContain(`component ${svc}/web: runtime "unikernel" is not available on node local`);
      expect(qemuPidsNamed(`${svc}-web`)).toEqual([]);
    } finally {
      await plain.stop();
    }
  }, 60_000);

  for (const [variant, why] of [
    ["script", /x86-64 ELF|not an ELF/i],
    ["arm64", /x86-64|aarch64|arm64/i],
  ] as const) {
    test(`an image whose entrypoint is not an x86-64 ELF (${variant})`, async () => {
      const svc = `ukbad${variant === "script" ? 1 : 2}-${RUN}`;
      writeDef(svc, vmComponent(svc, await buildHttpdImage(registry?.address ?? "", TAG, variant)));
      const line = refusal(await agent.mcp(["deploy", svc], { timeoutMs: 60_000 }), svc);
      expect(line).toMatch(why);
      await expectNothing(svc);
    }, 60_000);
  }

  test("an exec health check", async () => {
    const svc = `ukhc-${RUN}`;
    writeDef(svc, [
      ...vmComponent(svc, image),
      "[components.health]",
      'type = "exec"',
      'cmd = ["/httpd", "--check"]',
    ]);
    const line = refusal(await agent.mcp(["deploy", svc], { timeoutMs: 60_000 }), svc);
    expect(line).toContain("exec");
    await expectNothing(svc);
  }, 60_000);

  test('memory = "16m", below what Nanos needs', async () => {
    const svc = `ukmem-${RUN}`;
    writeDef(
      svc,
      vmComponent(svc, image).map((l) => (l.startsWith("memory") ? 'memory = "16m"' : l)),
    );
    const line = refusal(await agent.mcp(["deploy", svc], { timeoutMs: 60_000 }), svc);
    expect(line).toMatch(/memory|16m|MiB/i);
    await expectNothing(svc);
  }, 60_000);
});

// ---- recover without the registry, then undeploy (last: the registry is stopped here) ---------------

describe("recover and undeploy", () => {
  test("VM state destroyed, registry stopped: mcp agent recover boots it again (no pull)", async () => {
    const pid = onlyQemu(VM);
    const dirs = vmStateDirs(VM);
    expect(dirs).toHaveLength(1);
    process.kill(pid, "SIGKILL");
    await waitFor("QEMU gone", () => !alive(pid), 10_000);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
    await registry?.stop();
    registry = null;
    const r = await agent.mcp(["agent", "recover"], { timeoutMs: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.code, r.stdout).toBe(0);
    expect(await get200(hostPort, "/file/new.txt")).toBe("new file\n");
    onlyQemu(VM);
    expect(vmStateDirs(VM)).toHaveLength(1);
  }, 120_000);

  test("undeploy leaves no QEMU process, no state directory and no port", async () => {
    const pid = onlyQemu(VM);
    await mcpOk(["undeploy", SVC], 60_000);
    expect(alive(pid)).toBe(false);
    expect(qemuPidsNamed(VM)).toEqual([]);
    expect(vmStateDirs(VM)).toEqual([]);
    expect(await listening(hostPort)).toBe(false);
    expect(registryRows(agent, SVC).ports).toBe(0);
    expect(registryRows(agent, SVC).components).toBe(0);
  }, 60_000);
});
