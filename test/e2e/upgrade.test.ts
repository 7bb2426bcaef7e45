// e2e: `mcp agent upgrade` and `mcp agent status` through the COMPILED binary against two real
// Debian nodes (systemd + sshd containers, test/support/debian-node.ts). Each node gets an agent
// installed by hand (mcp user, /srv/mcp, certs from a test CA, local token, the hardened unit from
// deploy/systemd) running version A; the CLI is a version B build. Node n1 has no zstd (gzip
// path), n2 gets the host's zstd binary copied in (zstd path).
//
// The tests run in file order and share the nodes, as an operator would: status shows the skew,
// an unknown host key is refused, both nodes go A → B in parallel, a second run skips, a forced
// single-node run reinstalls (and sweeps a stale temp file), symlinks a compromised `mcp` user plants
// at the staging names leave a root-owned file untouched, a binary that exits at start is rolled
// back, an upload killed mid-transfer leaves the running agent alone, an arm64 node gets the arm64
// sibling build, and a changed host key is refused.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken } from "../../src/auth/local.ts";
import { McpAgent, type NodeStatusResponse } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { createCA, issueCert } from "../../src/pki/ca.ts";
import { connect } from "../../src/rpc/client.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { REPO_ROOT, runMcp } from "../support/binary.ts";
import {
  type DebianNode,
  installAgent,
  copyToNode as podmanCp,
  nodeSh as sh,
  startDebianNode,
} from "../support/debian-node.ts";

// Every CLI run ships ~50 MB to a node and may wait out a rollback timeout.
setDefaultTimeout(120_000);

const BUN = join(REPO_ROOT, "node_modules", ".bin", "bun");
const rand = Math.random().toString(36).slice(2, 8);
const VA = `1.0.0-upgA.${rand}`;
const VB = `1.1.0-upgB.${rand}`;

const tmp = mkdtempSync(join(tmpdir(), "mcp-upgrade-test-"));
const home = join(tmp, "home");
const dirA = join(tmp, "buildA");
const dirB = join(tmp, "buildB");
const cliB = () => join(dirB, "mcp-linux-x64");
const cfgPath = join(tmp, "mcp.toml");
const cfgArmPath = join(tmp, "mcp-arm.toml");
const cfgDeployPath = join(tmp, "mcp-deploy.toml");
const knownHosts = join(home, ".ssh", "known_hosts");

let nodes: DebianNode[] = [];
let n1: DebianNode;
let n2: DebianNode;
let caPem = "";
let token = "";
let shaA = "";
let shaB = "";
const measured: string[] = [];

const sha256 = (b: Uint8Array) => new Bun.CryptoHasher("sha256").update(b).digest("hex");

/** This process's environment without an ssh-agent (keys come from $HOME/.ssh only). */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== "SSH_AUTH_SOCK") env[k] = v;
  return env;
}

interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
  ms: number;
}

async function mcp(args: string[], timeoutMs = 120_000): Promise<CliRun> {
  const t = performance.now();
  const r = await runMcp(args, {
    bin: cliB(),
    env: { HOME: home, SSH_AUTH_SOCK: undefined, MCP_CONFIG: cfgPath, NO_COLOR: "1" },
    timeoutMs,
  });
  return { ...r, ms: Math.round(performance.now() - t) };
}

interface UpgradeJson {
  cliVersion: string;
  wallMs: number;
  nodes: {
    node: string;
    from?: string;
    to?: string;
    result: string;
    reason?: string;
    ms: number;
    bytesSent: number;
    payloadBytes: number;
    binaryBytes: number;
    compression?: string;
    removedStale: string[];
    notes: string[];
    steps: Record<string, number>;
  }[];
}

function parseUpgrade(r: CliRun): UpgradeJson {
  try {
    return JSON.parse(r.stdout) as UpgradeJson;
  } catch {
    throw new Error(`not JSON (exit ${r.code}): ${r.stdout}\n${r.stderr}`);
  }
}

function row(j: UpgradeJson, node: string) {
  const r = j.nodes.find((n) => n.node === node);
  if (!r) throw new Error(`no row for ${node}: ${JSON.stringify(j)}`);
  return r;
}

async function nodeStatus(node: DebianNode): Promise<NodeStatusResponse> {
  const c = await connect(McpAgent, { addresses: [`127.0.0.1:${node.agentPort}`], caPem, token });
  try {
    return await c.nodeStatus({}, { timeoutMs: 5000 });
  } finally {
    c.close();
  }
}

async function waitForAgent(node: DebianNode, timeoutMs = 30_000): Promise<NodeStatusResponse> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      return await nodeStatus(node);
    } catch (e) {
      last = (e as Error).message;
    }
    await Bun.sleep(200);
  }
  const journal = await node.exec(["journalctl", "-u", "mcp-agent", "-n", "20", "--no-pager"]);
  throw new Error(`agent on ${node.name} not answering: ${last}\n${journal.stdout}`);
}

async function nodeSha(node: DebianNode, path: string): Promise<string> {
  const r = await node.exec(["sha256sum", path]);
  expect(r.code).toBe(0);
  return r.stdout.split(" ")[0]!;
}

/** Upgrade temp files (.mcp-agent.upload-*, .new-*, .restore-*) in /srv/mcp and in root's home (root's uploads). */
async function tempFiles(node: DebianNode): Promise<string[]> {
  const r = await node.exec(["ls", "-a", "/srv/mcp", "/root"]);
  expect(r.code).toBe(0);
  return r.stdout.split("\n").filter((f) => f.startsWith(".mcp-agent."));
}

async function build(target: string, outdir: string, version: string): Promise<void> {
  await runOk(
    [
      BUN,
      join(REPO_ROOT, "scripts", "build.ts"),
      "--target",
      target,
      "--outdir",
      outdir,
      "--version",
      version,
    ],
    { timeoutMs: 180_000 },
  );
}

/** Both nodes; n1 with the given arch and ssh login user. */
function cliConfig(arch1: string, user1 = "root"): string {
  const n = (node: DebianNode, arch: string, user = "root") => `
[[nodes]]
name = "${node.name}"
address = "127.0.0.1:${node.agentPort}"
ssh = "${user}@127.0.0.1:${node.sshPort}"
arch = "${arch}"
`;
  return `[auth]
token_path = "${join(tmp, "token")}"

[tls]
ca_cert = "${join(tmp, "ca.pem")}"
${n(n1, arch1, user1)}${n(n2, "amd64")}`;
}

beforeAll(async () => {
  const [, , started] = await Promise.all([
    build("x64", dirA, VA),
    build("all", dirB, VB),
    Promise.all([
      startDebianNode({ name: `upg1-${rand}`, image: "podman" }),
      startDebianNode({ name: `upg2-${rand}`, image: "podman" }),
    ]),
  ]);
  nodes = started;
  [n1, n2] = started as [DebianNode, DebianNode];

  const ca = await createCA({ commonName: "mcp upgrade test CA", days: 2 });
  caPem = ca.certPem;
  writeFileSync(join(tmp, "ca.pem"), ca.certPem);
  token = generateToken();
  writeFileSync(join(tmp, "token"), `${token}\n`, { mode: 0o600 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "mcp-agent upgrade test",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 2,
  });

  // One operator key for both nodes (each node authorized its own key; add this one).
  mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 });
  await runOk(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(home, ".ssh", "id_ed25519")], {
    timeoutMs: 10_000,
  });
  const pub = readFileSync(join(home, ".ssh", "id_ed25519.pub"), "utf8");
  writeFileSync(knownHosts, `${n2.knownHostsLine}\n`); // n1 unknown until the host key test accepts it
  writeFileSync(cfgPath, cliConfig("amd64"));
  writeFileSync(cfgArmPath, cliConfig("arm64"));
  writeFileSync(cfgDeployPath, cliConfig("amd64", "deploy"));

  await Promise.all(
    started.map(async (node) => {
      await sh(node, "tee -a /root/.ssh/authorized_keys >> /home/deploy/.ssh/authorized_keys", pub);
      await installAgent(
        node,
        join(dirA, "mcp-linux-x64"),
        { cert: leaf.chainPem, key: leaf.keyPem },
        hashToken(token),
      );
    }),
  );
  await podmanCp("/usr/bin/zstd", n2, "/usr/local/bin/zstd");
  await Promise.all(started.map((n) => waitForAgent(n)));
  shaA = sha256(readFileSync(join(dirA, "mcp-linux-x64")));
  shaB = sha256(readFileSync(cliB()));
}, 180_000);

afterAll(async () => {
  await Promise.all(nodes.map((n) => n.stop()));
  rmSync(tmp, { recursive: true, force: true });
  if (measured.length > 0) process.stderr.write(`upgrade measurements:\n  ${measured.join("\n  ")}\n`);
});

describe("mcp agent upgrade / status on real Debian nodes", () => {
  test("agent status: both nodes answer with version A, marked as differing from the B CLI", async () => {
    const r = await mcp(["agent", "status"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`${VA} (CLI ${VB})`);
    expect(r.stdout).toContain(`2 nodes differ from this CLI (${VB})`);
    for (const n of nodes) expect(r.stdout).toContain(n.name);

    const j = JSON.parse((await mcp(["agent", "status", "--json"])).stdout);
    expect(j.cliVersion).toBe(VB);
    expect(j.differ).toBe(2);
    expect(j.nodes.map((n: { agentVersion: string }) => n.agentVersion)).toEqual([VA, VA]);
    expect(j.nodes[0].arch).toBe("amd64");
    expect(j.nodes[0].runtime).toBe("podman");
    expect(j.nodes[0].memory.totalBytes).toBeGreaterThan(0);
    expect(j.nodes[0].disk.totalBytes).toBeGreaterThan(0);
    expect(j.nodes[0].agentUptimeSeconds).toBeGreaterThanOrEqual(0);
  });

  test("unknown host key: refused with its fingerprint, nothing touched", async () => {
    const r = await mcp(["agent", "upgrade", n1.name, "--json"]);
    expect(r.code).toBe(1);
    const res = row(parseUpgrade(r), n1.name);
    expect(res.result).toBe("failed");
    expect(res.reason).toContain(n1.hostKeyFingerprint);
    expect(res.reason).toContain("--accept-new-host-key");
    expect(res.bytesSent).toBe(0);
    expect((await nodeStatus(n1)).agentVersion).toBe(VA);
    expect(await tempFiles(n1)).toEqual([]);
  });

  test("both nodes upgrade A → B in parallel (gzip on n1, zstd on n2); .prev keeps A; a rerun skips", async () => {
    const before = await nodeStatus(n2);
    const r = await mcp(["agent", "upgrade", "--accept-new-host-key", "--json"]);
    const j = parseUpgrade(r);
    expect(r.code).toBe(0);
    expect(j.cliVersion).toBe(VB);
    for (const n of nodes) {
      const res = row(j, n.name);
      expect(res).toMatchObject({ from: VA, to: VB, result: "upgraded" });
      expect(res.bytesSent).toBeGreaterThan(0);
      expect(res.bytesSent).toBeLessThan(res.binaryBytes * 0.6);
      const st = await nodeStatus(n);
      expect(st.agentVersion).toBe(VB);
      expect(await nodeSha(n, "/srv/mcp/mcp-agent")).toBe(shaB);
      expect(await nodeSha(n, "/srv/mcp/mcp-agent.prev")).toBe(shaA);
      expect(await tempFiles(n)).toEqual([]);
      // Staged and renamed by the agent's own user: root never writes in /srv/mcp.
      const mode = await n.exec(["stat", "-c", "%a %U", "/srv/mcp/mcp-agent"]);
      expect(mode.stdout.trim()).toBe("755 mcp");
    }
    expect(row(j, n1.name).compression).toBe("gzip");
    expect(row(j, n2.name).compression).toBe("zstd");
    // The agent process really was replaced.
    expect((await nodeStatus(n2)).agentStarted!.seconds).toBeGreaterThanOrEqual(before.agentStarted!.seconds);
    expect(readFileSync(knownHosts, "utf8")).toContain(`[127.0.0.1]:${n1.sshPort} ssh-ed25519`);
    for (const x of j.nodes) {
      measured.push(
        `${x.node}: ${x.compression} ${x.bytesSent} of ${x.binaryBytes} bytes (${((x.bytesSent / x.binaryBytes) * 100).toFixed(1)}%), ${x.ms} ms ${JSON.stringify(x.steps)}`,
      );
    }
    measured.push(`2 nodes in parallel: wall ${j.wallMs} ms (CLI process ${r.ms} ms)`);

    const again = await mcp(["agent", "upgrade"]);
    expect(again.code).toBe(0);
    expect(again.stdout).toMatch(new RegExp(`${n1.name}\\s+${VB.replace(/\./g, "\\.")}\\s+skipped: already`));
    expect(again.stdout).toContain("2 of 2 nodes ok");
    expect(again.stderr).toContain("skipped");
  });

  test("issue 16 #5: symlinks the mcp user plants at the staging names leave a root-owned file untouched", async () => {
    // A root-owned file the mcp user can neither read nor write, with known content and mode.
    const canary = "/etc/mcp-canary";
    const content = `canary ${rand}\n`;
    await sh(n1, `umask 077; cat > ${canary}; chown root:root ${canary}; chmod 0600 ${canary}`, content);
    const canaryState = async () => {
      const st = await n1.exec(["stat", "-c", "%a %U:%G %F", canary]);
      const body = await n1.exec(["cat", canary]);
      return { st: st.stdout.trim(), body: body.stdout };
    };
    expect(await canaryState()).toEqual({ st: "600 root:root regular file", body: content });
    // As the compromised mcp user (root drops to it, like `podman exec --user mcp`): the predictable
    // names in /srv/mcp point at the canary, and a watcher plants .mcp-agent.new-<rand> the moment
    // an upload named .mcp-agent.upload-<rand>.* appears there (the old code staged the upload and
    // then wrote the decompressed binary, chown and chmod as root through that name).
    const asMcp = ["setpriv", "--reuid=mcp", "--regid=mcp", "--init-groups", "--"];
    const plant = await n1.exec([
      ...asMcp,
      "sh",
      "-c",
      `set -e; rm -f /srv/mcp/mcp-agent.prev /srv/mcp/mcp-agent.failed; ` +
        `ln -s ${canary} /srv/mcp/mcp-agent.prev; ln -s ${canary} /srv/mcp/mcp-agent.failed; id -un`,
    ]);
    expect(plant.stderr).toBe("");
    expect(plant.stdout.trim()).toBe("mcp");
    await n1.exec(["rm", "-f", "/tmp/mcp-watch-stop"]);
    const watcher = n1.exec(
      [
        ...asMcp,
        "sh",
        "-c",
        "i=0; while [ $i -lt 9000 ] && [ ! -e /tmp/mcp-watch-stop ]; do " +
          'for f in /srv/mcp/.mcp-agent.upload-*; do [ -e "$f" ] || continue; ' +
          'r=$(echo "$f" | sed "s/.*upload-//; s/[.].*//"); n=/srv/mcp/.mcp-agent.new-$r; ' +
          `if [ ! -L "$n" ]; then rm -f "$n"; ln -s ${canary} "$n" && echo "planted $n"; fi; done; ` +
          'i=$((i+1)); sleep 0.01; done; echo "watched $i"',
      ],
      { timeoutMs: 150_000 },
    );
    await Bun.sleep(300); // the watcher is looping before the upgrade starts
    let r: CliRun;
    try {
      r = await mcp(["agent", "upgrade", n1.name, "--force", "--json"]);
    } finally {
      await n1.exec(["touch", "/tmp/mcp-watch-stop"]);
    }
    const w = await watcher;
    expect(w.stdout).toMatch(/watched \d+/);
    // Root never wrote, chowned or chmodded through the planted links.
    expect(await canaryState()).toEqual({ st: "600 root:root regular file", body: content });
    // The upgrade went through, with a real file in place (not a link to the canary).
    expect(r.code).toBe(0);
    expect(row(parseUpgrade(r), n1.name)).toMatchObject({ from: VB, to: VB, result: "upgraded" });
    expect((await nodeStatus(n1)).agentVersion).toBe(VB);
    const kinds = await n1.exec(["stat", "-c", "%F %a", "/srv/mcp/mcp-agent", "/srv/mcp/mcp-agent.prev"]);
    expect(kinds.stdout.trim().split("\n")).toEqual(["regular file 755", "regular file 755"]);
    expect(await nodeSha(n1, "/srv/mcp/mcp-agent")).toBe(shaB);
    expect(await tempFiles(n1)).toEqual([]);
    await n1.exec(["rm", "-f", canary, "/tmp/mcp-watch-stop", "/srv/mcp/mcp-agent.failed"]);
  });

  test("--force reinstalls one node as a sudo user (and sweeps a stale temp file from an interrupted run)", async () => {
    await sh(n1, "head -c 1000 /dev/urandom > /srv/mcp/.mcp-agent.upload-stale.gz");
    const startedBefore = (await nodeStatus(n2)).agentStarted!;
    // ssh = deploy@…: SFTP stages in /home/deploy, every node-side step runs through sudo -n.
    const r = await mcp(["agent", "upgrade", n1.name, "--force", "--json", "--config", cfgDeployPath]);
    const j = parseUpgrade(r);
    expect(r.code).toBe(0);
    expect(row(j, n1.name)).toMatchObject({ from: VB, to: VB, result: "upgraded" });
    expect(row(j, n1.name).removedStale).toEqual(["/srv/mcp/.mcp-agent.upload-stale.gz"]);
    expect(await tempFiles(n1)).toEqual([]);
    const homeFiles = await n1.exec(["ls", "-a", "/home/deploy"]);
    expect(homeFiles.stdout).not.toContain(".mcp-agent.");
    const mode = await n1.exec(["stat", "-c", "%a %U", "/srv/mcp/mcp-agent", "/srv/mcp/mcp-agent.prev"]);
    expect(mode.stdout.trim().split("\n")).toEqual(["755 mcp", "755 mcp"]);
    expect(await nodeSha(n1, "/srv/mcp/mcp-agent")).toBe(shaB);
    expect(j.nodes.length).toBe(1);
    expect((await nodeStatus(n2)).agentStarted).toEqual(startedBefore);
    measured.push(
      `1 node (forced, gzip, via sudo): wall ${j.wallMs} ms ${JSON.stringify(row(j, n1.name).steps)}`,
    );
  });

  test("a binary that exits at start: that node is rolled back to its previous agent, the other untouched", async () => {
    const bad = join(tmp, "bad-agent");
    copyFileSync("/bin/busybox", bad); // a static x86-64 ELF: passes every check, then exits 127
    const untouched = await nodeStatus(n1);
    const r = await mcp(["agent", "upgrade", n2.name, "--binary", bad, "--timeout", "6s", "--json"]);
    expect(r.code).toBe(1);
    const res = row(parseUpgrade(r), n2.name);
    expect(res.result).toBe("rolled back");
    expect(res.reason).toContain("did not answer within 6.0s");
    expect(res.notes.join("\n")).toContain(
      `${VB} answers again; the new binary is kept as /srv/mcp/mcp-agent.failed`,
    );
    expect((await nodeStatus(n2)).agentVersion).toBe(VB);
    expect(await nodeSha(n2, "/srv/mcp/mcp-agent")).toBe(shaB);
    expect(await nodeSha(n2, "/srv/mcp/mcp-agent.failed")).toBe(sha256(readFileSync(bad)));
    expect(await tempFiles(n2)).toEqual([]);
    expect((await nodeStatus(n1)).agentStarted).toEqual(untouched.agentStarted);

    // The human summary says so too.
    const text = await mcp(["agent", "upgrade", n2.name, "--binary", bad, "--timeout", "3s"]);
    expect(text.code).toBe(1);
    expect(text.stdout).toMatch(/rolled back: the new agent did not answer within 3\.0s/);
    expect(text.stdout).toContain(`${n2.name}: ${VB} answers again`);
    expect(text.stdout).toContain("0 of 1 node ok");
  }, 90_000);

  test("an upload killed mid-transfer leaves the running agent untouched and no temp files", async () => {
    // ~80 MB of random bytes behind a real ELF header: incompressible, so the transfer lasts.
    const big = join(tmp, "big-agent");
    const head = Buffer.from((await Bun.file(cliB()).bytes()).subarray(0, 64));
    writeFileSync(big, Buffer.concat([head, randomBytes(80 * 1024 * 1024)]));
    const before = await nodeStatus(n1);
    // A watcher inside the node kills its sshd session processes (not the listener) as soon as
    // 8 MiB of the upload are on disk (root's uploads go to /root): podman exec round trips are too
    // slow to catch a ~2 s upload.
    const watcher = n1.exec(
      [
        "sh",
        "-c",
        "i=0; while [ $i -lt 6000 ]; do for f in /root/.mcp-agent.upload-*; do " +
          'if [ -f "$f" ] && [ "$(stat -c %s "$f")" -ge 8388608 ]; then stat -c %s "$f"; ' +
          "pkill -KILL -f '^sshd: root'; exit 0; fi; done; i=$((i+1)); sleep 0.01; done; exit 1",
      ],
      { timeoutMs: 90_000 },
    );
    const proc = Bun.spawn([cliB(), "agent", "upgrade", n1.name, "--binary", big, "--json"], {
      env: { ...cleanEnv(), HOME: home, MCP_CONFIG: cfgPath, NO_COLOR: "1" },
      stdout: "pipe",
      stderr: "pipe",
    });
    const out = new Response(proc.stdout).text();
    const err = new Response(proc.stderr).text();
    const killed = await watcher;
    expect(killed.code).toBe(0);
    const size = Number(killed.stdout.trim());
    expect(size).toBeGreaterThanOrEqual(8 * 1024 * 1024);
    const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
    const code = await proc.exited;
    clearTimeout(timer);
    const j = JSON.parse(await out) as UpgradeJson;
    expect(code).toBe(1);
    const res = row(j, n1.name);
    expect(res.result).toBe("failed");
    expect(res.reason).toMatch(/connection lost|connection closed|connection reset/);
    expect(res.bytesSent).toBeLessThan(res.payloadBytes);
    expect(await err).toContain("uploading");
    // Untouched: same binary, same process, still answering B; temp file removed at once over a
    // new connection.
    expect(await nodeSha(n1, "/srv/mcp/mcp-agent")).toBe(shaB);
    const after = await nodeStatus(n1);
    expect(after.agentVersion).toBe(VB);
    expect(after.agentStarted).toEqual(before.agentStarted);
    expect(await tempFiles(n1)).toEqual([]);
    measured.push(`interrupted upload: killed at ${size} bytes on the node, ${res.bytesSent} acknowledged`);
  }, 120_000);

  test("an arm64 node receives the arm64 sibling build (ELF machine 0xB7), which cannot start here → rolled back", async () => {
    const r = await runMcp(["agent", "upgrade", n1.name, "--force", "--timeout", "5s", "--json"], {
      bin: cliB(),
      env: { HOME: home, SSH_AUTH_SOCK: undefined, MCP_CONFIG: cfgArmPath, NO_COLOR: "1" },
      timeoutMs: 120_000,
    });
    expect(r.code).toBe(1);
    const res = row(JSON.parse(r.stdout) as UpgradeJson, n1.name);
    // The version was read from the arm64 file's stamp (it cannot run on this x64 host).
    expect(res).toMatchObject({ arch: "arm64", from: VB, to: VB, result: "rolled back" });
    const machine = await n1.exec(["od", "-An", "-tx1", "-j18", "-N2", "/srv/mcp/mcp-agent.failed"]);
    expect(machine.stdout.trim()).toBe("b7 00");
    expect(await nodeSha(n1, "/srv/mcp/mcp-agent")).toBe(shaB);
    expect((await nodeStatus(n1)).agentVersion).toBe(VB);
    expect(await tempFiles(n1)).toEqual([]);

    // agent status flags the config/agent arch mismatch.
    const st = await runMcp(["agent", "status", n1.name], {
      bin: cliB(),
      env: { HOME: home, MCP_CONFIG: cfgArmPath, NO_COLOR: "1" },
    });
    expect(st.stdout).toContain("amd64 (config: arm64)");
  }, 90_000);

  test("changed host key: refused, even with --accept-new-host-key", async () => {
    await n2.regenerateHostKeys();
    for (const extra of [[], ["--accept-new-host-key"]]) {
      const r = await mcp(["agent", "upgrade", n2.name, "--force", "--json", ...extra]);
      expect(r.code).toBe(1);
      const res = row(parseUpgrade(r), n2.name);
      expect(res.result).toBe("failed");
      expect(res.reason).toContain("CHANGED");
      expect(res.reason).toContain(n2.hostKeyFingerprint);
      expect(res.bytesSent).toBe(0);
    }
    expect((await nodeStatus(n2)).agentVersion).toBe(VB);
  });

  test("agent status after the upgrade: both on B, no skew; bad input is one line", async () => {
    const r = await mcp(["agent", "status"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`every reachable node runs ${VB}, like this CLI`);
    expect(r.stdout).not.toContain("(CLI ");

    const unknown = await mcp(["agent", "upgrade", "nope"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split("\n").length).toBe(1);
    const badTimeout = await mcp(["agent", "upgrade", "--timeout", "soon"]);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toBe('mcp: --timeout: expected a duration like 60s or 2m, got "soon"\n');
    // An agent this CLI cannot verify (another CA) would hide the new agent too: stop before SSH.
    const other = await createCA({ commonName: "some other CA", days: 1 });
    writeFileSync(join(tmp, "other-ca.pem"), other.certPem);
    const cfgOtherCa = join(tmp, "mcp-other-ca.toml");
    writeFileSync(
      cfgOtherCa,
      readFileSync(cfgPath, "utf8").replace(join(tmp, "ca.pem"), join(tmp, "other-ca.pem")),
    );
    const wrongCa = await mcp(["agent", "upgrade", n1.name, "--json", "--config", cfgOtherCa]);
    expect(wrongCa.code).toBe(1);
    const wr = row(parseUpgrade(wrongCa), n1.name);
    expect(wr.result).toBe("failed");
    expect(wr.reason).toContain("cannot check the agent");
    expect(wr.steps).toEqual({});
    expect((await nodeStatus(n1)).agentVersion).toBe(VB);

    const missing = await mcp(["agent", "upgrade", "--binary", join(tmp, "missing")]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("file not found");
  });
});
