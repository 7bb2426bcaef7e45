// PushFile/PullFile handlers: decide whether the service is known on this node, then hand the
// path to the confinement module (files/confine.ts), which owns every filesystem access.
// Failures are gRPC statuses (the CLI reads those); the v1 `error` fields are left empty.
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { readConfined, serviceDirExists, writeConfined } from "./files/confine.ts";
import { checkServiceHome } from "./service-home.ts";

/** A service is known when the registry has it or its directory already exists. */
async function knownService(ctx: AgentContext, service: string): Promise<boolean> {
  checkServiceHome(ctx.settings, service);
  return ctx.registry.getService(service) !== null || (await serviceDirExists(ctx.settings.srvRoot, service));
}

export function filesHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  const node = ctx.settings.nodeName;
  return {
    async pushFile(req) {
      checkServiceHome(ctx.settings, req.service);
      if (!req.create && !(await knownService(ctx, req.service))) {
        throw notFound(
          `unknown service ${req.service} on node ${node}; pass --create to push before the first deploy`,
        );
      }
      const r = await writeConfined(ctx.settings.srvRoot, req.service, req.path, req.content, req.mode);
      ctx.logger.info({ service: req.service, path: r.path, bytes: r.bytes, mode: r.mode }, "file pushed");
      return { success: true, error: "" };
    },
    async pullFile(req) {
      if (!(await knownService(ctx, req.service)))
        throw notFound(`unknown service ${req.service} on node ${node}`);
      const r = await readConfined(ctx.settings.srvRoot, req.service, req.path);
      return { content: r.content, mode: r.mode, error: "" };
    },
  };
}
