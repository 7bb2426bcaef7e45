// `mcp node provision <name> --ssh <target>`: prepares a Debian machine as an MCP node over SSH
// and registers it in the CLI config. Checks that need no change come first (CLI CA and token,
// --ca-cert against the CLI's CA, sudo, Debian, arch, the agent binary, an existing mcp user's
// UID), then the steps of provision-steps.ts run in order, each reported as "done" or "already
// done"; a second run changes nothing. Output: one progress line per step on a terminal, a
// plain line per step otherwise, the step list with --json. The first failing step stops the run.
import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFileSync, statSync } from "node:fs";
import agentUnit from "../../../deploy/systemd/mcp-agent.service" with { type: "text" };
import { generateToken } from "../../auth/local.ts";
import { resolveToken, writeTokenFile } from "../../auth/token-file.ts";
import { type Arch, type CliNode, writeCliConfig } from "../../config/cli.ts";
import { NAME_RE } from "../../config/service.ts";
import { parseHostPort } from "../../config/specs.ts";
import { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { connect } from "../../rpc/client.ts";
import { connectSsh, resolveTarget, type SshSession } from "../../ssh/index.ts";
import { agentBinaryFor, sha256File } from "./agent-binary.ts";
import { type Ctx, loadCtx } from "./context.ts";
import { CliError, green, printJson } from "./output.ts";
import {
  type AgentAuth,
  agentLogTail,
  chainsTo,
  checkUser,
  MCIAS_CA_PATH,
  type NodeSetup,
  renderAgentConfig,
  type StepOutcome,
  type StepStatus,
  stepBinary,
  stepCert,
  stepConfig,
  stepDirs,
  stepLinger,
  stepMasterCert,
  stepPackages,
  stepService,
  stepSubids,
  stepUser,
} from "./provision-steps.ts";

export interface StepReport {
  step: string;
  status: StepStatus;
  detail: string;
}

const VERIFY_TIMEOUT_MS = 30_000;

/** Step lines: a live line per step on a terminal, finished lines otherwise, nothing for --json. */
class Reporter {
  readonly steps: StepReport[] = [];
  private current = "";
  private index = 0;
  constructor(
    private readonly mode: "tty" | "plain" | "json",
    private readonly total: number,
  ) {}

  begin(step: string): void {
    this.current = step;
    this.index++;
    this.progress("…");
  }

  progress(text: string): void {
    if (this.mode !== "tty") return;
    process.stdout.write(`\r\x1b[K[${this.index}/${this.total}] ${this.current}: ${text}`);
  }

  end(r: StepReport): void {
    this.steps.push(r);
    if (this.mode === "json") return;
    const status = r.status === "done" ? green(r.status) : r.status;
    const line = `${r.step}: ${status}${r.detail ? ` — ${r.detail}` : ""}`;
    process.stdout.write(
      this.mode === "tty" ? `\r\x1b[K[${this.index}/${this.total}] ${line}\n` : `${line}\n`,
    );
  }

  note(text: string): void {
    // On a terminal the note replaces the live line, which the next progress() redraws.
    if (this.mode !== "json") process.stdout.write(`${this.mode === "tty" ? "\r\x1b[K" : ""}note: ${text}\n`);
  }
}

function readLocal(path: string, what: string): string {
  try {
    return readFileSync(path, "utf8");
  } catch (e) {
    throw new CliError(
      `${what} ${path}: ${(e as NodeJS.ErrnoException).code === "ENOENT" ? "file not found" : "cannot read it"}`,
      2,
    );
  }
}

/** --ca-cert/--ca-key: both or neither; the key must match and the CA must be one the CLI trusts. */
function loadSigningCa(opts: Record<string, unknown>, trustPem: string, trustPath: string) {
  const certPath = opts.caCert as string | undefined;
  const keyPath = opts.caKey as string | undefined;
  if (!certPath && !keyPath) return undefined;
  if (!certPath || !keyPath) throw new CliError("--ca-cert and --ca-key go together", 2);
  const certPem = readLocal(certPath, "--ca-cert");
  const keyPem = readLocal(keyPath, "--ca-key");
  let matches = false;
  try {
    matches = new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    throw new CliError(
      `--ca-cert/--ca-key: ${certPath} or ${keyPath} is not a PEM certificate / private key`,
      2,
    );
  }
  if (!matches) throw new CliError(`--ca-key ${keyPath} is not the key of --ca-cert ${certPath}`, 2);
  if (!chainsTo(certPem, trustPem)) {
    throw new CliError(
      `--ca-cert ${certPath} is not the CA the CLI verifies agents with ([tls] ca_cert ${trustPath}); ` +
        "a cert it issues would fail the final check",
      2,
    );
  }
  return { certPem, keyPem };
}

/**
 * The agent's auth settings and the bearer token the final check sends. A token generated for a
 * CLI that has none is saved by saveToken(), called only once the node is being changed.
 */
async function resolveAuth(
  ctx: Ctx,
  rep: Reporter,
): Promise<{ auth: AgentAuth; token: string; mciasCaPem?: string; saveToken: () => Promise<void> }> {
  const m = ctx.config.mcias;
  if (m) {
    const mciasCaPem = m.ca_cert ? readLocal(m.ca_cert, "[mcias] ca_cert") : undefined;
    return {
      auth: {
        kind: "mcias",
        serverUrl: m.server_url,
        caCert: mciasCaPem !== undefined ? MCIAS_CA_PATH : "",
        serviceName: "mcp-agent",
        ...(m.insecure_http ? { insecureHttp: true } : {}),
      },
      token: await ctx.token(),
      ...(mciasCaPem !== undefined ? { mciasCaPem } : {}),
      saveToken: async () => {},
    };
  }
  // Local mode: the CLI sends one token to every node, so the node gets that token's hash.
  let token: string;
  let saveToken = async () => {};
  try {
    token = await resolveToken({ tokenPath: ctx.config.auth.token_path });
  } catch (e) {
    if ((e as Error).name !== "AuthError") throw e;
    const fresh = generateToken();
    token = fresh;
    saveToken = async () => {
      await writeTokenFile(ctx.config.auth.token_path, fresh);
      rep.note(`no CLI token yet: wrote a new admin token to ${ctx.config.auth.token_path} (0600)`);
    };
  }
  return { auth: { kind: "local", token }, token, saveToken };
}

async function detectArch(s: SshSession, name: string): Promise<Arch> {
  const deb = await s.exec(["test", "-e", "/etc/debian_version"], { timeoutMs: 30_000 });
  if (deb.code !== 0) throw new CliError(`${name}: not a Debian system (no /etc/debian_version)`);
  const r = await s.exec(["dpkg", "--print-architecture"], { timeoutMs: 30_000 });
  const a = r.stdout.trim();
  if (a === "amd64" || a === "arm64") return a;
  throw new CliError(`${name}: unsupported architecture "${a}" (mcp runs on amd64 and arm64)`);
}

/** Polls NodeStatus over TLS until the agent answers with `version` (any, when undefined). */
async function verifyAgent(
  n: NodeSetup,
  opts: { caPem: string; token: string; version: string | undefined; changed: boolean },
): Promise<StepOutcome> {
  const client = await connect(McpAgent, { addresses: [n.address], caPem: opts.caPem, token: opts.token });
  const deadline = Date.now() + VERIFY_TIMEOUT_MS;
  let last = "";
  try {
    for (let attempt = 0; Date.now() < deadline && attempt < 200; attempt++) {
      try {
        const st = await client.nodeStatus({}, { timeoutMs: 5000 });
        if (opts.version === undefined || st.agentVersion === opts.version) {
          const detail = `agent ${st.agentVersion} answers NodeStatus at ${n.address} over TLS (CA: the CLI's [tls] ca_cert)${
            opts.version === undefined ? "; version not checked (--binary of another arch)" : ""
          }`;
          return { status: opts.changed ? "done" : "already done", detail };
        }
        last = `answers with version ${st.agentVersion}, expected ${opts.version}`;
      } catch (e) {
        last = (e as Error).message.split("\n")[0]!;
        // A wrong token or CA does not fix itself by waiting.
        if (/UNAUTHENTICATED|PERMISSION_DENIED|certificate|self.signed|CERT_/i.test(last)) break;
      }
      n.progress(`waiting for the agent (${last.slice(0, 60)})`);
      await Bun.sleep(500);
    }
  } finally {
    client.close();
  }
  const tail = await agentLogTail(n).catch(() => "");
  throw new CliError(
    `${n.name}: the agent at ${n.address} did not answer within ${VERIFY_TIMEOUT_MS / 1000} s: ${last}${tail ? `; journal: ${tail}` : ""}`,
  );
}

const STEP_NAMES = [
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
] as const;

export async function provisionCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const name = args[0]!;
  if (!NAME_RE.test(name)) throw new CliError(`node name "${name}": expected [a-z0-9][a-z0-9-]*`, 2);
  const uid = Number(opts.uid ?? 850);
  if (!Number.isInteger(uid) || uid < 1 || uid > 59999)
    throw new CliError(`--uid: expected 1-59999, got "${opts.uid}"`, 2);
  const archFlag = opts.arch === undefined ? undefined : String(opts.arch);
  if (archFlag !== undefined && archFlag !== "amd64" && archFlag !== "arm64")
    throw new CliError(`--arch: expected amd64 or arm64, got "${archFlag}"`, 2);

  const ctx = loadCtx(opts);
  const existing = ctx.config.nodes.find((x) => x.name === name);
  const sshSpec = (opts.ssh as string | undefined) || existing?.ssh;
  if (!sshSpec)
    throw new CliError(
      `--ssh <user@host[:port]|alias> is required (node "${name}" has no ssh in the config)`,
      2,
    );
  let target: ReturnType<typeof resolveTarget>;
  try {
    target = resolveTarget(sshSpec);
  } catch (e) {
    // A target that does not parse (or an ssh_config that does not) is bad input, not a failure.
    throw new CliError((e as Error).message.split("\n")[0] ?? "bad ssh target", 2);
  }
  const address = (opts.address as string | undefined) || existing?.address || `${target.host}:9444`;
  const listen = (opts.listen as string | undefined) || address;
  for (const [flag, v] of [
    ["--address", address],
    ["--listen", listen],
  ] as const) {
    try {
      parseHostPort(v);
    } catch (e) {
      throw new CliError(`${flag}: ${(e as Error).message}`, 2);
    }
  }

  const trustPath = ctx.config.tls?.ca_cert;
  if (!trustPath)
    throw new CliError(`no [tls] ca_cert in ${ctx.configPath}: it is needed to verify the new agent`, 2);
  const trustPem = readLocal(trustPath, "[tls] ca_cert");
  const signingCa = loadSigningCa(opts, trustPem, trustPath);
  const masterCert = opts.masterCert === true;
  if (masterCert && !signingCa)
    throw new CliError(
      "--master-cert needs --ca-cert and --ca-key (the fleet CA issues the master's certificate)",
      2,
    );

  const mode = opts.json === true ? "json" : process.stdout.isTTY ? "tty" : "plain";
  const rep = new Reporter(mode, STEP_NAMES.length + (masterCert ? 1 : 0));
  const { auth, token, mciasCaPem, saveToken } = await resolveAuth(ctx, rep);

  const s = await connectSsh({ target, acceptNewHostKey: opts.acceptNewHostKey === true });
  let failed: { step: string; err: unknown } | undefined;
  let agentVersion: string | undefined;
  let arch: Arch | undefined;
  try {
    for (const note of s.notes) rep.note(note);
    if (!(await s.isRoot())) {
      const r = await s.exec(["true"], { sudo: true, timeoutMs: 30_000 });
      if (r.code !== 0)
        throw new CliError(
          `${name}: ${target.user} is not root and cannot sudo without a password: ${r.stderr.trim().split("\n").pop()}`,
        );
    }
    const nodeArch = await detectArch(s, name);
    if (archFlag && archFlag !== nodeArch)
      throw new CliError(`${name}: --arch ${archFlag}, but the node is ${nodeArch}`, 2);
    arch = nodeArch;
    const bin = await agentBinaryFor(arch, opts.binary ? { binary: String(opts.binary) } : {});
    const binInfo = { path: bin.path, sha256: await sha256File(bin.path), size: statSync(bin.path).size };

    const n: NodeSetup = { s, name, uid, listen, address, progress: (t) => rep.progress(t) };
    // Refuse a wrong UID before anything on the node is touched.
    await checkUser(n);

    let changed = false;
    const run = async (step: string, fn: () => Promise<StepOutcome>) => {
      if (failed) return;
      rep.begin(step);
      try {
        const out = await fn();
        if (out.status === "done") changed = true;
        rep.end({ step, ...out });
      } catch (err) {
        failed = { step, err };
        rep.end({ step, status: "failed", detail: (err as Error).message.split("\n")[0]! });
      }
    };
    await run("user", () => stepUser(n));
    await run("subids", () => stepSubids(n));
    await run("packages", () => stepPackages(n));
    await run("linger", () => stepLinger(n));
    await run("dirs", () => stepDirs(n));
    await run("cert", () => stepCert(n, { trustPem, ...(signingCa ? { ca: signingCa } : {}) }));
    if (masterCert)
      await run("master-cert", () =>
        stepMasterCert(n, { trustPem, ...(signingCa ? { ca: signingCa } : {}) }),
      );
    await run("config", async () => {
      await saveToken();
      return stepConfig(n, renderAgentConfig({ name, listen, auth }), mciasCaPem);
    });
    await run("binary", () => stepBinary(n, binInfo));
    await run("service", () => stepService(n, agentUnit, changed));
    await run("verify", async () => {
      const out = await verifyAgent(n, { caPem: trustPem, token, version: bin.version, changed });
      agentVersion = /agent (\S+)/.exec(out.detail)?.[1];
      return out;
    });
    await run("cli-config", async () => {
      const want: CliNode = {
        name,
        address,
        addresses: existing?.addresses ?? [],
        ssh: sshSpec,
        arch: nodeArch,
      };
      if (
        existing &&
        existing.address === address &&
        existing.ssh === sshSpec &&
        existing.arch === nodeArch
      ) {
        return { status: "already done", detail: `${name} in ${ctx.configPath}` };
      }
      const what = existing
        ? `updated ${name}: ${[
            existing.address !== address ? `address ${existing.address} → ${address}` : "",
            existing.ssh !== sshSpec ? `ssh ${existing.ssh ?? "-"} → ${sshSpec}` : "",
            existing.arch !== nodeArch ? `arch ${existing.arch} → ${nodeArch}` : "",
          ]
            .filter(Boolean)
            .join(", ")}`
        : `added ${name} (${address}, ${nodeArch})`;
      ctx.config.nodes = existing
        ? ctx.config.nodes.map((x) => (x.name === name ? want : x))
        : [...ctx.config.nodes, want];
      writeCliConfig(ctx.configPath, ctx.config);
      return { status: "done", detail: what };
    });
  } finally {
    await s.close();
  }

  if (mode === "json") {
    printJson({
      node: name,
      address,
      listen,
      arch,
      agentVersion,
      ok: !failed,
      changed: rep.steps.some((x) => x.status === "done"),
      steps: rep.steps,
    });
  }
  if (failed) {
    const f = failed as { step: string; err: unknown };
    const err = f.err as Error;
    throw err instanceof CliError ? err : new CliError(`${name}: ${f.step}: ${err.message.split("\n")[0]}`);
  }
  if (mode !== "json") {
    const changedAny = rep.steps.some((x) => x.status === "done");
    process.stdout.write(
      changedAny ? `node ${name} provisioned (agent ${agentVersion})\n` : `node ${name}: nothing to change\n`,
    );
  }
  return 0;
}
