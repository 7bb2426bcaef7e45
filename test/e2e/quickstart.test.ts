// e2e: the README's first command, `npm run quickstart` (scripts/quickstart.sh; issue 19,
// stumbles 1 and 6). 1) A busy QUICKSTART_HTTP_PORT or QUICKSTART_PORT is refused with one line
// naming the port and the variable that moves it, before anything is touched: a previous run's
// files stay byte for byte and its (stand-in) agent keeps running. 2) In a fresh clone of HEAD
// (no node_modules, no dist/), `npm run quickstart` installs, builds, deploys the demo, shows
// `mcp status <service>` and `mcp ps`, and prints no `npm error` line (npm ci's refusal of the
// lockfile is one line). 3) Run again while the first run is up, it stops that run (whose ports it
// then reuses) and comes up again. Each run here has its own ports, directory and service name
// (QUICKSTART_*), so nothing meets the operator's own quickstart; afterwards the test stops what
// it started: agent and registry by their recorded pids, container and images by name.
import { afterAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { killAfter, processExists } from "../../src/runtime/exec.ts";
import { REPO_ROOT } from "../support/binary.ts";
import { busyboxImage, freePort, podman } from "../support/env.ts";

const tmpRoot = mkdtempSync(join(tmpdir(), "mcp-quickstart-e2e-"));
const cleanups: (() => Promise<void> | void)[] = [];
// Stopping the agent and registry and removing a clone with its node_modules and dist/ take a while.
afterAll(async () => {
  for (const c of cleanups.reverse()) await c();
  rmSync(tmpRoot, { recursive: true, force: true });
}, 180_000);

/** The environment of a newcomer's shell: no npm lifecycle variables from an enclosing `npm test`. */
function cleanEnv(extra: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k.startsWith("npm_") || k === "INIT_CWD" || k.startsWith("MCP_")) continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

async function runIn(cwd: string, argv: string[], env: Record<string, string>, timeoutMs: number) {
  const proc = Bun.spawn(argv, { cwd, env, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  const deadline = killAfter(proc, timeoutMs);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  deadline.clear();
  if (deadline.timedOut)
    throw new Error(`${argv.join(" ")} timed out after ${timeoutMs} ms:\n${stdout}\n${stderr}`);
  return { code, stdout, stderr };
}

function git(args: string[], cwd = REPO_ROOT): string {
  const r = Bun.spawnSync(["git", ...args], { cwd, stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`git ${args.join(" ")}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString().trim();
}

function listen(): Promise<Server & { port: number }> {
  return new Promise((resolve, reject) => {
    const srv = createServer((sock) => sock.destroy());
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      resolve(Object.assign(srv, { port: typeof addr === "object" && addr ? addr.port : 0 }));
    });
  });
}

/** Every file under dir with its bytes and mtime: equal snapshots mean nothing was touched. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[relative(dir, p)] = `${statSync(p).mtimeMs} ${readFileSync(p, "base64")}`;
    }
  };
  walk(dir);
  return out;
}

/** Whether process `pid` runs with `marker` in its command line (not a recycled pid). */
function runsWith(pid: number, marker: string): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").includes(marker);
  } catch {
    return false;
  }
}

/** The pid in a quickstart pid file if that process still runs with `marker` in its command line. */
function livePid(pidFile: string, marker: string): number | undefined {
  if (!existsSync(pidFile)) return undefined;
  const pid = Number(readFileSync(pidFile, "utf8").trim());
  return Number.isInteger(pid) && pid > 0 && runsWith(pid, marker) ? pid : undefined;
}

describe("quickstart: ports are checked before anything is touched", () => {
  const qs = join(tmpRoot, "previous-run");
  const SERVICE = "qs-e2e-busy";
  let prevHttpPort = 0;

  // A previous run's files, and its agent: a live process whose command line names its
  // mcp-agent.toml, as stop_previous requires before it stops one.
  async function previousRun(busyHttpPort: number) {
    prevHttpPort = busyHttpPort;
    rmSync(qs, { recursive: true, force: true });
    mkdirSync(join(qs, "mcp", "services"), { recursive: true });
    const agent = Bun.spawn(
      ["bash", "-c", 'exec -a "$0" sleep 600', `qs-e2e-fake-agent --config ${qs}/mcp/mcp-agent.toml`],
      {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      },
    );
    cleanups.push(() => {
      agent.kill("SIGKILL");
    });
    const prevAgentPort = await freePort();
    writeFileSync(join(qs, ".mcp-quickstart"), "");
    writeFileSync(join(qs, "agent.pid"), `${agent.pid}\n`);
    writeFileSync(join(qs, "agent.log"), "the previous run's agent log\n");
    writeFileSync(join(qs, "images"), "localhost/mcp-quickstart-qs-e2e-prev:v1.0.0\n");
    writeFileSync(join(qs, "mcp", "mcp-agent.toml"), `[server]\ngrpc_addr = "127.0.0.1:${prevAgentPort}"\n`);
    // The previous run's demo used the port that is busy now, but its container is gone: a
    // stranger holds the port, not that run.
    writeFileSync(join(qs, "service"), "qs-e2e-prev\n");
    writeFileSync(
      join(qs, "mcp", "services", "qs-e2e-prev.toml"),
      `name = "qs-e2e-prev"\n\n[[components]]\nname = "web"\nports = ["127.0.0.1:${prevHttpPort}:8080"]\n`,
    );
    return agent;
  }

  const cases: [string, "QUICKSTART_HTTP_PORT" | "QUICKSTART_PORT", string][] = [
    ["a busy QUICKSTART_HTTP_PORT", "QUICKSTART_HTTP_PORT", "the demo's HTTP port"],
    ["a busy QUICKSTART_PORT", "QUICKSTART_PORT", "the agent's gRPC port"],
  ];
  for (const [title, variable, what] of cases) {
    test(`${title}: one line naming the port and ${variable}, exit 1, the previous run untouched`, async () => {
      const busy = await listen();
      cleanups.push(() => void busy.close());
      const agent = await previousRun(busy.port);
      const before = snapshot(qs);
      const other = variable === "QUICKSTART_PORT" ? "QUICKSTART_HTTP_PORT" : "QUICKSTART_PORT";
      const env = cleanEnv({
        QUICKSTART_DIR: qs,
        QUICKSTART_SERVICE: SERVICE,
        [variable]: String(busy.port),
        [other]: String(await freePort()),
      });
      cleanups.push(async () => {
        // Only if the check failed and the script went on (it then wrote registry.pid): stop what it started.
        if (existsSync(join(qs, "registry.pid"))) {
          await runIn(REPO_ROOT, ["bash", "scripts/quickstart.sh", "--stop"], env, 60_000);
        }
      });
      const r = await runIn(REPO_ROOT, ["bash", "scripts/quickstart.sh"], env, 60_000);
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 1, stdout: "" });
      expect(r.stderr).toBe(
        `quickstart: 127.0.0.1:${busy.port} (${what}) is in use by another process; set ${variable} to a free port (nothing was changed)\n`,
      );
      expect(snapshot(qs)).toEqual(before);
      expect(agent.exitCode).toBeNull();
      expect(processExists(agent.pid)).toBe(true);
      agent.kill("SIGKILL");
      await agent.exited;
      busy.close();
    }, 60_000);
  }
});

describe("quickstart --stop touches only what its own run started (security: issue 19 review)", () => {
  test("a recycled pid running another docker-registry or mcp agent, and another definition's container, are left alone", async () => {
    const qs = join(tmpRoot, "stop-only-ours");
    mkdirSync(join(qs, "mcp", "services"), { recursive: true });
    writeFileSync(join(qs, ".mcp-quickstart"), "");
    // Processes a pid file of an earlier boot could name now: the machine's own registry and agent.
    const spawnAs = (argv0: string, args: string) =>
      Bun.spawn(["bash", "-c", 'exec -a "$0" sleep 600', `${argv0} ${args}`], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      });
    const registry = spawnAs("docker-registry", "serve /etc/docker/registry/config.yml");
    const agent = spawnAs("mcp", "agent --config /srv/mcp/mcp-agent.toml");
    cleanups.push(() => {
      registry.kill("SIGKILL");
      agent.kill("SIGKILL");
    });
    writeFileSync(join(qs, "registry.pid"), `${registry.pid}\n`);
    writeFileSync(join(qs, "agent.pid"), `${agent.pid}\n`);
    // A definition the operator added beside the demo's: its container is not the quickstart's.
    const stranger = `qs-e2e-stranger-${Math.random().toString(36).slice(2, 8)}`;
    writeFileSync(join(qs, "mcp", "services", "aaa.toml"), `name = "${stranger}"\n`);
    const run = await podman(
      "run",
      "-d",
      "--name",
      `${stranger}-web`,
      await busyboxImage("v1.0.0"),
      "sleep",
      "600",
    );
    expect(run.code).toBe(0);
    cleanups.push(async () => {
      await podman("rm", "-f", "-t", "0", `${stranger}-web`);
    });
    const env = cleanEnv({ QUICKSTART_DIR: qs, QUICKSTART_SERVICE: "qs-e2e-stop" });
    const r = await runIn(REPO_ROOT, ["bash", "scripts/quickstart.sh", "--stop"], env, 60_000);
    expect(r.code).toBe(0);
    // Before the fix: both killed (their command lines named docker-registry / mcp-agent.toml)
    // and the stranger's container removed (its name came from the first services/*.toml).
    expect(processExists(registry.pid)).toBe(true);
    expect(processExists(agent.pid)).toBe(true);
    expect((await podman("container", "exists", `${stranger}-web`)).code).toBe(0);
  }, 90_000);
});

describe("quickstart: a fresh clone", () => {
  const SERVICE = "qs-e2e-fresh";
  const clone = join(tmpRoot, "clone");
  const qs = join(clone, ".cache", "quickstart");
  let env: Record<string, string> = {};
  let httpPort = 0;
  let firstAgent: number | undefined;
  const started = new Set<number>(); // agent and registry pids, for the cleanup

  function recordPids() {
    // Both command lines name files in the clone (its dist/mcp, its registry.yml).
    for (const f of ["agent.pid", "registry.pid"]) {
      const pid = livePid(join(qs, f), clone);
      if (pid) started.add(pid);
    }
  }

  cleanups.push(async () => {
    if (!existsSync(join(clone, "scripts", "quickstart.sh"))) return;
    recordPids();
    const images = existsSync(join(qs, "images")) ? readFileSync(join(qs, "images"), "utf8").split("\n") : [];
    await runIn(clone, ["bash", "scripts/quickstart.sh", "--stop"], env, 60_000).catch(() => undefined);
    for (const pid of started) {
      if (runsWith(pid, clone)) process.kill(pid, "SIGKILL");
    }
    await podman("rm", "-f", "-t", "1", "--ignore", `${SERVICE}-web`);
    const refs = [`localhost/mcp-quickstart-${SERVICE}:v1.0.0`, ...images.filter((l) => l !== "")];
    await podman("rmi", "-f", "--ignore", ...refs);
  });

  function expectShown(out: string) {
    // `mcp status <service>` and then `mcp ps`, each with the demo's running row.
    const statusAt = out.indexOf(`==> mcp status ${SERVICE}\n`);
    const psAt = out.indexOf("==> mcp ps\n");
    expect(statusAt).toBeGreaterThan(-1);
    expect(psAt).toBeGreaterThan(statusAt);
    // A row of the demo's component that says running (tables' columns may change; this may not).
    const row = new RegExp(`^.*\\b${SERVICE}\\b.*\\bweb\\b.*\\brunning\\b`, "m");
    expect(out.slice(statusAt, psAt)).toMatch(row);
    expect(out.slice(psAt)).toMatch(row);
  }

  test("npm run quickstart installs, builds, deploys and shows status and ps, with no npm error line", async () => {
    mkdirSync(clone);
    git(["clone", "--quiet", "--shared", "--no-checkout", REPO_ROOT, clone]);
    git(["checkout", "--quiet", "--detach", git(["rev-parse", "HEAD"])], clone);
    httpPort = await freePort();
    env = cleanEnv({
      QUICKSTART_PORT: String(await freePort()),
      QUICKSTART_HTTP_PORT: String(httpPort),
      QUICKSTART_REGISTRY_PORT: String(await freePort()),
      QUICKSTART_SERVICE: SERVICE,
    });
    const r = await runIn(clone, ["npm", "run", "quickstart"], env, 540_000);
    recordPids();
    const out = r.stdout + r.stderr;
    expect({ code: r.code, out }).toEqual({ code: 0, out: expect.any(String) });
    expect(out).not.toMatch(/^npm (error|ERR!)/m);
    // The lockfile fallback, when the registry makes npm ci refuse, is one line.
    expect(out.split("\n").filter((l) => l.includes("npm ci refused")).length).toBeLessThanOrEqual(1);
    expect(out).toContain(`curl http://127.0.0.1:${httpPort}/ -> Hello from MCP`);
    expectShown(r.stdout);
    expect(await (await fetch(`http://127.0.0.1:${httpPort}/`)).text()).toBe("Hello from MCP\n");
    firstAgent = livePid(join(qs, "agent.pid"), clone);
    expect(firstAgent).toBeNumber();
  }, 600_000);

  test("run again while it is up: the previous run's ports are its own, it stops that run and comes up again", async () => {
    expect(firstAgent).toBeNumber(); // the first run is up
    const r = await runIn(clone, ["npm", "run", "quickstart"], env, 300_000);
    recordPids();
    const out = r.stdout + r.stderr;
    expect({ code: r.code, out }).toEqual({ code: 0, out: expect.any(String) });
    expect(out).not.toMatch(/^npm (error|ERR!)/m);
    expect(out).toContain("ci-deps: node_modules up to date");
    expectShown(r.stdout);
    const again = livePid(join(qs, "agent.pid"), clone);
    expect(again).toBeNumber();
    expect(again).not.toBe(firstAgent);
    expect(livePid(join(qs, "agent.pid"), clone)).toBe(again); // and the first agent is gone:
    expect(runsWith(firstAgent as number, clone)).toBe(false);
    expect(await (await fetch(`http://127.0.0.1:${httpPort}/`)).text()).toBe("Hello from MCP\n");
  }, 300_000);
});
