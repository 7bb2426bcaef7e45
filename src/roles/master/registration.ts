// Register and Heartbeat, the two RPCs agents call on the master (architecture-v2 "Registration
// Security", "Heartbeats"). Both are identity-bound: the node name comes from the caller's
// `agent-<node>` identity and the request's name must match it, so a rogue agent cannot speak for
// another node. A node's role is the master's decision ([registration] roles, else its [[nodes]]
// entry, else worker): a Register claiming another role is refused, so a compromised worker cannot
// make itself the master's node (tier-core services, their secrets) or an edge (public routes).
// Order of checks: identity binding and allowlist (PERMISSION_DENIED), input (INVALID_ARGUMENT),
// the claimed role (PERMISSION_DENIED), per-identity rate limit and max_nodes
// (RESOURCE_EXHAUSTED), then the store.

import type { Logger } from "pino";
import { parseHostPort } from "../../config/specs.ts";
import type { McpMasterService } from "../../gen/mcp/v1/mcp_pb.ts";
import {
  failedPrecondition,
  invalidArgument,
  permissionDenied,
  resourceExhausted,
} from "../../rpc/errors.ts";
import type { CallContext, Handlers } from "../../rpc/service.ts";
import type { MasterContext } from "./context.ts";
import { type MasterHealth, masterHealthOf } from "./health.ts";
import { AGENT_PREFIX, agentNodeOf } from "./policy.ts";
import { type AgentRateLimits, agentRateLimits } from "./ratelimit.ts";
import type { MasterStore, NodeRole } from "./store.ts";

export interface RegistrationDeps {
  store: MasterStore;
  logger: Logger;
  config: { registration: { allowed_agents: string[]; max_nodes: number } };
  /** The role the master's config gives a node (configuredRole). */
  roleOf: (node: string) => NodeRole;
  health: MasterHealth;
  limits: AgentRateLimits;
}

const ROLES: ReadonlySet<string> = new Set(["worker", "edge", "master"]);
/** A dialable host:port (config/specs.ts, the one parser), or null. */
function dialable(address: string): string | null {
  try {
    parseHostPort(address);
    return address;
  } catch {
    return null;
  }
}

/** The node the caller may speak for; PERMISSION_DENIED when the request names another one. */
function boundNode(call: CallContext, requested: string, allowed: ReadonlySet<string>, verb: string): string {
  const id = call.identity;
  const node = agentNodeOf({ name: id.name, accountType: id.accountType === "human" ? "human" : "system" });
  if (node === null) throw permissionDenied(`${id.name} is not an agent identity (${AGENT_PREFIX}<node>)`);
  // The policy already enforces the allowlist; checked again so the handler is safe on its own.
  if (!allowed.has(id.name)) throw permissionDenied(`${id.name} is not in [registration] allowed_agents`);
  if (requested !== node) {
    throw permissionDenied(
      `${id.name} cannot ${verb} as ${JSON.stringify(requested)}: it may only speak for ${node}`,
    );
  }
  return node;
}

/** A node's role from the master's config: [registration] roles, else its [[nodes]] entry, else worker. */
export function configuredRole(
  node: string,
  roles: Readonly<Record<string, NodeRole>>,
  bootstrap: readonly { name: string; role: NodeRole }[],
): NodeRole {
  return roles[node] ?? bootstrap.find((n) => n.name === node)?.role ?? "worker";
}

type RegistrationHandlers = Pick<Handlers<typeof McpMasterService>, "register" | "heartbeat">;

/** Register/Heartbeat of a running master: its store, its MasterHealth, limits from its settings. */
export function registrationHandlers(ctx: MasterContext): RegistrationHandlers {
  const r = ctx.settings.registration;
  return registrationHandlersWith({
    store: ctx.store,
    logger: ctx.logger,
    config: { registration: { allowed_agents: r.allowedAgents, max_nodes: r.maxNodes } },
    health: masterHealthOf(ctx),
    roleOf: (node) => configuredRole(node, r.roles ?? {}, ctx.settings.bootstrapNodes),
    limits: agentRateLimits({
      registration: {
        register_interval: r.registerIntervalMs ?? 60_000,
        heartbeat_min_interval: r.heartbeatMinIntervalMs ?? 10_000,
      },
    }),
  });
}

export function registrationHandlersWith(deps: RegistrationDeps): RegistrationHandlers {
  const { store, logger, health, limits } = deps;
  const allowed = new Set(deps.config.registration.allowed_agents);
  return {
    async register(req, call) {
      const name = boundNode(call, req.name, allowed, "register");
      if (req.role !== "" && !ROLES.has(req.role))
        throw invalidArgument(`role must be worker, edge or master, got ${JSON.stringify(req.role)}`);
      if (dialable(req.address) === null) {
        throw invalidArgument(`address must be host:port, got ${JSON.stringify(req.address)}`);
      }
      // An empty claim means "whatever the master says"; the refusal's audit line (the
      // interceptor's, at warn) carries this message and the caller.
      const role = deps.roleOf(name);
      if (req.role !== "" && req.role !== role) {
        throw permissionDenied(
          `${call.identity.name} claimed role ${req.role}; this master's config says ${role} ([registration] roles)`,
        );
      }
      limits.register.take(call.identity.name, "Register");
      const prev = store.getNode(name);
      if (!prev) {
        const count = store.listNodes().length;
        const max = deps.config.registration.max_nodes;
        if (count >= max) {
          throw resourceExhausted(
            `the master already has ${count} nodes (max_nodes ${max}); ${name} not registered`,
          );
        }
      }
      store.upsertNode({
        name,
        role,
        address: req.address,
        // Configured fallbacks stay; the old primary is not kept (another node may own it now).
        addresses: prev ? prev.addresses.filter((a) => a !== req.address) : [],
        arch: req.arch || prev?.arch || "amd64",
        version: req.version,
      });
      if (prev) {
        logger.warn(
          {
            node: name,
            caller: call.identity.name,
            previous_address: prev.address,
            address: req.address,
            role,
            version: req.version,
          },
          "node re-registered",
        );
      } else {
        logger.info(
          { node: name, address: req.address, role, arch: req.arch, version: req.version },
          "node registered",
        );
      }
      health.heartbeat(name);
      return { accepted: true };
    },

    async heartbeat(req, call) {
      const name = boundNode(call, req.name, allowed, "heartbeat");
      limits.heartbeat.take(call.identity.name, "Heartbeat");
      const ok = store.recordHeartbeat(name, {
        containers: req.containers,
        cpuMillicores: Number(req.cpuMillicores),
        memoryBytes: Number(req.memoryBytes),
        diskBytes: Number(req.diskBytes),
      });
      if (!ok)
        throw failedPrecondition(`node ${name} is not registered with this master; call Register first`);
      health.heartbeat(name);
      return { acknowledged: true };
    },
  };
}
