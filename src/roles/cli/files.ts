// `mcp push <file> <svc> [path]` and `mcp pull <svc> <path> [file]`: single-file transfer into
// and out of <srv_root>/<svc>/ on the service's node. The agent confines paths; this side checks
// what it can before sending (size, mode, local file) and writes pulled files atomically.
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fchmodSync,
  fsyncSync,
  linkSync,
  openSync,
  readFileSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join, posix } from "node:path";
import type { CliNode } from "../../config/cli.ts";
import { MAX_FILE_BYTES, tooLargeMessage } from "../../config/limits.ts";
import { type Ctx, loadCtx, locateService, onNode } from "./context.ts";
import { loadDefinition, nodeForService } from "./definition.ts";
import { CliError, formatBytes, printJson } from "./output.ts";

const octal = (mode: number) => `0${(mode & 0o777).toString(8).padStart(3, "0")}`;

/**
 * The node a file operation goes to: -n, else the definition's node, else the only node, else
 * whichever node's registry has the service.
 */
async function targetNode(ctx: Ctx, service: string, explicit: unknown): Promise<CliNode> {
  const name = explicit === undefined || explicit === true ? undefined : String(explicit);
  if (name) return ctx.node(name);
  const loaded = loadDefinition(ctx, service);
  if (loaded) return nodeForService(ctx, service, undefined, loaded.def);
  return locateService(ctx, service);
}

/**
 * The --mode value exactly as typed. cac turns "0640" into the number 640 and "0o640" into 416,
 * so the raw argv token is read when it is there; the parsed value is the fallback.
 */
export function rawMode(argv: string[], parsed: unknown): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--") break;
    if (a === "--mode") return argv[i + 1];
    if (a.startsWith("--mode=")) return a.slice("--mode=".length);
  }
  return parsed === undefined ? undefined : String(parsed);
}

/** "0640", "640", "0o640" → 0o640; anything else is a usage error. */
export function parseMode(text: string): number {
  const m = /^(?:0o|0)?([0-7]{3})$/i.exec(text.trim());
  if (!m)
    throw new CliError(
      `--mode ${JSON.stringify(text)}: expected octal permission bits such as 0644 or 0600`,
      2,
    );
  return Number.parseInt(m[1]!, 8);
}

export async function pushCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const [file, service, pathArg] = args as [string, string, string?];
  const ctx = loadCtx(opts);
  let st: ReturnType<typeof statSync>;
  try {
    st = statSync(file);
  } catch {
    throw new CliError(`${file}: file not found`, 2);
  }
  if (!st.isFile()) throw new CliError(`${file}: not a regular file`, 2);
  if (st.size > MAX_FILE_BYTES) throw new CliError(`${file}: ${tooLargeMessage("file", st.size)}`, 2);
  const modeText = rawMode(process.argv, opts.mode);
  const mode = modeText === undefined ? st.mode & 0o777 : parseMode(modeText);
  // Path omitted → the file's basename; a path ending in "/" names a directory for it.
  let path = pathArg ?? basename(file);
  if (path.endsWith("/")) path += basename(file);
  const content = readFileSync(file);
  if (content.byteLength > MAX_FILE_BYTES)
    throw new CliError(`${file}: ${tooLargeMessage("file", content.byteLength)}`, 2);

  const node = await targetNode(ctx, service, opts.node);
  const client = await ctx.agent(node);
  await onNode(
    node,
    client.pushFile({ service, path, content, mode, create: opts.create === true }, { timeoutMs: 120_000 }),
  );
  const shownPath = posix.normalize(path);
  if (ctx.json)
    printJson({ service, node: node.name, path: shownPath, bytes: content.byteLength, mode: octal(mode) });
  else
    process.stdout.write(
      `pushed ${file} → ${service}:${shownPath} on ${node.name} (${formatBytes(content.byteLength)}, ${octal(mode)})\n`,
    );
  return 0;
}

/** Where a pulled file goes: [file], or into [file] when it is a directory, else the basename. */
function localTarget(path: string, fileArg?: string): string {
  const name = posix.basename(path);
  if (!fileArg) return name;
  try {
    if (statSync(fileArg).isDirectory()) return join(fileArg, name);
  } catch {
    // not there yet: it is the file name
  }
  return fileArg;
}

/**
 * Writes a pulled file atomically: temp file in the same directory, fsync, then rename (--force)
 * or link (no --force: link fails with EEXIST if the file appeared meanwhile, never overwriting).
 */
function writeLocal(dest: string, content: Uint8Array, mode: number, force: boolean): void {
  const tmp = join(
    dirname(dest),
    `.${basename(dest).slice(0, 200)}.mcp-pull-${randomBytes(6).toString("hex")}`,
  );
  let fd: number;
  try {
    fd = openSync(tmp, "wx", mode);
  } catch (err) {
    throw new CliError(`${dest}: cannot write: ${(err as Error).message.split("\n")[0]}`);
  }
  try {
    try {
      let off = 0;
      while (off < content.byteLength) off += writeSync(fd, content, off, content.byteLength - off);
      fchmodSync(fd, mode); // openSync's mode went through the umask: set exactly what the node has
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    if (force) renameSync(tmp, dest);
    else {
      try {
        linkSync(tmp, dest);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === "EEXIST")
          throw new CliError(`${dest} already exists (pass --force to overwrite)`, 2);
        throw err;
      }
      unlinkSync(tmp);
    }
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // already renamed or never linked
    }
    throw err;
  }
}

export async function pullCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const [service, path, fileArg] = args as [string, string, string?];
  const ctx = loadCtx(opts);
  const force = opts.force === true;
  const dest = localTarget(path, fileArg);
  // Refuse before transferring anything; writeLocal re-checks atomically.
  if (!force && statSync(dest, { throwIfNoEntry: false }))
    throw new CliError(`${dest} already exists (pass --force to overwrite)`, 2);
  const node = await targetNode(ctx, service, opts.node);
  const client = await ctx.agent(node);
  const res = await onNode(node, client.pullFile({ service, path }, { timeoutMs: 120_000 }));
  const mode = res.mode & 0o777 || 0o644;
  writeLocal(dest, res.content, mode, force);
  const shownPath = posix.normalize(path);
  if (ctx.json)
    printJson({
      service,
      node: node.name,
      path: shownPath,
      bytes: res.content.byteLength,
      mode: octal(mode),
      file: dest,
    });
  else
    process.stdout.write(
      `pulled ${service}:${shownPath} from ${node.name} → ${dest} (${formatBytes(res.content.byteLength)}, ${octal(mode)})\n`,
    );
  return 0;
}
