// `mcp service show|export|edit <svc>` and `mcp edit <svc>` (reference "Spec Lifecycle"): the
// spec an agent recorded at the last deploy/adopt, printed as TOML, written back as a definition
// file, or opened in the operator's editor (exported first when no file exists) and validated.
import { existsSync } from "node:fs";
import { createInterface } from "node:readline/promises";
import { specToDef } from "../../component/proto.ts";
import type { CliNode } from "../../config/cli.ts";
import { loadServiceDef, NAME_RE, type ServiceDef, serviceDefToToml } from "../../config/service.ts";
import { writeFileAtomic } from "../../config/write.ts";
import { type Ctx, loadCtx, locateService, onNode } from "./context.ts";
import { definitionPath, loadDefinition } from "./definition.ts";
import { CliError, printError, printJson, warn } from "./output.ts";

export function requireServiceName(name: string | undefined): string {
  if (!name || !NAME_RE.test(name))
    throw new CliError(`bad service name ${JSON.stringify(name ?? "")}: expected [a-z0-9][a-z0-9-]*`, 2);
  return name;
}

/**
 * The node to ask about a service: --node, else the node its definition file names (a broken
 * file is no reason to refuse a read), else the only node, else whichever node's registry has it.
 */
export async function serviceNode(ctx: Ctx, service: string, explicit?: unknown): Promise<CliNode> {
  if (typeof explicit === "string" && explicit) return ctx.node(explicit);
  let defNode: string | undefined;
  try {
    defNode = loadDefinition(ctx, service)?.def.node;
  } catch {
    defNode = undefined;
  }
  if (defNode) return ctx.node(defNode);
  return locateService(ctx, service);
}

/** The spec in the node's registry as a definition, pinned to that node. */
export async function registryDef(ctx: Ctx, service: string, node: CliNode): Promise<ServiceDef> {
  const client = await ctx.agent(node);
  const res = await onNode(node, client.getServiceSpec({ name: service }));
  if (!res.service) throw new CliError(`${node.name}: no spec for service "${service}"`);
  const def = specToDef(res.service, `spec of ${service} from ${node.name}`);
  def.node = node.name;
  return def;
}

export async function showCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  const node = await serviceNode(ctx, service, opts.node);
  const def = await registryDef(ctx, service, node);
  if (ctx.json) printJson(def);
  else process.stdout.write(serviceDefToToml(def));
  return 0;
}

/** Writes the registry spec to `file`; keeps a [build] section the existing file had (agents do not store it). */
async function exportTo(ctx: Ctx, service: string, file: string, explicitNode: unknown): Promise<CliNode> {
  const node = await serviceNode(ctx, service, explicitNode);
  const def = await registryDef(ctx, service, node);
  if (existsSync(file)) {
    try {
      const old = loadServiceDef(file).def;
      if (old.build && old.name === service) def.build = old.build;
    } catch {
      // An unreadable old file is simply replaced.
    }
  }
  writeFileAtomic(file, serviceDefToToml(def));
  return node;
}

export async function exportCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  const file = (opts.file as string | undefined) || definitionPath(ctx, service);
  const node = await exportTo(ctx, service, file, opts.node);
  if (ctx.json) printJson({ service, node: node.name, file });
  else process.stdout.write(`wrote ${file} (spec of ${service} from ${node.name})\n`);
  return 0;
}

/** $VISUAL, else $EDITOR, else vi, split on whitespace (run as argv, never through a shell). */
export function editorArgv(env: Record<string, string | undefined> = process.env): string[] {
  for (const v of [env.VISUAL, env.EDITOR]) {
    const argv = (v ?? "").trim().split(/\s+/).filter(Boolean);
    if (argv.length > 0) return argv;
  }
  return ["vi"];
}

function runEditor(editor: string[], file: string): number {
  let proc: ReturnType<typeof Bun.spawnSync>;
  try {
    proc = Bun.spawnSync([...editor, file], { stdin: "inherit", stdout: "inherit", stderr: "inherit" });
  } catch {
    throw new CliError(
      `cannot run editor "${editor[0]}" (from $VISUAL/$EDITOR): not found or not executable`,
      2,
    );
  }
  return proc.exitCode ?? 1;
}

/** Validates the edited file like deploy would; returns the one-line problem or null. */
function validate(file: string, service: string): string | null {
  try {
    const { def, warnings } = loadServiceDef(file);
    if (def.name !== service) return `${file}: name: expected "${service}", got "${def.name}"`;
    for (const w of warnings) warn(w);
    return null;
  } catch (err) {
    return (err as Error).message.split("\n")[0] ?? "invalid definition";
  }
}

async function askReopen(): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question("re-open the editor? [Y/n] ");
    return !/^\s*n/i.test(answer);
  } finally {
    rl.close();
  }
}

export async function editCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  const file = definitionPath(ctx, service);
  if (!existsSync(file)) {
    // Start from what is deployed, not from a blank file.
    const node = await exportTo(ctx, service, file, opts.node);
    process.stderr.write(`mcp: no ${file} yet: exported the spec of ${service} from ${node.name}\n`);
  }
  const editor = editorArgv();
  // Each round is one operator decision; the loop ends when the file is valid or they decline.
  for (;;) {
    const code = runEditor(editor, file);
    if (code !== 0)
      throw new CliError(`editor ${editor[0]} exited with code ${code}; ${file} keeps what was saved`);
    const problem = validate(file, service);
    if (problem === null) {
      process.stdout.write(`${file}: valid (apply with: mcp deploy ${service})\n`);
      return 0;
    }
    printError(new Error(problem));
    if (!process.stdin.isTTY || !(await askReopen())) return 2;
  }
}
