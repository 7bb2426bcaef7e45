// A service's definition file as CLI commands find it (explicit -f, else <services.dir>/<svc>.toml)
// and the node it names. Apart from context.ts so commands that never read a definition (ps,
// list, status…) do not load the service-definition schema.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CliNode } from "../../config/cli.ts";
import { loadServiceDef, type ServiceDef } from "../../config/service.ts";
import type { Ctx } from "./context.ts";
import { CliError } from "./output.ts";

export function definitionPath(ctx: Ctx, service: string): string {
  return join(ctx.config.services.dir, `${service}.toml`);
}

export interface ResolvedDef {
  def: ServiceDef;
  file: string | null;
  warnings: string[];
}

/** The definition file for a service (explicit -f, else <services.dir>/<svc>.toml), or null. */
export function loadDefinition(ctx: Ctx, service: string, file?: string, strict = false): ResolvedDef | null {
  const path = file ?? definitionPath(ctx, service);
  if (!existsSync(path)) {
    if (file) throw new CliError(`${file}: file not found`, 2);
    return null;
  }
  const { def, warnings } = loadServiceDef(path, { strict });
  if (def.name !== service) {
    throw new CliError(
      `${path}: name: expected "${service}" (the service being deployed), got "${def.name}"`,
      2,
    );
  }
  return { def, file: path, warnings };
}

/** The node a service runs on: --node, the definition's node, or the only configured node. */
export function nodeForService(ctx: Ctx, service: string, explicit?: string, def?: ServiceDef): CliNode {
  const name = explicit || def?.node;
  if (name) return ctx.node(name);
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  throw new CliError(
    `service ${service} has no node: set node = "<name>" in its definition or pass --node (nodes: ${ctx.config.nodes.map((n) => n.name).join(", ") || "none"})`,
    2,
  );
}
