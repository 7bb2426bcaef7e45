// Operator CLI config (`~/.config/mcp/mcp.toml`, SPEC §3.1): default location, loading (unknown
// keys are warnings) and a readable writer for `mcp node add/remove` and `mcp init`. Keys keep the
// TOML's snake_case. Every `mcp` command loads this file, so a plain config is checked without zod
// (cli-fast.ts: ~10 ms of zod's start and schema building saved); anything else goes through the
// zod schema (cli-schema.ts), which gives the messages and warnings.
import { homedir } from "node:os";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { plainCliConfig, type RawCliConfig } from "./cli-fast.ts";
import { ConfigError } from "./errors.ts";
import { loadToml } from "./toml.ts";
import { tomlString, tomlStringArray, writeFileAtomic } from "./write.ts";

export type Arch = "amd64" | "arm64";

export interface CliNode {
  name: string;
  /** Primary agent address, host:port. */
  address: string;
  /** Fallback addresses, tried in order after `address`. */
  addresses: string[];
  /** user@host[:port] or an ssh_config alias. */
  ssh?: string;
  arch: Arch;
}

export interface CliConfig {
  services: { dir: string };
  mcias?: { server_url: string; ca_cert: string; service_name: string; insecure_http?: boolean };
  auth: { token_path: string; username?: string; password_file?: string };
  tls?: { ca_cert: string };
  /** The fleet master (architecture v2): primary address, then fallbacks tried in order. */
  master?: { address: string; addresses: string[] };
  nodes: CliNode[];
}

/** `$MCP_CONFIG`, else `~/.config/mcp/mcp.toml`. */
export function defaultCliConfigPath(env: Record<string, string | undefined> = process.env): string {
  const fromEnv = env["MCP_CONFIG"];
  if (fromEnv !== undefined && fromEnv !== "") return fromEnv;
  return join(env["HOME"] || homedir(), ".config", "mcp", "mcp.toml");
}

/** `~/x` → home-relative, relative paths → relative to the config file's directory. */
function resolvePath(p: string, baseDir: string, home: string): string {
  if (p === "~") return home;
  if (p.startsWith("~/")) return join(home, p.slice(2));
  return isAbsolute(p) ? p : resolve(baseDir, p);
}

export interface LoadedCliConfig {
  config: CliConfig;
  warnings: string[];
}

export function loadCliConfig(file: string): LoadedCliConfig {
  return parseCliConfig(loadToml(file), file);
}

export function parseCliConfig(data: unknown, file: string): LoadedCliConfig {
  const warnings: string[] = [];
  const raw = plainCliConfig(data) ?? checkWithSchema(data, file, warnings);
  const base = dirname(resolve(file));
  const home = process.env["HOME"] || homedir();
  const p = (s: string) => resolvePath(s, base, home);
  const config: CliConfig = {
    // Defaults sit beside the config file, which is where `mcp init` puts them.
    services: { dir: p(raw.services.dir ?? "services") },
    auth: { token_path: p(raw.auth.token_path ?? "token") },
    nodes: raw.nodes.map((n) => ({ ...n })),
  };
  if (raw.auth.username !== undefined) config.auth.username = raw.auth.username;
  if (raw.auth.password_file !== undefined) config.auth.password_file = p(raw.auth.password_file);
  if (raw.mcias !== undefined) {
    const { insecure_http, ...mcias } = raw.mcias;
    config.mcias = { ...mcias, ca_cert: mcias.ca_cert === "" ? "" : p(mcias.ca_cert) };
    if (insecure_http) config.mcias.insecure_http = true;
  }
  if (raw.tls !== undefined) config.tls = { ca_cert: raw.tls.ca_cert === "" ? "" : p(raw.tls.ca_cert) };
  if (raw.master !== undefined) config.master = { ...raw.master };
  return { config, warnings };
}

/** The zod check: exact messages for a bad file, warnings for unknown keys. Loaded on demand. */
function checkWithSchema(data: unknown, file: string, warnings: string[]): RawCliConfig {
  const { parseWith } = require("./load.ts") as typeof import("./load.ts");
  const { cliSchema } = require("./cli-schema.ts") as typeof import("./cli-schema.ts");
  return parseWith(cliSchema, data, file, { unknownKeys: "warn", onWarn: (w) => warnings.push(w) });
}

/** Looks a node up by name; the error names the config file. */
export function findNode(cfg: CliConfig, name: string, file = ""): CliNode {
  const node = cfg.nodes.find((n) => n.name === name);
  if (node === undefined) {
    const known = cfg.nodes.map((n) => n.name).join(", ") || "none";
    throw new ConfigError(file, "nodes", `no node named "${name}" (known: ${known})`);
  }
  return node;
}

/** The whole config as TOML, sections in the order of SPEC §3.1. */
export function cliConfigToToml(cfg: CliConfig): string {
  const out: string[] = ["# MCP CLI configuration (written by mcp; comments are not preserved)"];
  const kv = (k: string, v: string) => out.push(`${k} = ${v}`);
  out.push("", "[services]");
  kv("dir", tomlString(cfg.services.dir));
  if (cfg.mcias !== undefined) {
    out.push("", "[mcias]");
    kv("server_url", tomlString(cfg.mcias.server_url));
    kv("ca_cert", tomlString(cfg.mcias.ca_cert));
    kv("service_name", tomlString(cfg.mcias.service_name));
    if (cfg.mcias.insecure_http) kv("insecure_http", "true");
  }
  out.push("", "[auth]");
  kv("token_path", tomlString(cfg.auth.token_path));
  if (cfg.auth.username !== undefined) kv("username", tomlString(cfg.auth.username));
  if (cfg.auth.password_file !== undefined) kv("password_file", tomlString(cfg.auth.password_file));
  if (cfg.tls !== undefined) {
    out.push("", "[tls]");
    kv("ca_cert", tomlString(cfg.tls.ca_cert));
  }
  if (cfg.master !== undefined) {
    out.push("", "[master]");
    kv("address", tomlString(cfg.master.address));
    if (cfg.master.addresses.length > 0) kv("addresses", tomlStringArray(cfg.master.addresses));
  }
  for (const n of cfg.nodes) {
    out.push("", "[[nodes]]");
    kv("name", tomlString(n.name));
    kv("address", tomlString(n.address));
    if (n.addresses.length > 0) kv("addresses", tomlStringArray(n.addresses));
    if (n.ssh !== undefined) kv("ssh", tomlString(n.ssh));
    kv("arch", tomlString(n.arch));
  }
  return `${out.join("\n")}\n`;
}

/** Replaces the CLI config atomically (creating its directory). */
export function writeCliConfig(file: string, cfg: CliConfig): void {
  writeFileAtomic(file, cliConfigToToml(cfg));
}
