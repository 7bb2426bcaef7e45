// Agent RPCs ListProxyRoutes / AddProxyRoute / RemoveProxyRoute: the operator's manual view of
// and fixes to this node's mc-proxy (`mcp route ...`), through the agent's configured ProxyAdmin.
// mc-proxy validates routes itself (cert chain, backend...); the agent only checks what the
// ProxyRoute contract needs and passes mc-proxy's one-line answer on with a matching code.

import type { McpAgent, ProxyRoute as WireRoute } from "../../gen/mcp/v1/mcp_pb.ts";
import { IntegrationError, type ProxyAdmin, type ProxyRoute } from "../../integrations/types.ts";
import { failedPrecondition, invalidArgument, RpcError, statusName } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import { Code as status } from "../../rpc/wire.ts";
import type { AgentContext } from "./context.ts";

// mc-proxy's code is kept where it means the same to the operator; transport trouble with the
// local socket is UNAVAILABLE; anything else is the node's precondition (mc-proxy not right).
const PASS_THROUGH = new Set<number>([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.PERMISSION_DENIED,
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.FAILED_PRECONDITION,
]);

function toRpc(err: unknown): RpcError {
  if (err instanceof RpcError) return err;
  if (err instanceof IntegrationError) {
    const code =
      err.status !== undefined && PASS_THROUGH.has(err.status) ? err.status : status.FAILED_PRECONDITION;
    // The RPC's own code already says what mc-proxy answered: drop the repeat from the line.
    const same = err.status === code ? `: ${statusName(code)}: ` : null;
    return new RpcError(code, same ? err.message.replace(same, ": ") : err.message);
  }
  return new RpcError(
    status.INTERNAL,
    `mc-proxy: ${((err as Error)?.message ?? String(err)).split("\n")[0]}`,
  );
}

function portOk(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

function toWire(r: ProxyRoute) {
  return { ...r };
}

function fromWire(r: WireRoute): ProxyRoute {
  if (!portOk(r.listener)) throw invalidArgument(`route listener ${r.listener}: must be 1-65535`);
  if (!r.hostname) throw invalidArgument("route hostname is required");
  if (!r.backend) throw invalidArgument("route backend (host:port) is required");
  if (r.mode !== "l4" && r.mode !== "l7")
    throw invalidArgument(`route mode "${r.mode}": expected "l4" or "l7"`);
  return {
    listener: r.listener,
    hostname: r.hostname,
    backend: r.backend,
    mode: r.mode,
    tlsCert: r.tlsCert,
    tlsKey: r.tlsKey,
    backendTls: r.backendTls,
  };
}

export function proxyRoutesHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  // Read per call: the settings are the one place the daemon puts the adapter.
  const proxy = (): ProxyAdmin => {
    const p = ctx.settings.integrations?.proxy;
    if (!p)
      throw failedPrecondition(
        `mc-proxy is not configured on node ${ctx.settings.nodeName} ([mcproxy] socket)`,
      );
    return p;
  };
  const run = async <T>(fn: (p: ProxyAdmin) => Promise<T>): Promise<T> => {
    const p = proxy();
    try {
      return await fn(p);
    } catch (err) {
      throw toRpc(err);
    }
  };
  return {
    async listProxyRoutes() {
      return { routes: (await run((p) => p.listRoutes())).map(toWire) };
    },
    async addProxyRoute(req) {
      if (!req.route) throw invalidArgument("route is required");
      const route = fromWire(req.route);
      await run((p) => p.addRoute(route));
      ctx.logger.info({ route: { ...route } }, "mc-proxy route added by operator");
      return {};
    },
    async removeProxyRoute(req) {
      if (!portOk(req.listener)) throw invalidArgument(`listener ${req.listener}: must be 1-65535`);
      if (!req.hostname) throw invalidArgument("hostname is required");
      await run((p) => p.removeRoute(req.listener, req.hostname));
      ctx.logger.info(
        { listener: req.listener, hostname: req.hostname },
        "mc-proxy route removed by operator",
      );
      return {};
    },
  };
}
