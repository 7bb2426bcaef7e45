// `mcp agent --config FILE` (and `mcp-agent server --config FILE`): load the config, build the
// validator and runtime, start the agent, and shut down cleanly on SIGTERM/SIGINT.
import { accessSync, constants, existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import type { Logger } from "pino";
import { validatorFromConfig } from "../../auth/from-config.ts";
import {
  type AgentConfig,
  type BootStage,
  DEFAULT_AGENT_CONFIG_PATH,
  loadAgentConfig,
} from "../../config/agent.ts";
import { ConfigError } from "../../config/errors.ts";
import { resolveConfigPath } from "../../config/load.ts";
import { createLogger } from "../../log.ts";
import { checkBindAddress } from "../../rpc/server.ts";
import { DockerRuntime } from "../../runtime/docker.ts";
import { engineImageSource } from "../../runtime/nanos/image-source.ts";
import { PodmanRuntime } from "../../runtime/podman.ts";
import { UnikernelRuntime } from "../../runtime/unikernel.ts";
import { runUntilSignal } from "../../util/daemon.ts";
import { AGENT_CLI_VERBS } from "../../util/daemon-argv.ts";
import { closest } from "../../util/suggest.ts";
import { startAgent } from "./agent.ts";
import { parseCidr } from "./cidr.ts";
import type { AgentSettings } from "./context.ts";
import { defaultNodeAddress } from "./host-ports.ts";
import { certDirOf, composeHooks, integrationsFromConfig } from "./integrations.ts";

interface DaemonArgs {
  config: string;
  allowAnyAddr: boolean;
}

function parseArgs(argv: string[]): DaemonArgs {
  const out: DaemonArgs = {
    config: process.env.MCP_AGENT_CONFIG || DEFAULT_AGENT_CONFIG_PATH,
    allowAnyAddr: false,
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--config" || a === "-c") out.config = argv[++i] ?? "";
    else if (a.startsWith("--config=")) out.config = a.slice(9);
    else if (a === "--allow-any-addr") out.allowAnyAddr = true;
    else if (a === "--help" || a === "-h") {
      process.stdout.write(
        "usage: mcp agent [--config /srv/mcp/mcp-agent.toml] [--allow-any-addr]\n" +
          "       mcp agent upgrade|status|recover|snapshot ...\n",
      );
      process.exit(0);
    } else {
      // A mistyped `mcp agent status` lands here: name the command it likely meant.
      const verb = a.startsWith("-") ? undefined : closest(a, AGENT_CLI_VERBS);
      throw new Error(
        verb
          ? `unknown argument "${a}": did you mean "mcp agent ${verb}"?`
          : `unknown argument "${a}" (see mcp agent --help)`,
      );
    }
  }
  // No "mcp agent:" prefix here: runAgentDaemon adds it to every startup error.
  if (!out.config) throw new Error("--config needs a file");
  return out;
}

export function buildRuntime(cfg: AgentConfig, logger?: Logger): PodmanRuntime {
  // Docker's engine endpoint comes from DOCKER_HOST or runtime_args (`-H unix:///…` is global).
  if (cfg.agent.container_runtime === "docker") {
    return new DockerRuntime({ binary: "docker", globalArgs: cfg.agent.runtime_args });
  }
  return new PodmanRuntime({
    binary: "podman",
    globalArgs: cfg.agent.runtime_args,
    api: cfg.agent.runtime_api === "auto",
    ...(logger ? { logger: { info: (m) => logger.info(m), warn: (m) => logger.warn(m) } } : {}),
  });
}

/**
 * [runtimes.unikernel] as a runtime, or undefined when the section is absent. The Nanos files are
 * checked here (a config pointing at a missing kernel is refused at start, with its key); whether
 * QEMU answers is checked when the agent starts (startAgent offers the runtime only then).
 */
export function buildUnikernel(
  cfg: AgentConfig,
  file: string,
  containers: PodmanRuntime,
  logger: Logger,
): UnikernelRuntime | undefined {
  const u = cfg.runtimes.unikernel;
  if (!u) return undefined;
  const p = (s: string) => resolveConfigPath(file, s);
  const nanosDir = p(u.nanos_dir);
  for (const f of ["kernel.img", "boot.img"]) {
    if (!existsSync(join(nanosDir, f)))
      throw new ConfigError(
        file,
        "runtimes.unikernel.nanos_dir",
        `${nanosDir} has no ${f} (expected a Nanos release)`,
      );
  }
  const mkfs = p(u.mkfs);
  try {
    accessSync(mkfs, constants.X_OK);
  } catch {
    throw new ConfigError(file, "runtimes.unikernel.mkfs", `${mkfs} is not an executable file`);
  }
  const stateDir = u.state_dir ? p(u.state_dir) : join(dirname(p(cfg.database.path)), "unikernel");
  try {
    return new UnikernelRuntime({
      nanosDir,
      mkfs,
      qemu: u.qemu.includes("/") ? p(u.qemu) : u.qemu,
      accel: u.accel,
      stateDir,
      bootTimeoutMs: u.boot_timeout,
      images: engineImageSource(containers, containers.cli()),
      logger: { info: (o, m) => logger.info(o, m), warn: (o, m) => logger.warn(o, m) },
    });
  } catch (err) {
    // The runtime creates its state directory (0700) at once: say which key cannot be used.
    const why = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
    throw new ConfigError(file, "runtimes.unikernel.state_dir", `cannot use ${stateDir}: ${why}`);
  }
}

/** A path from the agent config: absolute as written, else relative to the config file's directory. */
export function settingsFromConfig(
  cfg: AgentConfig,
  file: string,
  version: string,
  allowAnyAddr: boolean,
): AgentSettings {
  const base = dirname(resolve(file));
  const p = (s: string) => resolveConfigPath(file, s);
  const allowAny = allowAnyAddr || cfg.server.allow_any_addr;
  try {
    checkBindAddress(cfg.server.grpc_addr, allowAny);
  } catch (err) {
    throw new ConfigError(file, "server.grpc_addr", (err as Error).message);
  }
  const logger = createLogger(cfg.log.level, "agent");
  const node = cfg.agent.address
    ? { address: cfg.agent.address, fallback: false }
    : defaultNodeAddress(cfg.server.grpc_addr);
  if (node.fallback)
    logger.warn(
      `route ports are published on ${node.address}: server.grpc_addr's host is not one IP of this node; set [agent] address`,
    );
  // Absent sections stay undefined: those steps are skipped (said once by composeHooks).
  const integrations = integrationsFromConfig(cfg, p);
  const runtime = buildRuntime(cfg, logger);
  const unikernel = buildUnikernel(cfg, file, runtime, logger);
  return {
    nodeName: cfg.agent.node_name,
    grpcAddr: cfg.server.grpc_addr,
    allowAnyAddr: allowAny,
    tlsCertPem: readFileSync(p(cfg.server.tls_cert), "utf8"),
    tlsKeyPem: readFileSync(p(cfg.server.tls_key), "utf8"),
    dbPath: p(cfg.database.path),
    // No service may be named so that its <srv_root>/<service> holds these (service-home.ts).
    statePaths: [
      resolve(file),
      p(cfg.server.tls_cert),
      p(cfg.server.tls_key),
      ...[cfg.master?.token_path, cfg.metacrypt?.token_path, cfg.mcns?.token_path, cfg.tls?.ca_cert]
        .filter((x): x is string => typeof x === "string" && x !== "")
        .map(p),
    ],
    validator: validatorFromConfig(cfg, base),
    operators: cfg.auth.operators,
    ...(cfg.tls ? { masterCaPem: readFileSync(p(cfg.tls.ca_cert), "utf8") } : {}),
    runtime,
    ...(unikernel ? { unikernel } : {}),
    srvRoot: cfg.agent.srv_root,
    hostAccess: cfg.auth.host_access,
    portRange: cfg.agent.port_range as [number, number],
    nodeAddress: node.address,
    integrations,
    hooks: composeHooks({ logger, nodeAddress: node.address, certDir: certDirOf(cfg, p) }, integrations),
    pullPolicy: cfg.agent.pull,
    historyKeep: cfg.agent.history_keep,
    importMaxBytes: cfg.agent.import_max_bytes,
    importMaxEntries: cfg.agent.import_max_entries,
    logger,
    version,
    monitor: {
      intervalMs: cfg.monitor.interval,
      alertCommand: cfg.monitor.alert_command,
      cooldownMs: cfg.monitor.cooldown,
      flapThreshold: cfg.monitor.flap_threshold,
      flapWindowMs: cfg.monitor.flap_window,
      retentionMs: cfg.monitor.retention,
      alertTimeoutMs: cfg.monitor.alert_timeout,
    },
    recoverOnStart: cfg.agent.recover_on_start,
    bootSequence: (cfg.boot?.sequence ?? []) as BootStage[],
    ...(cfg.master ? { master: masterLinkFromConfig(cfg, file, p) } : {}),
    edge: edgeFromConfig(cfg, file),
  };
}

/** [master]: the CA is [master] ca_cert, else [tls] ca_cert; the token file is required. */
function masterLinkFromConfig(
  cfg: AgentConfig,
  file: string,
  p: (s: string) => string,
): NonNullable<AgentSettings["master"]> {
  const m = cfg.master!;
  const ca = m.ca_cert ?? cfg.tls?.ca_cert;
  if (!ca)
    throw new ConfigError(file, "master.ca_cert", "is required to verify the master (or set [tls] ca_cert)");
  if (!m.token_path)
    throw new ConfigError(file, "master.token_path", "is required to authenticate to the master");
  const read = (key: string, path: string) => {
    try {
      return readFileSync(p(path), "utf8").trim();
    } catch (err) {
      throw new ConfigError(
        file,
        key,
        `cannot read ${p(path)}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
  };
  const token = read("master.token_path", m.token_path);
  if (!token) throw new ConfigError(file, "master.token_path", `${p(m.token_path)} is empty`);
  return {
    address: m.address,
    ...(m.role ? { role: m.role } : {}),
    heartbeatMs: m.heartbeat,
    caPem: read(m.ca_cert ? "master.ca_cert" : "tls.ca_cert", ca),
    token,
  };
}

function edgeFromConfig(cfg: AgentConfig, file: string): NonNullable<AgentSettings["edge"]> {
  cfg.edge.allowed_backend_cidrs.forEach((c, i) => {
    try {
      parseCidr(c);
    } catch (err) {
      throw new ConfigError(file, `edge.allowed_backend_cidrs[${i}]`, (err as Error).message);
    }
  });
  return { allowedBackendCidrs: cfg.edge.allowed_backend_cidrs, listener: cfg.edge.listener };
}

export async function runAgentDaemon(argv: string[], version: string): Promise<number> {
  let args: DaemonArgs;
  let settings: AgentSettings;
  try {
    args = parseArgs(argv);
    const { config, warnings } = loadAgentConfig(args.config);
    settings = settingsFromConfig(config, args.config, version, args.allowAnyAddr);
    for (const w of warnings) settings.logger.warn(w);
  } catch (err) {
    process.stderr.write(`mcp agent: ${(err as Error).message.split("\n")[0]}\n`);
    return 2;
  }
  const { runtime, unikernel } = settings;
  // The runtime's API service child dies with the agent (see src/runtime/podman-service.ts).
  return runUntilSignal("agent", settings.logger, async () => {
    const agent = await startAgent(settings).catch((err) => {
      runtime.close?.();
      unikernel?.close();
      throw err;
    });
    return {
      async close() {
        await agent.close();
        runtime.close?.();
        unikernel?.close();
      },
    };
  });
}
