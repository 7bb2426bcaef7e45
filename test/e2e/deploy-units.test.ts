// deploy/systemd units: `systemd-analyze verify` accepts them (in a throwaway --root holding
// this machine's stock units and a stand-in /srv/mcp/mcp-agent), their hardening directives are
// the ones the unit comments promise, and their ExecStart lines really work: run verbatim through
// a symlink named mcp-agent to the COMPILED binary (only /srv/mcp paths moved into a temp dir),
// the agent unit's line starts a listening agent and the snapshot unit's line writes a snapshot.
// Booting them under a real systemd with rootless podman comes with the Debian node container.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../src/registry/index.ts";
import { mcpBinary, REPO_ROOT, runMcp } from "../support/binary.ts";
import { freePort, podmanEnv } from "../support/env.ts";

const UNITS_DIR = join(REPO_ROOT, "deploy", "systemd");
const UNITS = ["mcp-agent.service", "mcp-agent-snapshot.service", "mcp-agent-snapshot.timer"];
const tmp = mkdtempSync(join(tmpdir(), "mcp-units-test-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

type Unit = Record<string, Record<string, string[]>>;

/** Minimal unit-file reader: sections of key → every value assigned (comments and blanks skipped). */
function parseUnit(text: string): Unit {
  const out: Unit = {};
  let section = "";
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const sec = /^\[(.+)\]$/.exec(line);
    if (sec) {
      section = sec[1]!;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf("=");
    expect(eq).toBeGreaterThan(0);
    const key = line.slice(0, eq).trim();
    const sectionMap = out[section]!;
    sectionMap[key] = [...(sectionMap[key] ?? []), line.slice(eq + 1).trim()];
  }
  return out;
}

const unit = (name: string) => parseUnit(readFileSync(join(UNITS_DIR, name), "utf8"));
const one = (u: Unit, section: string, key: string) => u[section]?.[key]?.join(" ");

/** A root for `systemd-analyze verify --root`: stock units, the given unit files, a fake binary. */
function verifyRoot(name: string, files: Record<string, string>): string {
  const root = join(tmp, name);
  const stock = ["/usr/lib/systemd/system", "/lib/systemd/system"].find((d) =>
    existsSync(join(d, "sysinit.target")),
  );
  if (!stock) throw new Error("no stock systemd units on this machine (package systemd)");
  cpSync(stock, join(root, "usr/lib/systemd/system"), { recursive: true, dereference: false });
  mkdirSync(join(root, "etc/systemd/system"), { recursive: true });
  for (const [f, text] of Object.entries(files)) writeFileSync(join(root, "etc/systemd/system", f), text);
  mkdirSync(join(root, "srv/mcp"), { recursive: true });
  writeFileSync(join(root, "srv/mcp/mcp-agent"), "#!/bin/sh\nexit 0\n");
  chmodSync(join(root, "srv/mcp/mcp-agent"), 0o755);
  return root;
}

async function verify(root: string, files: string[]) {
  const p = Bun.spawn(
    ["systemd-analyze", "verify", `--root=${root}`, ...files.map((f) => `/etc/systemd/system/${f}`)],
    { stdout: "pipe", stderr: "pipe", env: { ...process.env, SYSTEMD_LOG_COLOR: "0" } },
  );
  const timer = setTimeout(() => p.kill("SIGKILL"), 30_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  clearTimeout(timer);
  return { code, out: stdout + stderr };
}

describe("systemd-analyze verify", () => {
  test("the three units verify with no warning at all", async () => {
    const files = Object.fromEntries(UNITS.map((u) => [u, readFileSync(join(UNITS_DIR, u), "utf8")]));
    const r = await verify(verifyRoot("ok", files), UNITS);
    expect(r.out).toBe("");
    expect(r.code).toBe(0);
  });

  test("control: a misspelt directive and a bad value are reported (so '' above means clean)", async () => {
    const text = readFileSync(join(UNITS_DIR, "mcp-agent.service"), "utf8")
      .replace("ProtectSystem=strict", "ProtectSystm=strict")
      .replace("RestartSec=5", "RestartSec=banana");
    const r = await verify(verifyRoot("typo", { "mcp-agent.service": text }), ["mcp-agent.service"]);
    expect(r.out).toContain("Unknown key 'ProtectSystm'");
    expect(r.out).toContain("banana");
  });
});

describe("unit contents", () => {
  test("mcp-agent.service: v2 binary path, mcp user, /srv writable, podman-compatible hardening", () => {
    const u = unit("mcp-agent.service");
    expect(one(u, "Service", "ExecStart")).toBe("/srv/mcp/mcp-agent server --config /srv/mcp/mcp-agent.toml");
    expect(one(u, "Service", "Type")).toBe("simple");
    expect(one(u, "Service", "Restart")).toBe("on-failure");
    expect(one(u, "Service", "User")).toBe("mcp");
    expect(one(u, "Service", "Group")).toBe("mcp");
    expect(one(u, "Service", "KillMode")).toBe("process");
    expect(one(u, "Service", "ReadWritePaths")?.split(/\s+/)).toContain("/srv");
    for (const [k, v] of [
      ["ProtectSystem", "strict"],
      ["PrivateTmp", "true"],
    ] as const)
      expect({ k, v: one(u, "Service", k) }).toEqual({ k, v });
    // Left out on purpose (see the unit's header): each breaks rootless podman or its containers.
    for (const k of [
      "NoNewPrivileges",
      "RestrictNamespaces",
      "RestrictSUIDSGID",
      "PrivateDevices",
      "ProtectKernelTunables",
      "ProtectControlGroups",
      "MemoryDenyWriteExecute",
      "ProtectHome",
      "ProtectKernelModules",
      "LockPersonality",
      "RestrictRealtime",
    ]) {
      expect({ k, v: one(u, "Service", k) }).toEqual({ k, v: undefined });
      expect(readFileSync(join(UNITS_DIR, "mcp-agent.service"), "utf8")).toContain(k); // and explained
    }
    expect(one(u, "Unit", "Wants")).toBe("network-online.target");
    expect(one(u, "Install", "WantedBy")).toBe("multi-user.target");
  });

  test("mcp-agent-snapshot.service: oneshot, same user, the full v1 hardening set", () => {
    const u = unit("mcp-agent-snapshot.service");
    expect(one(u, "Service", "Type")).toBe("oneshot");
    expect(one(u, "Service", "ExecStart")).toBe(
      "/srv/mcp/mcp-agent snapshot --config /srv/mcp/mcp-agent.toml",
    );
    expect(one(u, "Service", "User")).toBe("mcp");
    expect(one(u, "Service", "Group")).toBe("mcp");
    expect(one(u, "Service", "ReadWritePaths")).toBe("/srv/mcp");
    expect(one(u, "Service", "ProtectSystem")).toBe("strict");
    for (const k of [
      "NoNewPrivileges",
      "ProtectHome",
      "PrivateTmp",
      "PrivateDevices",
      "ProtectKernelTunables",
      "ProtectKernelModules",
      "ProtectControlGroups",
      "RestrictSUIDSGID",
      "RestrictNamespaces",
      "LockPersonality",
      "MemoryDenyWriteExecute",
      "RestrictRealtime",
    ])
      expect({ k, v: one(u, "Service", k) }).toEqual({ k, v: "true" });
    expect(u.Install).toBeUndefined(); // started by the timer only
  });

  test("mcp-agent-snapshot.timer: daily, persistent, randomized, starts the snapshot service", () => {
    const u = unit("mcp-agent-snapshot.timer");
    expect(one(u, "Timer", "OnCalendar")).toBe("daily");
    expect(one(u, "Timer", "Persistent")).toBe("true");
    expect(one(u, "Timer", "RandomizedDelaySec")).toMatch(/^\d+[a-z]*$/);
    expect(one(u, "Timer", "Unit")).toBe("mcp-agent-snapshot.service");
    expect(one(u, "Install", "WantedBy")).toBe("timers.target");
  });
});

describe("the ExecStart lines, run through a symlink named mcp-agent", () => {
  let node = ""; // stands in for /srv/mcp
  let port = 0;
  let env: Record<string, string> = {};

  /** The unit's ExecStart argv with /srv/mcp moved to the temp node dir. */
  const execStart = (name: string) =>
    one(unit(name), "Service", "ExecStart")!
      .split(/\s+/)
      .map((a) => a.replace(/^\/srv\/mcp\//, `${node}/`));

  beforeAll(async () => {
    node = join(tmp, "srv-mcp");
    port = await freePort();
    // The agent's startup may list containers: give it the test podman setup, as startLocalAgent does.
    const pe = await podmanEnv();
    env = { ...(process.env as Record<string, string>), ...pe.env };
    const init = await runMcp([
      "init",
      "--local",
      "--dir",
      node,
      "--listen",
      `127.0.0.1:${port}`,
      ...pe.globalArgs.map((a) => `--runtime-arg=${a}`),
    ]);
    if (init.code !== 0) throw new Error(`mcp init failed: ${init.stderr}`);
    symlinkSync(mcpBinary(), join(node, "mcp-agent"));
    openRegistry(join(node, "mcp.db")).close();
  });

  test("mcp-agent.service's line starts the agent daemon (it listens, then stops on SIGTERM)", async () => {
    const argv = execStart("mcp-agent.service");
    expect(argv[0]).toBe(join(node, "mcp-agent"));
    const p = Bun.spawn(argv, { env, stdin: "ignore", stdout: "ignore", stderr: "pipe" });
    let log = "";
    void (async () => {
      const dec = new TextDecoder();
      for await (const chunk of p.stderr) log += dec.decode(chunk, { stream: true });
    })();
    try {
      // "agent listening" is logged once the TLS gRPC server is bound; then the port must answer.
      for (let i = 0; i < 200 && !log.includes('"agent listening"') && p.exitCode === null; i++)
        await Bun.sleep(50);
      expect(log).toContain(`"port":${port}`);
      const s = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } });
      s.end();
      // SIGTERM handlers go in right after startup returns (daemon.ts); give it that moment.
      await Bun.sleep(200);
    } finally {
      p.kill("SIGTERM");
      const t = setTimeout(() => p.kill("SIGKILL"), 5000);
      expect(await p.exited).toBe(0);
      clearTimeout(t);
    }
  }, 20_000);

  test("mcp-agent-snapshot.service's line writes <db dir>/backups/mcp-<stamp>.db", async () => {
    const argv = execStart("mcp-agent-snapshot.service");
    const r = await runMcp(argv.slice(1), { bin: argv[0]! });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(readdirSync(join(node, "backups")).filter((f) => /^mcp-\d{8}T\d{6}Z\.db$/.test(f))).toHaveLength(
      1,
    );
  });
});
