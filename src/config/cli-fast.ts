// The CLI config checked without zod: every `mcp` command reads the CLI config, and zod's start
// plus building the schema and a first parse cost ~10 ms of each command. plainCliConfig accepts
// only a config the zod schema (cli-schema.ts) accepts as it is (no unknown key, every value of
// the right type and syntax) and returns what the schema would return (defaults applied, same key
// order); for anything else it returns null and the caller runs the schema, which gives the exact
// message or the unknown-key warnings. test/unit/config/cli-fast.test.ts holds both to that.
import { NAME_MAX, NAME_RE } from "./name-rules.ts";
import { clearTextUrl, isHttpUrl, parseHostPort } from "./specs.ts";

/** The checked CLI config as the zod schema outputs it (paths not yet resolved). */
export interface RawCliConfig {
  services: { dir?: string };
  mcias?: { server_url: string; ca_cert: string; service_name: string; insecure_http?: boolean };
  auth: { token_path?: string; username?: string; password_file?: string };
  tls?: { ca_cert: string };
  master?: { address: string; addresses: string[] };
  nodes: {
    name: string;
    address: string;
    addresses: string[];
    ssh?: string;
    arch: "amd64" | "arm64";
  }[];
}

/** Thrown inside the check when the config is not plain; never leaves this module. */
class NotPlain {}
const NOT_PLAIN = new NotPlain();

type Table = Record<string, unknown>;

function table(v: unknown, keys: readonly string[]): Table {
  if (v === null || typeof v !== "object" || Array.isArray(v) || v instanceof Date) throw NOT_PLAIN;
  for (const k of Object.keys(v)) if (!keys.includes(k)) throw NOT_PLAIN;
  return v as Table;
}

function str(v: unknown, nonEmpty: boolean): string {
  if (typeof v !== "string" || (nonEmpty && v === "")) throw NOT_PLAIN;
  return v;
}

function hostPort(v: unknown): string {
  const s = str(v, false);
  try {
    parseHostPort(s);
  } catch {
    throw NOT_PLAIN;
  }
  return s;
}

function hostPorts(v: unknown): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw NOT_PLAIN;
  return v.map(hostPort);
}

/** Copies the optional non-empty string keys that are present, in the given order. */
function optionalStrings(t: Table, keys: readonly string[], out: Record<string, string>): void {
  for (const k of keys) if (t[k] !== undefined) out[k] = str(t[k], true);
}

function node(v: unknown, seen: Set<string>): RawCliConfig["nodes"][number] {
  const t = table(v, ["name", "address", "addresses", "ssh", "arch"]);
  const name = str(t["name"], false);
  if (!NAME_RE.test(name) || name.length > NAME_MAX || seen.has(name)) throw NOT_PLAIN;
  seen.add(name);
  const address = hostPort(t["address"]);
  const addresses = hostPorts(t["addresses"]);
  const arch = t["arch"] ?? "amd64";
  if (arch !== "amd64" && arch !== "arm64") throw NOT_PLAIN;
  // The schema's key order: name, address, addresses, ssh, arch.
  if (t["ssh"] === undefined) return { name, address, addresses, arch };
  return { name, address, addresses, ssh: str(t["ssh"], true), arch };
}

function mcias(v: unknown): NonNullable<RawCliConfig["mcias"]> {
  const t = table(v, ["server_url", "ca_cert", "service_name", "insecure_http"]);
  const serverUrl = str(t["server_url"], false);
  const insecure = t["insecure_http"];
  if (insecure !== undefined && typeof insecure !== "boolean") throw NOT_PLAIN;
  if (!isHttpUrl(serverUrl) || clearTextUrl(serverUrl, insecure)) throw NOT_PLAIN;
  const out: NonNullable<RawCliConfig["mcias"]> = {
    server_url: serverUrl,
    ca_cert: t["ca_cert"] === undefined ? "" : str(t["ca_cert"], false),
    service_name: t["service_name"] === undefined ? "mcp" : str(t["service_name"], true),
  };
  if (insecure !== undefined) out.insecure_http = insecure;
  return out;
}

function check(data: unknown): RawCliConfig {
  const root = table(data, ["services", "mcias", "auth", "tls", "master", "nodes"]);
  // Built in the schema's key order: services, mcias, auth, tls, master, nodes.
  const out = { services: {} } as RawCliConfig;
  optionalStrings(table(root["services"] ?? {}, ["dir"]), ["dir"], out.services);
  if (root["mcias"] !== undefined) out.mcias = mcias(root["mcias"]);
  out.auth = {};
  const auth = table(root["auth"] ?? {}, ["token_path", "username", "password_file"]);
  optionalStrings(auth, ["token_path", "username", "password_file"], out.auth);
  if (root["tls"] !== undefined) {
    const t = table(root["tls"], ["ca_cert"]);
    out.tls = { ca_cert: t["ca_cert"] === undefined ? "" : str(t["ca_cert"], false) };
  }
  if (root["master"] !== undefined) {
    const t = table(root["master"], ["address", "addresses"]);
    out.master = { address: hostPort(t["address"]), addresses: hostPorts(t["addresses"]) };
  }
  const nodes = root["nodes"] ?? [];
  if (!Array.isArray(nodes)) throw NOT_PLAIN;
  const seen = new Set<string>();
  out.nodes = nodes.map((n) => node(n, seen));
  return out;
}

/** The config as the zod schema would return it, or null when only the schema can judge it. */
export function plainCliConfig(data: unknown): RawCliConfig | null {
  try {
    return check(data);
  } catch (e) {
    if (e === NOT_PLAIN) return null;
    throw e;
  }
}
