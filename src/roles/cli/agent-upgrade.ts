// `mcp agent upgrade [node…]`: ships the agent binary for each node's arch over SSH, all nodes in
// parallel. Per node: ask the agent its version (same → skipped unless --force), upload the binary
// compressed (zstd when the node has it, else gzip; compressed once per binary) to a temp name in
// the login user's home, decompress it into /srv/mcp and verify SHA-256 there AS THE AGENT'S USER
// (`mcp`, who owns /srv/mcp: root never writes in it), keep the running binary as mcp-agent.prev,
// rename the new one over /srv/mcp/mcp-agent, restart the unit and wait for NodeStatus to report the new
// version. If it does not within --timeout, the failed binary is kept as mcp-agent.failed, the
// previous one is put back and restarted ("rolled back"). Until the verified rename only temp names
// are touched, so a dropped connection leaves the running agent alone; temp files are removed on
// every path (over a fresh connection when the old one died) and stale ones from a run that could
// not clean up (node unreachable) are swept at the start of the next.
import { randomBytes } from "node:crypto";
import { promisify } from "node:util";
import { gzip } from "node:zlib";
import type { CliNode } from "../../config/cli.ts";
import { parseDuration } from "../../config/load.ts";
import type { NodeStatusResponse } from "../../gen/mcp/v1/mcp_pb.ts";
import { CallError } from "../../rpc/client.ts";
import { Code as grpcStatus } from "../../rpc/wire.ts";
import { connectSsh, resolveTarget, type SshSession } from "../../ssh/index.ts";
import { type AgentBinary, agentBinaryFor, CLI_VERSION } from "./agent-binary.ts";
import { type Ctx, loadCtx } from "./context.ts";
import { asAgentUser, CHECK_STAGE, FROM_UPLOAD } from "./node-user.ts";
import { CliError, formatBytes, green, printJson, printTable, red, yellow } from "./output.ts";

export const AGENT_PATH = "/srv/mcp/mcp-agent";
const DIR = "/srv/mcp";
const UNIT = "mcp-agent";
// zstd -6 / gzip -6, measured on the 111 MiB x64 build: 43% in 1.4 s / 48% in 1.9 s. Higher zstd
// levels gain little (-12: 41% in 6.5 s) for far more CPU.
const ZSTD_LEVEL = 6;
const GZIP_LEVEL = 6;
const POLL_MS = 300;
// Codes that mean "no agent there right now" (as opposed to one this CLI cannot talk to).
const AGENT_DOWN = new Set<number>([grpcStatus.UNAVAILABLE, grpcStatus.DEADLINE_EXCEEDED]);
// A certificate the client cannot verify is UNAVAILABLE too (the connection failed); its text tells them apart.
const TLS_TROUBLE = /certificate|self[- ]signed|altnames|SSL|TLS|handshake/i;

export type Compression = "zstd" | "gzip";
export type UpgradeOutcome = "upgraded" | "skipped" | "rolled back" | "failed";

export interface NodeUpgrade {
  node: string;
  arch: string;
  /** Version the agent reported before (undefined: it did not answer). */
  from?: string;
  /** Version shipped (undefined: a --binary without a version stamp). */
  to?: string;
  result: UpgradeOutcome;
  reason?: string;
  ms: number;
  /** Compressed bytes the node acknowledged over SFTP. */
  bytesSent: number;
  /** Size of the compressed upload (bytesSent falls short of it when the transfer broke). */
  payloadBytes: number;
  /** Uncompressed size of the binary shipped. */
  binaryBytes: number;
  compression?: Compression;
  /** Temp files of an earlier, interrupted upgrade removed from the node. */
  removedStale: string[];
  /** Things the operator should know beyond the result (kept files, cleanup left to later). */
  notes: string[];
  /** Milliseconds per step (connect, compress, upload, verify, restart, wait, rollback). */
  steps: Record<string, number>;
}

export interface Payload {
  data: Uint8Array;
  sha256: string;
  size: number;
}

/** Compresses each binary once per algorithm, however many nodes receive it. */
export class PayloadCache {
  private raw = new Map<string, Promise<{ bytes: Uint8Array; sha256: string }>>();
  private packed = new Map<string, Promise<Payload>>();

  get(path: string, algo: Compression): Promise<Payload> {
    const key = `${algo}\0${path}`;
    let p = this.packed.get(key);
    if (!p) {
      p = this.read(path).then(async ({ bytes, sha256 }) => ({
        data:
          algo === "zstd"
            ? await Bun.zstdCompress(bytes, { level: ZSTD_LEVEL })
            : await promisify(gzip)(bytes, { level: GZIP_LEVEL }),
        sha256,
        size: bytes.length,
      }));
      this.packed.set(key, p);
    }
    return p;
  }

  private read(path: string): Promise<{ bytes: Uint8Array; sha256: string }> {
    let p = this.raw.get(path);
    if (!p) {
      p = Bun.file(path)
        .bytes()
        .then((bytes) => ({ bytes, sha256: new Bun.CryptoHasher("sha256").update(bytes).digest("hex") }));
      this.raw.set(path, p);
    }
    return p;
  }
}

// ---- node-side scripts --------------------------------------------------------------------
// Fixed sh programs; every variable part arrives as a positional argument ("$1"…), never as text
// spliced into the program.

// Who writes where. /srv/mcp belongs to the agent's own user (and /srv is group-writable by it), so
// a compromised `mcp` user controls every name below /srv/mcp, including /srv/mcp itself: nothing
// may run there as root. Every step that touches /srv/mcp runs as `mcp` (root drops to it with
// setpriv first), so a planted symlink or a swapped name reaches only what `mcp` could reach
// anyway — the binary it runs is its own. Root only opens the upload for reading, in the login
// user's home (mode checked: nobody else may write it), and runs `systemctl restart`.

// biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
const SHA_FN = 'sum() { s=$(sha256sum < "$1"); echo "${s%% *}"; }; ';
/** Hard link $1 as $2 (replacing $2, never following it); a copy when the kernel refuses the link (a root-owned file). */
const KEEP_FN = 'keep() { ln -f -- "$1" "$2" 2>/dev/null || cp -f --remove-destination -- "$1" "$2"; }; ';
/** The account the agent unit runs as (User= in deploy/systemd/mcp-agent.service), owner of /srv/mcp. */
export const AGENT_USER = "mcp";
/** argv prefix: root becomes the agent's user (uid, gid, groups) before running the rest. */
const AS_AGENT_USER = asAgentUser(AGENT_USER);
/** Root wrapper: runs "$@" (the agent-user step), then restarts the unit if it succeeded. */
const THEN_RESTART = `set -e; "$@"; systemctl restart ${UNIT}`;

/**
 * As the login user, in its own staging directory ($1, its home): refuses a directory another user
 * may write, sweeps upload temp files no process has open (an earlier run that lost its
 * connection) and says whether zstd is there.
 */
const PREPARE_STAGE =
  "set -eu; " +
  CHECK_STAGE +
  "; " +
  'open=$(for f in /proc/[0-9]*/fd/*; do readlink "$f" 2>/dev/null || true; done); ' +
  'for t in "$d"/.mcp-agent.upload-*; do [ -e "$t" ] || continue; ' +
  'if printf "%s\\n" "$open" | grep -qxF -- "$t"; then continue; fi; ' +
  'rm -f -- "$t" && echo "removed $t"; done; ' +
  "if command -v zstd >/dev/null 2>&1; then echo zstd yes; else echo zstd no; fi";

/**
 * As the agent's user: checks the node is provisioned, sweeps temp files in /srv/mcp that no
 * process has open (this or an older version's), prints the running binary's hash.
 */
const PREPARE_AGENT =
  "set -eu; " +
  SHA_FN +
  `[ -f ${AGENT_PATH} ] || { echo "no ${AGENT_PATH} on this node (provision it first: mcp node provision)" >&2; exit 3; }; ` +
  'open=$(for f in /proc/[0-9]*/fd/*; do readlink "$f" 2>/dev/null || true; done); ' +
  `for t in ${DIR}/.mcp-agent.upload-* ${DIR}/.mcp-agent.new-* ${DIR}/.mcp-agent.restore-*; do ` +
  '[ -e "$t" ] || [ -L "$t" ] || continue; ' +
  'if printf "%s\\n" "$open" | grep -qxF -- "$t"; then continue; fi; ' +
  'rm -f -- "$t" && echo "removed $t"; done; ' +
  `echo "sha $(sum ${AGENT_PATH})"`;

/**
 * As the agent's user: decompresses stdin into $1, a fresh name (noclobber: an existing name, a
 * planted symlink included, is refused, never followed), checks SHA-256 $2, makes it 0755.
 */
const STAGE =
  "set -eu; " +
  SHA_FN +
  "new=$1; want=$2; algo=$3; " +
  'trap \'rc=$?; [ "$rc" -eq 0 ] || rm -f -- "$new"\' EXIT; ' +
  "umask 077; set -C; " +
  'if [ "$algo" = zstd ]; then zstd -q -d -c > "$new"; else gzip -d -c > "$new"; fi; ' +
  'got=$(sum "$new"); ' +
  '[ "$got" = "$want" ] || { echo "checksum mismatch after transfer: $got, expected $want" >&2; exit 3; }; ' +
  'chmod 0755 -- "$new"';

/** As the agent's user: keeps the running binary as .prev, renames $1 over it (atomic). */
const SWAP =
  "set -eu; umask 022; " +
  KEEP_FN +
  `keep ${AGENT_PATH} ${AGENT_PATH}.prev; ` +
  `mv -fT -- "$1" ${AGENT_PATH}; ` +
  "echo swapped";

/**
 * As the agent's user: puts back the binary whose hash was $1 (only from a .prev that really is
 * it), keeping the failed one as .failed for inspection; $2 is a temp name. The root wrapper then
 * restarts the unit.
 */
const ROLLBACK =
  "set -eu; umask 022; " +
  SHA_FN +
  KEEP_FN +
  "old=$1; tmp=$2; trap 'rm -f -- \"$tmp\"' EXIT; " +
  `if [ "$(sum ${AGENT_PATH})" != "$old" ]; then ` +
  `if [ ! -f ${AGENT_PATH}.prev ] || [ "$(sum ${AGENT_PATH}.prev)" != "$old" ]; then ` +
  'echo "mcp-agent.prev is not the binary that ran before the upgrade: not rolling back" >&2; exit 3; fi; ' +
  `keep ${AGENT_PATH} ${AGENT_PATH}.failed; keep ${AGENT_PATH}.prev "$tmp"; mv -fT -- "$tmp" ${AGENT_PATH}; echo restored; fi`;

// ---- progress -----------------------------------------------------------------------------

/**
 * One line per node on stderr. On a terminal the block of lines is redrawn in place (at most 10
 * times a second); otherwise each step is printed once as `node: step` (byte counts are not).
 */
class Progress {
  private readonly text = new Map<string, string>();
  private drawn = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private readonly width: number;

  constructor(
    private readonly names: string[],
    private readonly tty = process.stderr.isTTY === true,
  ) {
    const pad = Math.max(...names.map((n) => n.length));
    this.width = pad;
    for (const n of names) this.text.set(n, "waiting");
  }

  set(node: string, text: string, transient = false): void {
    this.text.set(node, text);
    if (!this.tty) {
      if (!transient) process.stderr.write(`${node.padEnd(this.width)}  ${text}\n`);
      return;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.draw();
    }, 100);
  }

  finish(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.tty) this.draw();
  }

  private draw(): void {
    const cols = process.stderr.columns || 120;
    let out = this.drawn > 0 ? `\x1b[${this.drawn}A` : "";
    for (const n of this.names) {
      const line = `${n.padEnd(this.width)}  ${this.text.get(n) ?? ""}`;
      out += `\r\x1b[2K${line.slice(0, cols - 1)}\n`;
    }
    this.drawn = this.names.length;
    process.stderr.write(out);
  }
}

// ---- per node ---------------------------------------------------------------------------

export interface UpgradeOptions {
  force: boolean;
  acceptNewHostKey: boolean;
  timeoutMs: number;
}

interface WaitResult {
  ok: boolean;
  version?: string;
  last?: string;
}

async function nodeStatus(ctx: Ctx, node: CliNode, timeoutMs: number): Promise<NodeStatusResponse> {
  return (await ctx.agent(node)).nodeStatus({}, { timeoutMs });
}

/** Polls NodeStatus until the agent answers (with `want`, when known), bounded by timeoutMs. */
async function waitForAgent(
  ctx: Ctx,
  node: CliNode,
  want: string | undefined,
  timeoutMs: number,
): Promise<WaitResult> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    const left = deadline - Date.now();
    try {
      const st = await nodeStatus(ctx, node, Math.max(200, Math.min(3000, left)));
      if (want === undefined || st.agentVersion === want) return { ok: true, version: st.agentVersion };
      last = `answered with ${st.agentVersion}`;
    } catch (e) {
      last = briefError(e as Error);
    }
    await Bun.sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
  }
  return { ok: false, last };
}

/** A long UNAVAILABLE text cut to what an operator acts on. */
export function briefError(e: Error): string {
  const msg = e.message.split("\n")[0] ?? "error";
  if (/ECONNREFUSED/.test(msg)) return "connection refused";
  if (/DEADLINE_EXCEEDED/.test(msg)) return "no answer in time";
  if (/ECONNRESET|socket hang up/.test(msg)) return "connection reset";
  return msg.length > 120 ? `${msg.slice(0, 117)}...` : msg;
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`;
}

/** An SSH connection that is reopened once when it dropped (for cleanup and rollback). */
class NodeShell {
  session: SshSession | undefined;
  constructor(private readonly open: () => Promise<SshSession>) {}

  async connect(): Promise<SshSession> {
    this.session = await this.open();
    return this.session;
  }

  /** execOk (sudo unless told not to); after a lost connection, reconnects and runs it again (idempotent steps only). */
  async retrying(argv: string[], timeoutMs: number, sudo = true): Promise<string> {
    try {
      if (!this.session) await this.connect();
      return (await this.session!.execOk(argv, { sudo, timeoutMs })).stdout;
    } catch (e) {
      if (!/connection (lost|is closed|reset)|connection closed/.test((e as Error).message)) throw e;
      await this.session?.close().catch(() => {});
      await this.connect();
      return (await this.session!.execOk(argv, { sudo, timeoutMs })).stdout;
    }
  }

  async close(): Promise<void> {
    await this.session?.close().catch(() => {});
  }
}

export async function upgradeNode(
  ctx: Ctx,
  node: CliNode,
  binary: AgentBinary,
  payloads: PayloadCache,
  opts: UpgradeOptions,
  report: (text: string, transient?: boolean) => void,
): Promise<NodeUpgrade> {
  const started = performance.now();
  const res: NodeUpgrade = {
    node: node.name,
    arch: node.arch,
    to: binary.version,
    result: "failed",
    ms: 0,
    bytesSent: 0,
    payloadBytes: 0,
    binaryBytes: 0,
    removedStale: [],
    notes: [],
    steps: {},
  };
  let mark = performance.now();
  const step = (name: string) => {
    const now = performance.now();
    res.steps[name] = Math.round(now - mark);
    mark = now;
  };
  let shell: NodeShell | undefined;
  try {
    report("asking the agent its version");
    try {
      res.from = (await nodeStatus(ctx, node, 5000)).agentVersion;
    } catch (e) {
      // A dead agent is a reason to upgrade, not to stop: the binary may be what is broken. But
      // an answer this CLI cannot accept (CA, token) would also hide the new agent's, and every
      // upgrade would end in a rollback: that is fixed first.
      if (!(e instanceof CallError) || !AGENT_DOWN.has(e.code) || TLS_TROUBLE.test(e.message)) {
        throw new CliError(
          `cannot check the agent, so could not confirm an upgrade: ${briefError(e as Error)}`,
        );
      }
      res.notes.push(`the agent did not answer before the upgrade (${briefError(e)})`);
    }
    if (res.from !== undefined && res.from === binary.version && !opts.force) {
      res.result = "skipped";
      res.reason = `already ${res.from}`;
      return res;
    }
    if (!node.ssh) {
      throw new CliError(`no ssh target for node ${node.name} in the CLI config (set ssh = "user@host")`);
    }
    const target = resolveTarget(node.ssh);
    report(`connecting to ${node.ssh}`);
    shell = new NodeShell(() => connectSsh({ target, acceptNewHostKey: opts.acceptNewHostKey }));
    const s = await shell.connect();
    step("connect");
    // The compressed file goes to the login user's home (root's too: never into /srv/mcp, which
    // the agent's user controls), checked there to be writable by that user alone.
    const stageDir = (await s.execOk(["pwd"], { timeoutMs: 30_000 })).stdout.trim();
    const prepStage = await s.execOk(["sh", "-c", PREPARE_STAGE, "sh", stageDir], { timeoutMs: 60_000 });
    const prepAgent = await s.execOk([...AS_AGENT_USER, "sh", "-c", PREPARE_AGENT], {
      sudo: true,
      timeoutMs: 60_000,
    });
    const lines = `${prepAgent.stdout}\n${prepStage.stdout}`.split("\n");
    res.removedStale = lines.filter((l) => l.startsWith("removed ")).map((l) => l.slice(8));
    if (res.removedStale.length > 0)
      res.notes.push(`removed ${res.removedStale.length} temp file(s) left by an interrupted upgrade`);
    const oldSha = lines.find((l) => l.startsWith("sha "))?.slice(4) ?? "";
    const algo: Compression = lines.includes("zstd yes") ? "zstd" : "gzip";
    res.compression = algo;

    report(`compressing (${algo})`);
    const payload = await payloads.get(binary.path, algo);
    step("compress");
    res.binaryBytes = payload.size;
    res.payloadBytes = payload.data.length;
    const rand = randomBytes(6).toString("hex");
    const upload = `${stageDir}/.mcp-agent.upload-${rand}.${algo === "zstd" ? "zst" : "gz"}`;
    const fresh = `${DIR}/.mcp-agent.new-${rand}`;
    const total = formatBytes(payload.data.length);
    try {
      report(`uploading ${total} (${algo}, ${formatBytes(payload.size)} unpacked)`);
      let lastPct = -1;
      await s.upload(payload.data, upload, {
        mode: 0o600,
        onProgress: (sent, all) => {
          res.bytesSent = sent;
          const pct = all > 0 ? Math.floor((sent / all) * 100) : 100;
          if (pct !== lastPct) {
            lastPct = pct;
            report(`uploading ${formatBytes(sent)}/${total} (${algo}) ${pct}%`, true);
          }
        },
      });
      step("upload");
      report("verifying SHA-256 on the node");
      await s.execOk(
        [
          "sh",
          "-c",
          FROM_UPLOAD,
          "sh",
          upload,
          ...AS_AGENT_USER,
          "sh",
          "-c",
          STAGE,
          "sh",
          fresh,
          payload.sha256,
          algo,
        ],
        {
          sudo: true,
          timeoutMs: 180_000,
        },
      );
      step("verify");
      report(`restarting ${UNIT}`);
      let swap: { code: number; stdout: string; stderr: string } | undefined;
      try {
        swap = await s.exec(
          ["sh", "-c", THEN_RESTART, "sh", ...AS_AGENT_USER, "sh", "-c", SWAP, "sh", fresh],
          {
            sudo: true,
            timeoutMs: 120_000,
          },
        );
      } catch (e) {
        // Connection lost: the rename may or may not have happened, so verify and roll back below.
        report(`restart: ${(e as Error).message}`);
      }
      step("restart");
      if (swap && swap.code !== 0) {
        const detail = swap.stderr.trim().split("\n").pop() ?? "";
        // Before the rename nothing changed; after it, the wait below decides (and rolls back).
        if (!swap.stdout.includes("swapped"))
          throw new CliError(`installing the new binary failed: ${detail}`);
        report(`restart failed: ${detail}`);
      }
    } finally {
      // Never leave temp files: over the same connection, or a new one when it dropped. After the
      // rename the new name is gone and this removes nothing.
      // The upload as the login user (its own file), the staged binary as the agent's user.
      await shell
        .retrying(["rm", "-f", "--", upload], 30_000, false)
        .then(() => shell!.retrying([...AS_AGENT_USER, "rm", "-f", "--", fresh], 30_000))
        .catch((e: Error) => {
          res.notes.push(
            `temp files not removed (${briefError(e)}): the next upgrade of this node removes them`,
          );
        });
    }

    step("cleanup");
    report(
      binary.version ? `waiting for ${binary.version} to answer` : "waiting for the new agent to answer",
    );
    const up = await waitForAgent(ctx, node, binary.version, opts.timeoutMs);
    step("wait");
    if (up.ok) {
      res.result = "upgraded";
      res.to = up.version;
      return res;
    }
    const why = `${binary.version ?? "the new agent"} did not answer within ${seconds(opts.timeoutMs)} (${up.last})`;
    report(`rolling back: ${why}`);
    const rb = await shell.retrying(
      [
        "sh",
        "-c",
        THEN_RESTART,
        "sh",
        ...AS_AGENT_USER,
        "sh",
        "-c",
        ROLLBACK,
        "sh",
        oldSha,
        `${DIR}/.mcp-agent.restore-${rand}`,
      ],
      120_000,
    );
    const back = await waitForAgent(ctx, node, res.from, opts.timeoutMs);
    step("rollback");
    if (back.ok) {
      res.result = "rolled back";
      res.reason = why;
      res.notes.push(
        rb.includes("restored")
          ? `${res.from ?? "the previous agent"} answers again; the new binary is kept as ${AGENT_PATH}.failed`
          : `${res.from ?? "the previous agent"} answers again (the new binary never replaced it)`,
      );
    } else {
      res.result = "failed";
      res.reason = `${why}; rolled back but the previous agent does not answer either (${back.last})`;
    }
    return res;
  } catch (e) {
    res.result = "failed";
    const msg = (e as Error).message.split("\n")[0] ?? "error";
    res.reason = msg;
    return res;
  } finally {
    await shell?.close();
    res.ms = Math.round(performance.now() - started);
  }
}

// ---- command ----------------------------------------------------------------------------

function parseTimeout(v: unknown): number {
  if (v === undefined || v === "") return 60_000;
  const s = String(v);
  const ms = /^\d+$/.test(s)
    ? Number(s) * 1000
    : (() => {
        try {
          return parseDuration(s);
        } catch {
          throw new CliError(`--timeout: expected a duration like 60s or 2m, got "${s}"`, 2);
        }
      })();
  if (ms <= 0) throw new CliError(`--timeout: must be more than 0, got "${s}"`, 2);
  return ms;
}

function resultCell(r: NodeUpgrade): string {
  const text = r.reason ? `${r.result}: ${r.reason}` : r.result;
  if (r.result === "upgraded") return green(text);
  if (r.result === "skipped") return text;
  if (r.result === "rolled back") return yellow(text);
  return red(text);
}

function sentCell(r: NodeUpgrade): string {
  if (r.bytesSent === 0) return "-";
  const pct =
    r.binaryBytes > 0
      ? ` (${Math.round((r.bytesSent / r.binaryBytes) * 100)}% of ${formatBytes(r.binaryBytes)})`
      : "";
  return `${formatBytes(r.bytesSent)} ${r.compression ?? ""}${pct}`;
}

export async function agentUpgradeCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const timeoutMs = parseTimeout(opts.timeout);
  const nodes = args.length > 0 ? [...new Set(args)].map((n) => ctx.node(n)) : ctx.config.nodes;
  if (nodes.length === 0)
    throw new CliError(`no nodes in ${ctx.configPath} (add one with "mcp node add")`, 2);
  // Bad --binary or a missing sibling build is bad input: said once, before any node is touched.
  const binaries = new Map<string, AgentBinary>();
  for (const arch of new Set(nodes.map((n) => n.arch))) {
    binaries.set(arch, await agentBinaryFor(arch, { binary: opts.binary ? String(opts.binary) : undefined }));
  }
  const upgradeOpts: UpgradeOptions = {
    force: opts.force === true,
    acceptNewHostKey: opts.acceptNewHostKey === true,
    timeoutMs,
  };
  const payloads = new PayloadCache();
  // On stderr, so it stays out of --json output.
  const progress = new Progress(nodes.map((n) => n.name));
  const started = performance.now();
  const results = await Promise.all(
    nodes.map(async (node) => {
      const r = await upgradeNode(ctx, node, binaries.get(node.arch)!, payloads, upgradeOpts, (t, tr) =>
        progress.set(node.name, t, tr),
      );
      progress.set(node.name, `${r.result}${r.reason ? `: ${r.reason}` : ""} (${seconds(r.ms)})`);
      return r;
    }),
  );
  progress.finish();
  const wallMs = Math.round(performance.now() - started);
  for (const c of await Promise.all(nodes.map((n) => ctx.agent(n).catch(() => undefined)))) c?.close();
  const bad = results.filter((r) => r.result === "failed" || r.result === "rolled back").length;
  if (ctx.json) {
    printJson({ cliVersion: CLI_VERSION, wallMs, nodes: results });
  } else {
    printTable(
      ["node", "version", "result", "time", "bytes sent"],
      results.map((r) => [
        r.node,
        r.result === "skipped" ? (r.from ?? "?") : `${r.from ?? "?"} → ${r.to ?? "?"}`,
        resultCell(r),
        seconds(r.ms),
        sentCell(r),
      ]),
    );
    for (const r of results) for (const n of r.notes) process.stdout.write(`${r.node}: ${n}\n`);
    const ok = results.length - bad;
    process.stdout.write(
      `${ok} of ${results.length} node${results.length === 1 ? "" : "s"} ok in ${seconds(wallMs)}${bad > 0 ? `, ${bad} failed or rolled back` : ""}\n`,
    );
  }
  return bad > 0 ? 1 : 0;
}
