// `mcp service show|export|edit <svc>` and `mcp edit <svc>` (reference "Spec Lifecycle"): the
// spec an agent recorded at the last deploy/adopt, printed as TOML, written back as a definition
// file, or opened in the operator's editor (exported first when no file exists) and validated.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { specToDef } from "../../component/proto.ts";
import type { CliNode } from "../../config/cli.ts";
import {
  loadServiceDef,
  NAME_RE,
  parseServiceDef,
  type ServiceDef,
  serviceDefToToml,
} from "../../config/service.ts";
import { decodeUtf8, parseTomlText } from "../../config/toml.ts";
import { writeFileAtomic } from "../../config/write.ts";
import { type Ctx, loadCtx, locateService, onNode } from "./context.ts";
import { definedNode, definitionNode, definitionPath } from "./definition.ts";
import { CliError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, printError, printJson, warn } from "./output.ts";

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
  const defined = definedNode(ctx, service); // a broken file does not stop this
  if (defined) return defined;
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

// The note at the top of a reopened edit: always HEADER_LINES lines, so the line numbers of a
// problem (counted with the note in place) are the ones the operator sees in the editor.
const HEADER = "# mcp edit: ";
const HEADER_LINES = 3;
const MAX_EDIT_ROUNDS = 20;

function withHeader(text: string, file: string, problem: string): string {
  return [
    `${HEADER}NOT APPLIED: ${problem}`,
    `${HEADER}fix it and save to apply to ${file} (these "${HEADER.trim()}" lines are dropped)`,
    `${HEADER}to abandon the edit: save it unchanged or empty, or quit the editor with an error (vi: :cq)`,
    text,
  ].join("\n");
}

/** The text without the note (the leading lines starting with HEADER). */
function withoutHeader(text: string): string {
  const lines = text.split("\n");
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith(HEADER)) i++;
  return lines.slice(i).join("\n");
}

/**
 * Validates an edit like deploy would (and the node it names, unless the master places it);
 * returns the one-line problem or null. Problems name the edit copy and count its lines with the
 * note in place, as the editor shows them.
 */
function validate(
  ctx: Ctx,
  bytes: Uint8Array,
  copy: string,
  service: string,
  onWarn: (w: string) => void = () => {},
): string | null {
  try {
    const text = withoutHeader(decodeUtf8(bytes, copy));
    const data = parseTomlText(`${"#\n".repeat(HEADER_LINES)}${text}`, copy);
    const { def, warnings } = parseServiceDef(data, copy);
    if (def.name !== service) return `${copy}: name: expected "${service}", got "${def.name}"`;
    if (def.node && !ctx.viaMaster) definitionNode(ctx, def.node, copy);
    for (const w of warnings) onWarn(w);
    return null;
  } catch (err) {
    return (err as Error).message.split("\n")[0] || "invalid definition";
  }
}

/**
 * Opens the definition in the operator's editor (exported from the registry first when there is
 * no file). The editor works on a copy; the definition is replaced only by an edit that validates.
 * An invalid edit (or an invalid file to begin with) is reopened with the problem at the top,
 * keeping the operator's text, until it validates or the operator abandons it (saves it unchanged
 * or empty, or the editor fails); the abandoned text stays in the copy, whose path is printed.
 */
export async function editCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  const file = definitionPath(ctx, service);
  if (!existsSync(file)) {
    // Start from what is deployed, not from a blank file.
    const node = await exportTo(ctx, service, file, opts.node);
    process.stderr.write(`mcp: no ${file} yet: exported the spec of ${service} from ${node.name}\n`);
  }
  const originalBytes = readFileSync(file);
  const original = originalBytes.toString("utf8");
  const editor = editorArgv();
  const dir = mkdtempSync(join(tmpdir(), "mcp-edit-"));
  const copy = join(dir, basename(file));
  let keepCopy = false;
  try {
    const originalProblem = validate(ctx, originalBytes, copy, service);
    let text = original;
    let problem = originalProblem;
    // Each round is one operator decision: the loop ends when the edit validates or is abandoned,
    // and after MAX_EDIT_ROUNDS in any case (an editor that is a script can change the file forever).
    for (let round = 1; ; round++) {
      const abandon = (why: string) => {
        // The operator's last text is kept aside when it differs from the definition.
        keepCopy = text !== original;
        if (keepCopy) writeFileSync(copy, text, { mode: 0o600 });
        return new CliError(
          `${why}: ${file} left as it was${keepCopy ? ` (the edit is kept in ${copy})` : ""}`,
          problem === null ? EXIT_FAILED : EXIT_USAGE,
        );
      };
      if (round > MAX_EDIT_ROUNDS) throw abandon(`still invalid after ${MAX_EDIT_ROUNDS} edits (${problem})`);
      writeFileSync(copy, problem === null ? text : withHeader(text, file, problem), { mode: 0o600 });
      const code = runEditor(editor, copy);
      const bytes = readFileSync(copy);
      const saved = withoutHeader(bytes.toString("utf8"));
      if (code !== 0) throw abandon(`editor ${editor[0]} exited with code ${code}`);
      if (saved.trim() === "") {
        if (problem !== null) throw abandon("edit abandoned (saved empty)");
        process.stdout.write(`${file}: edit abandoned (saved empty), left as it was\n`);
        return EXIT_OK;
      }
      if (problem !== null && saved === text) throw abandon(`edit abandoned (saved unchanged): ${problem}`);
      if (saved === original && originalProblem === null) {
        process.stdout.write(`${file}: no changes\n`);
        return EXIT_OK;
      }
      text = saved;
      problem = validate(ctx, bytes, copy, service, warn);
      if (problem === null) {
        writeFileAtomic(file, saved);
        process.stdout.write(`${file}: valid (apply with: mcp deploy ${service})\n`);
        return EXIT_OK;
      }
      printError(new Error(problem));
      process.stderr.write("mcp: reopening the editor on the edit (the problem is noted at its top)\n");
    }
  } finally {
    if (!keepCopy) rmSync(dir, { recursive: true, force: true });
  }
}
