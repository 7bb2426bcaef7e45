// A service's definition file as CLI commands find it (explicit -f, else <services.dir>/<svc>.toml)
// and the node it names. Apart from context.ts so commands that never read a definition (ps,
// list, status…) do not load the service-definition schema.
import { existsSync } from "node:fs";
import { join } from "node:path";
import type { CliNode } from "../../config/cli.ts";
import { ConfigError } from "../../config/errors.ts";
import { loadServiceDef, type ServiceDef } from "../../config/service.ts";
import { didYouMean } from "../../util/suggest.ts";
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
  definitionFiles.set(def, path);
  return { def, file: path, warnings };
}

// The file each definition loadDefinition read, so a wrong `node = "…"` in it is reported against
// that file (nodeForService takes the definition alone).
const definitionFiles = new WeakMap<ServiceDef, string>();

/**
 * The configured node a definition's `node = "…"` names. A name no node has is the definition
 * file's mistake (file, key, the nodes there are), not the CLI config's.
 */
export function definitionNode(ctx: Ctx, name: string, file: string): CliNode {
  const node = ctx.config.nodes.find((n) => n.name === name);
  if (node) return node;
  const known = ctx.config.nodes.map((n) => n.name);
  throw new ConfigError(
    file,
    "node",
    `no node named "${name}" in ${ctx.configPath} (known: ${known.join(", ") || "none"})${didYouMean(name, known)}`,
  );
}

/**
 * The node the service's definition file names, or undefined when it names none or cannot be read
 * (a broken file is no reason to refuse a read or a teardown); a name no node has is an error
 * blamed on the file.
 */
export function definedNode(ctx: Ctx, service: string): CliNode | undefined {
  let loaded: ResolvedDef | null;
  try {
    loaded = loadDefinition(ctx, service);
  } catch {
    return undefined;
  }
  return loaded?.def.node ? definitionNode(ctx, loaded.def.node, loaded.file!) : undefined;
}

/** The node a service runs on: --node, the definition's node, or the only configured node. */
export function nodeForService(ctx: Ctx, service: string, explicit?: string, def?: ServiceDef): CliNode {
  const file = def && definitionFiles.get(def);
  if (!explicit && def?.node && file) return definitionNode(ctx, def.node, file);
  const name = explicit || def?.node;
  if (name) return ctx.node(name);
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  throw new CliError(
    `service ${service} has no node: set node = "<name>" in its definition or pass --node (nodes: ${ctx.config.nodes.map((n) => n.name).join(", ") || "none"})`,
    2,
  );
}
