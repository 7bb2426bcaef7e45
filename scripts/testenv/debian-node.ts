// Builds the "real Debian node" test images: a debootstrapped bookworm rootfs with systemd as PID 1,
// sshd (root login by key, host keys generated at each node's first boot) and a `deploy` user with
// passwordless sudo, imported into podman as localhost/mcp-debian-node:bookworm. The
// `bookworm-podman` variant adds what `mcp node provision` would apt-install (podman, runc, uidmap,
// slirp4netns) so provision/upgrade tests need no downloads; the bare image stays for the
// "provision from scratch" test.
//
// Cached once per machine: an existing image tag is never rebuilt (unless --rebuild); the raw
// debootstrap output is kept as a tarball under .cache/debian-node/ keyed by suite, mirror and
// include list, so rebuilding after an image removal (or a change to the customisation below) takes
// seconds instead of a ~40 s debootstrap. The podman variant's rootfs is cached the same way.
//
// CLI: ./node_modules/.bin/bun scripts/testenv/debian-node.ts [bare|podman|all] [--rebuild]
// Needs root (debootstrap, tar with ownership) and network access to deb.debian.org on a cold cache.

import { createHash } from "node:crypto";
import {
  chmod,
  mkdir,
  mkdtemp,
  readdir,
  rename,
  rm,
  stat,
  symlink,
  unlink,
  writeFile,
} from "node:fs/promises";
import { join, resolve } from "node:path";
import { run, runOk } from "../../src/runtime/exec.ts";

export type DebianNodeVariant = "bare" | "podman";

export const DEBIAN_NODE_REPO = "localhost/mcp-debian-node";
const SUITE = "bookworm";
const MIRROR = "http://deb.debian.org/debian";
const INCLUDE = ["systemd", "systemd-sysv", "openssh-server", "dbus", "sudo", "iproute2", "ca-certificates"];
/** What `mcp node provision` apt-installs; pre-installed in the podman variant. */
export const PODMAN_PACKAGES = ["podman", "runc", "uidmap", "slirp4netns"];
// Bump when customize() or the podman variant's recipe changes, so their cached tarballs are
// rebuilt (the raw debootstrap tarball is keyed by the include list only and stays valid).
const RECIPE_VERSION = 1;

export const CACHE_DIR = resolve(import.meta.dir, "..", "..", ".cache", "debian-node");
const CONTAINERS_CONF = '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n';

export function debianNodeImageRef(variant: DebianNodeVariant = "bare"): string {
  return `${DEBIAN_NODE_REPO}:${variant === "bare" ? SUITE : `${SUITE}-podman`}`;
}

export interface BuildResult {
  ref: string;
  /** "exists": the tag was there; "cached": rebuilt from cached tarballs; "cold": downloaded. */
  how: "exists" | "cached" | "cold";
  ms: number;
}

type Log = (line: string) => void;

function key(...parts: unknown[]): string {
  return createHash("sha256").update(JSON.stringify(parts)).digest("hex").slice(0, 16);
}

const RAW_KEY = key(SUITE, MIRROR, "minbase", INCLUDE);
const BARE_KEY = key(RAW_KEY, RECIPE_VERSION);
const PODMAN_KEY = key(BARE_KEY, PODMAN_PACKAGES);

// This module must work without the test support code (it is also a CLI), so it writes its own copy
// of the containers.conf that makes podman work on these machines (runc, no default ulimits).
async function podmanArgv(...sub: string[]): Promise<{ argv: string[]; env: Record<string, string> }> {
  await mkdir(CACHE_DIR, { recursive: true });
  const conf = join(CACHE_DIR, "containers.conf");
  const tmp = `${conf}.${process.pid}.tmp`;
  await writeFile(tmp, CONTAINERS_CONF);
  await rename(tmp, conf);
  return { argv: ["podman", "--runtime", "runc", ...sub], env: { CONTAINERS_CONF: conf } };
}

async function podmanOk(timeoutMs: number, ...sub: string[]): Promise<string> {
  const p = await podmanArgv(...sub);
  return (await runOk(p.argv, { env: p.env, timeoutMs })).stdout;
}

export async function imageExists(ref: string): Promise<boolean> {
  const p = await podmanArgv("image", "exists", ref);
  return (await run(p.argv, { env: p.env, timeoutMs: 30_000 })).code === 0;
}

async function imageId(ref: string): Promise<string | undefined> {
  const p = await podmanArgv("image", "inspect", "--format", "{{.Id}}", ref);
  const res = await run(p.argv, { env: p.env, timeoutMs: 30_000 });
  return res.code === 0 ? res.stdout.trim() : undefined;
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/**
 * A cross-process lock (mkdir is atomic), so parallel test processes build each image once. A lock
 * whose owner process is gone is taken over; waiting is bounded.
 */
async function withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(CACHE_DIR, { recursive: true });
  const dir = join(CACHE_DIR, `${name}.lock`);
  const deadline = Date.now() + 15 * 60_000;
  while (true) {
    try {
      await mkdir(dir);
      await writeFile(join(dir, "pid"), String(process.pid));
      break;
    } catch {
      const pid = Number(
        await Bun.file(join(dir, "pid"))
          .text()
          .catch(() => "0"),
      );
      let alive = pid > 0;
      if (alive) {
        try {
          process.kill(pid, 0);
        } catch {
          alive = false;
        }
      }
      // A lock dir without a pid file may be one being created right now: give it a moment.
      if (!alive && (pid > 0 || Date.now() - ((await stat(dir).catch(() => null))?.mtimeMs ?? 0) > 5000)) {
        await rm(dir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new Error(`debian-node: timed out waiting for lock ${dir}`);
      await Bun.sleep(500);
    }
  }
  try {
    return await fn();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/** The raw debootstrap rootfs as a cached tarball; downloads (~40 s) only on a cold cache. */
async function rawTarball(log: Log): Promise<{ path: string; cold: boolean }> {
  const path = join(CACHE_DIR, `rootfs-${SUITE}-${RAW_KEY}.tar`);
  if (await exists(path)) return { path, cold: false };
  const work = await mkdtemp(join(CACHE_DIR, "debootstrap-"));
  try {
    const rootfs = join(work, "rootfs");
    log(`debootstrap ${SUITE} (${INCLUDE.join(",")}) from ${MIRROR}`);
    const argv = [
      "debootstrap",
      "--variant=minbase",
      `--include=${INCLUDE.join(",")}`,
      SUITE,
      rootfs,
      MIRROR,
    ];
    const res = await run(argv, { timeoutMs: 15 * 60_000 });
    if (res.code !== 0) {
      const tail = `${res.stdout}\n${res.stderr}`.trim().split("\n").slice(-3).join(" | ");
      throw new Error(`debootstrap failed (exit ${res.code}): ${tail}`);
    }
    // Downloaded .debs are not part of a node; dropping them makes the cache ~40% smaller.
    const archives = join(rootfs, "var", "cache", "apt", "archives");
    for (const f of await readdir(archives)) if (f.endsWith(".deb")) await unlink(join(archives, f));
    const tmp = `${path}.${process.pid}.tmp`;
    await runOk(["tar", "-C", rootfs, "--numeric-owner", "-cf", tmp, "."], { timeoutMs: 5 * 60_000 });
    await rename(tmp, path);
    return { path, cold: true };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Turns the debootstrap rootfs into a test node: sshd for root by key, host keys generated per node
 * at first boot (so every node has its own, as real machines do), a sudo-capable `deploy` user, and
 * no background jobs (apt timers) that could grab the dpkg lock in the middle of a test.
 */
async function customize(rootfs: string): Promise<void> {
  const p = (...parts: string[]) => join(rootfs, ...parts);
  // Host keys made by openssh-server's postinst would be shared by every node of the image.
  for (const f of await readdir(p("etc", "ssh"))) {
    if (f.startsWith("ssh_host_")) await unlink(p("etc", "ssh", f));
  }
  await writeFile(
    p("etc", "ssh", "sshd_config.d", "mcp-test-node.conf"),
    "# mcp test node: keys only, root by key (the provision/upgrade target logs in as root or deploy)\n" +
      "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n" +
      "UseDNS no\n",
  );
  // sshd -t (the unit's ExecStartPre) refuses to run without host keys: generate them first.
  // `ssh-keygen -A` creates only the missing ones, so later boots keep the node's identity.
  await mkdir(p("etc", "systemd", "system", "ssh.service.d"), { recursive: true });
  await writeFile(
    p("etc", "systemd", "system", "ssh.service.d", "mcp-test-hostkeys.conf"),
    "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n",
  );
  // Background timers and units that do nothing useful in a test container.
  for (const unit of [
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "getty@tty1.service",
  ]) {
    for (const wants of ["timers.target.wants", "multi-user.target.wants", "getty.target.wants"]) {
      await rm(p("etc", "systemd", "system", wants, unit), { force: true });
    }
  }
  for (const unit of ["apt-daily.timer", "apt-daily-upgrade.timer", "systemd-pstore.service"]) {
    await rm(p("etc", "systemd", "system", unit), { force: true });
    await symlink("/dev/null", p("etc", "systemd", "system", unit));
  }
  await rm(p("etc", "systemd", "system", "sysinit.target.wants", "systemd-pstore.service"), { force: true });
  // root's and deploy's authorized_keys are installed per node (see test/support/debian-node.ts).
  await mkdir(p("root", ".ssh"), { recursive: true, mode: 0o700 });
  await chmod(p("root", ".ssh"), 0o700);
  // useradd inside the rootfs keeps passwd/shadow/group consistent; '*' (no password, not locked)
  // lets key logins through whatever sshd's UsePAM setting is.
  await runOk(
    ["chroot", rootfs, "useradd", "--create-home", "--shell", "/bin/bash", "--groups", "sudo", "deploy"],
    {
      timeoutMs: 30_000,
    },
  );
  await runOk(["chroot", rootfs, "usermod", "--password", "*", "deploy"], { timeoutMs: 30_000 });
  await mkdir(p("home", "deploy", ".ssh"), { recursive: true, mode: 0o700 });
  await runOk(["chroot", rootfs, "chown", "-R", "deploy:deploy", "/home/deploy/.ssh"], { timeoutMs: 30_000 });
  await writeFile(p("etc", "sudoers.d", "deploy"), "deploy ALL=(ALL:ALL) NOPASSWD: ALL\n", { mode: 0o440 });
  // Real nodes have a fresh package index; provision must run `apt-get update` itself, and a stale
  // index from the day the cache was made would only fail later with 404s.
  const lists = p("var", "lib", "apt", "lists");
  for (const f of await readdir(lists))
    if (f !== "partial" && f !== "lock") await rm(join(lists, f), { force: true });
}

/** Pipes `tar -C rootfs -c .` (or a tarball) into `podman import` with systemd as the command. */
async function importImage(source: { rootfs: string } | { tarball: string }, ref: string): Promise<void> {
  const imp = await podmanArgv("import", "--change", 'CMD ["/sbin/init"]', "-", ref);
  const tarArgv =
    "rootfs" in source ? ["tar", "-C", source.rootfs, "--numeric-owner", "-c", "."] : ["cat", source.tarball];
  const tar = Bun.spawn(tarArgv, { stdout: "pipe", stderr: "pipe" });
  const importer = Bun.spawn(imp.argv, {
    env: { ...process.env, ...imp.env },
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
  if (tarCode !== 0)
    throw new Error(`${tarArgv[0]} of the node rootfs failed (exit ${tarCode}): ${tarErr.trim()}`);
  if (code !== 0) throw new Error(`podman import ${ref} failed (exit ${code}): ${err.trim()}`);
}

async function buildBare(log: Log): Promise<"cached" | "cold"> {
  const ref = debianNodeImageRef("bare");
  const raw = await rawTarball(log);
  const work = await mkdtemp(join(CACHE_DIR, "bare-"));
  try {
    const rootfs = join(work, "rootfs");
    await mkdir(rootfs);
    await runOk(["tar", "-C", rootfs, "--numeric-owner", "-xf", raw.path], { timeoutMs: 5 * 60_000 });
    await customize(rootfs);
    log(`podman import ${ref}`);
    await importImage({ rootfs }, ref);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  return raw.cold ? "cold" : "cached";
}

/**
 * The podman variant: the bare image plus PODMAN_PACKAGES, installed with apt inside a container of
 * the bare image (the same way provision installs them on a node), exported as a cached tarball.
 */
async function buildPodman(log: Log): Promise<"cached" | "cold"> {
  const ref = debianNodeImageRef("podman");
  const tarball = join(CACHE_DIR, `rootfs-${SUITE}-podman-${PODMAN_KEY}.tar`);
  if (await exists(tarball)) {
    log(`podman import ${ref} from ${tarball}`);
    await importImage({ tarball }, ref);
    return "cached";
  }
  await ensureDebianNodeImage("bare", { log });
  const name = `mcptest-node-build-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const rmArgs = ["rm", "-f", "--time", "0", name];
  try {
    log(`apt-get install ${PODMAN_PACKAGES.join(" ")} in ${name}`);
    const script =
      "set -e; export DEBIAN_FRONTEND=noninteractive; apt-get update -q; " +
      `apt-get install -y -q ${PODMAN_PACKAGES.join(" ")}; apt-get clean; rm -rf /var/lib/apt/lists/*`;
    await podmanOk(15 * 60_000, "run", "--name", name, debianNodeImageRef("bare"), "/bin/sh", "-c", script);
    const tmp = `${tarball}.${process.pid}.tmp`;
    await podmanOk(5 * 60_000, "export", "--output", tmp, name);
    await rename(tmp, tarball);
    log(`podman import ${ref} from ${tarball}`);
    await importImage({ tarball }, ref);
  } finally {
    const p = await podmanArgv(...rmArgs);
    await run(p.argv, { env: p.env, timeoutMs: 60_000 });
  }
  return "cold";
}

const builds = new Map<DebianNodeVariant, Promise<BuildResult>>();

/** Builds (once per machine; cached) and returns the node image of `variant`. */
export function ensureDebianNodeImage(
  variant: DebianNodeVariant = "bare",
  opts: { rebuild?: boolean; log?: Log } = {},
): Promise<BuildResult> {
  let p = opts.rebuild ? undefined : builds.get(variant);
  if (!p) {
    const log = opts.log ?? (() => {});
    p = (async () => {
      const started = Date.now();
      const ref = debianNodeImageRef(variant);
      if (!opts.rebuild && (await imageExists(ref)))
        return { ref, how: "exists" as const, ms: Date.now() - started };
      return withLock(`image-${variant}`, async () => {
        // Another process may have built it while this one waited for the lock.
        if (!opts.rebuild && (await imageExists(ref)))
          return { ref, how: "exists" as const, ms: Date.now() - started };
        const oldId = await imageId(ref);
        const how = variant === "bare" ? await buildBare(log) : await buildPodman(log);
        // A rebuild leaves the previous image untagged: drop it unless a container still uses it.
        if (oldId && oldId !== (await imageId(ref))) {
          const p = await podmanArgv("rmi", oldId);
          await run(p.argv, { env: p.env, timeoutMs: 60_000 });
        }
        return { ref, how, ms: Date.now() - started };
      });
    })();
    builds.set(variant, p);
    p.catch(() => builds.delete(variant)); // let a later call retry
  }
  return p;
}

if (import.meta.main) {
  const args = process.argv.slice(2);
  const rebuild = args.includes("--rebuild");
  const which = args.find((a) => !a.startsWith("--")) ?? "all";
  if (!["bare", "podman", "all"].includes(which)) {
    process.stderr.write("usage: debian-node.ts [bare|podman|all] [--rebuild]\n");
    process.exit(2);
  }
  const variants: DebianNodeVariant[] = which === "all" ? ["bare", "podman"] : [which as DebianNodeVariant];
  try {
    for (const v of variants) {
      const r = await ensureDebianNodeImage(v, {
        rebuild,
        log: (l) => process.stderr.write(`debian-node: ${l}\n`),
      });
      process.stdout.write(`${r.ref}: ${r.how} in ${(r.ms / 1000).toFixed(1)} s\n`);
    }
  } catch (e) {
    process.stderr.write(`debian-node: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  }
}
