// `mcp master --config FILE` (and `mcp-master server --config FILE`): load the master config,
// build the validator, read the certs and the master's token for agents, start the master, and
// shut down cleanly on SIGTERM/SIGINT.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { validatorFromConfig } from "../../auth/from-config.ts";
import { ConfigError } from "../../config/errors.ts";
import { resolveConfigPath } from "../../config/load.ts";
import { DEFAULT_MASTER_CONFIG_PATH, loadMasterConfig, type MasterConfig } from "../../config/master.ts";
import { createLogger } from "../../log.ts";
import { masterClientCertProblem } from "../../pki/ca.ts";
import { checkBindAddress } from "../../rpc/server.ts";
import { runUntilSignal } from "../../util/daemon.ts";
import type { MasterSettings } from "./context.ts";
import { startMaster } from "./master.ts";

interface DaemonArgs {
  config: string;
  allowAnyAddr: boolean;
}

function parseArgs(argv: string[]): DaemonArgs | "help" {
  const out: DaemonArgs = {
    config: process.env.MCP_MASTER_CONFIG || DEFAULT_MASTER_CONFIG_PATH,
    allowAnyAddr: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--config" || a === "-c") out.config = argv[++i] ?? "";
    else if (a.startsWith("--config=")) out.config = a.slice(9);
    else if (a === "--allow-any-addr") out.allowAnyAddr = true;
    else if (a === "--help" || a === "-h") return "help";
    else throw new Error(`unknown argument "${a}" (see mcp master --help)`);
  }
  if (!out.config) throw new Error("--config needs a file");
  return out;
}

export function masterSettingsFromConfig(
  cfg: MasterConfig,
  file: string,
  version: string,
  allowAnyAddr: boolean,
): MasterSettings {
  const base = dirname(resolve(file));
  const p = (s: string) => resolveConfigPath(file, s);
  const allowAny = allowAnyAddr || cfg.server.allow_any_addr;
  try {
    checkBindAddress(cfg.server.grpc_addr, allowAny);
  } catch (err) {
    throw new ConfigError(file, "server.grpc_addr", (err as Error).message);
  }
  const read = (key: string, path: string) => {
    try {
      return readFileSync(p(path), "utf8");
    } catch (err) {
      throw new ConfigError(
        file,
        key,
        `cannot read ${p(path)}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
  };
  if (!cfg.tls) throw new ConfigError(file, "tls.ca_cert", "is required to verify the agents' certificates");
  const logger = createLogger(cfg.log.level, "master");
  let clientCert: MasterSettings["clientCert"] = null;
  if (cfg.master.client_cert && cfg.master.client_key) {
    clientCert = {
      certPem: read("master.client_cert", cfg.master.client_cert),
      keyPem: read("master.client_key", cfg.master.client_key),
    };
    checkMasterClientCert(file, clientCert, read("tls.ca_cert", cfg.tls.ca_cert));
  } else {
    logger.warn(
      "no [master] client_cert/client_key: agents with a [master] will refuse the master's deploys, edge routes and data moves",
    );
  }
  return {
    grpcAddr: cfg.server.grpc_addr,
    allowAnyAddr: allowAny,
    tlsCertPem: read("server.tls_cert", cfg.server.tls_cert),
    tlsKeyPem: read("server.tls_key", cfg.server.tls_key),
    dbPath: p(cfg.database.path),
    validator: validatorFromConfig(cfg, base),
    logger,
    version,
    caPem: read("tls.ca_cert", cfg.tls.ca_cert),
    clientCert,
    operators: cfg.auth.operators,
    allowedDomains: cfg.edge.allowed_domains,
    timeouts: {
      deployMs: cfg.timeouts.deploy,
      edgeRouteMs: cfg.timeouts.edge_route,
      healthCheckMs: cfg.timeouts.health_check,
      undeployMs: cfg.timeouts.undeploy,
    },
    heartbeat: {
      intervalMs: cfg.master.heartbeat_interval,
      miss: cfg.master.heartbeat_miss,
      probeTimeoutMs: cfg.master.probe_timeout,
    },
    registration: {
      allowedAgents: cfg.registration.allowed_agents,
      roles: cfg.registration.roles,
      maxNodes: cfg.registration.max_nodes,
      registerIntervalMs: cfg.registration.register_interval,
      heartbeatMinIntervalMs: cfg.registration.heartbeat_min_interval,
    },
    hostAccess: cfg.auth.host_access,
    nodeSrvRoot: cfg.master.node_srv_root,
    bootstrapNodes: cfg.nodes.map((n) => ({ name: n.name, role: n.role, address: n.address, arch: n.arch })),
    config: cfg,
  };
}

export async function runMasterDaemon(argv: string[], version: string): Promise<number> {
  let settings: MasterSettings;
  try {
    const args = parseArgs(argv);
    if (args === "help") {
      process.stdout.write(
        "usage: mcp master [--config /srv/mcp-master/mcp-master.toml] [--allow-any-addr]\n",
      );
      return 0;
    }
    const { config, warnings } = loadMasterConfig(args.config);
    settings = masterSettingsFromConfig(config, args.config, version, args.allowAnyAddr);
    for (const w of warnings) settings.logger.warn(w);
  } catch (err) {
    process.stderr.write(`mcp master: ${(err as Error).message.split("\n")[0]}\n`);
    return 2;
  }
  return runUntilSignal("master", settings.logger, () => startMaster(settings));
}

/**
 * The client certificate must be one agents accept (CN mcp-master, clientAuth, issued by the CA
 * they trust, the key its own): a wrong one would fail every deploy later with a vaguer error.
 */
function checkMasterClientCert(file: string, pair: { certPem: string; keyPem: string }, caPem: string): void {
  let problem: string | null;
  try {
    problem = masterClientCertProblem(pair, caPem);
  } catch (err) {
    problem = (err as Error).message.split("\n")[0] ?? "unreadable";
  }
  if (problem) throw new ConfigError(file, "master.client_cert", problem);
}
