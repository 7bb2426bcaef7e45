// The steps of `mcp node provision` (one SSH session, root through sudo when the login user is
// not root) and the pure helpers they are built on (subordinate-id ranges, certificate SANs,
// agent config rendering and comparison). Every step first reads the node, changes only what
// differs, and says "done" (it changed something) or "already done" (nothing to change).
//
// Ownership and modes (reference: the svc Phase 1 work log — /srv/mcp owned by mcp:mcp, key file
// 0600 — and the packaging guide's "/srv/<service> owned by the mcp user"). The reference leaves
// directory modes open; these are this project's choice, the narrowest that work:
//   /srv                root:mcp  0775  the agent (user mcp) creates /srv/<service>/ itself
//   /srv/mcp            mcp:mcp   0750  the mcp user's home: registry, config, podman storage
//   /srv/mcp/certs      mcp:mcp   0700  cert.pem (full chain) 0644, key.pem 0600, both mcp:mcp
//   /srv/mcp/backups    mcp:mcp   0700  registry snapshots (hold service env values)
//   /srv/mcp/mcp-agent.toml  mcp:mcp 0600 (holds token hashes / MCIAS settings)
//   /srv/mcp/mcp-agent  mcp:mcp   0755 (written as the mcp user, like `mcp agent upgrade` does: mcp
//                       controls /srv/mcp in any case, and only units running as mcp execute it;
//                       a root:root one from deploy/install-debian.sh with the right hash is kept)
//   /etc/systemd/system/mcp-agent.service  root:root 0644
//
// Who writes where (issue 16). /srv/mcp and /srv/mcp-master belong to the mcp user, and /srv is
// group-writable by it (the agent creates /srv/<service>/), so a compromised mcp user controls every
// name below them, /srv/mcp itself included (it can rename it and plant a link). Root therefore
// never writes, chowns or chmods there by name:
//   - files below /srv/mcp and /srv/mcp-master are read and written as the mcp user (root drops to
//     it with setpriv first): a fresh temp name in the same directory (noclobber), then `mv -fT`,
//     which replaces a planted link and never follows it;
//   - directories are created and fixed by root only after walking to them one component at a
//     time from / with `cd -P`, each component checked (lstat) to be a real directory and the same
//     one the walk arrived in (device and inode); owner and mode are then set on "." — a link found
//     where a directory belongs is refused in one line, never "fixed" through.
// Root writes by name only in directories only root can write (/etc: subuid, subgid, the unit).
// The `mcp` user's UID is never changed: the reference incident (UID 995 → 850) lost every
// container of a node, because rootless podman's state is keyed by the UID.

import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { parse as parseToml } from "smol-toml";
import { hashToken } from "../../auth/local.ts";
import { isAnyAddr, parseHostPort } from "../../config/specs.ts";
import { tomlString } from "../../config/write.ts";
import { certInfo, issueCert, issueMasterClientCert, masterClientCertProblem } from "../../pki/ca.ts";
import type { SshSession } from "../../ssh/index.ts";
import { asAgentUser, CHECK_STAGE, FROM_UPLOAD } from "./node-user.ts";
import { CliError } from "./output.ts";

// ---------------------------------------------------------------------------------------------
// Pure helpers

export const SUBID_COUNT = 65536;
/** Debian's SUB_UID_MIN; ranges are handed out in steps of SUBID_COUNT from here. */
export const SUBID_MIN = 100000;
const SUBID_MAX = 2 ** 32;

export interface SubidRange {
  owner: string;
  start: number;
  count: number;
}

/** `/etc/subuid` / `/etc/subgid` lines `owner:start:count`; comments and junk are skipped. */
export function parseSubidFile(text: string): SubidRange[] {
  const out: SubidRange[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([^:]+):(\d+):(\d+)$/.exec(line);
    if (m) out.push({ owner: m[1]!, start: Number(m[2]), count: Number(m[3]) });
  }
  return out;
}

/** The range of a user (by name or numeric UID), if the file has one. */
export function findSubid(ranges: SubidRange[], user: string, uid: number): SubidRange | undefined {
  return ranges.find((r) => r.owner === user || r.owner === String(uid));
}

/**
 * The lowest start >= min, on the min + k*count grid useradd itself uses, whose range
 * [start, start+count) overlaps none of `taken`. One pass over the ranges sorted by start is
 * enough: the candidate only grows, and once past a range it never overlaps it again.
 */
export function pickSubidStart(taken: SubidRange[], count = SUBID_COUNT, min = SUBID_MIN): number {
  let cand = min;
  for (const r of [...taken].sort((a, b) => a.start - b.start)) {
    if (r.start < cand + count && cand < r.start + r.count) {
      const end = r.start + r.count;
      cand = min + Math.ceil((end - min) / count) * count;
    }
  }
  if (cand + count > SUBID_MAX) throw new CliError("no free subordinate id range below 2^32 on the node");
  return cand;
}

/** The file with `user:start:count` appended (a missing final newline is added first). */
export function appendSubid(text: string, user: string, start: number, count = SUBID_COUNT): string {
  const base = text === "" || text.endsWith("\n") ? text : `${text}\n`;
  return `${base}${user}:${start}:${count}\n`;
}

export interface CertNames {
  dnsNames: string[];
  ipAddresses: string[];
}

/**
 * SANs of a node's agent cert: the host the CLI and master dial (--address), the host the agent
 * binds (--listen) unless it is a wildcard, the node name, and localhost/127.0.0.1 for on-node
 * tools. Deduplicated, in that order.
 */
export function certNames(opts: { name: string; address: string; listen: string }): CertNames {
  const dns: string[] = [];
  const ips: string[] = [];
  const add = (h: string) => {
    if (isAnyAddr(h)) return;
    const list = isIP(h) !== 0 ? ips : dns;
    if (!list.includes(h)) list.push(h);
  };
  add(parseHostPort(opts.address).host);
  add(parseHostPort(opts.listen).host);
  add(opts.name);
  add("localhost");
  add("127.0.0.1");
  return { dnsNames: dns, ipAddresses: ips };
}

function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

/**
 * Whether the first certificate of `chainPem` chains to one of the certificates in `trustPem`,
 * through the intermediates that follow it in the chain (at most 5 hops).
 */
export function chainsTo(chainPem: string, trustPem: string): boolean {
  const parse = (p: string) => {
    try {
      return new X509Certificate(p);
    } catch {
      return undefined;
    }
  };
  const chain = pemBlocks(chainPem)
    .map(parse)
    .filter((c) => c !== undefined);
  const trust = pemBlocks(trustPem)
    .map(parse)
    .filter((c) => c !== undefined);
  let cur = chain[0];
  for (let hop = 0; cur && hop < 5; hop++) {
    const c: X509Certificate = cur;
    if (trust.some((t) => t.raw.equals(c.raw) || (t.subject === c.issuer && c.verify(t.publicKey))))
      return true;
    cur = chain.find((n) => n !== c && n.subject === c.issuer && c.verify(n.publicKey));
  }
  return false;
}

/** Why an existing agent cert cannot be kept, or undefined when it is fine. */
export function certProblem(opts: {
  certPem: string | undefined;
  keyPem: string | undefined;
  trustPem: string;
  names: CertNames;
  now?: number;
  minDays?: number;
}): string | undefined {
  if (!opts.certPem) return "no certificate";
  if (!opts.keyPem) return "no private key";
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(opts.certPem);
  } catch {
    return "certificate unreadable";
  }
  try {
    if (!leaf.checkPrivateKey(createPrivateKey(opts.keyPem))) return "key.pem does not match cert.pem";
  } catch {
    return "private key unreadable";
  }
  const info = certInfo(opts.certPem);
  const left = (info.notAfter.getTime() - (opts.now ?? Date.now())) / 86_400_000;
  if (left <= (opts.minDays ?? 30)) return left <= 0 ? "expired" : `expires in ${Math.floor(left)} days`;
  const missing = [
    ...opts.names.dnsNames.filter((d) => !info.dnsNames.some((x) => x.toLowerCase() === d.toLowerCase())),
    ...opts.names.ipAddresses.filter((ip) => !info.ipAddresses.includes(ip)),
  ];
  if (missing.length > 0) return `SANs do not cover ${missing.join(", ")}`;
  if (!chainsTo(opts.certPem, opts.trustPem)) return "not issued by the CA in the CLI's [tls] ca_cert";
  return undefined;
}

export type AgentAuth =
  | { kind: "local"; token: string }
  | { kind: "mcias"; serverUrl: string; caCert: string; serviceName: string; insecureHttp?: boolean };

export interface AgentConfigInput {
  name: string;
  listen: string;
  auth: AgentAuth;
}

export const MCP_HOME = "/srv/mcp";
export const AGENT_CONFIG_PATH = `${MCP_HOME}/mcp-agent.toml`;
export const AGENT_BINARY_PATH = `${MCP_HOME}/mcp-agent`;
export const CERT_PATH = `${MCP_HOME}/certs/cert.pem`;
export const KEY_PATH = `${MCP_HOME}/certs/key.pem`;
export const MCIAS_CA_PATH = `${MCP_HOME}/certs/mcias-ca.pem`;
export const UNIT_PATH = "/etc/systemd/system/mcp-agent.service";

/** The agent config provision writes (SPEC §3.3 keys; everything else keeps its default). */
export function renderAgentConfig(c: AgentConfigInput): string {
  const anyAddr = isAnyAddr(parseHostPort(c.listen).host);
  const auth =
    c.auth.kind === "local"
      ? `[auth]
mode = "local"

[[auth.tokens]]
name = "admin"
role = "admin"
account_type = "human"
sha256 = ${tomlString(hashToken(c.auth.token))}
`
      : `[auth]
mode = "mcias"

[mcias]
server_url = ${tomlString(c.auth.serverUrl)}
ca_cert = ${tomlString(c.auth.caCert)}
service_name = ${tomlString(c.auth.serviceName)}
${c.auth.insecureHttp ? "insecure_http = true\n" : ""}`;
  return `# MCP agent on ${c.name} (written by mcp node provision, which rewrites it when its settings change).
[server]
grpc_addr = ${tomlString(c.listen)}
tls_cert = ${tomlString(CERT_PATH)}
tls_key = ${tomlString(KEY_PATH)}
${anyAddr ? "allow_any_addr = true\n" : ""}
[database]
path = "${MCP_HOME}/mcp.db"

${auth}
[agent]
node_name = ${tomlString(c.name)}
container_runtime = "podman"
srv_root = "/srv"

[log]
level = "info"
`;
}

function flatten(v: unknown, prefix: string, out: Map<string, string>): void {
  if (v !== null && typeof v === "object" && !(v instanceof Date)) {
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      flatten(x, prefix === "" ? k : `${prefix}.${k}`, out);
    }
  } else {
    out.set(prefix, JSON.stringify(v));
  }
}

export interface ConfigComparison {
  /** Every key provision sets has its value in the existing file (extra keys are fine). */
  covered: boolean;
  /** Keys provision sets whose value differs or is missing. */
  changed: string[];
  /** Keys of the existing file provision does not write (lost on a rewrite). */
  extra: string[];
}

/**
 * Compares an existing agent config with the generated one key by key, so an operator's own
 * additions ([mcproxy], extra tokens) do not make every re-run rewrite the file.
 */
export function compareAgentConfig(existing: string | undefined, generated: string): ConfigComparison {
  const want = new Map<string, string>();
  flatten(parseToml(generated), "", want);
  if (existing === undefined) return { covered: false, changed: ["(no file)"], extra: [] };
  const have = new Map<string, string>();
  try {
    flatten(parseToml(existing), "", have);
  } catch {
    return { covered: false, changed: ["(unparseable TOML)"], extra: [] };
  }
  const changed = [...want].filter(([k, v]) => have.get(k) !== v).map(([k]) => k);
  const extra = [...have.keys()].filter((k) => !want.has(k));
  return { covered: changed.length === 0, changed, extra };
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
}

export function parsePasswdLine(line: string): PasswdEntry | undefined {
  const f = line.trim().split(":");
  if (f.length < 7 || !/^\d+$/.test(f[2]!) || !/^\d+$/.test(f[3]!)) return undefined;
  return { name: f[0]!, uid: Number(f[2]), gid: Number(f[3]), home: f[5]!, shell: f[6]! };
}

export function parseGroupLine(line: string): { name: string; gid: number } | undefined {
  const f = line.trim().split(":");
  if (f.length < 3 || !/^\d+$/.test(f[2]!)) return undefined;
  return { name: f[0]!, gid: Number(f[2]) };
}

// ---------------------------------------------------------------------------------------------
// Steps over SSH

export type StepStatus = "done" | "already done" | "failed";

export interface StepOutcome {
  status: Exclude<StepStatus, "failed">;
  detail: string;
}

export interface NodeSetup {
  s: SshSession;
  name: string;
  uid: number;
  listen: string;
  address: string;
  /** Called with short progress text ("uploading 45%") while a step runs. */
  progress(text: string): void;
}

const USER = "mcp";
const APT_TIMEOUT_MS = 15 * 60_000;
export const PACKAGES = ["podman", "runc", "uidmap", "slirp4netns", "zstd", "gzip", "qemu-system-x86"];
/** Installed without their Recommends (qemu-system-x86's pull in a GUI stack a node never uses). */
const NO_RECOMMENDS = new Set(["qemu-system-x86"]);
/** The group that may open /dev/kvm; QEMU for unikernel components runs as mcp (issue 17). */
const KVM_GROUP = "kvm";

/** Runs argv as root; a non-zero exit is a CliError carrying the command's last stderr line. */
async function root(n: NodeSetup, argv: string[], timeoutMs = 60_000): Promise<string> {
  const r = await n.s.exec(argv, { sudo: true, timeoutMs });
  if (r.code !== 0) {
    const detail = r.stderr.trim().split("\n").pop() || r.stdout.trim().split("\n").pop() || "";
    throw new CliError(
      `${n.name}: ${argv.join(" ").slice(0, 80)} exited with ${r.code}${detail ? `: ${detail}` : ""}`,
    );
  }
  return r.stdout;
}

/** A root-readable file's content, or undefined when it does not exist. */
export async function readRemote(n: NodeSetup, path: string): Promise<string | undefined> {
  const r = await n.s.exec(["sh", "-c", 'if [ -e "$1" ]; then cat -- "$1"; else exit 3; fi', "sh", path], {
    sudo: true,
    timeoutMs: 30_000,
  });
  if (r.code === 3) return undefined;
  if (r.code !== 0)
    throw new CliError(`${n.name}: cannot read ${path}: ${r.stderr.trim().split("\n").pop()}`);
  return r.stdout;
}

/** `uid gid mode(octal)` of a path, or undefined when it does not exist. */
async function statRemote(
  n: NodeSetup,
  path: string,
): Promise<{ uid: number; gid: number; mode: number } | undefined> {
  const r = await n.s.exec(["stat", "-c", "%u %g %a", "--", path], { sudo: true, timeoutMs: 30_000 });
  if (r.code !== 0) return undefined;
  const [u, g, m] = r.stdout.trim().split(" ");
  return { uid: Number(u), gid: Number(g), mode: Number.parseInt(m ?? "", 8) };
}

/**
 * Makes a small file exactly `content` with mode and owner (numeric uid:gid); returns what it
 * changed ("" when nothing). Content goes through an atomic uploadAsRoot.
 */
export async function ensureFile(
  n: NodeSetup,
  path: string,
  content: string,
  mode: number,
  owner: { uid: number; gid: number },
): Promise<string> {
  const have = await readRemote(n, path);
  if (have !== content) {
    await n.s.uploadAsRoot(new TextEncoder().encode(content), path, {
      mode,
      owner: `${owner.uid}:${owner.gid}`,
    });
    return have === undefined ? "written" : "rewritten";
  }
  const st = await statRemote(n, path);
  const fixes: string[] = [];
  if (st && (st.uid !== owner.uid || st.gid !== owner.gid)) {
    await root(n, ["chown", `${owner.uid}:${owner.gid}`, "--", path]);
    fixes.push("owner fixed");
  }
  if (st && st.mode !== mode) {
    await root(n, ["chmod", mode.toString(8), "--", path]);
    fixes.push("mode fixed");
  }
  return fixes.join(", ");
}

async function getent(n: NodeSetup, db: "passwd" | "group", key: string): Promise<string | undefined> {
  const r = await n.s.exec(["getent", db, key], { timeoutMs: 30_000 });
  if (r.code === 2) return undefined; // key not found
  if (r.code !== 0) throw new CliError(`${n.name}: getent ${db} ${key} exited with ${r.code}`);
  return r.stdout.trim().split("\n")[0];
}

/** Read-only: the existing mcp user must have the pinned UID (never changed; see module comment). */
export async function checkUser(n: NodeSetup): Promise<PasswdEntry | undefined> {
  const line = await getent(n, "passwd", USER);
  const existing = line ? parsePasswdLine(line) : undefined;
  if (existing && existing.uid !== n.uid) {
    throw new CliError(
      `${n.name}: user mcp already exists with UID ${existing.uid}, not ${n.uid}; provision never changes a UID ` +
        `(rootless podman's containers and storage are tied to it) — re-run with --uid ${existing.uid} to keep it`,
    );
  }
  if (!existing) {
    const byUid = await getent(n, "passwd", String(n.uid));
    if (byUid) {
      throw new CliError(
        `${n.name}: UID ${n.uid} belongs to user ${byUid.split(":")[0]}; pick a free one with --uid`,
      );
    }
    const group = await getent(n, "group", USER);
    const g = group ? parseGroupLine(group) : undefined;
    if (g && g.gid !== n.uid) {
      throw new CliError(
        `${n.name}: group mcp already exists with GID ${g.gid}, not ${n.uid}; pass --uid ${g.gid} or fix it`,
      );
    }
    if (!g) {
      const byGid = await getent(n, "group", String(n.uid));
      if (byGid)
        throw new CliError(
          `${n.name}: GID ${n.uid} belongs to group ${byGid.split(":")[0]}; pick a free one with --uid`,
        );
    }
  }
  return existing;
}

/** Creates the kvm group when the node has none (udev makes it on most Debian hosts). */
async function ensureKvmGroup(n: NodeSetup): Promise<void> {
  if (!(await getent(n, "group", KVM_GROUP))) await root(n, ["groupadd", "--system", KVM_GROUP]);
}

export async function stepUser(n: NodeSetup): Promise<StepOutcome> {
  const existing = await checkUser(n);
  if (existing) {
    const kvm = await getent(n, "group", KVM_GROUP);
    const members = kvm ? (kvm.split(":")[3] ?? "").split(",") : [];
    if (!members.includes(USER)) {
      await ensureKvmGroup(n);
      await root(n, ["usermod", "--append", "--groups", KVM_GROUP, USER]);
      return { status: "done", detail: `mcp uid ${existing.uid} added to group ${KVM_GROUP}` };
    }
    const notes: string[] = [];
    if (existing.home !== MCP_HOME) notes.push(`home ${existing.home}, not ${MCP_HOME}`);
    if (existing.gid !== n.uid) notes.push(`primary GID ${existing.gid}`);
    return {
      status: "already done",
      detail: `mcp uid ${existing.uid}${notes.length ? ` (left as is: ${notes.join("; ")})` : ""}`,
    };
  }
  if (!(await getent(n, "group", USER)))
    await root(n, ["groupadd", "--system", "--gid", String(n.uid), USER]);
  await ensureKvmGroup(n);
  await root(n, [
    "useradd",
    "--system",
    "--uid",
    String(n.uid),
    "--gid",
    String(n.uid),
    "--groups",
    KVM_GROUP,
    "--home-dir",
    MCP_HOME,
    "--no-create-home",
    "--shell",
    "/usr/sbin/nologin",
    "--comment",
    "MCP agent",
    USER,
  ]);
  return {
    status: "done",
    detail: `created mcp (uid ${n.uid}, gid ${n.uid}, group ${KVM_GROUP}, home ${MCP_HOME}, nologin)`,
  };
}

export async function stepSubids(n: NodeSetup): Promise<StepOutcome> {
  const files = ["/etc/subuid", "/etc/subgid"] as const;
  const texts = await Promise.all(files.map(async (f) => (await readRemote(n, f)) ?? ""));
  const ranges = texts.map(parseSubidFile);
  const have = ranges.map((r) => findSubid(r, USER, n.uid));
  if (have[0] && have[1]) {
    return { status: "already done", detail: `mcp:${have[0].start}:${have[0].count} in both files` };
  }
  // One start free in both files, so uid and gid maps line up.
  const start = pickSubidStart([...ranges[0]!, ...ranges[1]!]);
  const wrote: string[] = [];
  for (let i = 0; i < files.length; i++) {
    if (have[i]) continue;
    await n.s.uploadAsRoot(new TextEncoder().encode(appendSubid(texts[i]!, USER, start)), files[i]!, {
      mode: 0o644,
      owner: "0:0",
    });
    wrote.push(files[i]!);
  }
  return { status: "done", detail: `mcp:${start}:${SUBID_COUNT} added to ${wrote.join(" and ")}` };
}

export async function stepPackages(n: NodeSetup): Promise<StepOutcome> {
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax.
  const r = await n.s.exec(["dpkg-query", "-W", "-f", "${Package} ${db:Status-Status}\\n", ...PACKAGES], {
    timeoutMs: 30_000,
  });
  const installed = new Set(
    r.stdout
      .split("\n")
      .map((l) => l.trim().split(" "))
      .filter(([, st]) => st === "installed")
      .map(([p]) => p!),
  );
  const missing = PACKAGES.filter((p) => !installed.has(p));
  if (missing.length === 0) return { status: "already done", detail: PACKAGES.join(" ") };
  const env = ["env", "DEBIAN_FRONTEND=noninteractive"];
  n.progress("apt-get update");
  await root(n, [...env, "apt-get", "update", "-q"], APT_TIMEOUT_MS);
  const plain = missing.filter((p) => !NO_RECOMMENDS.has(p));
  const lean = missing.filter((p) => NO_RECOMMENDS.has(p));
  if (plain.length > 0) {
    n.progress(`apt-get install ${plain.join(" ")}`);
    await root(n, [...env, "apt-get", "install", "-y", "-q", ...plain], APT_TIMEOUT_MS);
  }
  if (lean.length > 0) {
    n.progress(`apt-get install --no-install-recommends ${lean.join(" ")}`);
    await root(
      n,
      [...env, "apt-get", "install", "-y", "-q", "--no-install-recommends", ...lean],
      APT_TIMEOUT_MS,
    );
  }
  return { status: "done", detail: `installed ${missing.join(" ")}` };
}

export async function stepLinger(n: NodeSetup): Promise<StepOutcome> {
  const r = await n.s.exec(["test", "-e", `/var/lib/systemd/linger/${USER}`], { timeoutMs: 30_000 });
  if (r.code === 0)
    return { status: "already done", detail: "mcp lingers (user session kept for rootless podman)" };
  await root(n, ["loginctl", "enable-linger", USER]);
  return { status: "done", detail: "loginctl enable-linger mcp" };
}

// ---- node-side scripts: fixed sh programs, every variable part a positional argument ----------

/**
 * As root, for each (path uid gid mode) in "$@": walks from / to the path one component at a time
 * (`cd -P`, each component lstat'ed as a real directory and checked to be the directory the walk
 * arrived in, by device and inode), creates the last component when missing, and sets owner and
 * mode on "." (never a link). Prints `fixed <path>` for each one changed; a link or non-directory on
 * the way is refused with one line on stderr (exit 4) before anything is changed at that path.
 */
const ENSURE_DIRS =
  "set -eu; " +
  'refuse() { echo "$1; provision changes nothing through it (move it away and re-run)" >&2; exit 4; }; ' +
  'while [ "$#" -ge 4 ]; do p=$1; uid=$2; gid=$3; mode=$4; shift 4; ' +
  "cd -P /; cur=; ifs=$IFS; IFS=/; set -f; " +
  'for c in $p; do IFS=$ifs; [ -n "$c" ] || continue; ' +
  'if [ "$cur/$c" = "$p" ] && [ ! -e "$c" ] && [ ! -L "$c" ]; then mkdir -m 700 -- "$c"; fi; ' +
  'kind=$(stat -c %F -- "$c") || refuse "$cur/$c does not exist"; ' +
  'id=$(stat -c %d:%i -- "$c") || refuse "$cur/$c does not exist"; ' +
  'case $kind in directory) ;; "symbolic link") refuse "$cur/$c is a symbolic link, not a directory" ;; ' +
  '*) refuse "$cur/$c is a $kind, not a directory" ;; esac; ' +
  'cd -P -- "$c"; cur=$cur/$c; ' +
  '[ "$(stat -c %d:%i .)" = "$id" ] || refuse "$cur was replaced while provision walked to it"; ' +
  "done; IFS=$ifs; set +f; " +
  '[ "$cur" = "$p" ] || refuse "$p is not a plain absolute path"; ' +
  '[ "$(stat -c "%u %g %a" .)" = "$uid $gid $mode" ] && continue; ' +
  'chown -h -- "$uid:$gid" .; chmod -- "$mode" .; echo "fixed $p"; done';

/**
 * As the agent's user: prints "<uid> <gid> <mode>" and a newline, then the file's content. Exit 3
 * when nothing is there; exit 4 (what it is on stderr) for a link or anything but a regular file.
 */
const READ_AGENT_FILE =
  'p=$1; if [ -L "$p" ]; then echo "a symbolic link" >&2; exit 4; fi; ' +
  '[ -e "$p" ] || exit 3; ' +
  '[ -f "$p" ] || { echo "not a regular file" >&2; exit 4; }; ' +
  'stat -c "%u %g %a" -- "$p" && exec cat -- "$p"';

/**
 * As the agent's user: writes stdin to $3, a fresh name beside $1 (noclobber: an existing name, a
 * planted link included, is refused), sets mode $2 and renames it over $1 (`mv -T` replaces a link
 * or file at $1, never follows it). The temp file is removed on failure.
 */
const WRITE_AGENT_FILE =
  "set -eu; p=$1; mode=$2; tmp=$3; " +
  'trap \'rc=$?; [ "$rc" -eq 0 ] || rm -f -- "$tmp"\' EXIT; ' +
  'umask 077; set -C; cat > "$tmp"; chmod -- "$mode" "$tmp"; mv -fT -- "$tmp" "$p"';

/** Runs a node-side program; a non-zero exit is a CliError with its last stderr line. */
async function script(
  n: NodeSetup,
  argv: string[],
  opts: { sudo?: boolean; input?: string; timeoutMs?: number } = {},
): Promise<string> {
  const r = await n.s.exec(argv, {
    sudo: opts.sudo ?? true,
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(opts.input !== undefined ? { input: opts.input } : {}),
  });
  if (r.code !== 0) {
    const detail = r.stderr.trim().split("\n").pop() || `exited with ${r.code}`;
    throw new CliError(`${n.name}: ${detail}`);
  }
  return r.stdout;
}

function tempName(path: string): string {
  const slash = path.lastIndexOf("/");
  return `${path.slice(0, slash)}/.${path.slice(slash + 1)}.upload-${randomBytes(6).toString("hex")}`;
}

export type AgentFile =
  | { kind: "missing" }
  | { kind: "other"; what: string }
  | { kind: "file"; content: string; uid: number; gid: number; mode: number };

/** A file below /srv/mcp or /srv/mcp-master as the agent's user sees it (never through a link). */
export async function readAgentFile(n: NodeSetup, path: string): Promise<AgentFile> {
  const r = await n.s.exec([...asAgentUser(n.uid), "sh", "-c", READ_AGENT_FILE, "sh", path], {
    sudo: true,
    timeoutMs: 30_000,
  });
  if (r.code === 3) return { kind: "missing" };
  if (r.code !== 0) {
    const what = r.stderr.trim().split("\n").pop() || `unreadable (exit ${r.code})`;
    return { kind: "other", what: what.replace(/^(cat|stat): /, "") };
  }
  const nl = r.stdout.indexOf("\n");
  const [u, g, m] = r.stdout.slice(0, nl).split(" ");
  return {
    kind: "file",
    content: r.stdout.slice(nl + 1),
    uid: Number(u),
    gid: Number(g),
    mode: Number.parseInt(m ?? "", 8),
  };
}

/** Replaces a file below /srv/mcp or /srv/mcp-master as the agent's user (temp name, then rename). */
export async function writeAgentFile(
  n: NodeSetup,
  path: string,
  content: string,
  mode: number,
): Promise<void> {
  await script(
    n,
    [...asAgentUser(n.uid), "sh", "-c", WRITE_AGENT_FILE, "sh", path, mode.toString(8), tempName(path)],
    {
      input: content,
    },
  );
}

/**
 * ensureFile for a file the agent's user owns, below a directory it controls: everything happens
 * as that user. A link or non-file at the path is replaced (the link itself, not its target); a
 * wrong owner is fixed by rewriting the file as the agent's user.
 */
export async function ensureAgentFile(
  n: NodeSetup,
  path: string,
  content: string,
  mode: number,
): Promise<string> {
  const have = await readAgentFile(n, path);
  if (have.kind !== "file" || have.content !== content) {
    await writeAgentFile(n, path, content, mode);
    return have.kind === "missing"
      ? "written"
      : have.kind === "other"
        ? `rewritten (was ${have.what})`
        : "rewritten";
  }
  const fixes: string[] = [];
  if (have.uid !== n.uid || have.gid !== n.uid) fixes.push("owner fixed");
  if (have.mode !== mode) fixes.push("mode fixed");
  if (fixes.length > 0) await writeAgentFile(n, path, content, mode);
  return fixes.join(", ");
}

/** Creates or fixes each directory's owner and mode (ENSURE_DIRS); returns what it changed ("<path> <mode>"). */
async function ensureDirs(
  n: NodeSetup,
  want: { path: string; uid: number; gid: number; mode: number }[],
): Promise<string[]> {
  const out = await script(n, [
    "sh",
    "-c",
    ENSURE_DIRS,
    "sh",
    ...want.flatMap((d) => [d.path, String(d.uid), String(d.gid), d.mode.toString(8)]),
  ]);
  const fixed = new Set(
    out
      .split("\n")
      .filter((l) => l.startsWith("fixed "))
      .map((l) => l.slice(6)),
  );
  return want.filter((d) => fixed.has(d.path)).map((d) => `${d.path} ${d.mode.toString(8)}`);
}

export async function stepDirs(n: NodeSetup): Promise<StepOutcome> {
  const want = [
    { path: "/srv", uid: 0, gid: n.uid, mode: 0o775 },
    { path: MCP_HOME, uid: n.uid, gid: n.uid, mode: 0o750 },
    { path: `${MCP_HOME}/certs`, uid: n.uid, gid: n.uid, mode: 0o700 },
    { path: `${MCP_HOME}/backups`, uid: n.uid, gid: n.uid, mode: 0o700 },
  ];
  const fixed = await ensureDirs(n, want);
  const summary = "/srv root:mcp 775, /srv/mcp mcp:mcp 750, certs and backups 700";
  return fixed.length === 0
    ? { status: "already done", detail: summary }
    : { status: "done", detail: `set ${fixed.join(", ")}` };
}

export interface CertInput {
  trustPem: string;
  ca?: { certPem: string; keyPem: string };
}

export async function stepCert(n: NodeSetup, c: CertInput): Promise<StepOutcome> {
  const names = certNames({ name: n.name, address: n.address, listen: n.listen });
  const [certPem, keyPem] = (
    await Promise.all([readAgentFile(n, CERT_PATH), readAgentFile(n, KEY_PATH)])
  ).map((f) => (f.kind === "file" ? f.content : undefined));
  const problem = certProblem({ certPem, keyPem, trustPem: c.trustPem, names });
  if (!problem) {
    const fixes = [
      await ensureAgentFile(n, KEY_PATH, keyPem!, 0o600),
      await ensureAgentFile(n, CERT_PATH, certPem!, 0o644),
    ]
      .filter(Boolean)
      .join(", ");
    const until = certInfo(certPem!).notAfter.toISOString().slice(0, 10);
    const detail = `kept: valid until ${until}, issued by the CLI's CA, SANs ${[...names.dnsNames, ...names.ipAddresses].join(", ")}`;
    return fixes ? { status: "done", detail: `${detail} (${fixes})` } : { status: "already done", detail };
  }
  if (!c.ca) {
    throw new CliError(
      `${n.name}: the node's agent certificate cannot be used (${problem}); pass --ca-cert and --ca-key to issue one`,
      2,
    );
  }
  const leaf = await issueCert({
    caCertPem: c.ca.certPem,
    caKeyPem: c.ca.keyPem,
    commonName: `mcp-agent-${n.name}`.slice(0, 64),
    dnsNames: names.dnsNames,
    ipAddresses: names.ipAddresses,
    days: 365,
    serverAuth: true,
  });
  // Key first: a cert without its key is useless, a key without its cert is harmless.
  await writeAgentFile(n, KEY_PATH, leaf.keyPem, 0o600);
  await writeAgentFile(n, CERT_PATH, leaf.chainPem, 0o644);
  return {
    status: "done",
    detail: `issued (${problem === "no certificate" ? "none on the node" : `replaced: ${problem}`}), valid until ${leaf.notAfter.toISOString().slice(0, 10)}, SANs ${[...names.dnsNames, ...names.ipAddresses].join(", ")}`,
  };
}

export const MASTER_HOME = "/srv/mcp-master";
export const MASTER_CLIENT_CERT_PATH = `${MASTER_HOME}/certs/client.pem`;
export const MASTER_CLIENT_KEY_PATH = `${MASTER_HOME}/certs/client.key`;

/**
 * `--master-cert`: the master's client certificate on the node that runs the master (SPEC §5.2:
 * CN mcp-master, clientAuth, issued by the fleet CA), at the paths the example master config
 * names. A valid one (the CLI's CA, more than 30 days left, key matching) is kept.
 */
export async function stepMasterCert(n: NodeSetup, c: CertInput): Promise<StepOutcome> {
  const fixed = await ensureDirs(n, [
    { path: MASTER_HOME, uid: n.uid, gid: n.uid, mode: 0o750 },
    { path: `${MASTER_HOME}/certs`, uid: n.uid, gid: n.uid, mode: 0o700 },
  ]);
  const [certPem, keyPem] = (
    await Promise.all([readAgentFile(n, MASTER_CLIENT_CERT_PATH), readAgentFile(n, MASTER_CLIENT_KEY_PATH)])
  ).map((f) => (f.kind === "file" ? f.content : undefined));
  let problem: string | null = certPem && keyPem ? null : "none on the node";
  if (certPem && keyPem) {
    try {
      problem = masterClientCertProblem({ certPem, keyPem }, c.trustPem, Date.now() + 30 * 86_400_000);
    } catch (err) {
      problem = (err as Error).message.split("\n")[0] ?? "unreadable";
    }
  }
  if (!problem && fixed.length === 0)
    return {
      status: "already done",
      detail: `${MASTER_CLIENT_CERT_PATH} kept (CN mcp-master, the CLI's CA)`,
    };
  if (!problem) return { status: "done", detail: `kept the certificate; set ${fixed.join(", ")}` };
  if (!c.ca) throw new CliError(`${n.name}: --master-cert needs --ca-cert and --ca-key to issue it`, 2);
  const leaf = await issueMasterClientCert(c.ca, 365);
  // Key first: a cert without its key is useless, a key without its cert is harmless.
  await writeAgentFile(n, MASTER_CLIENT_KEY_PATH, leaf.keyPem, 0o600);
  await writeAgentFile(n, MASTER_CLIENT_CERT_PATH, leaf.certPem, 0o644);
  return {
    status: "done",
    detail: `issued ${MASTER_CLIENT_CERT_PATH} (${problem === "none on the node" ? "none on the node" : `replaced: ${problem}`}), valid until ${leaf.notAfter.toISOString().slice(0, 10)}`,
  };
}

export async function stepConfig(
  n: NodeSetup,
  generated: string,
  mciasCaPem: string | undefined,
): Promise<StepOutcome> {
  const notes: string[] = [];
  if (mciasCaPem !== undefined) {
    const r = await ensureAgentFile(n, MCIAS_CA_PATH, mciasCaPem, 0o644);
    if (r) notes.push(`${MCIAS_CA_PATH} ${r}`);
  }
  const file = await readAgentFile(n, AGENT_CONFIG_PATH);
  const existing = file.kind === "file" ? file.content : undefined;
  const cmp = compareAgentConfig(existing, generated);
  if (cmp.covered) {
    const fix = await ensureAgentFile(n, AGENT_CONFIG_PATH, existing!, 0o600);
    if (fix) notes.push(fix);
    return notes.length === 0
      ? { status: "already done", detail: `${AGENT_CONFIG_PATH} matches` }
      : { status: "done", detail: notes.join("; ") };
  }
  await writeAgentFile(n, AGENT_CONFIG_PATH, generated, 0o600);
  if (file.kind === "missing") notes.push(`${AGENT_CONFIG_PATH} written`);
  else if (file.kind === "other") notes.push(`${AGENT_CONFIG_PATH} rewritten (was ${file.what})`);
  else {
    notes.push(`${AGENT_CONFIG_PATH} rewritten: changed ${cmp.changed.join(", ")}`);
    if (cmp.extra.length > 0) notes.push(`dropped ${cmp.extra.join(", ")}`);
  }
  return { status: "done", detail: notes.join("; ") };
}

/**
 * As the agent's user: "<sha256> <uid> <mode>" of the binary, "none" when there is none, "other"
 * for a link or anything but a regular file.
 */
const BINARY_STATE =
  'p=$1; if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then echo other; exit 0; fi; ' +
  '[ -e "$p" ] || { echo none; exit 0; }; ' +
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
  's=$(sha256sum < "$p"); echo "${s%% *} $(stat -c "%u %a" -- "$p")"';

async function binaryState(n: NodeSetup): Promise<{ sha256: string; uid: number; mode: number } | string> {
  const out = (
    await script(n, [...asAgentUser(n.uid), "sh", "-c", BINARY_STATE, "sh", AGENT_BINARY_PATH], {
      timeoutMs: 120_000,
    })
  ).trim();
  const [sha, u, m] = out.split(" ");
  if (u === undefined || m === undefined) return out;
  return { sha256: sha!, uid: Number(u), mode: Number.parseInt(m, 8) };
}

export async function stepBinary(
  n: NodeSetup,
  bin: { path: string; sha256: string; size: number },
): Promise<StepOutcome> {
  const have = await binaryState(n);
  if (typeof have !== "string" && have.sha256 === bin.sha256) {
    // A root-owned binary with the right hash (deploy/install-debian.sh) is kept as it is.
    if (have.mode === 0o755)
      return { status: "already done", detail: `sha256 ${bin.sha256.slice(0, 12)}… matches` };
    if (have.uid === n.uid) {
      await script(n, [...asAgentUser(n.uid), "chmod", "755", "--", AGENT_BINARY_PATH]);
      return { status: "done", detail: "mode set to 755" };
    }
  }
  // The upload goes to the login user's home (never into /srv/mcp, which the agent's user
  // controls); root opens it there and hands it, as stdin, to the agent's user, who installs it.
  const home = (await script(n, ["pwd"], { sudo: false, timeoutMs: 30_000 })).trim();
  await script(n, ["sh", "-c", CHECK_STAGE, "sh", home], { sudo: false, timeoutMs: 30_000 });
  const upload = `${home}/.mcp-agent.upload-${randomBytes(6).toString("hex")}`;
  let lastPct = -1;
  try {
    await n.s.upload(bin.path, upload, {
      mode: 0o600,
      onProgress: (sent, total) => {
        const pct = total === 0 ? 100 : Math.floor((sent / total) * 100);
        if (pct !== lastPct) {
          lastPct = pct;
          n.progress(`uploading ${pct}% of ${(total / 1048576).toFixed(0)} MiB`);
        }
      },
    });
    await script(
      n,
      [
        "sh",
        "-c",
        FROM_UPLOAD,
        "sh",
        upload,
        ...asAgentUser(n.uid),
        "sh",
        "-c",
        WRITE_AGENT_FILE,
        "sh",
        AGENT_BINARY_PATH,
        "755",
        tempName(AGENT_BINARY_PATH),
      ],
      { timeoutMs: 180_000 },
    );
  } finally {
    await n.s.unlink(upload).catch(() => {});
  }
  const check = await binaryState(n);
  if (typeof check === "string" || check.sha256 !== bin.sha256) {
    throw new CliError(
      `${n.name}: ${AGENT_BINARY_PATH} does not have the SHA-256 of ${bin.path} after the upload (did the local file change meanwhile?)`,
    );
  }
  const before =
    have === "none"
      ? "none before"
      : typeof have === "string"
        ? `replaced ${have === "other" ? "a link or non-file" : "it"}`
        : have.sha256 === bin.sha256
          ? "replaced a root-owned copy with another mode"
          : "replaced a different binary";
  return {
    status: "done",
    detail: `uploaded ${(bin.size / 1048576).toFixed(0)} MiB (${before}), sha256 ${bin.sha256.slice(0, 12)}…`,
  };
}

/** Installs the unit when it differs, enables it, and (re)starts the agent when anything changed. */
export async function stepService(
  n: NodeSetup,
  unitText: string,
  restartNeeded: boolean,
): Promise<StepOutcome> {
  const did: string[] = [];
  const unitChange = await ensureFile(n, UNIT_PATH, unitText, 0o644, { uid: 0, gid: 0 });
  if (unitChange) {
    did.push(`unit ${unitChange}`);
    await root(n, ["systemctl", "daemon-reload"]);
  }
  const enabled = (
    await n.s.exec(["systemctl", "is-enabled", "mcp-agent"], { timeoutMs: 30_000 })
  ).stdout.trim();
  if (enabled !== "enabled") {
    await root(n, ["systemctl", "enable", "mcp-agent"]);
    did.push("enabled");
  }
  const active = (
    await n.s.exec(["systemctl", "is-active", "mcp-agent"], { timeoutMs: 30_000 })
  ).stdout.trim();
  if (active !== "active" || restartNeeded || unitChange) {
    await root(n, ["systemctl", "restart", "mcp-agent"]);
    did.push(active === "active" ? "restarted" : "started");
  }
  return did.length === 0
    ? { status: "already done", detail: "mcp-agent enabled and active, nothing changed" }
    : { status: "done", detail: did.join(", ") };
}

/** The agent's last log lines, to explain why it does not answer. */
export async function agentLogTail(n: NodeSetup): Promise<string> {
  const r = await n.s.exec(["journalctl", "-u", "mcp-agent", "-n", "3", "--no-pager", "-o", "cat"], {
    sudo: true,
    timeoutMs: 30_000,
  });
  return r.stdout.trim().split("\n").filter(Boolean).join(" | ");
}
