// Reliability (issue 10), rootless: the deploy → recover disaster test with the agent running as an
// unprivileged user on rootless podman, as the real fleet runs it (the `mcp` user of
// deploy/systemd/mcp-agent.service). Through the COMPILED binary, real podman, real TLS.
//
// Setup, idempotent (the user is left in place for reruns; only its test dirs are removed):
//   - system user `mcptest` with a home dir, and /etc/subuid + /etc/subgid ranges (appended only
//     when it has none), which newuidmap/newgidmap (package uidmap) map into its user namespace;
//   - /dev/net/tun 0666 (mknod c 10 200 when absent): slirp4netns, which carries published
//     ports of rootless containers, opens it as the user;
//   - XDG_RUNTIME_DIR=/run/user/<uid>, 0700, owned by the user (podman's runroot and pause process);
//   - the user's containers.conf, with the settings rootless podman 4.3.1 needs when the user has
//     no systemd session (measured here: cgroup v1, no linger, no user D-Bus):
//       runtime = "runc"           crun is broken on these machines (as for root)
//       default_ulimits = []       the default nofile ulimit cannot be raised by the user
//       cgroup_manager = "cgroupfs" the "systemd" default needs a user D-Bus session
//       events_logger = "file"     journald is not the user's to write without a session
//     podman picks the last two itself on this machine, but on a CI machine booted with systemd
//     it defaults to systemd/journald, so they are pinned;
//   - the busybox test image, saved from root's store and loaded into the user's store.
// Then: `mcp init --local` and `mcp agent` as the user; deploy a service with a published
// 127.0.0.1 port and a bind-mounted volume; HTTP from the host; podman's state for the container
// is destroyed (`podman rm -f` as the user); `mcp agent recover` (CLI as root, over TLS) must bring
// it back, running, in the user's store, with its process mapped to the user's uid/subuid range,
// serving the volume again.
//
// Bounded: every spawn and poll has a deadline; the file takes ~2 s here (90 s budget), a first
// run (user created, image loaded) about the same.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyboxImage, freePort, podman, podmanEnv } from "../support/env.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";
import { recordSuite } from "../support/reliability.ts";

const USER = "mcptest";
const HOME = `/var/lib/${USER}`;
const SUBID_COUNT = 65536;
const HTTPD_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"];
const USER_CONTAINERS_CONF = [
  "[containers]",
  "default_ulimits = []",
  "[engine]",
  'runtime = "runc"',
  'cgroup_manager = "cgroupfs"',
  'events_logger = "file"',
  "",
].join("\n");

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (as root, or as `as`), bounded; never throws on a non-zero exit. */
async function exec(
  argv: string[],
  as?: { uid: number; gid: number; env: Record<string, string> },
  timeoutMs = 60_000,
): Promise<Run> {
  const p = Bun.spawn(argv, {
    env: { ...process.env, ...as?.env },
    uid: as?.uid,
    gid: as?.gid,
    cwd: as ? "/" : undefined,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

async function execOk(argv: string[], as?: Parameters<typeof exec>[1]): Promise<string> {
  const r = await exec(argv, as);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** `owner:start:count` ranges of a subid file. */
function subids(path: string): { owner: string; start: number; count: number }[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, "utf8")
    .split("\n")
    .map((l) => l.trim().split(":"))
    .filter((f) => f.length === 3 && /^\d+$/.test(f[1]!) && /^\d+$/.test(f[2]!))
    .map(([owner, start, count]) => ({ owner: owner!, start: Number(start), count: Number(count) }));
}

/** The user's range in `path`, appended (after every existing range, from 200000) when missing. */
function ensureSubids(path: string): { start: number; count: number } {
  const all = subids(path);
  const mine = all.find((r) => r.owner === USER);
  if (mine) return mine;
  const start = Math.max(200_000, ...all.map((r) => r.start + r.count));
  const text = existsSync(path) ? readFileSync(path, "utf8") : "";
  appendFileSync(path, `${text === "" || text.endsWith("\n") ? "" : "\n"}${USER}:${start}:${SUBID_COUNT}\n`);
  return { start, count: SUBID_COUNT };
}

interface RootlessUser {
  uid: number;
  gid: number;
  subuid: { start: number; count: number };
  /** HOME, USER, XDG_* and CONTAINERS_CONF of the user: for its podman and its agent. */
  env: Record<string, string>;
}

async function ensureRootlessUser(): Promise<RootlessUser> {
  if (process.getuid?.() !== 0) throw new Error("the rootless test sets up a user and must run as root");
  for (const bin of ["/usr/bin/newuidmap", "/usr/bin/newgidmap", "/usr/bin/slirp4netns"]) {
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run scripts/ci-deps.sh (uidmap, slirp4netns)`);
  }
  if ((await exec(["id", "-u", USER])).code !== 0) {
    await execOk([
      "useradd",
      "--system",
      "--create-home",
      "--home-dir",
      HOME,
      "--shell",
      "/usr/sbin/nologin",
      USER,
    ]);
  }
  const uid = Number(await execOk(["id", "-u", USER]));
  const gid = Number(await execOk(["id", "-g", USER]));
  const subuid = ensureSubids("/etc/subuid");
  ensureSubids("/etc/subgid");

  if (!existsSync("/dev/net/tun")) {
    mkdirSync("/dev/net", { recursive: true });
    await execOk(["mknod", "/dev/net/tun", "c", "10", "200"]);
  }
  chmodSync("/dev/net/tun", 0o666);

  const runtimeDir = `/run/user/${uid}`;
  mkdirSync(runtimeDir, { recursive: true });
  chownSync(runtimeDir, uid, gid);
  chmodSync(runtimeDir, 0o700);

  const confDir = join(HOME, ".config", "containers");
  mkdirSync(confDir, { recursive: true });
  const conf = join(confDir, "containers.conf");
  writeFileSync(conf, USER_CONTAINERS_CONF);
  for (const d of [HOME, join(HOME, ".config"), confDir, conf]) chownSync(d, uid, gid);

  return {
    uid,
    gid,
    subuid,
    env: {
      HOME,
      USER,
      LOGNAME: USER,
      XDG_RUNTIME_DIR: runtimeDir,
      XDG_CONFIG_HOME: join(HOME, ".config"),
      XDG_DATA_HOME: join(HOME, ".local", "share"),
      CONTAINERS_CONF: conf,
    },
  };
}

async function httpGet(port: number): Promise<string> {
  let last: unknown;
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return await res.text();
      last = `HTTP ${res.status}`;
    } catch (err) {
      last = err;
    }
    await Bun.sleep(50);
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${port}: ${String(last)}`);
}

/** Host uid/gid of a process (real ids from /proc/<pid>/status). */
function hostIds(pid: number): { uid: number; gid: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const field = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(status)?.[1] ?? Number.NaN);
  return { uid: field("Uid"), gid: field("Gid") };
}

describe("rootless: deploy → podman state destroyed → recover, agent as an unprivileged user", () => {
  let user: RootlessUser;
  let asUser: { uid: number; gid: number; env: Record<string, string> };
  let podmanArgs: string[] = [];
  let agent: LocalAgent | undefined;
  const svc = `rl-${rand()}`;
  const container = `${svc}-web`;
  let port = 0;
  let www = "";
  let body = "";
  let saveDir = "";
  let checks = 0;
  let faults = 0;

  const podmanAsUser = (...args: string[]) => exec(["podman", ...podmanArgs, ...args], asUser);
  const check = (fn: () => void) => {
    fn();
    checks++;
  };

  /** The container's state in the user's store, and where its process runs on the host. */
  async function observe() {
    const r = await podmanAsUser(
      "container",
      "inspect",
      "--format",
      "{{.State.Status}} {{.State.Pid}}",
      container,
    );
    if (r.code !== 0) return { status: "absent", pid: 0 };
    const [status, pid] = r.stdout.split(" ");
    return { status: status ?? "", pid: Number(pid) };
  }

  async function expectOwnedByUser(): Promise<void> {
    const ps = await podmanAsUser(
      "ps",
      "--filter",
      `name=^${container}$`,
      "--format",
      "{{.Names}} {{.Ports}}",
    );
    check(() => expect(ps.stdout).toBe(`${container} 127.0.0.1:${port}->8080/tcp`));
    // Root's store knows nothing about it: the agent really used the user's rootless podman.
    const rootSide = await podman("container", "exists", container);
    check(() => expect(rootSide.code).toBe(1));
    const { status, pid } = await observe();
    check(() => expect(status).toBe("running"));
    const ids = hostIds(pid);
    const inUserRange = (id: number) =>
      id === user.uid || (id >= user.subuid.start && id < user.subuid.start + user.subuid.count);
    check(() =>
      expect({ uid: ids.uid, inRange: inUserRange(ids.uid) }).toEqual({ uid: ids.uid, inRange: true }),
    );
    // Container root is the user itself on the host, the rest of the ids its subuid range.
    const uidMap = readFileSync(`/proc/${pid}/uid_map`, "utf8")
      .trim()
      .split("\n")
      .map((l) => l.trim().split(/\s+/));
    check(() =>
      expect(uidMap).toEqual([
        ["0", String(user.uid), "1"],
        ["1", String(user.subuid.start), String(user.subuid.count)],
      ]),
    );
  }

  beforeAll(async () => {
    user = await ensureRootlessUser();
    asUser = { uid: user.uid, gid: user.gid, env: user.env };
    podmanArgs = (await podmanEnv()).globalArgs;

    // The test image into the user's store: save from root's store, load as the user.
    const image = await busyboxImage("v1.0.0");
    saveDir = mkdtempSync(join(tmpdir(), "mcp-rootless-img-"));
    chmodSync(saveDir, 0o755);
    const archive = join(saveDir, "busybox.tar");
    const saved = await podman("save", "-o", archive, image);
    if (saved.code !== 0) throw new Error(`podman save ${image}: ${saved.stderr}`);
    chmodSync(archive, 0o644);
    const loaded = await podmanAsUser("load", "-i", archive);
    if (loaded.code !== 0) throw new Error(`rootless podman load: ${loaded.stderr}`);

    agent = await startLocalAgent({ user: asUser });
    port = await freePort();
    www = join(agent.dir, "www");
    mkdirSync(www);
    body = `rootless volume of ${svc}\n`;
    writeFileSync(join(www, "index.html"), body);
    chownSync(www, user.uid, user.gid);
    chownSync(join(www, "index.html"), user.uid, user.gid);
    writeFileSync(
      join(agent.servicesDir, `${svc}.toml`),
      [
        `name = "${svc}"`,
        "active = true",
        "",
        "[[components]]",
        'name = "web"',
        `image = "${image}"`,
        'restart = "unless-stopped"',
        `ports = ["127.0.0.1:${port}:8080"]`,
        `volumes = ["${www}:/www"]`,
        `cmd = [${HTTPD_CMD.map((a) => JSON.stringify(a)).join(", ")}]`,
        "",
      ].join("\n"),
    );
  }, 60_000);

  afterAll(async () => {
    if (asUser) await podmanAsUser("rm", "-f", "-t", "1", "--ignore", container);
    await agent?.stop();
    if (saveDir) rmSync(saveDir, { recursive: true, force: true });
  }, 30_000);

  test("the agent runs as the user; deploy serves HTTP on 127.0.0.1 through rootless podman", async () => {
    const a = agent!;
    // The agent's own files (its registry) are the user's: it runs as the user.
    const db = statSync(join(a.dir, "mcp.db"));
    check(() => expect({ uid: db.uid, gid: db.gid }).toEqual({ uid: user.uid, gid: user.gid }));

    const dep = await a.mcp(["deploy", svc, "--pull", "never"], { timeoutMs: 60_000 });
    check(() => expect({ code: dep.code, stderr: dep.stderr.trim() }).toEqual({ code: 0, stderr: "" }));
    await expectOwnedByUser();
    const got = await httpGet(port);
    check(() => expect(got).toBe(body));
  }, 60_000);

  test("podman rm -f as the user, then mcp agent recover: back, running, rootless, serving", async () => {
    const a = agent!;
    const rm = await podmanAsUser("rm", "-f", "-t", "1", container);
    check(() => expect(rm.code).toBe(0));
    faults++;
    const exists = await podmanAsUser("container", "exists", container);
    check(() => expect(exists.code).toBe(1));

    const rec = await a.mcp(["agent", "recover"], { timeoutMs: 60_000 });
    check(() =>
      expect({ code: rec.code, out: rec.stdout.trim() }).toEqual({
        code: 0,
        out: `local/${svc}/web recreated`,
      }),
    );
    await expectOwnedByUser();
    const got = await httpGet(port);
    check(() => expect(got).toBe(body));

    const again = await a.mcp(["agent", "recover"], { timeoutMs: 60_000 });
    check(() => expect(again.stdout.trim()).toBe(`local/${svc}/web already running`));

    recordSuite({
      suite: "rootless",
      cases: checks,
      faults,
      dataLost: 0,
      detail: `uid=${user.uid} subuid=${user.subuid.start}+${user.subuid.count} containers_removed=${faults}`,
    });
  }, 60_000);
});
