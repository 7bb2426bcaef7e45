// e2e: `mcp node provision` through the COMPILED binary against real Debian nodes (systemd as PID
// 1, sshd, ports on 127.0.0.1; test/support/debian-node.ts). A bare node is provisioned from
// scratch (apt installs podman inside it) as root: the unit is active, the agent answers over TLS
// with this build's version, the CLI config has the node, ownership and modes are the documented
// ones; a second run reports every step "already done" and changes nothing (file hashes, mtimes,
// inodes and the agent's PID). A podman-variant node is provisioned through the non-root `deploy`
// user (sudo) with --accept-new-host-key, which records the host key. An unknown host key without
// the flag is refused with its fingerprint, and an existing `mcp` user with another UID is refused
// with nothing on the node or in the CLI config changed. Issue 16: links the mcp user plants in its
// own directories (certs, backups, /srv/mcp-master/certs, the config, the binary) make a re-provision
// refuse in one line or replace the link, never chown, chmod or write root's files through it.
// Nodes are removed by name afterwards.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parse as parseToml } from "smol-toml";
import { createCA, masterClientCertProblem, writeKeyPair } from "../../src/pki/ca.ts";
import { run } from "../../src/runtime/exec.ts";
import { mcpBinary, REPO_ROOT, runMcp } from "../support/binary.ts";
import { type DebianNode, ensureDebianNodeImage, startDebianNode } from "../support/debian-node.ts";
import { podmanEnv } from "../support/env.ts";

const home = mkdtempSync(join(tmpdir(), "mcp-provision-e2e-"));
const cliConfig = join(home, "mcp.toml");
const knownHosts = join(home, ".ssh", "known_hosts");
const env = { HOME: home, MCP_CONFIG: cliConfig, SSH_AUTH_SOCK: undefined, MCP_TOKEN: undefined };
const nodes: Record<"bare" | "sudo" | "uid", DebianNode | undefined> = {
  bare: undefined,
  sudo: undefined,
  uid: undefined,
};
let version = "";
// A private copy: other builds may replace dist/ while these tests run, and provision uploads
// its own executable.
const bin = join(home, "bin", "mcp");
const mcp = (args: string[], opts: Parameters<typeof runMcp>[1] = {}) => runMcp(args, { ...opts, env, bin });

async function containerIp(n: DebianNode): Promise<string> {
  const pe = await podmanEnv();
  const r = await run(
    ["podman", ...pe.globalArgs, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", n.container],
    { env: pe.env, timeoutMs: 30_000 },
  );
  const ip = r.stdout.trim();
  if (r.code !== 0 || !/^\d+\.\d+\.\d+\.\d+$/.test(ip))
    throw new Error(`no IP for ${n.container}: ${r.stderr}`);
  return ip;
}

async function provisionArgs(name: string, n: DebianNode, user: string, extra: string[] = []) {
  return [
    "node",
    "provision",
    name,
    "--ssh",
    n.sshSpec(user),
    "--address",
    `127.0.0.1:${n.agentPort}`,
    "--listen",
    `${await containerIp(n)}:9444`,
    "--ca-cert",
    join(home, "ca.pem"),
    "--ca-key",
    join(home, "ca.key"),
    ...extra,
  ];
}

async function sh(n: DebianNode, script: string): Promise<string> {
  const r = await n.exec(["sh", "-c", script]);
  if (r.code !== 0) throw new Error(`${script}: exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

// What a re-run must not touch: content hash, mtime, inode of every file provision writes.
const WATCHED = [
  "/srv/mcp/mcp-agent",
  "/srv/mcp/mcp-agent.toml",
  "/srv/mcp/certs/cert.pem",
  "/srv/mcp/certs/key.pem",
  "/etc/systemd/system/mcp-agent.service",
  "/etc/subuid",
  "/etc/subgid",
];
async function snapshot(n: DebianNode): Promise<string> {
  const files = WATCHED.join(" ");
  return sh(
    n,
    `sha256sum ${files}; stat -c '%n %Y %i %u:%g %a' ${files} /srv /srv/mcp /srv/mcp/certs /srv/mcp/backups; ` +
      "systemctl show -p MainPID --value mcp-agent; id mcp",
  );
}

function stepLines(stdout: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of stdout.split("\n")) {
    const m = /^([a-z-]+): (done|already done|failed)\b/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
const ZSTD_STATUS = "dpkg-query -W -f '${db:Status-Status}' zstd 2>&1; true";
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
const QEMU_STATUS = "dpkg-query -W -f '${db:Status-Status}' qemu-system-x86";
// biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
const QEMU_GUI_STATUS = "dpkg-query -W -f '${db:Status-Status}' qemu-system-gui 2>&1; true";

const STEPS = [
  "user",
  "subids",
  "packages",
  "linger",
  "dirs",
  "cert",
  "config",
  "binary",
  "service",
  "verify",
  "cli-config",
];

beforeAll(async () => {
  for (const v of ["bare", "podman"] as const) await ensureDebianNodeImage(v);
  const [bare, sudo, uid] = await Promise.all([
    startDebianNode({ name: "prov-bare" }),
    startDebianNode({ name: "prov-sudo", image: "podman" }),
    startDebianNode({ name: "prov-uid", image: "podman" }),
  ]);
  Object.assign(nodes, { bare, sudo, uid });
  mkdirSync(join(home, ".ssh"), { mode: 0o700 });
  // Every node has its own client key; all of them answer to the alias 127.0.0.1.
  writeFileSync(
    join(home, ".ssh", "config"),
    `Host 127.0.0.1\n${[bare, sudo, uid].map((n) => `  IdentityFile ${n.keyPath}\n`).join("")}`,
  );
  // Only the bare node is known up front: the others exercise unknown-key handling.
  writeFileSync(knownHosts, `${bare.knownHostsLine}\n`);
  await writeKeyPair(home, "ca", await createCA({ commonName: "provision e2e CA", days: 60 }));
  writeFileSync(
    cliConfig,
    `[services]\ndir = "${home}/services"\n[auth]\ntoken_path = "${home}/token"\n[tls]\nca_cert = "${home}/ca.pem"\n`,
  );
  mkdirSync(join(home, "bin"));
  copyFileSync(mcpBinary(), bin);
  chmodSync(bin, 0o755);
  const v = await mcp(["--version"]);
  version = v.stdout.trim().replace(/^mcp /, "");
}, 300_000);

afterAll(async () => {
  await Promise.all(Object.values(nodes).map((n) => n?.stop()));
  rmSync(home, { recursive: true, force: true });
}, 120_000);

describe("mcp node provision", () => {
  test("a bare Debian node from scratch, then a second run that changes nothing", async () => {
    const n = nodes.bare!;
    const args = await provisionArgs("bare1", n, "root");
    let t = Date.now();
    const first = await mcp(args, { timeoutMs: 600_000 });
    console.log(`provision of a bare node: ${Date.now() - t} ms`);
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const steps = stepLines(first.stdout);
    expect([...steps.keys()]).toEqual(STEPS);
    for (const s of STEPS) expect(`${s}: ${steps.get(s)}`).toBe(`${s}: done`);
    expect(first.stdout).toContain("packages: done — installed podman runc uidmap slirp4netns zstd");
    expect(first.stdout).toContain(`no CLI token yet: wrote a new admin token to ${home}/token`);
    expect(statSync(join(home, "token")).mode & 0o777).toBe(0o600);

    expect((await n.exec(["systemctl", "is-active", "mcp-agent"])).stdout.trim()).toBe("active");
    // Issue 17: mcp is in the kvm group (QEMU for unikernel components opens /dev/kvm as mcp), and
    // QEMU came from Debian's qemu-system-x86 (without its GUI Recommends).
    expect((await sh(n, "id mcp")).trim()).toMatch(
      /^uid=850\(mcp\) gid=850\(mcp\) groups=850\(mcp\),\d+\(kvm\)$/,
    );
    expect((await sh(n, QEMU_STATUS)).trim()).toBe("installed");
    expect((await sh(n, QEMU_GUI_STATUS)).trim()).not.toBe("installed");
    expect((await sh(n, "command -v qemu-system-x86_64")).trim()).toBe("/usr/bin/qemu-system-x86_64");
    expect(first.stdout).toMatch(/^packages: done — installed .*\bqemu-system-x86$/m);
    expect((await sh(n, "getent passwd mcp")).trim()).toBe(
      "mcp:x:850:850:MCP agent:/srv/mcp:/usr/sbin/nologin",
    );
    expect(await sh(n, "cat /etc/subuid")).toMatch(/^mcp:\d+:65536$/m);
    expect(await sh(n, "cat /etc/subgid")).toMatch(/^mcp:\d+:65536$/m);
    expect((await n.exec(["test", "-e", "/var/lib/systemd/linger/mcp"])).code).toBe(0);
    const modes = await sh(
      n,
      "stat -c '%n %U:%G %a' /srv /srv/mcp /srv/mcp/certs /srv/mcp/backups /srv/mcp/certs/cert.pem " +
        "/srv/mcp/certs/key.pem /srv/mcp/mcp-agent.toml /srv/mcp/mcp-agent /etc/systemd/system/mcp-agent.service",
    );
    expect(modes.trim().split("\n")).toEqual([
      "/srv root:mcp 775",
      "/srv/mcp mcp:mcp 750",
      "/srv/mcp/certs mcp:mcp 700",
      "/srv/mcp/backups mcp:mcp 700",
      "/srv/mcp/certs/cert.pem mcp:mcp 644",
      "/srv/mcp/certs/key.pem mcp:mcp 600",
      "/srv/mcp/mcp-agent.toml mcp:mcp 600",
      // Written as the mcp user (never as root in its directory), as `mcp agent upgrade` does.
      "/srv/mcp/mcp-agent mcp:mcp 755",
      "/etc/systemd/system/mcp-agent.service root:root 644",
    ]);
    // The installed unit is the repository's, embedded in the binary; the binary is this build.
    expect(await sh(n, "cat /etc/systemd/system/mcp-agent.service")).toBe(
      readFileSync(join(REPO_ROOT, "deploy", "systemd", "mcp-agent.service"), "utf8"),
    );
    const local = new Bun.CryptoHasher("sha256").update(readFileSync(bin)).digest("hex");
    expect((await sh(n, "sha256sum /srv/mcp/mcp-agent")).split(" ")[0]).toBe(local);
    // The agent binds the --listen address; its config holds the token's hash, never the token.
    const agentToml = await sh(n, "cat /srv/mcp/mcp-agent.toml");
    expect(agentToml).toContain(`grpc_addr = "${await containerIp(n)}:9444"`);
    expect(agentToml).not.toContain(readFileSync(join(home, "token"), "utf8").trim());

    const list = await mcp(["node", "list", "--json"]);
    expect(list.code).toBe(0);
    const row = JSON.parse(list.stdout).nodes.find((x: { name: string }) => x.name === "bare1");
    expect(row).toMatchObject({
      reachable: true,
      agentVersion: version,
      arch: "amd64",
      runtime: "podman",
    });
    const cfg = parseToml(readFileSync(cliConfig, "utf8")) as { nodes: Record<string, string>[] };
    expect(cfg.nodes.find((x) => x.name === "bare1")).toEqual({
      name: "bare1",
      address: `127.0.0.1:${n.agentPort}`,
      ssh: n.sshSpec("root"),
      arch: "amd64",
    });

    const before = await snapshot(n);
    const cfgBefore = readFileSync(cliConfig, "utf8");
    t = Date.now();
    const second = await mcp([...args, "--json"], { timeoutMs: 120_000 });
    console.log(`second provision run (nothing to do): ${Date.now() - t} ms`);
    expect(second.stderr).toBe("");
    expect(second.code).toBe(0);
    const report = JSON.parse(second.stdout);
    expect(report).toMatchObject({
      node: "bare1",
      ok: true,
      changed: false,
      arch: "amd64",
      agentVersion: version,
    });
    expect(report.steps.map((s: { step: string; status: string }) => `${s.step}: ${s.status}`)).toEqual(
      STEPS.map((s) => `${s}: already done`),
    );
    expect(await snapshot(n)).toBe(before);
    expect(readFileSync(cliConfig, "utf8")).toBe(cfgBefore);
  }, 600_000);

  test("through the non-root deploy user (sudo), accepting and recording the new host key", async () => {
    const n = nodes.sudo!;
    expect(readFileSync(knownHosts, "utf8")).not.toContain(`[127.0.0.1]:${n.sshPort}`);
    const r = await mcp(
      await provisionArgs("sudo1", n, "deploy", ["--accept-new-host-key", "--master-cert"]),
      {
        timeoutMs: 300_000,
      },
    );
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`added host key ${n.hostKeyFingerprint} for [127.0.0.1]:${n.sshPort}`);
    expect(readFileSync(knownHosts, "utf8")).toContain(n.knownHostsLine.split(" ").slice(1).join(" "));
    const steps = stepLines(r.stdout);
    expect(steps.get("user")).toBe("done");
    expect(r.stdout).toContain("packages: done — installed zstd"); // the rest came with the image
    expect(steps.get("verify")).toBe("done");
    expect((await n.exec(["systemctl", "is-active", "mcp-agent"])).stdout.trim()).toBe("active");
    expect((await sh(n, "stat -c '%U:%G %a' /srv/mcp/mcp-agent.toml /srv/mcp/certs/key.pem")).trim()).toBe(
      "mcp:mcp 600\nmcp:mcp 600",
    );
    // --master-cert: the master's client certificate (SPEC §5.2), one agents with a [master] accept.
    expect(steps.get("master-cert")).toBe("done");
    expect(
      (
        await sh(
          n,
          "stat -c '%n %U:%G %a' /srv/mcp-master /srv/mcp-master/certs /srv/mcp-master/certs/client.pem /srv/mcp-master/certs/client.key",
        )
      )
        .trim()
        .split("\n"),
    ).toEqual([
      "/srv/mcp-master mcp:mcp 750",
      "/srv/mcp-master/certs mcp:mcp 700",
      "/srv/mcp-master/certs/client.pem mcp:mcp 644",
      "/srv/mcp-master/certs/client.key mcp:mcp 600",
    ]);
    const pair = {
      certPem: await sh(n, "cat /srv/mcp-master/certs/client.pem"),
      keyPem: await sh(n, "cat /srv/mcp-master/certs/client.key"),
    };
    expect(masterClientCertProblem(pair, readFileSync(join(home, "ca.pem"), "utf8"))).toBeNull();
    // Nothing was left behind in the login user's home by the sudo uploads.
    expect(
      (await sh(n, "ls -A /home/deploy"))
        .split("\n")
        .filter((f) => f.startsWith(".mcp-upload") || f.startsWith(".mcp-agent.upload")),
    ).toEqual([]);
    const list = await mcp(["node", "list", "--json"]);
    const row = JSON.parse(list.stdout).nodes.find((x: { name: string }) => x.name === "sudo1");
    expect(row).toMatchObject({ reachable: true, agentVersion: version });
  }, 300_000);

  test("an unknown host key is refused with its fingerprint; nothing happens", async () => {
    const n = nodes.uid!;
    const r = await mcp(await provisionArgs("uid1", n, "root"), { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain(n.hostKeyFingerprint);
    expect(r.stderr).toContain("--accept-new-host-key");
    expect(readFileSync(knownHosts, "utf8")).not.toContain(`[127.0.0.1]:${n.sshPort}`);
    expect((await n.exec(["getent", "passwd", "mcp"])).code).toBe(2);
  }, 60_000);

  test("an existing mcp user with another UID is refused and nothing changes", async () => {
    const n = nodes.uid!;
    writeFileSync(knownHosts, `${readFileSync(knownHosts, "utf8")}${n.knownHostsLine}\n`);
    await sh(n, "useradd --system --uid 1234 --user-group --home-dir /srv/mcp --shell /usr/sbin/nologin mcp");
    const state =
      "sha256sum /etc/subuid /etc/subgid /etc/passwd /etc/group; ls -A /srv; ls /var/lib/systemd/linger 2>&1; " +
      `ls /etc/systemd/system; ${ZSTD_STATUS}`;
    const before = await sh(n, state);
    const cfgBefore = readFileSync(cliConfig, "utf8");
    const r = await mcp(await provisionArgs("uid1", n, "root"), { timeoutMs: 60_000 });
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("user mcp already exists with UID 1234, not 850");
    expect(r.stderr).toContain("never changes a UID");
    expect(r.stdout).toBe("");
    expect(await sh(n, state)).toBe(before);
    expect((await sh(n, "id -u mcp")).trim()).toBe("1234");
    expect(readFileSync(cliConfig, "utf8")).toBe(cfgBefore);
  }, 60_000);

  test("issue 16: links a compromised mcp user plants in its directories never make a re-provision touch root's files", async () => {
    // The sudo node, provisioned above. Root-owned canaries: three directories, a file holding a
    // copy of the agent's config (content that matches, so a provision following the link would
    // only "fix" its owner and mode) and a 0700 copy of the agent binary (same hash: likewise).
    const n = nodes.sudo!;
    const args = await provisionArgs("sudo1", n, "deploy", ["--master-cert"]);
    const asMcp = async (script: string) => {
      const r = await n.exec([
        "setpriv",
        "--reuid=mcp",
        "--regid=mcp",
        "--init-groups",
        "--",
        "sh",
        "-c",
        script,
      ]);
      if (r.code !== 0) throw new Error(`as mcp: ${script}: exit ${r.code}: ${r.stderr}`);
    };
    const dirs = ["/etc/mcp-canary-certs", "/etc/mcp-canary-dir", "/etc/mcp-canary-master"];
    await sh(
      n,
      `set -e; for d in ${dirs.join(" ")}; do mkdir $d; chmod 755 $d; done; ` +
        "install -m 644 /srv/mcp/mcp-agent.toml /etc/mcp-canary; install -m 700 /srv/mcp/mcp-agent /etc/mcp-canary-bin",
    );
    const canaries = () =>
      sh(
        n,
        `stat -c '%n %F %U:%G %a' ${dirs.join(" ")} /etc/mcp-canary /etc/mcp-canary-bin; ` +
          `ls -A ${dirs.join(" ")}; sha256sum /etc/mcp-canary /etc/mcp-canary-bin`,
      );
    const before = await canaries();
    expect(before).toContain("/etc/mcp-canary regular file root:root 644");

    // 1. The certs and backups directories become links to root's directories, the config and the
    // binary links to root's files. Re-provision refuses at the first link, in one line.
    await asMcp(
      "set -e; cd /srv/mcp; mv certs certs.real; ln -s /etc/mcp-canary-certs certs; " +
        "mv backups backups.real; ln -s /etc/mcp-canary-dir backups; " +
        "ln -sfT /etc/mcp-canary mcp-agent.toml; ln -sfT /etc/mcp-canary-bin mcp-agent",
    );
    const r1 = await mcp(args, { timeoutMs: 120_000 });
    expect(await canaries()).toBe(before);
    expect(r1.code).toBe(1);
    expect(r1.stderr.trim().split("\n")).toHaveLength(1);
    expect(r1.stderr).toContain("/srv/mcp/certs is a symbolic link");
    expect(stepLines(r1.stdout).get("dirs")).toBe("failed");

    // 2. Real directories again; /srv/mcp-master/certs is now a link: the master-cert step refuses.
    await asMcp(
      "set -e; cd /srv/mcp; rm certs backups; mv certs.real certs; mv backups.real backups; " +
        "cd /srv/mcp-master; mv certs certs.real; ln -s /etc/mcp-canary-master certs",
    );
    const r2 = await mcp(args, { timeoutMs: 120_000 });
    expect(await canaries()).toBe(before);
    expect(r2.code).toBe(1);
    expect(r2.stderr.trim().split("\n")).toHaveLength(1);
    expect(r2.stderr).toContain("/srv/mcp-master/certs is a symbolic link");
    expect(stepLines(r2.stdout).get("master-cert")).toBe("failed");

    // 3. Only the file links are left: they are replaced by real files (the link, never its target),
    // and the agent comes back on them.
    await asMcp("set -e; cd /srv/mcp-master; rm certs; mv certs.real certs");
    const r3 = await mcp(args, { timeoutMs: 120_000 });
    expect(r3.stderr).toBe("");
    expect(r3.code).toBe(0);
    expect(await canaries()).toBe(before);
    expect(r3.stdout).toMatch(/^config: done — \/srv\/mcp\/mcp-agent.toml rewritten/m);
    expect(r3.stdout).toMatch(/^binary: done — uploaded/m);
    expect(stepLines(r3.stdout).get("verify")).toBe("done");
    expect(
      (await sh(n, "stat -c '%n %F %U:%G %a' /srv/mcp/mcp-agent.toml /srv/mcp/mcp-agent")).trim().split("\n"),
    ).toEqual([
      "/srv/mcp/mcp-agent.toml regular file mcp:mcp 600",
      "/srv/mcp/mcp-agent regular file mcp:mcp 755",
    ]);
    expect(await sh(n, "find /srv/mcp /srv/mcp-master -maxdepth 2 -name '*.upload-*'")).toBe("");
    await sh(n, `rm -rf ${dirs.join(" ")} /etc/mcp-canary /etc/mcp-canary-bin`);
  }, 300_000);
});
