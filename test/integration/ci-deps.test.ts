// integration: scripts/ci-deps.sh on this machine, with the real apt-get and npm (issue 19,
// stumble 1). The apt step: While a child of this test holds the dpkg/apt lock files (flock, as root) the step,
// asked to install an already-installed package, says in one line which lock it waits for and who
// holds it, waits, and succeeds once the holder is killed; with a short CI_DEPS_LOCK_TIMEOUT it
// gives up with one line naming the lock. Failures say their real cause in one line: not root,
// unknown package, an unreachable repository (a temporary apt configuration, so nothing on the
// machine changes). Installing the installed version of a manually installed package changes
// nothing, and no step here runs `apt-get update` against the machine's own lists. The npm step,
// in a small project whose lockfile `npm ci` refuses (a local file: dependency, so no registry):
// one line for the refusal, npm install completes, no `npm error` line; when npm install fails too,
// both outputs in full.
import { afterAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAfter } from "../../src/runtime/exec.ts";
import { REPO_ROOT } from "../support/binary.ts";
import { freePort } from "../support/env.ts";

const SCRIPT = join(REPO_ROOT, "scripts", "ci-deps.sh");
const APT_LOG = join(REPO_ROOT, ".cache", "ci-deps", "apt.log");
// The files apt-get takes its locks on (dpkg's frontend lock and lock, the package lists' lock).
const LOCKS = ["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock", "/var/lib/apt/lists/lock"];
const HOLD_MS = 20_000;
const NO_SUCH_PACKAGE = "mcp-cideps-test-no-such-package";

const tmpRoot = mkdtempSync(join(tmpdir(), "mcp-cideps-test-"));
const holders: Bun.Subprocess[] = [];
afterAll(() => {
  for (const h of holders) h.kill("SIGKILL");
  rmSync(tmpRoot, { recursive: true, force: true });
});

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0)
    throw new Error(`${argv.join(" ")}: exit ${r.exitCode}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** Packages apt marks as automatically installed (installing one by hand would mark it manual). */
function autoInstalled(): Set<string> {
  const auto = new Set<string>();
  let text = "";
  try {
    text = readFileSync("/var/lib/apt/extended_states", "utf8");
  } catch {
    return auto; // no file: nothing is marked automatic
  }
  for (const stanza of text.split(/\n\s*\n/)) {
    const name = stanza.match(/^Package: (\S+)$/m)?.[1];
    if (name && /^Auto-Installed: 1$/m.test(stanza)) auto.add(name);
  }
  return auto;
}

let present: string | undefined;
/**
 * pkg=version of an installed package apt does not mark automatic: `apt-get install` of exactly
 * that version neither upgrades it nor changes its mark.
 */
function presentPackage(): string {
  if (present) return present;
  const auto = autoInstalled();
  for (const name of ["procps", "hostname", "coreutils", "bash"]) {
    if (auto.has(name)) continue;
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's format fields, not a JS template
    const [status, version] = sh(["dpkg-query", "-W", "-f=${Status}\t${Version}", name]).split("\t");
    if (status === "install ok installed" && version) {
      present = `${name}=${version}`;
      return present;
    }
  }
  throw new Error("none of procps, hostname, coreutils, bash is installed and marked manual here");
}

/** Collects a stream's text as it arrives; waitFor polls it (bounded). */
function collect(stream: ReadableStream<Uint8Array>) {
  let text = "";
  const done = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) text += decoder.decode(chunk, { stream: true });
  })();
  return {
    get text() {
      return text;
    },
    done,
    async waitFor(re: RegExp, ms: number): Promise<RegExpMatchArray> {
      for (let waited = 0; waited <= ms; waited += 50) {
        const m = text.match(re);
        if (m) return m;
        await Bun.sleep(50);
      }
      throw new Error(`no ${re} within ${ms} ms; got: ${text}`);
    },
  };
}

/**
 * A child holding flock locks on LOCKS until killed: one process (bash exec'd into sleep) keeps the
 * descriptors, so killing its pid releases them all. Resolves once it holds them.
 */
async function holdLocks(): Promise<Bun.Subprocess<"ignore", "pipe", "pipe">> {
  const p = Bun.spawn(
    [
      "bash",
      "-c",
      'exec 3>>"$1" 4>>"$2" 5>>"$3" && flock -n 3 && flock -n 4 && flock -n 5 && echo locked && exec sleep 600',
      "mcp-cideps-test-lock-holder",
      ...LOCKS,
    ],
    { stdin: "ignore", stdout: "pipe", stderr: "pipe" },
  );
  holders.push(p);
  const out = collect(p.stdout);
  try {
    await out.waitFor(/^locked$/m, 10_000);
  } catch (e) {
    p.kill("SIGKILL");
    throw new Error(`the lock holder did not get the locks: ${await new Response(p.stderr).text()} (${e})`);
  }
  return p;
}

function ciDeps(env: Record<string, string>, opts: { uid?: number; gid?: number; script?: string } = {}) {
  const p = Bun.spawn(["bash", opts.script ?? SCRIPT, "--apt-only"], {
    env: { ...process.env, ...env },
    uid: opts.uid,
    gid: opts.gid,
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return { proc: p, stdout: collect(p.stdout), stderr: collect(p.stderr) };
}

async function finish(run: ReturnType<typeof ciDeps>, ms: number) {
  const deadline = killAfter(run.proc, ms);
  const code = await run.proc.exited;
  deadline.clear();
  await Promise.all([run.stdout.done, run.stderr.done]);
  if (deadline.timedOut) throw new Error(`ci-deps.sh did not finish within ${ms} ms: ${run.stdout.text}`);
  return { code, stdout: run.stdout.text, stderr: run.stderr.text };
}

const lines = (s: string) => s.split("\n").filter((l) => l !== "");

describe("ci-deps.sh apt step", () => {
  test("waits while the dpkg/apt locks are held (says which, and by whom), then installs a present package", async () => {
    const pkg = presentPackage();
    const holder = await holdLocks();
    const lockedAt = Date.now();
    const run = ciDeps({ CI_DEPS_APT_INSTALL: pkg, CI_DEPS_LOCK_TIMEOUT: "120" });
    const m = await run.stdout.waitFor(
      /^ci-deps: waiting up to 120s for the apt\/dpkg lock (\S+), held by pid (\d+) \((\S+)\)$/m,
      15_000,
    );
    expect(LOCKS).toContain(m[1] as string);
    expect(Number(m[2])).toBe(holder.pid);
    expect(m[3]).toBe("sleep"); // the holder exec'd into sleep

    await Bun.sleep(Math.max(0, HOLD_MS - (Date.now() - lockedAt)));
    // Still waiting after the locks were held for 20 s: it neither gave up nor started apt-get.
    expect(run.proc.exitCode).toBeNull();
    expect(readFileSync(APT_LOG, "utf8")).toBe("");
    holder.kill("SIGKILL");
    await holder.exited;

    const r = await finish(run, 120_000);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const out = lines(r.stdout);
    // What it installs, then one waiting line; nothing else.
    expect(out).toEqual([`ci-deps: installing ${pkg} (apt output: ${APT_LOG})`, m[0]]);
    const log = readFileSync(APT_LOG, "utf8");
    expect(log).not.toContain("== apt-get update"); // the present package needs no fresh lists
    expect(log).toContain(`${pkg.split("=")[0]} is already the newest version`);
    expect(log).toMatch(/0 upgraded, 0 newly installed, 0 to remove/);
  }, 90_000);

  test("gives up after CI_DEPS_LOCK_TIMEOUT with one line naming the held lock and its holder", async () => {
    const holder = await holdLocks();
    try {
      const r = await finish(
        ciDeps({ CI_DEPS_APT_INSTALL: presentPackage(), CI_DEPS_LOCK_TIMEOUT: "2" }),
        30_000,
      );
      expect(r.code).toBe(1);
      expect(lines(r.stdout)).toEqual([
        expect.stringMatching(/^ci-deps: installing /),
        expect.stringMatching(/^ci-deps: waiting up to 2s for the apt\/dpkg lock /),
      ]);
      const err = lines(r.stderr);
      expect(err).toHaveLength(1);
      expect(err[0]).toMatch(
        new RegExp(
          `^ci-deps: apt-get install: gave up after 2s waiting for the apt/dpkg lock /var/lib/\\S+, held by pid ${holder.pid} \\(sleep\\); let that apt finish \\(or stop it\\), then rerun$`,
        ),
      );
      expect(r.stderr).not.toContain("root");
    } finally {
      holder.kill("SIGKILL");
      await holder.exited;
    }
  }, 30_000);

  test("not root: one line saying so (and what it had to install), before apt runs", async () => {
    // A copy the unprivileged user can read (the checkout may sit in root's home).
    const root = join(tmpRoot, "norepo");
    mkdirSync(join(root, "scripts"), { recursive: true });
    copyFileSync(SCRIPT, join(root, "scripts", "ci-deps.sh"));
    for (const d of [tmpRoot, root, join(root, "scripts")]) chmodSync(d, 0o755);
    const pkg = presentPackage();
    const r = await finish(
      ciDeps(
        { CI_DEPS_APT_INSTALL: pkg },
        { uid: 65534, gid: 65534, script: join(root, "scripts", "ci-deps.sh") },
      ),
      30_000,
    );
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("");
    expect(lines(r.stderr)).toEqual([
      `ci-deps: apt must install ${pkg} but this is not root (uid 65534); rerun as root or install them yourself`,
    ]);
  }, 30_000);

  test("an unknown package: one line naming it (no update: CI_DEPS_NO_UPDATE=1)", async () => {
    const r = await finish(
      ciDeps({ CI_DEPS_APT_INSTALL: NO_SUCH_PACKAGE, CI_DEPS_NO_UPDATE: "1", CI_DEPS_LOCK_TIMEOUT: "60" }),
      60_000,
    );
    expect(r.code).toBe(1);
    expect(lines(r.stdout)).toEqual([`ci-deps: installing ${NO_SUCH_PACKAGE} (apt output: ${APT_LOG})`]);
    expect(lines(r.stderr)).toEqual([
      `ci-deps: unknown package ${NO_SUCH_PACKAGE}: not in the configured apt sources (check the name and /etc/apt/sources.list.d/) (apt output: ${APT_LOG})`,
    ]);
  }, 60_000);

  test("an option among the packages is refused before apt runs (security: it would reach apt-get as root)", async () => {
    const r = await finish(
      ciDeps({ CI_DEPS_APT_INSTALL: "-oAPT::Get::Simulate=true hostname", CI_DEPS_NO_UPDATE: "1" }),
      30_000,
    );
    expect(r.code).toBe(2);
    expect(lines(r.stdout)).toEqual([]);
    expect(lines(r.stderr)).toEqual([
      "ci-deps: CI_DEPS_APT_INSTALL: '-oAPT::Get::Simulate=true' is not a package name (pkg, pkg:arch or pkg=version)",
    ]);
  }, 30_000);

  test("an unreachable repository: one line saying network or repository failure, with apt's own reason", async () => {
    // apt reads APT_CONFIG first; pointing Dir::Etc::Parts and main at empty places keeps every
    // other configuration (and its hooks) out, and lists, caches and sources live in the temp dir.
    const dir = join(tmpRoot, "apt");
    for (const d of ["parts", "lists/partial", "cache/archives/partial", "sources"]) {
      mkdirSync(join(dir, d), { recursive: true });
    }
    const port = await freePort(); // nothing listens there: connection refused
    writeFileSync(join(dir, "sources.list"), `deb http://127.0.0.1:${port}/debian bookworm main\n`);
    writeFileSync(join(dir, "main.conf"), "");
    writeFileSync(
      join(dir, "apt.conf"),
      [
        `Dir::Etc::Parts "${dir}/parts";`,
        `Dir::Etc::main "${dir}/main.conf";`,
        `Dir::Etc::sourcelist "${dir}/sources.list";`,
        `Dir::Etc::sourceparts "${dir}/sources";`,
        `Dir::State::Lists "${dir}/lists";`,
        `Dir::Cache "${dir}/cache";`,
        `APT::Sandbox::User "root";`,
        `Acquire::Retries "0";`,
        "",
      ].join("\n"),
    );
    // The missing package makes the step refresh the lists first, which fails.
    const r = await finish(
      ciDeps({
        CI_DEPS_APT_INSTALL: NO_SUCH_PACKAGE,
        APT_CONFIG: join(dir, "apt.conf"),
        CI_DEPS_LOCK_TIMEOUT: "60",
      }),
      60_000,
    );
    expect(r.code).toBe(1);
    const err = lines(r.stderr);
    expect(err).toHaveLength(1);
    expect(err[0]).toMatch(
      new RegExp(
        `^ci-deps: apt-get update: network or repository failure: .*127\\.0\\.0\\.1:${port}.* \\(apt output: `,
      ),
    );
    expect(err[0]).not.toContain("root");
    expect(readFileSync(APT_LOG, "utf8")).not.toContain("== apt-get install"); // stopped at the update
  }, 60_000);
});

/** The environment of a plain shell: no npm lifecycle variables from an enclosing `npm test`. */
function plainEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v !== undefined && !k.startsWith("npm_") && k !== "INIT_CWD") env[k] = v;
  }
  return { ...env, npm_config_update_notifier: "false" };
}

/**
 * A project holding a copy of ci-deps.sh, whose package.json depends on `dep` while its lockfile
 * lists nothing: `npm ci` refuses it as out of sync, as it refuses this repository's lockfile on
 * machines whose registry serves only the Linux builds.
 */
function npmProject(name: string, dep: string): string {
  const dir = join(tmpRoot, name);
  mkdirSync(join(dir, "scripts"), { recursive: true });
  mkdirSync(join(dir, "local-dep"));
  copyFileSync(SCRIPT, join(dir, "scripts", "ci-deps.sh"));
  writeFileSync(join(dir, "local-dep", "package.json"), '{"name":"local-dep","version":"1.0.0"}\n');
  const pkg = {
    name: "cideps-npm-test",
    version: "1.0.0",
    private: true,
    dependencies: { "local-dep": dep },
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(pkg)}\n`);
  const lock = {
    name: pkg.name,
    version: pkg.version,
    lockfileVersion: 3,
    requires: true,
    packages: { "": { name: pkg.name, version: pkg.version } },
  };
  writeFileSync(join(dir, "package-lock.json"), `${JSON.stringify(lock)}\n`);
  return dir;
}

async function ciDepsIn(dir: string) {
  const p = Bun.spawn(["bash", join(dir, "scripts", "ci-deps.sh")], {
    env: plainEnv(),
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  return finish({ proc: p, stdout: collect(p.stdout), stderr: collect(p.stderr) }, 120_000);
}

describe("ci-deps.sh npm step", () => {
  test("npm ci refuses the lockfile: one line, npm install completes, no npm error line", async () => {
    const dir = npmProject("refused", "file:./local-dep");
    const lockBefore = readFileSync(join(dir, "package-lock.json"), "utf8");
    const r = await ciDepsIn(dir);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: "" });
    const log = join(dir, ".cache", "ci-deps");
    expect(lines(r.stdout)).toEqual([
      "ci-deps: apt packages present",
      `ci-deps: npm ci (output: ${log}/npm-ci.log)`,
      expect.stringMatching(
        /^ci-deps: npm ci refused the lockfile \(it does not match package\.json: Missing: local-dep@\S+ from lock file\); falling back to npm install \(same versions\)$/,
      ),
      expect.stringMatching(
        new RegExp(`^ci-deps: npm install: added 1 package in \\S+ \\(output: ${log}/npm-install\\.log\\)$`),
      ),
    ]);
    expect(r.stdout).not.toContain("npm error");
    // npm did print its error and usage text: into the log, not the output.
    const npmErrors = readFileSync(join(log, "npm-ci.log"), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("npm error"));
    expect(npmErrors.length).toBeGreaterThan(20);
    expect(npmErrors).toContain("npm error code EUSAGE");
    // npm install really installed, and left the lockfile as it was (--no-save).
    expect(readFileSync(join(dir, "node_modules", "local-dep", "package.json"), "utf8")).toContain(
      "local-dep",
    );
    expect(readFileSync(join(dir, "package-lock.json"), "utf8")).toBe(lockBefore);
  }, 120_000);

  test("npm install fails too: both outputs in full, then one line, exit 1", async () => {
    const dir = npmProject("both-fail", "file:./local-dep.tgz"); // no such tarball
    const r = await ciDepsIn(dir);
    expect(r.code).toBe(1);
    const log = join(dir, ".cache", "ci-deps");
    expect(lines(r.stdout)).toEqual([
      "ci-deps: apt packages present",
      `ci-deps: npm ci (output: ${log}/npm-ci.log)`,
      expect.stringMatching(
        /^ci-deps: npm ci failed \(.*local-dep\.tgz.*\); falling back to npm install \(same versions\)$/,
      ),
    ]);
    const err = lines(r.stderr);
    expect(err[0]).toBe(`--- npm ci output (${log}/npm-ci.log)`);
    expect(err).toContain(`--- npm install output (${log}/npm-install.log)`);
    expect(err.filter((l) => l.startsWith("npm error")).length).toBeGreaterThan(2);
    expect(err.at(-1)).toMatch(/^ci-deps: npm install failed too \(exit \d+\); both outputs are above$/);
  }, 120_000);
});
