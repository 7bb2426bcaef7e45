// Real test environment for integration and e2e tests: podman configuration that works on this
// machine kind (runc, no default ulimits, 127.0.0.1 registries insecure), a tiny busybox image
// built from the host's busybox-static, a real OCI registry (Debian's docker-registry) on a free
// 127.0.0.1 port, and push into it. Everything is idempotent and cached, so many test files can
// call these helpers cheaply.
//
// The test image localhost/mcp-test-busybox:<tag> contains /bin/busybox with all its applets
// symlinked (sh, httpd, sleep, cat, echo, env, nc, wget...), /www/index.html = "hello from mcp",
// /www/version.txt = <tag>, and a default CMD that serves /www on ${PORT:-8080} and exits at once
// on SIGTERM (busybox httpd as PID 1 would ignore it and make every stop wait its full timeout).

import { readdirSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rename, rm, symlink, writeFile } from "node:fs/promises";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run, runOk } from "../../src/runtime/exec.ts";

export interface PodmanEnv {
  confPath: string;
  /** CONTAINERS_CONF and CONTAINERS_REGISTRIES_CONF, to merge into a child's environment. */
  env: Record<string, string>;
  /** Global podman flags, placed before the subcommand. */
  globalArgs: string[];
}

const CACHE_DIR = join(import.meta.dir, "..", "..", ".cache", "testenv");

const CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n';
// Local test registries listen on 127.0.0.1:<random port> over plain HTTP. containers/image
// matches a location without a port against "127.0.0.1:<port>/...", so one entry covers them all
// and the runtime's pull needs no --tls-verify=false.
const REGISTRIES_CONF = '[[registry]]\nlocation = "127.0.0.1"\ninsecure = true\n';

/** Writes a file atomically so concurrent test processes never read half a file. */
async function writeAtomic(path: string, content: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`;
  await writeFile(tmp, content);
  await rename(tmp, path);
}

let podmanEnvPromise: Promise<PodmanEnv> | undefined;

export function podmanEnv(): Promise<PodmanEnv> {
  podmanEnvPromise ??= (async () => {
    await mkdir(CACHE_DIR, { recursive: true });
    const confPath = join(CACHE_DIR, "containers.conf");
    const regPath = join(CACHE_DIR, "registries.conf");
    await writeAtomic(confPath, CONTAINERS_CONF);
    await writeAtomic(regPath, REGISTRIES_CONF);
    return {
      confPath,
      env: { CONTAINERS_CONF: confPath, CONTAINERS_REGISTRIES_CONF: regPath },
      globalArgs: ["--runtime", "runc"],
    };
  })();
  return podmanEnvPromise;
}

/** podman argv with the test environment's global flags. */
async function podmanArgv(...sub: string[]): Promise<{ argv: string[]; env: Record<string, string> }> {
  const pe = await podmanEnv();
  return { argv: ["podman", ...pe.globalArgs, ...sub], env: pe.env };
}

/** Runs podman with the test environment; never throws on a non-zero exit (outputs trimmed). */
export async function podman(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const pe = await podmanEnv();
  const p = Bun.spawn(["podman", ...pe.globalArgs, ...args], {
    env: { ...process.env, ...pe.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

export const BUSYBOX_REPO = "localhost/mcp-test-busybox";
// biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
export const BUSYBOX_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT:-8080} -h /www & wait"];
const busyboxBuilds = new Map<string, Promise<string>>();

/** Builds (once per machine) and returns localhost/mcp-test-busybox:<tag>. */
export function busyboxImage(tag = "v1.0.0"): Promise<string> {
  let p = busyboxBuilds.get(tag);
  if (!p) {
    p = buildBusybox(tag);
    busyboxBuilds.set(tag, p);
    p.catch(() => busyboxBuilds.delete(tag)); // let a later call retry
  }
  return p;
}

async function buildBusybox(tag: string): Promise<string> {
  const ref = `${BUSYBOX_REPO}:${tag}`;
  const exists = await podmanArgv("image", "exists", ref);
  if ((await run(exists.argv, { env: exists.env, timeoutMs: 30_000 })).code === 0) return ref;

  const root = await mkdtemp(join(tmpdir(), "mcp-busybox-"));
  try {
    const rootfs = join(root, "rootfs");
    await writeBusyboxRootfs(rootfs, tag);

    // tar's stdout feeds podman import's stdin directly: two argv processes, no shell.
    const imp = await podmanArgv("import", "--change", `CMD ${JSON.stringify(BUSYBOX_CMD)}`, "-", ref);
    await importRootfs(rootfs, imp.argv, imp.env, ref);
    return ref;
  } finally {
    await rm(root, { recursive: true, force: true });
  }
}

/**
 * Writes the test image's root filesystem into `rootfs` (shared by the podman and the docker
 * test images, so both runtimes run the very same busybox tree).
 */
export async function writeBusyboxRootfs(rootfs: string, tag: string): Promise<void> {
  for (const d of ["bin", "www", "tmp", "etc"]) await mkdir(join(rootfs, d), { recursive: true });
  await copyFile("/bin/busybox", join(rootfs, "bin", "busybox"));
  await chmod(join(rootfs, "bin", "busybox"), 0o755);
  const { stdout } = await runOk(["/bin/busybox", "--list"], { timeoutMs: 10_000 });
  for (const applet of stdout.split("\n")) {
    const name = applet.trim();
    if (name === "" || name === "busybox" || name.includes("/")) continue;
    await symlink("busybox", join(rootfs, "bin", name));
  }
  await writeFile(join(rootfs, "www", "index.html"), "hello from mcp\n");
  await writeFile(join(rootfs, "www", "version.txt"), `${tag}\n`);
  await writeFile(
    join(rootfs, "etc", "passwd"),
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534::/:/bin/false\n",
  );
  await writeFile(join(rootfs, "etc", "group"), "root:x:0:\nnobody:x:65534:\n");
}

/** Pipes `tar -C rootfs -c .` into an `import … -` argv (podman or docker). */
export async function importRootfs(
  rootfs: string,
  argv: string[],
  env: Record<string, string>,
  ref: string,
): Promise<void> {
  const tar = Bun.spawn(["tar", "-C", rootfs, "-c", "."], { stdout: "pipe", stderr: "pipe" });
  const importer = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    stdin: tar.stdout,
    stdout: "pipe",
    stderr: "pipe",
  });
  const [tarCode, tarErr, code, err] = await Promise.all([
    tar.exited,
    new Response(tar.stderr).text(),
    importer.exited,
    new Response(importer.stderr).text(),
  ]);
  if (tarCode !== 0) throw new Error(`tar of busybox rootfs failed (exit ${tarCode}): ${tarErr.trim()}`);
  const bin = (argv[0] ?? "").split("/").pop();
  if (code !== 0) throw new Error(`${bin} import ${ref} failed (exit ${code}): ${err.trim()}`);
}

/** A TCP port that was free on 127.0.0.1 a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => (port > 0 ? resolve(port) : reject(new Error("no free port"))));
    });
  });
}

export interface Registry {
  /** "127.0.0.1:PORT" */
  address: string;
  stop(): Promise<void>;
}

const liveRegistries = new Set<ReturnType<typeof Bun.spawn>>();
process.on("exit", () => {
  for (const p of liveRegistries) p.kill("SIGKILL"); // never leave a registry behind a crashed run
});

/**
 * One `GET /v2/` over a plain socket: the status code, or why there is none. Deliberately not
 * fetch(): this probe must not depend on the test process's HTTP client (its connection pool is
 * shared with whatever earlier test files left in flight in the same bun process).
 */
function probeV2(port: number, ms: number): Promise<{ status: number } | { error: string }> {
  return new Promise((resolve) => {
    let buf = "";
    let connected = false;
    const sock = connect({ host: "127.0.0.1", port });
    const done = (r: { status: number } | { error: string }) => {
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(
      () => done({ error: connected ? "connected, no answer" : "connect timed out" }),
      ms,
    );
    sock.on("connect", () => {
      connected = true;
      sock.write(`GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`);
    });
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(buf);
      if (m) done({ status: Number(m[1]) });
    });
    sock.on("error", (e: NodeJS.ErrnoException) => done({ error: e.code ?? e.message }));
    sock.on("close", () => done({ error: connected ? "closed without an answer" : "closed" }));
  });
}

/** Waits for the registry to answer 200 on /v2/; "" when it does, else the last reason it did not. */
async function waitForV2(port: number, proc: ReturnType<typeof Bun.spawn>, ms: number): Promise<string> {
  const deadline = Date.now() + ms;
  let last = "not probed";
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) return `exited with ${proc.exitCode}`;
    const r = await probeV2(port, 1000);
    if ("status" in r && r.status === 200) return "";
    last = "status" in r ? `answered ${r.status}` : r.error;
    await Bun.sleep(25);
  }
  return `no 200 on /v2/ within ${ms / 1000} s (last: ${last})`;
}

/** Starts a real OCI registry (Debian's docker-registry) on 127.0.0.1 with storage in a temp dir. */
export async function startRegistry(): Promise<Registry> {
  const dir = await mkdtemp(join(tmpdir(), "mcp-registry-"));
  let lastErr = "";
  // A free port can be taken between freePort() and the bind: retry a few times.
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const cfg = join(dir, "config.yml");
    await writeFile(
      cfg,
      [
        "version: 0.1",
        "log:",
        "  level: error",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        `    rootdirectory: ${join(dir, "data")}`,
        "  delete:",
        "    enabled: true",
        "http:",
        `  addr: ${address}`,
        "",
      ].join("\n"),
    );
    const logPath = join(dir, `registry-${attempt}.log`);
    const proc = Bun.spawn(["/usr/bin/docker-registry", "serve", cfg], {
      stdout: "ignore",
      stderr: Bun.file(logPath),
      stdin: "ignore",
    });
    liveRegistries.add(proc);
    // A registry that is alive but slow gets the whole wait; only one that exited (its port was
    // taken between freePort() and the bind) is retried on another port.
    const why = await waitForV2(port, proc, 30_000);
    if (why === "") {
      return {
        address,
        stop: async () => {
          proc.kill();
          await proc.exited;
          liveRegistries.delete(proc);
          await rm(dir, { recursive: true, force: true });
        },
      };
    }
    const alive = proc.exitCode === null;
    proc.kill("SIGKILL");
    await proc.exited;
    liveRegistries.delete(proc);
    const tail = (await Bun.file(logPath).text()).trim().split("\n").slice(-3).join(" | ");
    lastErr = `${address}: ${why}; log: ${tail || "empty"}`;
    if (alive) break;
  }
  await rm(dir, { recursive: true, force: true });
  throw new Error(`docker-registry did not start: ${lastErr || "no output"}`);
}

/** Pushes a local image to a test registry, e.g. pushToRegistry(img, `${reg.address}/busybox:v1`). */
export async function pushToRegistry(localImage: string, ref: string): Promise<void> {
  const p = await podmanArgv("push", "--tls-verify=false", localImage, ref);
  await runOk(p.argv, { env: p.env, timeoutMs: 60_000 });
}

/** Pids of this machine's processes whose argv (read from /proc) satisfies `match`. */
export function pidsWhereArgv(match: (argv: string[]) => boolean): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    let argv: string[];
    try {
      argv = readFileSync(`/proc/${entry}/cmdline`, "utf8").split("\0");
    } catch {
      continue; // exited meanwhile
    }
    if (match(argv)) pids.push(Number(entry));
  }
  return pids;
}
