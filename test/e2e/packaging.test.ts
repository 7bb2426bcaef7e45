// e2e: deploy/ packaging inside real Debian node containers (systemd as PID 1;
// test/support/debian-node.ts). 1) `systemd-analyze verify` accepts every unit in deploy/systemd
// on the node itself (stand-in executables at the ExecStart paths). 2) deploy/install-debian.sh,
// run as root with the COMPILED binary, sets the node up like provision (user with the pinned
// UID, subids, linger, dirs and modes) and installs the repository's unit byte for byte, enabled
// but not started without an agent config. 3) `mcp node provision` on that same node then finds
// the user, subids, packages, linger, dirs, binary and unit "already done" — the two install
// paths produce the same node and the same /etc/systemd/system/mcp-agent.service — and starts the
// agent, which answers over TLS. 4) A second run of the script changes nothing (hashes, inodes,
// the agent's PID). 5) Issue 16: links the mcp user plants in /srv/mcp (where a directory or the
// binary belongs, or at a predictable temp name) never make the root script chown, chmod or
// overwrite what they point to. Nodes are removed by name afterwards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
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
import { createCA, writeKeyPair } from "../../src/pki/ca.ts";
import { run } from "../../src/runtime/exec.ts";
import { mcpBinary, REPO_ROOT, runMcp } from "../support/binary.ts";
import { type DebianNode, ensureDebianNodeImage, startDebianNode } from "../support/debian-node.ts";
import { podmanEnv } from "../support/env.ts";

const UNITS = [
  "mcp-agent.service",
  "mcp-agent-snapshot.service",
  "mcp-agent-snapshot.timer",
  "mcp-master.service",
];
const repoFile = (...p: string[]) => readFileSync(join(REPO_ROOT, "deploy", ...p), "utf8");

const home = mkdtempSync(join(tmpdir(), "mcp-packaging-e2e-"));
const cliConfig = join(home, "mcp.toml");
const env = { HOME: home, MCP_CONFIG: cliConfig, SSH_AUTH_SOCK: undefined, MCP_TOKEN: undefined };
// A private copy: other builds may replace dist/ while this runs.
const bin = join(home, "bin", "mcp");
const mcp = (args: string[], opts: Parameters<typeof runMcp>[1] = {}) => runMcp(args, { ...opts, env, bin });
let verifyNode: DebianNode | undefined;
let node: DebianNode | undefined;

async function sh(n: DebianNode, script: string, input?: string): Promise<string> {
  const r = await n.exec(["sh", "-c", script], { input, timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${script}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

async function podmanCp(src: string, n: DebianNode, dst: string): Promise<void> {
  const pe = await podmanEnv();
  const r = await run(["podman", ...pe.globalArgs, "cp", src, `${n.container}:${dst}`], {
    env: pe.env,
    timeoutMs: 120_000,
  });
  if (r.code !== 0) throw new Error(`podman cp ${src}: ${r.stderr}`);
}

async function containerIp(n: DebianNode): Promise<string> {
  const pe = await podmanEnv();
  const r = await run(
    ["podman", ...pe.globalArgs, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", n.container],
    { env: pe.env, timeoutMs: 30_000 },
  );
  return r.stdout.trim();
}

/** install-debian.sh as root on the node, from a copy of deploy/ (script + the unit beside it). */
async function installScript(n: DebianNode) {
  return n.exec(["bash", "/root/deploy/install-debian.sh", "/root/mcp"], { timeoutMs: 600_000 });
}

const WATCHED = ["/srv/mcp/mcp-agent", "/etc/systemd/system/mcp-agent.service", "/etc/subuid", "/etc/subgid"];
const state = (n: DebianNode) =>
  sh(
    n,
    `sha256sum ${WATCHED.join(" ")}; stat -c '%n %Y %i %u:%g %a' ${WATCHED.join(" ")} /srv /srv/mcp /srv/mcp/certs /srv/mcp/backups; ` +
      "systemctl show -p MainPID --value mcp-agent; id mcp",
  );

beforeAll(async () => {
  await ensureDebianNodeImage("podman");
  [verifyNode, node] = await Promise.all([
    startDebianNode({ name: "pkg-verify" }),
    startDebianNode({ name: "pkg-install", image: "podman" }),
  ]);
  mkdirSync(join(home, ".ssh"), { mode: 0o700 });
  writeFileSync(join(home, ".ssh", "config"), `Host 127.0.0.1\n  IdentityFile ${node.keyPath}\n`);
  writeFileSync(join(home, ".ssh", "known_hosts"), `${node.knownHostsLine}\n`);
  await writeKeyPair(home, "ca", await createCA({ commonName: "packaging e2e CA", days: 60 }));
  writeFileSync(
    cliConfig,
    `[services]\ndir = "${home}/services"\n[auth]\ntoken_path = "${home}/token"\n[tls]\nca_cert = "${home}/ca.pem"\n`,
  );
  mkdirSync(join(home, "bin"));
  copyFileSync(mcpBinary(), bin);
  chmodSync(bin, 0o755);
}, 300_000);

afterAll(async () => {
  await Promise.all([verifyNode?.stop(), node?.stop()]);
  rmSync(home, { recursive: true, force: true });
}, 120_000);

describe("deploy/ on a Debian node", () => {
  test("systemd-analyze verify accepts every unit inside the node", async () => {
    const n = verifyNode!;
    for (const u of UNITS) await sh(n, `cat > /etc/systemd/system/${u}`, repoFile("systemd", u));
    // verify checks that ExecStart= binaries exist: stand-ins at the real paths.
    await sh(
      n,
      "mkdir -p /srv/mcp /srv/mcp-master && for f in /srv/mcp/mcp-agent /srv/mcp-master/mcp-master; do " +
        "printf '#!/bin/sh\\nexit 0\\n' > $f; chmod 755 $f; done",
    );
    const r = await n.exec(
      [
        "env",
        "SYSTEMD_LOG_COLOR=0",
        "systemd-analyze",
        "verify",
        ...UNITS.map((u) => `/etc/systemd/system/${u}`),
      ],
      { timeoutMs: 60_000 },
    );
    console.log(`systemd-analyze verify in the node: exit ${r.code}, ${r.stderr.trim() || "no output"}`);
    // Nothing about our units (stock units of the image may have their own notes).
    expect(r.stderr.split("\n").filter((l) => /mcp/.test(l))).toEqual([]);
    expect(r.code).toBe(0);
    // A broken directive is caught, so the pass above means something.
    await sh(
      n,
      "cat > /etc/systemd/system/mcp-broken.service",
      "[Service]\nExecStart=/srv/mcp/nope\nProtectSystm=strict\n",
    );
    const bad = await n.exec(["systemd-analyze", "verify", "/etc/systemd/system/mcp-broken.service"], {
      timeoutMs: 60_000,
    });
    expect(bad.stderr).toContain("mcp-broken.service");
  }, 120_000);

  test("install-debian.sh installs the repository's unit; provision then finds everything already done", async () => {
    const n = node!;
    await sh(n, "mkdir -p /root/deploy/systemd");
    await sh(
      n,
      "cat > /root/deploy/install-debian.sh && chmod 755 /root/deploy/install-debian.sh",
      repoFile("install-debian.sh"),
    );
    await sh(n, "cat > /root/deploy/systemd/mcp-agent.service", repoFile("systemd", "mcp-agent.service"));
    await podmanCp(bin, n, "/root/mcp");

    let t = Date.now();
    const first = await installScript(n);
    console.log(`install-debian.sh, first run: ${Date.now() - t} ms\n${first.stdout}`);
    expect(first.stderr).not.toContain("install-debian:");
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^user +done: created mcp \(uid 850/m);
    expect(first.stdout).toContain("not started: /srv/mcp/mcp-agent.toml does not exist");
    expect(first.stdout).toContain("mcp node provision");
    // The installed unit is the repository file byte for byte; the binary is this build.
    expect(await sh(n, "cat /etc/systemd/system/mcp-agent.service")).toBe(
      repoFile("systemd", "mcp-agent.service"),
    );
    const local = new Bun.CryptoHasher("sha256").update(readFileSync(bin)).digest("hex");
    expect((await sh(n, "sha256sum /srv/mcp/mcp-agent")).split(" ")[0]).toBe(local);
    expect((await sh(n, "id -u mcp; id -g mcp")).split("\n").slice(0, 2)).toEqual(["850", "850"]);
    expect(await sh(n, "grep ^mcp: /etc/subuid /etc/subgid | cut -d: -f2-")).toMatch(
      /^mcp:\d+:65536\nmcp:\d+:65536\n$/,
    );
    expect((await n.exec(["test", "-e", "/var/lib/systemd/linger/mcp"])).code).toBe(0);
    const modes = await sh(
      n,
      "stat -c '%n %U:%G %a' /srv /srv/mcp /srv/mcp/certs /srv/mcp/backups /srv/mcp/mcp-agent /etc/systemd/system/mcp-agent.service",
    );
    expect(modes.trim().split("\n")).toEqual([
      "/srv root:mcp 775",
      "/srv/mcp mcp:mcp 750",
      "/srv/mcp/certs mcp:mcp 700",
      "/srv/mcp/backups mcp:mcp 700",
      "/srv/mcp/mcp-agent mcp:mcp 755",
      "/etc/systemd/system/mcp-agent.service root:root 644",
    ]);
    expect((await n.exec(["systemctl", "is-enabled", "mcp-agent"])).stdout.trim()).toBe("enabled");
    expect((await n.exec(["systemctl", "is-active", "mcp-agent"])).stdout.trim()).not.toBe("active");

    // Provision over SSH on the script-installed node: the shared steps have nothing to change.
    const unitBefore = await sh(
      n,
      "stat -c '%i %Y' /etc/systemd/system/mcp-agent.service; sha256sum /srv/mcp/mcp-agent",
    );
    t = Date.now();
    const prov = await mcp(
      [
        "node",
        "provision",
        "pkg1",
        "--ssh",
        n.sshSpec("root"),
        "--address",
        `127.0.0.1:${n.agentPort}`,
        "--listen",
        `${await containerIp(n)}:9444`,
        "--ca-cert",
        join(home, "ca.pem"),
        "--ca-key",
        join(home, "ca.key"),
      ],
      { timeoutMs: 600_000 },
    );
    console.log(`provision after the script: ${Date.now() - t} ms\n${prov.stdout}`);
    expect(prov.stderr).toBe("");
    expect(prov.code).toBe(0);
    for (const step of ["user", "subids", "packages", "linger", "dirs", "binary"])
      expect(prov.stdout).toMatch(new RegExp(`^${step}: already done`, "m"));
    // The service step installs the embedded unit only when it differs: it did not.
    expect(prov.stdout).toMatch(/^service: done — (enabled, )?started$/m);
    expect(prov.stdout).toMatch(/^verify: done/m);
    expect(
      await sh(n, "stat -c '%i %Y' /etc/systemd/system/mcp-agent.service; sha256sum /srv/mcp/mcp-agent"),
    ).toBe(unitBefore);
    expect((await n.exec(["systemctl", "is-active", "mcp-agent"])).stdout.trim()).toBe("active");

    // With a config in place the script starts nothing new and changes nothing.
    const before = await state(n);
    const again = await installScript(n);
    expect(again.code).toBe(0);
    for (const step of [
      "user",
      "packages",
      "subids",
      "linger",
      "dirs",
      "mcp-agent",
      "mcp-agent.service",
      "enable",
    ])
      expect(again.stdout).toMatch(new RegExp(`^${step.replace(".", "\\.")} +already done`, "m"));
    expect(again.stdout).toContain("already done: mcp-agent active, nothing changed");
    expect(await state(n)).toBe(before);

    // A node whose mcp user has another UID is refused before anything changes.
    await sh(n, "systemctl stop mcp-agent");
    const other = await n.exec(["bash", "/root/deploy/install-debian.sh", "/root/mcp", "--uid", "851"], {
      timeoutMs: 60_000,
    });
    expect(other.code).toBe(1);
    expect(other.stderr.trim()).toBe(
      "install-debian: user mcp exists with UID 850, not 851: refusing to change it (pass --uid 850 to keep it)",
    );
    expect(other.stdout).toBe("");
  }, 900_000);

  test("a re-run never chowns, chmods or writes through links the mcp user planted in /srv/mcp", async () => {
    const n = node!;
    const asMcp = (script: string) =>
      sh(n, `setpriv --reuid=mcp --regid=mcp --init-groups -- sh -c '${script}'`);
    // Root's canaries: a directory, a file and an executable only root may touch.
    await sh(
      n,
      "mkdir -m 700 /etc/canary-dir && printf 'dir canary\\n' > /etc/canary-dir/x && " +
        "printf 'file canary\\n' > /etc/canary-file && chmod 600 /etc/canary-file && " +
        "printf '#!/bin/sh\\nexit 0\\n' > /etc/canary-bin && chmod 700 /etc/canary-bin",
    );
    const canaries = () =>
      sh(
        n,
        "stat -c '%n %U:%G %a %i' /etc/canary-dir /etc/canary-dir/x /etc/canary-file /etc/canary-bin; " +
          "sha256sum /etc/canary-dir/x /etc/canary-file /etc/canary-bin",
      );
    const before = await canaries();

    // 1) /srv/mcp/certs is a link to a root directory: refused in one line, nothing changed.
    await asMcp("cd /srv/mcp && mv certs certs.real && ln -s /etc/canary-dir certs");
    const dirRun = await installScript(n);
    console.log(
      `re-run with certs -> /etc/canary-dir: exit ${dirRun.code}\n${dirRun.stdout}${dirRun.stderr}`,
    );
    expect(dirRun.code).toBe(1);
    expect(dirRun.stderr.trim()).toBe(
      "install-debian: /srv/mcp/certs is a symbolic link, not a directory; install-debian changes nothing through it (move it away and re-run)",
    );
    expect(await canaries()).toBe(before);
    await asMcp("cd /srv/mcp && rm certs && mv certs.real certs");

    // 2) The binary is a link to a root 0700 file and the old temp name a link to a root file:
    // the binary is rewritten by the mcp user (the link replaced, not followed), the temp-name
    // link is left alone.
    await asMcp(
      "cd /srv/mcp && rm mcp-agent && ln -s /etc/canary-bin mcp-agent && ln -s /etc/canary-file mcp-agent.new",
    );
    const binRun = await installScript(n);
    console.log(`re-run with binary links: exit ${binRun.code}\n${binRun.stdout}${binRun.stderr}`);
    expect(binRun.stderr).not.toContain("install-debian:");
    expect(binRun.code).toBe(0);
    expect(binRun.stdout).toMatch(/^mcp-agent +done: installed \/srv\/mcp\/mcp-agent$/m);
    expect(await canaries()).toBe(before);
    expect((await sh(n, "stat -c '%F %U:%G %a' /srv/mcp/mcp-agent")).trim()).toBe("regular file mcp:mcp 755");
    const local = new Bun.CryptoHasher("sha256").update(readFileSync(bin)).digest("hex");
    expect((await sh(n, "sha256sum /srv/mcp/mcp-agent")).split(" ")[0]).toBe(local);
    expect((await sh(n, "readlink /srv/mcp/mcp-agent.new")).trim()).toBe("/etc/canary-file");
    expect((await sh(n, "ls -A /srv/mcp")).split("\n").filter((f) => f.includes("upload"))).toEqual([]);
  }, 900_000);
});
