// What CLI commands share: the loaded config, the token, agent clients, fan-out over nodes
// (parallel, an unreachable node is an error row, never a crash) and service resolution.
import { existsSync, readFileSync } from "node:fs";
import { readTokenFile, resolveToken } from "../../auth/token-file.ts";
import {
  type CliConfig,
  type CliNode,
  defaultCliConfigPath,
  findNode,
  loadCliConfig,
} from "../../config/cli.ts";
import { McpAgent, McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import { connect, type TypedClient } from "../../rpc/client.ts";

import { CliError, warn } from "./output.ts";

export type AgentClient = TypedClient<typeof McpAgent>;
export type MasterClient = TypedClient<typeof McpMasterService>;

export interface Ctx {
  configPath: string;
  config: CliConfig;
  json: boolean;
  token(): Promise<string>;
  agent(node: CliNode): Promise<AgentClient>;
  node(name: string): CliNode;
  /** True when commands go through the master: [master] is configured and --direct is not given. */
  viaMaster: boolean;
  /** Client for the [master] address (same CA and token as the agents). */
  master(): Promise<MasterClient>;
}

export function loadCtx(opts: Record<string, unknown>): Ctx {
  const configPath = (opts.config as string | undefined) || defaultCliConfigPath();
  if (!existsSync(configPath)) {
    throw new CliError(
      `${configPath}: file not found (run "mcp init --local" or create it; --config/MCP_CONFIG pick another)`,
      2,
    );
  }
  const { config, warnings } = loadCliConfig(configPath);
  for (const w of warnings) warn(w);
  let tokenPromise: Promise<string> | null = null;
  let caPem: string | null = null;
  const clients = new Map<string, Promise<AgentClient>>();
  let masterClient: Promise<MasterClient> | null = null;
  const ctx: Ctx = {
    configPath,
    config,
    json: opts.json === true,
    token() {
      tokenPromise ??= resolveCliToken(config);
      return tokenPromise;
    },
    async agent(node) {
      let c = clients.get(node.name);
      if (!c) {
        c = (async () => {
          caPem ??= readCa(config, configPath);
          return connect(McpAgent, {
            addresses: [node.address, ...node.addresses],
            caPem,
            token: await ctx.token(),
          });
        })();
        clients.set(node.name, c);
      }
      return c;
    },
    node(name) {
      return findNode(config, name, configPath);
    },
    viaMaster: config.master !== undefined && opts.direct !== true,
    master() {
      masterClient ??= (async () => {
        const m = config.master;
        if (!m) throw new CliError(`no [master] in ${configPath}: add [master] address = "host:port"`, 2);
        caPem ??= readCa(config, configPath);
        return connect(McpMasterService, {
          addresses: [m.address, ...m.addresses],
          caPem,
          token: await ctx.token(),
        });
      })();
      return masterClient;
    },
  };
  return ctx;
}

function readCa(config: CliConfig, configPath: string): string {
  const path = config.tls?.ca_cert;
  if (!path)
    throw new CliError(
      `${configPath}: tls.ca_cert: required (no [tls] ca_cert) to verify agent certificates`,
      2,
    );
  try {
    return readFileSync(path, "utf8");
  } catch {
    throw new CliError(`${path}: cannot read the CA certificate ([tls] ca_cert)`, 2);
  }
}

async function resolveCliToken(config: CliConfig): Promise<string> {
  return resolveToken({
    tokenPath: config.auth.token_path,
    login:
      config.auth.username && config.auth.password_file && config.mcias
        ? async () => {
            const { systemLogin } = await import("./login.ts");
            return systemLogin(config);
          }
        : undefined,
  });
}

export { readTokenFile };

export interface NodeResult<T> {
  node: CliNode;
  value?: T;
  error?: string;
}

/** Runs fn against every node (or the named ones) in parallel; failures become error rows. */
export async function fanOut<T>(
  ctx: Ctx,
  fn: (c: AgentClient, node: CliNode) => Promise<T>,
  only?: string[],
): Promise<NodeResult<T>[]> {
  const nodes = only ? only.map((n) => ctx.node(n)) : ctx.config.nodes;
  if (nodes.length === 0)
    throw new CliError(`no nodes in ${ctx.configPath} (add one with "mcp node add")`, 2);
  return Promise.all(
    nodes.map(async (node) => {
      try {
        return { node, value: await fn(await ctx.agent(node), node) };
      } catch (err) {
        return { node, error: (err as Error).message.split("\n")[0] };
      }
    }),
  );
}

/** Prefixes a failed call with the node it went to, so the operator knows where it broke. */
export async function onNode<T>(node: CliNode, call: Promise<T>): Promise<T> {
  try {
    return await call;
  } catch (err) {
    throw new CliError(`${node.name}: ${(err as Error).message.split("\n")[0]}`);
  }
}

/** `svc` or `svc/comp`. */
export function splitTarget(target: string): { service: string; component?: string } {
  const i = target.indexOf("/");
  if (i < 0) return { service: target };
  const service = target.slice(0, i);
  const component = target.slice(i + 1);
  if (!service || !component || component.includes("/")) {
    throw new CliError(`bad target "${target}": expected <service> or <service>/<component>`, 2);
  }
  return { service, component };
}

/** Finds which node runs a service when no definition says so: asks every node's registry. */
export async function locateService(ctx: Ctx, service: string): Promise<CliNode> {
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  const rows = await fanOut(ctx, async (c) =>
    (await c.listServices({})).services.some((s) => s.name === service),
  );
  const hits = rows.filter((r) => r.value === true).map((r) => r.node);
  if (hits.length === 1) return hits[0]!;
  if (hits.length === 0)
    throw new CliError(`unknown service "${service}": no definition file and no node has it`);
  throw new CliError(
    `service "${service}" is on several nodes (${hits.map((n) => n.name).join(", ")}): pass --node`,
  );
}
