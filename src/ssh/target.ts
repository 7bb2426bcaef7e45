// Target resolution: turns a node's `ssh` field (`user@host[:port]`, `host[:port]`, `[v6]:port` or
// an alias from ~/.ssh/config) into the host, port, user and identity files to connect with.
// The ssh_config reader follows OpenSSH for the keywords it knows (HostName, User, Port,
// IdentityFile, Include): Host patterns with `*`, `?` and `!`, first value wins per keyword,
// IdentityFile accumulates. `Match` blocks are not evaluated and never apply; the system-wide
// /etc/ssh/ssh_config is not read (what a node resolves to must not depend on the machine's
// defaults beyond the operator's own file).
import { existsSync, readFileSync, statSync } from "node:fs";
import { homedir, userInfo } from "node:os";
import { basename, dirname, isAbsolute, join } from "node:path";
import { SshError } from "./errors.ts";

export interface SshTarget {
  /** The `ssh` field as given. */
  spec: string;
  /** The host part of the spec: what ssh_config `Host` patterns were matched against. */
  alias: string;
  /** Where to connect (ssh_config HostName or the alias); also the known_hosts lookup name. */
  host: string;
  port: number;
  user: string;
  /** IdentityFile entries from ssh_config, expanded; empty = use the default key files. */
  identityFiles: string[];
}

export interface ResolveOptions {
  /** ssh_config path (default `<home>/.ssh/config`; a missing file is fine). */
  sshConfigPath?: string;
  /** Home directory for `~` and the default config path (default: os.homedir()). */
  home?: string;
  /** Local user name, the default remote user (default: localUserName()). */
  localUser?: string;
}

interface SpecParts {
  user: string | undefined;
  host: string;
  port: number | undefined;
}

function parsePort(raw: string, where: string): number {
  if (!/^\d{1,5}$/.test(raw) || Number(raw) < 1 || Number(raw) > 65535) {
    throw new SshError(`${where}: port '${raw}' is not a number from 1 to 65535`);
  }
  return Number(raw);
}

/** Splits `user@host[:port]`; `[addr]:port` for IPv6; a bare IPv6 literal has no port. */
export function parseSpec(spec: string): SpecParts {
  const where = `ssh target '${spec}'`;
  if (spec.trim() === "" || /\s/.test(spec))
    throw new SshError(`${where}: expected user@host[:port] or an ssh_config alias`);
  const at = spec.lastIndexOf("@");
  const user = at >= 0 ? spec.slice(0, at) : undefined;
  let rest = at >= 0 ? spec.slice(at + 1) : spec;
  if (user === "") throw new SshError(`${where}: empty user before '@'`);
  let port: number | undefined;
  if (rest.startsWith("[")) {
    const close = rest.indexOf("]");
    if (close < 0) throw new SshError(`${where}: missing ']'`);
    const after = rest.slice(close + 1);
    if (after !== "" && !after.startsWith(":"))
      throw new SshError(`${where}: unexpected '${after}' after ']'`);
    if (after !== "") port = parsePort(after.slice(1), where);
    rest = rest.slice(1, close);
  } else {
    const colons = rest.split(":").length - 1;
    if (colons === 1) {
      const i = rest.indexOf(":");
      port = parsePort(rest.slice(i + 1), where);
      rest = rest.slice(0, i);
    }
  }
  // A leading '-' would read as an option to anything that passes the host on (and is no host).
  if (rest === "" || rest.startsWith("-")) throw new SshError(`${where}: missing or invalid host`);
  return { user, host: rest, port };
}

/** OpenSSH pattern: `*` any run, `?` one character; whole-string, case-insensitive. */
export function matchPattern(name: string, pattern: string): boolean {
  const re = pattern
    .replace(/[.+^${}()|[\]\\]/g, "\\$&")
    .replace(/\*/g, ".*")
    .replace(/\?/g, ".");
  return new RegExp(`^${re}$`, "is").test(name);
}

/** A `Host` line applies when some pattern matches and no negated (`!`) pattern does. */
export function hostLineMatches(alias: string, patterns: readonly string[]): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith("!")) {
      if (matchPattern(alias, p.slice(1))) return false;
    } else if (matchPattern(alias, p)) {
      matched = true;
    }
  }
  return matched;
}

/** Splits an ssh_config line: keyword, then whitespace or one `=`, then words with "…"/'…' quoting. */
export function splitConfigLine(line: string): string[] {
  const m = /^\s*([^\s=#]+)\s*(?:=\s*)?(.*)$/.exec(line);
  if (!m) return [];
  const words = [m[1]!];
  const rest = m[2]!;
  let cur = "";
  let inWord = false;
  let quote: string | undefined;
  for (const c of rest) {
    if (quote) {
      if (c === quote) quote = undefined;
      else cur += c;
    } else if (c === '"' || c === "'") {
      quote = c;
      inWord = true;
    } else if (c === "#" && !inWord) {
      break;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(cur);
      cur = "";
      inWord = false;
    } else {
      cur += c;
      inWord = true;
    }
  }
  if (quote) throw new Error("unterminated quote");
  if (inWord) words.push(cur);
  return words;
}

interface Collected {
  hostname?: string;
  user?: string;
  port?: number;
  identityFiles: string[];
}

interface Ctx {
  alias: string;
  home: string;
  collected: Collected;
  display: (p: string) => string;
}

function expandTilde(path: string, home: string): string {
  if (path === "~") return home;
  if (path.startsWith("~/")) return join(home, path.slice(2));
  return path;
}

/** Include targets: relative to ~/.ssh, `~` expanded, `*`/`?` globs in the last component. */
function includePaths(arg: string, home: string): string[] {
  let p = expandTilde(arg, home);
  if (!isAbsolute(p)) p = join(home, ".ssh", p);
  const dir = dirname(p);
  const name = basename(p);
  if (!/[*?]/.test(name)) return existsSync(p) ? [p] : [];
  if (!existsSync(dir)) return [];
  // Bun.Glob over one directory level, sorted like glob(3).
  const found = [...new Bun.Glob(name).scanSync({ cwd: dir, onlyFiles: true, dot: false })];
  return found.sort().map((f) => join(dir, f));
}

const MAX_INCLUDE_DEPTH = 16;

function readConfigFile(path: string, ctx: Ctx, depth: number): void {
  if (depth > MAX_INCLUDE_DEPTH) throw new SshError(`${ctx.display(path)}: Include nested too deeply`);
  if (!existsSync(path) || statSync(path).isDirectory()) return;
  const lines = readFileSync(path, "utf8").split(/\r?\n/);
  // Lines before the first Host line apply to every host.
  let active = true;
  for (let n = 0; n < lines.length; n++) {
    const where = `${ctx.display(path)} line ${n + 1}`;
    let words: string[];
    try {
      words = splitConfigLine(lines[n]!);
    } catch (e) {
      throw new SshError(`${where}: ${(e as Error).message}`);
    }
    const [keyword, ...args] = words;
    if (keyword === undefined) continue;
    const kw = keyword.toLowerCase();
    if (kw === "host") {
      active = hostLineMatches(ctx.alias, args);
      continue;
    }
    if (kw === "match") {
      active = false;
      continue;
    }
    if (!active) continue;
    const value = args[0];
    if (kw === "include") {
      for (const arg of args) {
        for (const inc of includePaths(arg, ctx.home)) readConfigFile(inc, ctx, depth + 1);
      }
      // A Host line inside the included file ends with that file (OpenSSH restores the state).
      continue;
    }
    if (value === undefined) continue;
    const c = ctx.collected;
    if (kw === "hostname") c.hostname ??= value;
    else if (kw === "user") c.user ??= value;
    else if (kw === "port") c.port ??= parsePort(value, where);
    else if (kw === "identityfile") {
      // Kept raw: tokens like %r need the final user, known only after every line is read.
      if (!c.identityFiles.includes(value)) c.identityFiles.push(value);
    }
  }
}

/** Expands ssh_config %-tokens (%% %d %h %p %r %u) and a leading `~`. */
function expandTokens(
  raw: string,
  vals: { home: string; host: string; port: number; user: string; localUser: string },
  what: string,
): string {
  const out = raw.replace(/%(.)/g, (m, t: string) => {
    switch (t) {
      case "%":
        return "%";
      case "d":
        return vals.home;
      case "h":
        return vals.host;
      case "p":
        return String(vals.port);
      case "r":
        return vals.user;
      case "u":
        return vals.localUser;
      default:
        throw new SshError(`${what}: unsupported token ${m} in '${raw}'`);
    }
  });
  return expandTilde(out, vals.home);
}

/**
 * The local user name, OpenSSH's default remote user. Bun's os.userInfo() answers "unknown" when
 * $USER is unset (cron, systemd, containers), so the passwd entry of our uid decides then.
 */
export function localUserName(): string {
  const info = userInfo();
  if (info.username && info.username !== "unknown") return info.username;
  try {
    for (const line of readFileSync("/etc/passwd", "utf8").split("\n")) {
      const f = line.split(":");
      if (f[2] === String(info.uid) && f[0]) return f[0];
    }
  } catch {
    // No readable passwd file: keep what the runtime said.
  }
  return info.username;
}

/** Resolves a node's `ssh` field. Explicit user/port in the spec win over ssh_config. */
export function resolveTarget(spec: string, opts: ResolveOptions = {}): SshTarget {
  const home = opts.home ?? homedir();
  const localUser = opts.localUser ?? localUserName();
  const parts = parseSpec(spec);
  const configPath = opts.sshConfigPath ?? join(home, ".ssh", "config");
  const display = (p: string) => (p.startsWith(`${home}/`) ? `~/${p.slice(home.length + 1)}` : p);
  const collected: Collected = { identityFiles: [] };
  // ssh_config matches the host as typed, lower-cased like OpenSSH does.
  const alias = parts.host.toLowerCase();
  readConfigFile(configPath, { alias, home, collected, display }, 0);

  const user = parts.user ?? collected.user ?? localUser;
  const port = parts.port ?? collected.port ?? 22;
  const tokenVals = { home, host: parts.host, port, user, localUser };
  const host = collected.hostname
    ? expandTokens(collected.hostname, tokenVals, display(configPath))
    : parts.host;
  const identityFiles = collected.identityFiles.map((f) =>
    expandTokens(f, { ...tokenVals, host }, display(configPath)),
  );
  return { spec, alias: parts.host, host, port, user, identityFiles };
}
