// Register and Heartbeat, the two RPCs agents call on the master (architecture-v2 "Registration
// Security", "Heartbeats"). Both are identity-bound: the node name comes from the caller's
// `agent-<node>` identity and the request's name must match it, so a rogue agent cannot speak for
// another node. A node's role is the master's decision ([registration] roles, else its [[nodes]]
// entry, else worker): a Register claiming another role is refused, so a compromised worker cannot
// make itself the master's node (tier-core services, their secrets) or an edge (public routes).
// Both carry the node's runtime kinds and unikernel accelerator (runtimesReport), stored for
// placement and `mcp node list`.
// Order of checks: identity binding and allowlist (PERMISSION_DENIED), input (INVALID_ARGUMENT),
// the claimed role (PERMISSION_DENIED), per-identity rate limit and max_nodes
// (RESOURCE_EXHAUSTED), then the store.

import type { Logger } from "pino";
import { RUNTIME_KINDS } from "../../config/runtime-kind.ts";
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
import type { MasterStore, NodeRole, NodeRuntimesInput } from "./store.ts";

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

const KINDS: ReadonlySet<string> = new Set(RUNTIME_KINDS);
const ACCELS: ReadonlySet<string> = new Set(["kvm", "tcg"]);
const MAX_REASON = 200;

/**
 * What a Register or Heartbeat says about the node's runtimes, checked (INVALID_ARGUMENT, one
 * line): known kinds, each once; an accelerator (kvm, tcg) only with the unikernel runtime; a
 * short printable reason only with an accelerator (operators read it in `mcp node list`). null
 * when no runtimes are given (an agent that does not report them): what is stored stays.
 */
export function runtimesReport(req: {
  runtimes: readonly string[];
  unikernelAccel: string;
  unikernelAccelReason: string;
}): NodeRuntimesInput | null {
  const { runtimes, unikernelAccel: accel, unikernelAccelReason: reason } = req;
  if (runtimes.length === 0) {
    if (accel || reason) throw invalidArgument("unikernel_accel given without runtimes");
    return null;
  }
  const seen = new Set<string>();
  for (const k of runtimes) {
    if (!KINDS.has(k))
      throw invalidArgument(
        `runtimes: unknown kind ${JSON.stringify(k)} (expected ${RUNTIME_KINDS.join(", ")})`,
      );
    if (seen.has(k)) throw invalidArgument(`runtimes: ${JSON.stringify(k)} given twice`);
    seen.add(k);
  }
  if (accel !== "" && !ACCELS.has(accel))
    throw invalidArgument(`unikernel_accel must be kvm or tcg, got ${JSON.stringify(accel)}`);
  if (accel !== "" && !seen.has("unikernel"))
    throw invalidArgument(`unikernel_accel ${JSON.stringify(accel)} given without the unikernel runtime`);
  if (reason !== "" && accel === "")
    throw invalidArgument("unikernel_accel_reason given without unikernel_accel");
  if (reason.length > MAX_REASON || /\p{Cc}/u.test(reason))
    throw invalidArgument(`unikernel_accel_reason must be at most ${MAX_REASON} printable characters`);
  return { runtimes: [...runtimes], unikernelAccel: accel, unikernelAccelReason: reason };
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
      const runtimes = runtimesReport(req);
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
      if (runtimes) store.setNodeRuntimes(name, runtimes);
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
      const runtimes = runtimesReport(req);
      limits.heartbeat.take(call.identity.name, "Heartbeat");
      const ok = store.recordHeartbeat(name, {
        containers: req.containers,
        cpuMillicores: Number(req.cpuMillicores),
        memoryBytes: Number(req.memoryBytes),
        diskBytes: Number(req.diskBytes),
      });
      if (!ok)
        throw failedPrecondition(`node ${name} is not registered with this master; call Register first`);
      if (runtimes) store.setNodeRuntimes(name, runtimes);
      health.heartbeat(name);
      return { acknowledged: true };
    },
  };
}
