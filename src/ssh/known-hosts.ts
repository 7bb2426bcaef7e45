// known_hosts: parsing, matching and the trust decision for a server's host key, the way OpenSSH
// does it for the parts this project needs: plain and hashed (`|1|salt|hmac`) host fields,
// comma-separated patterns with `*`/`?`/`!`, `[host]:port` names for ports other than 22, key
// types, `@revoked` markers (`@cert-authority` lines are ignored: no host certificates here).
// Everything is pure except appendKnownHost. No silent trust: an unknown key is refused unless the
// caller explicitly accepts new keys, a changed key is always refused.
import { createHash, createHmac, timingSafeEqual } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { appendFile, mkdir, stat } from "node:fs/promises";
import { dirname } from "node:path";
import { SshError } from "./errors.ts";
import { matchPattern } from "./target.ts";

export interface KnownHostEntry {
  /** 1-based line number in the file. */
  line: number;
  marker: "cert-authority" | "revoked" | undefined;
  /** The host field as written (patterns or a hashed `|1|…|…`). */
  hosts: string;
  keyType: string;
  key: Buffer;
}

/** Parses known_hosts text; comments, blank and malformed lines are skipped like OpenSSH does. */
export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    const words = lines[i]!.trim().split(/\s+/);
    if (words[0] === undefined || words[0] === "" || words[0].startsWith("#")) continue;
    let marker: KnownHostEntry["marker"];
    if (words[0].startsWith("@")) {
      const m = words.shift()!;
      if (m === "@cert-authority") marker = "cert-authority";
      else if (m === "@revoked") marker = "revoked";
      else continue;
    }
    const [hosts, keyType, b64] = words;
    if (!hosts || !keyType || !b64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) continue;
    const key = Buffer.from(b64, "base64");
    // The blob names its own type; a line whose two disagree is corrupt, not a key.
    if (keyTypeOfBlob(key) !== keyType) continue;
    out.push({ line: i + 1, marker, hosts, keyType, key });
  }
  return out;
}

/** The name a host is stored under: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host.toLowerCase() : `[${host.toLowerCase()}]:${port}`;
}

function hashedMatches(field: string, name: string): boolean {
  const parts = field.split("|");
  // "|1|salt|hash" splits into ["", "1", salt, hash].
  if (parts.length !== 4 || parts[1] !== "1") return false;
  const salt = Buffer.from(parts[2]!, "base64");
  const want = Buffer.from(parts[3]!, "base64");
  const got = createHmac("sha1", salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** Whether an entry's host field names `name` (from knownHostsName). */
export function entryMatchesHost(entry: Pick<KnownHostEntry, "hosts">, name: string): boolean {
  if (entry.hosts.startsWith("|")) return hashedMatches(entry.hosts, name);
  let matched = false;
  for (const pattern of entry.hosts.split(",")) {
    if (pattern.startsWith("!")) {
      if (matchPattern(name, pattern.slice(1))) return false;
    } else if (matchPattern(name, pattern)) {
      matched = true;
    }
  }
  return matched;
}

/** The key type named at the start of an SSH public key blob (`ssh-ed25519`, `ssh-rsa`, …). */
export function keyTypeOfBlob(blob: Buffer): string {
  if (blob.length < 4) return "";
  const len = blob.readUInt32BE(0);
  if (len > 64 || 4 + len > blob.length) return "";
  return blob.toString("latin1", 4, 4 + len);
}

/** `SHA256:<base64 without padding>`, the format of `ssh-keygen -lf`. */
export function fingerprintSha256(blob: Buffer): string {
  return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** The label `ssh-keygen -l` prints in parentheses for a key type. */
export function keyTypeLabel(type: string): string {
  if (type === "ssh-ed25519") return "ED25519";
  if (type === "sk-ssh-ed25519@openssh.com") return "ED25519-SK";
  if (type === "ssh-rsa") return "RSA";
  if (type === "ssh-dss") return "DSA";
  if (type.startsWith("ecdsa-sha2-")) return "ECDSA";
  if (type.startsWith("sk-ecdsa-sha2-")) return "ECDSA-SK";
  return type;
}

export type HostKeyCheck =
  | { status: "known"; line: number }
  | { status: "unknown" }
  | { status: "changed"; line: number; knownKey: Buffer }
  | { status: "revoked"; line: number };

/**
 * The trust decision for `blob` presented by `name`. A matching entry with the same key wins;
 * otherwise any matching entry (same type or not) means the host is known with a different key:
 * "changed". Accepting a new key type beside a known one would let a man in the middle pick a
 * type the file has no entry for, so that is refused too.
 */
export function checkHostKey(entries: readonly KnownHostEntry[], name: string, blob: Buffer): HostKeyCheck {
  for (const e of entries) {
    if (e.marker === "revoked" && e.key.equals(blob)) return { status: "revoked", line: e.line };
  }
  const matching = entries.filter((e) => e.marker === undefined && entryMatchesHost(e, name));
  const same = matching.find((e) => e.key.equals(blob));
  if (same) return { status: "known", line: same.line };
  const type = keyTypeOfBlob(blob);
  const other = matching.find((e) => e.keyType === type) ?? matching[0];
  if (other) return { status: "changed", line: other.line, knownKey: other.key };
  return { status: "unknown" };
}

/** The one-line refusal for a check that is not "known" (undefined when it is). */
export function hostKeyProblem(
  check: HostKeyCheck,
  name: string,
  blob: Buffer,
  knownHostsDisplay: string,
): string | undefined {
  const fp = fingerprintSha256(blob);
  switch (check.status) {
    case "known":
      return undefined;
    case "unknown":
      return `host key for ${name} is unknown (${keyTypeLabel(keyTypeOfBlob(blob))} ${fp}); verify it and re-run with --accept-new-host-key`;
    case "revoked":
      return `host key for ${name} (${fp}) is marked @revoked in ${knownHostsDisplay} line ${check.line}`;
    case "changed":
      return `host key for ${name} CHANGED (now ${fp}, ${knownHostsDisplay} line ${check.line} has ${fingerprintSha256(check.knownKey)}): possible man-in-the-middle; remove the old entry if the change is expected`;
  }
}

/**
 * Host key algorithms to offer first so the server presents a key type the file already knows for
 * this host (OpenSSH does the same): otherwise a server with ed25519 and rsa keys could show the one
 * that is not recorded and be refused as changed.
 */
export function preferredHostKeyAlgorithms(entries: readonly KnownHostEntry[], name: string): string[] {
  const out: string[] = [];
  for (const e of entries) {
    if (e.marker !== undefined || !entryMatchesHost(e, name)) continue;
    const algos = e.keyType === "ssh-rsa" ? ["rsa-sha2-512", "rsa-sha2-256", "ssh-rsa"] : [e.keyType];
    for (const a of algos) if (!out.includes(a)) out.push(a);
  }
  return out;
}

/** Reads a known_hosts file; a missing file has no entries. */
export function readKnownHosts(path: string): KnownHostEntry[] {
  if (!existsSync(path)) return [];
  return parseKnownHosts(readFileSync(path, "utf8"));
}

export function knownHostLine(name: string, blob: Buffer): string {
  return `${name} ${keyTypeOfBlob(blob)} ${blob.toString("base64")}`;
}

/** Appends `name type key` (creating the file 0600 and its directory 0700 when missing). */
export async function appendKnownHost(path: string, name: string, blob: Buffer): Promise<void> {
  try {
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    let prefix = "";
    const st = await stat(path).catch(() => undefined);
    if (st && st.size > 0) {
      const text = readFileSync(path);
      if (text[text.length - 1] !== 0x0a) prefix = "\n";
    }
    // One write with O_APPEND: parallel connects (agent upgrade) never interleave within a line.
    await appendFile(path, `${prefix}${knownHostLine(name, blob)}\n`, { mode: 0o600 });
  } catch (e) {
    throw new SshError(`cannot add host key to ${path}: ${(e as Error).message}`);
  }
}
