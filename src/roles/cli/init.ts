// `mcp init --local [--dir D]`: the embedded default. Creates a local CA, an agent certificate
// (127.0.0.1/localhost) and the master's client certificate (certs/master-client.pem, for a master
// added later), an admin token (hashed in the agent config, plain in the
// CLI token file, 0600), agent and CLI configs and a services dir. Never overwrites an
// existing setup without --force.
import { existsSync, mkdirSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { generateToken, hashToken } from "../../auth/local.ts";
import { writeTokenFile } from "../../auth/token-file.ts";
import { parseHostPort } from "../../config/specs.ts";
import { tomlString, tomlStringArray } from "../../config/write.ts";
import { createCA, issueCert, issueMasterClientCert, writeKeyPair } from "../../pki/ca.ts";
import { writeFileAtomic } from "../../pki/files.ts";
import { CliError, printJson } from "./output.ts";

function expandHome(p: string): string {
  return p === "~" || p.startsWith("~/") ? join(process.env.HOME || homedir(), p.slice(1)) : p;
}

export interface InitResult {
  dir: string;
  agentConfig: string;
  cliConfig: string;
  servicesDir: string;
  tokenPath: string;
  /** The master's client certificate and key (for a master's [master] client_cert/client_key). */
  masterClientCert: string;
  masterClientKey: string;
}

export async function initLocal(opts: {
  dir: string;
  node: string;
  listen: string;
  runtimeArgs: string[];
  force: boolean;
}): Promise<InitResult> {
  const dir = resolve(expandHome(opts.dir));
  const { host } = parseHostPort(opts.listen);
  const agentConfig = join(dir, "mcp-agent.toml");
  const cliConfig = join(dir, "mcp.toml");
  if (!opts.force && (existsSync(agentConfig) || existsSync(cliConfig))) {
    throw new CliError(
      `${dir} already has an MCP setup (mcp-agent.toml / mcp.toml); pass --force to replace it`,
      2,
    );
  }
  const certs = join(dir, "certs");
  const servicesDir = join(dir, "services");
  const srvRoot = join(dir, "srv");
  for (const d of [dir, certs, servicesDir, srvRoot]) mkdirSync(d, { recursive: true, mode: 0o700 });

  const ca = await createCA({ commonName: `MCP local CA (${opts.node})`, days: 3650 });
  await writeKeyPair(certs, "ca", ca);
  const isIp = /^[0-9.]+$/.test(host) || host.includes(":");
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: `mcp-agent ${opts.node}`,
    dnsNames: ["localhost", ...(isIp || host === "localhost" ? [] : [host])],
    ipAddresses: ["127.0.0.1", "::1", ...(isIp && host !== "127.0.0.1" && host !== "::1" ? [host] : [])],
    days: 825,
    serverAuth: true,
  });
  await writeKeyPair(certs, "agent", { certPem: leaf.chainPem, keyPem: leaf.keyPem });
  // The master's client certificate (SPEC §5.2), for when this CA's fleet gets a master: its
  // [master] client_cert/client_key. Agents with a [master] accept nothing else as the master.
  const masterClient = await issueMasterClientCert(ca);
  await writeKeyPair(certs, "master-client", { certPem: masterClient.certPem, keyPem: masterClient.keyPem });

  const token = generateToken();
  const tokenPath = join(dir, "token");
  await writeTokenFile(tokenPath, token);

  const agentToml = `# MCP agent, embedded local mode (written by mcp init --local).
[server]
grpc_addr = ${tomlString(opts.listen)}
tls_cert = ${tomlString(join(certs, "agent.pem"))}
tls_key = ${tomlString(join(certs, "agent.key"))}

[database]
path = ${tomlString(join(dir, "mcp.db"))}

[auth]
mode = "local"

[[auth.tokens]]
name = "admin"
role = "admin"
account_type = "human"
sha256 = ${tomlString(hashToken(token))}

[agent]
node_name = ${tomlString(opts.node)}
container_runtime = "podman"
runtime_args = ${tomlStringArray(opts.runtimeArgs)}
srv_root = ${tomlString(srvRoot)}

[log]
level = "info"
`;
  await writeFileAtomic(agentConfig, agentToml, 0o600);

  const cliToml = `# MCP CLI, embedded local mode (written by mcp init --local).
[services]
dir = ${tomlString(servicesDir)}

[auth]
token_path = ${tomlString(tokenPath)}

[tls]
ca_cert = ${tomlString(join(certs, "ca.pem"))}

[[nodes]]
name = ${tomlString(opts.node)}
address = ${tomlString(opts.listen)}
arch = ${tomlString(process.arch === "arm64" ? "arm64" : "amd64")}
`;
  await writeFileAtomic(cliConfig, cliToml, 0o600);
  return {
    dir,
    agentConfig,
    cliConfig,
    servicesDir,
    tokenPath,
    masterClientCert: join(certs, "master-client.pem"),
    masterClientKey: join(certs, "master-client.key"),
  };
}

export async function initCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  if (opts.local !== true) {
    throw new CliError(
      "only local mode is available to init: pass --local (MCIAS setups are configured by hand, see README)",
      2,
    );
  }
  const runtimeArgs = ([] as unknown[]).concat(opts.runtimeArg ?? []).map(String);
  const res = await initLocal({
    dir: String(opts.dir ?? "~/.config/mcp"),
    node: String(opts.node ?? "local"),
    listen: String(opts.listen ?? "127.0.0.1:9444"),
    runtimeArgs,
    force: opts.force === true,
  });
  if (opts.json === true) {
    printJson(res);
    return 0;
  }
  process.stdout.write(
    `local MCP setup written to ${res.dir}
  agent config  ${res.agentConfig}
  CLI config    ${res.cliConfig}
  services      ${res.servicesDir}
  token         ${res.tokenPath} (0600)
  master cert   ${res.masterClientCert} (a master's [master] client_cert; key 0600 beside it)

next:
  mcp agent --config ${res.agentConfig} &
  MCP_CONFIG=${res.cliConfig} mcp node list
`,
  );
  return 0;
}
