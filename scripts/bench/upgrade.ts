// Issue 10 upgrade benchmarks on two real Debian nodes (systemd + sshd containers from
// test/support/debian-node.ts, an agent installed by hand as in test/e2e/upgrade.test.ts):
// upgrade-parallel times `mcp agent upgrade --force` of both nodes against the same of one node,
// alternated in one run; upgrade-bytes compares the compressed bytes each node acknowledged over
// SFTP (the command's --json bytesSent) with the binary's size.
// Both nodes get the host's zstd (as a Debian node with the zstd package); the gzip fallback's
// size is computed in-process with the command's own PayloadCache and given in the notes.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { createCA, issueCert } from "../../src/pki/ca.ts";
import { PayloadCache } from "../../src/roles/cli/agent-upgrade.ts";
import { connect } from "../../src/rpc/client.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { mcpBinary, runMcp } from "../../test/support/binary.ts";
import {
  type DebianNode,
  installAgent,
  copyToNode as podmanCp,
  nodeSh as sh,
  startDebianNode,
} from "../../test/support/debian-node.ts";
import { abRounds, type BenchContext, type Figure, printFigure, type Result, stats } from "./lib.ts";

const BYTES_TARGET = 0.45;
// A round (one 2-node and one 1-node upgrade) longer than this runs at most 3 rounds.
const LONG_ROUND_MS = 10_000;

interface UpgradeRow {
  node: string;
  result: string;
  reason?: string;
  bytesSent: number;
  binaryBytes: number;
  compression?: string;
}

interface Env {
  tmp: string;
  home: string;
  cfgPath: string;
  caPem: string;
  token: string;
}

async function waitForAgent(node: DebianNode, e: Env, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const c = await connect(McpAgent, {
        addresses: [`127.0.0.1:${node.agentPort}`],
        caPem: e.caPem,
        token: e.token,
      });
      try {
        await c.nodeStatus({}, { timeoutMs: 5000 });
        return;
      } finally {
        c.close();
      }
    } catch (err) {
      last = (err as Error).message;
    }
    await Bun.sleep(200);
  }
  throw new Error(`agent on ${node.name} not answering: ${last}`);
}

async function setUp(ctx: BenchContext): Promise<{ e: Env; nodes: [DebianNode, DebianNode] }> {
  const tmp = mkdtempSync(join(tmpdir(), "mcpbench-upgrade-"));
  const home = join(tmp, "home");
  const rand = Math.random().toString(36).slice(2, 8);
  let started: DebianNode[] = [];
  ctx.defer(async () => {
    await Promise.all(started.map((n) => n.stop()));
    rmSync(tmp, { recursive: true, force: true });
  });
  const settled = await Promise.allSettled([
    startDebianNode({ name: `bupg1-${rand}`, image: "podman" }),
    startDebianNode({ name: `bupg2-${rand}`, image: "podman" }),
  ]);
  started = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === "rejected");
  if (failed) throw failed.reason;
  const nodes = started as [DebianNode, DebianNode];

  const ca = await createCA({ commonName: "mcp upgrade bench CA", days: 2 });
  const token = generateToken();
  writeFileSync(join(tmp, "ca.pem"), ca.certPem);
  writeFileSync(join(tmp, "token"), `${token}\n`, { mode: 0o600 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "mcp-agent upgrade bench",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 2,
  });
  const e: Env = { tmp, home, cfgPath: join(tmp, "mcp.toml"), caPem: ca.certPem, token };

  mkdirSync(join(home, ".ssh"), { recursive: true, mode: 0o700 });
  await runOk(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", join(home, ".ssh", "id_ed25519")], {
    timeoutMs: 10_000,
  });
  const pub = readFileSync(join(home, ".ssh", "id_ed25519.pub"), "utf8");
  writeFileSync(join(home, ".ssh", "known_hosts"), nodes.map((n) => `${n.knownHostsLine}\n`).join(""));
  const entry = (n: DebianNode) =>
    `\n[[nodes]]\nname = "${n.name}"\naddress = "127.0.0.1:${n.agentPort}"\nssh = "root@127.0.0.1:${n.sshPort}"\narch = "amd64"\n`;
  writeFileSync(
    e.cfgPath,
    `[auth]\ntoken_path = "${join(tmp, "token")}"\n\n[tls]\nca_cert = "${join(tmp, "ca.pem")}"\n${nodes.map(entry).join("")}`,
  );
  await Promise.all(
    nodes.map(async (n) => {
      await sh(n, "tee -a /root/.ssh/authorized_keys > /dev/null", pub);
      await installAgent(n, mcpBinary(), { cert: leaf.chainPem, key: leaf.keyPem }, hashToken(e.token));
      await podmanCp("/usr/bin/zstd", n, "/usr/local/bin/zstd");
    }),
  );
  await Promise.all(nodes.map((n) => waitForAgent(n, e)));
  return { e, nodes };
}

/** One `mcp agent upgrade --force --json [node]`: wall ms of the CLI process and its rows. */
async function upgrade(e: Env, node?: string): Promise<{ ms: number; rows: UpgradeRow[] }> {
  const t0 = performance.now();
  const r = await runMcp(["agent", "upgrade", "--force", "--json", ...(node ? [node] : [])], {
    env: { HOME: e.home, SSH_AUTH_SOCK: undefined, MCP_CONFIG: e.cfgPath, NO_COLOR: "1" },
    timeoutMs: 300_000,
  });
  const ms = performance.now() - t0;
  let rows: UpgradeRow[];
  try {
    rows = (JSON.parse(r.stdout) as { nodes: UpgradeRow[] }).nodes;
  } catch {
    throw new Error(`agent upgrade printed no JSON (exit ${r.code}): ${r.stderr.trim().split("\n").pop()}`);
  }
  const bad = rows.find((x) => x.result !== "upgraded");
  if (r.code !== 0 || bad)
    throw new Error(`agent upgrade: ${bad?.node}: ${bad?.result}: ${bad?.reason ?? r.stderr.trim()}`);
  return { ms, rows };
}

export async function upgradeBench(ctx: BenchContext): Promise<Result[]> {
  const { e, nodes } = await setUp(ctx);
  const [n1] = nodes;
  const rows: UpgradeRow[] = [];
  // One of each first: it decides how many rounds fit (abRounds then warms up once more).
  const probe2 = await upgrade(e);
  const probe1 = await upgrade(e, n1.name);
  rows.push(...probe2.rows, ...probe1.rows);
  const roundMs = probe2.ms + probe1.ms;
  const rounds = roundMs > LONG_ROUND_MS ? Math.min(ctx.opts.rounds, 3) : ctx.opts.rounds;
  const roundNote =
    rounds < ctx.opts.rounds
      ? `${rounds} rounds instead of ${ctx.opts.rounds}: one round (2-node + 1-node upgrade) took ${Math.round(roundMs)} ms > ${LONG_ROUND_MS} ms`
      : `${rounds} rounds (one round took ${Math.round(roundMs)} ms)`;

  const parallel = await abRounds(
    "upgrade-parallel",
    {
      label: "mcp agent upgrade --force (2 nodes, zstd)",
      run: async () => {
        const u = await upgrade(e);
        rows.push(...u.rows);
        return u.ms;
      },
    },
    {
      label: "mcp agent upgrade --force (1 node, zstd)",
      run: async () => {
        const u = await upgrade(e, n1.name);
        rows.push(...u.rows);
        return u.ms;
      },
    },
    {
      rounds,
      perRound: 1,
      target: { of: "ratio", max: 1.3 },
      notes: `wall time of the CLI process; each run ships the binary and restarts the agent on every node it targets; ${roundNote}`,
    },
  );

  // Bytes: every node of every measured upgrade (deterministic per compression, so the spread is 0).
  const sent = rows.map((x) => x.bytesSent);
  const sizes = rows.map((x) => x.binaryBytes);
  const A = stats(sent);
  const B = stats(sizes);
  const binaryBytes = B.median;
  const gz = await new PayloadCache().get(mcpBinary(), "gzip");
  const algos = [...new Set(rows.map((x) => x.compression ?? "?"))].join(", ");
  const bytes: Figure = {
    name: "upgrade-bytes",
    status: "ok",
    unit: "bytes",
    a: { label: `bytes sent over SFTP per node (${algos}; --json bytesSent)`, ...A },
    b: { label: "binary size (dist/mcp-linux-x64)", ...B },
    ratio: A.median / binaryBytes,
    target: { of: "ratio", max: BYTES_TARGET },
    met: A.median / binaryBytes <= BYTES_TARGET,
    notes:
      `${rows.length} node upgrades; bytesSent counts the compressed payload the node acknowledged ` +
      `(SSH/SFTP framing not included); the gzip fallback (a node without zstd) would send ` +
      `${gz.data.length} bytes = ratio ${(gz.data.length / binaryBytes).toFixed(3)}`,
  };
  printFigure(bytes);
  return [parallel, bytes];
}
