// A real Docker engine for tests: Debian's docker.io dockerd started by hand with its own
// data-root, exec-root, unix socket and pidfile under /tmp/mcp-dockerd-*, never the system
// service. One engine per process at a time (cached: every startDockerd() call shares it until
// stop(); it starts in ~0.2 s, so each test file simply stops it in its afterAll). Safety nets, as
// `bun test` runs no process "exit" handlers: dockerd gets SIGTERM from the kernel when this
// process dies (setpriv --pdeathsig), and dirs left by such runs are swept on the next start.
// Plus the busybox test image imported into it from the same rootfs the podman image uses.
//
// Host impact kept small on purpose: --iptables=false (the engine leaves the host firewall alone;
// published 127.0.0.1 ports go through docker-proxy, which needs no NAT rules), and when docker0
// already exists each engine allocates container addresses from its own /24 (--fixed-cidr), so two
// test processes sharing the bridge never hand out the same address.
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { join } from "node:path";
import { type RunResult, run, runOk } from "../../src/runtime/exec.ts";
import { BUSYBOX_CMD, BUSYBOX_REPO, importRootfs, writeBusyboxRootfs } from "./env.ts";

/** Debian's client (20.10) matches the engine; /usr/local/bin/docker may be a newer one. */
export const DOCKER_CLIENT = existsSync("/usr/bin/docker") ? "/usr/bin/docker" : "docker";
const DOCKERD = existsSync("/usr/sbin/dockerd") ? "/usr/sbin/dockerd" : "dockerd";
const SETPRIV = "/usr/bin/setpriv";
const DIR_PREFIX = "/tmp/mcp-dockerd-"; // short: unix socket paths must stay under 108 bytes

export interface Dockerd {
  /** "unix:///tmp/mcp-dockerd-XXXXXX/docker.sock" */
  host: string;
  /** The client binary to drive it with. */
  binary: string;
  env: { DOCKER_HOST: string };
  /** The same endpoint as a global flag: ["-H", host] (what runtime_args can carry). */
  globalArgs: string[];
  /** Engine version, e.g. "20.10.24+dfsg1". */
  version: string;
  /** Milliseconds from spawn to the engine answering. */
  startupMs: number;
  stop(): Promise<void>;
}

/** Runs the test client against the engine. */
export function dockerCli(d: Dockerd, ...sub: string[]): Promise<RunResult> {
  return run([d.binary, ...d.globalArgs, ...sub], { timeoutMs: 120_000 });
}

let shared: Promise<Dockerd> | undefined;

/** The process's engine, started on first use. */
export function startDockerd(): Promise<Dockerd> {
  if (!shared) {
    shared = launch();
    shared.catch(() => {
      shared = undefined; // let a later call retry
    });
  }
  return shared;
}

/** docker0's IPv4 network as [a, b] of a.b.0.0/16, or null when there is none (or not a /16). */
async function docker0Net16(): Promise<[string, string] | null> {
  const r = await run(["ip", "-o", "-4", "addr", "show", "dev", "docker0"], { timeoutMs: 5000 }).catch(
    () => ({ code: 127, stdout: "", stderr: "" }), // no iproute2: go without --fixed-cidr
  );
  const m = /inet (\d+)\.(\d+)\.\d+\.\d+\/16/.exec(r.stdout);
  return r.code === 0 && m?.[1] && m[2] ? [m[1], m[2]] : null;
}

function pidAlive(pidFile: string): boolean {
  try {
    const pid = Number(readFileSync(pidFile, "utf8").trim());
    if (!(pid > 0)) return false;
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return !/^\d+ \(.*\) Z/.test(stat);
  } catch {
    return false;
  }
}

/**
 * Removes dirs of engines from earlier runs that ended without stop(): no live daemon and
 * untouched for a minute (a starting engine writes its pidfile well within that).
 */
function removeStaleDirs(): void {
  for (const name of readdirSync("/tmp")) {
    const dir = `/tmp/${name}`;
    if (!dir.startsWith(DIR_PREFIX)) continue;
    try {
      if (Date.now() - statSync(dir).mtimeMs < 60_000 || pidAlive(join(dir, "pid"))) continue;
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // mounted leftovers or a race with another process: not ours to fight over
    }
  }
}

function logTail(path: string): string {
  try {
    return readFileSync(path, "utf8").trim().split("\n").slice(-3).join(" | ");
  } catch {
    return "no log";
  }
}

async function launch(): Promise<Dockerd> {
  removeStaleDirs();
  const dir = await mkdtemp(DIR_PREFIX);
  const host = `unix://${dir}/docker.sock`;
  const pidFile = join(dir, "pid");
  const logPath = join(dir, "dockerd.log");
  // setpriv --pdeathsig: if this test process dies in any way (even SIGKILL), the kernel sends
  // dockerd SIGTERM and it shuts down cleanly instead of outliving the run.
  const argv = [
    ...(existsSync(SETPRIV) ? [SETPRIV, "--pdeathsig", "TERM", "--"] : []),
    DOCKERD,
    "--data-root",
    join(dir, "data"),
    "--exec-root",
    join(dir, "exec"),
    "-H",
    host,
    "--pidfile",
    pidFile,
    "--iptables=false",
  ];
  const net = await docker0Net16();
  if (net) argv.push("--fixed-cidr", `${net[0]}.${net[1]}.${100 + (process.pid % 128)}.0/24`);

  const t0 = performance.now();
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: Bun.file(logPath) });
  proc.unref(); // the engine must not keep a script alive; stop() or the exit hook ends it
  const onExit = () => stopAtExit(proc, pidFile, dir);
  process.on("exit", onExit);

  const globalArgs = ["-H", host];
  let version = "";
  const deadline = Date.now() + 30_000;
  while (Date.now() < deadline && proc.exitCode === null) {
    const r = await run([DOCKER_CLIENT, ...globalArgs, "version", "--format", "{{.Server.Version}}"], {
      timeoutMs: 5000,
    });
    if (r.code === 0 && r.stdout.trim() !== "") {
      version = r.stdout.trim();
      break;
    }
    await Bun.sleep(100);
  }
  const startupMs = Math.round(performance.now() - t0);
  if (version === "") {
    const why = proc.exitCode !== null ? `exited with ${proc.exitCode}` : "no answer within 30 s";
    const tail = logTail(logPath);
    proc.kill("SIGKILL");
    await proc.exited;
    process.off("exit", onExit);
    await rm(dir, { recursive: true, force: true });
    throw new Error(`dockerd did not start (${why}): ${tail}`);
  }

  let stopped = false;
  const self: Dockerd = {
    host,
    binary: DOCKER_CLIENT,
    env: { DOCKER_HOST: host },
    globalArgs,
    version,
    startupMs,
    async stop() {
      if (stopped) return;
      stopped = true;
      if (shared && (await shared) === self) shared = undefined;
      process.off("exit", onExit);
      proc.kill("SIGTERM"); // dockerd stops its containers and its containerd, then unmounts
      const killer = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      await proc.exited;
      clearTimeout(killer);
      await rm(dir, { recursive: true, force: true });
    },
  };
  return self;
}

/**
 * Exit hook: the event loop is gone, so ask dockerd to shut down and wait (bounded, blocking) for
 * it to remove its pidfile before deleting the dir. A zombie child still "exists" for kill(pid, 0),
 * hence the pidfile rather than the pid.
 */
function stopAtExit(proc: ReturnType<typeof Bun.spawn>, pidFile: string, dir: string): void {
  if (proc.exitCode !== null) return;
  proc.kill("SIGTERM");
  const deadline = Date.now() + 10_000;
  const pause = new Int32Array(new SharedArrayBuffer(4));
  while (Date.now() < deadline && existsSync(pidFile)) Atomics.wait(pause, 0, 0, 50);
  if (existsSync(pidFile)) return; // still shutting down: leave the dir to removeStaleDirs()
  try {
    rmSync(dir, { recursive: true, force: true });
  } catch {
    // best effort
  }
}

const images = new Map<string, Promise<string>>();

/** localhost/mcp-test-busybox:<tag> in this engine, imported from the shared busybox rootfs. */
export function dockerBusyboxImage(d: Dockerd, tag = "v1.0.0"): Promise<string> {
  const key = `${d.host} ${tag}`;
  let p = images.get(key);
  if (!p) {
    p = importBusybox(d, tag);
    images.set(key, p);
    p.catch(() => images.delete(key));
  }
  return p;
}

async function importBusybox(d: Dockerd, tag: string): Promise<string> {
  const ref = `${BUSYBOX_REPO}:${tag}`;
  if ((await dockerCli(d, "image", "inspect", "--format", "{{.Id}}", ref)).code === 0) return ref;
  const root = await mkdtemp("/tmp/mcp-busybox-docker-");
  try {
    const rootfs = join(root, "rootfs");
    await writeBusyboxRootfs(rootfs, tag);
    const argv = [
      d.binary,
      ...d.globalArgs,
      "import",
      "--change",
      `CMD ${JSON.stringify(BUSYBOX_CMD)}`,
      "-",
      ref,
    ];
    await importRootfs(rootfs, argv, {}, ref);
    return ref;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/** Pushes an engine image to a test registry (127.0.0.0/8 registries are plain HTTP to docker). */
export async function dockerPush(d: Dockerd, localImage: string, ref: string): Promise<void> {
  const opts = { timeoutMs: 60_000 };
  await runOk([d.binary, ...d.globalArgs, "tag", localImage, ref], opts);
  await runOk([d.binary, ...d.globalArgs, "push", "-q", ref], opts);
  await runOk([d.binary, ...d.globalArgs, "rmi", ref], opts); // only the registry has it now
}
