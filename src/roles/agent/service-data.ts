// ExportServiceData / ImportServiceData (architecture-v2 "Snapshots", "Service Migration"): the
// agent side of snapshots and migration. Export streams a tar.zst of <srv_root>/<svc>/ chosen
// by the service's [snapshot] config; import extracts such a stream into <srv_root>/<svc>/.
//
// Snapshot methods (the [snapshot] method recorded in the registry spec at deploy time):
//  - ""  (default): only *.toml, *.db and *.pem files (config, databases, certs).
//  - "full": every regular file and directory.
//  - "cli": `<runtime> exec <container> <svc> snapshot` first, then as "full".
//  - "exec: <cmd>": `<runtime> exec <container> <cmd...>` (split on whitespace, no shell) first,
//    then as "full".
//  - "grpc": this agent has no client for the services' Snapshot RPC yet; it falls back to
//    "full" with the agent's own VACUUM INTO of every database (the same consistency as the
//    default), and logs that it did.
// The in-container step runs only when a container of the service is running (the migration
// case stops it first; its shutdown already left the databases consistent), and a failing step
// fails the export. `exclude` entries ("layers/", "cache/*.tmp") apply to every method.
// The service directory is walked and read by descriptor (files/tree.ts): a container sharing it
// cannot redirect the archive outside by swapping in symlinks; symlinks, sockets, devices and
// entries swapped since the walk are skipped (the swapped ones with a warning). SQLite databases
// (*.db with the SQLite header) are read through the same descriptors into a private copy that
// is archived after `VACUUM INTO` (consistent: the copy is retaken until the database held still);
// their -wal, -shm and -journal files are never archived (the vacuumed copy is self-contained).
//
// Import: the first message names the service (and force); the archive is extracted into a
// private temp dir beside the target (same filesystem), every entry created relative to directory
// descriptors, within [agent] import_max_bytes / import_max_entries, and renamed into place, so
// the service directory is either the old one or the complete new one. An existing non-empty
// directory (or anything else at that name) is refused unless force; with force the old one is
// replaced whole.
import { randomBytes } from "node:crypto";
import { constants as C } from "node:fs";
import { type FileHandle, lstat, mkdir, mkdtemp, open, readdir, rename, rm, rmdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { extractTarZst, type PackEntry, packTarZst, TarError, TarLimitError } from "../../archive/index.ts";
import { containerName } from "../../component/container.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { failedPrecondition, invalidArgument, notFound, resourceExhausted } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { AgentContext } from "./context.ts";
import { openServiceDir } from "./files/confine.ts";
import { copySqlite, dirSink, isSqliteFd, type TreeEntry, TreeReader, walkTree } from "./files/tree.ts";
import { capabilityRefusal, runtimeRefusal } from "./runtimes.ts";
import { checkServiceHome } from "./service-home.ts";

/** Time allowed for a `cli`/`exec` snapshot command inside the container. */
export const SNAPSHOT_EXEC_TIMEOUT_MS = 5 * 60_000;
const DEFAULT_SUFFIXES = [".toml", ".db", ".pem"];
const SQLITE_SIDE_FILES = /\.db-(wal|shm|journal)$/;

export interface SnapshotConfig {
  method: string;
  exclude: string[];
}

/** The [snapshot] config recorded for a service (default method, no excludes when none). */
export function snapshotConfigOf(ctx: AgentContext, service: string): SnapshotConfig {
  const rec = ctx.registry.getService(service);
  if (!rec?.specJson) return { method: "", exclude: [] };
  const def = JSON.parse(rec.specJson) as ServiceDef;
  return { method: def.snapshot?.method ?? "", exclude: def.snapshot?.exclude ?? [] };
}

function globToRegExp(glob: string): RegExp {
  const body = glob
    .split("*")
    .map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&"))
    .join("[^/]*");
  return new RegExp(`^${body}$`);
}

/**
 * A predicate for `exclude` patterns: "dir/" or "dir" excludes that path and everything under
 * it; "*" matches within one path segment ("logs/*.gz").
 */
export function excludeMatcher(patterns: string[]): (rel: string) => boolean {
  const res = patterns
    .map((p) => p.replace(/^\.\//, "").replace(/\/+$/, ""))
    .filter((p) => p !== "")
    .map(globToRegExp);
  return (rel) => {
    const segs = rel.split("/");
    for (let i = 1; i <= segs.length; i++) {
      const prefix = segs.slice(0, i).join("/");
      if (res.some((r) => r.test(prefix))) return true;
    }
    return false;
  };
}

export interface ExportPlan {
  entries: PackEntry[];
  /** Databases archived from a vacuumed copy (relative paths), filled in as the archive streams. */
  vacuumed: string[];
  /** Entries left out: excluded, method filter, SQLite side files, non-regular files. */
  skipped: string[];
  /** Entries that changed between the walk and the read ("path: why"), left out, never followed. */
  changed: string[];
  /** Temp dir holding the vacuumed copies; remove it when the archive has been streamed. */
  tempDir: string;
  /** Closes the descriptors the plan holds (the service directory's among them). */
  close(): Promise<void>;
}

/**
 * Chooses what to archive from the service directory open as `root` (walked by descriptor,
 * files/tree.ts) for `method` and `exclude`. Files are opened, and databases copied, only when
 * the archive reaches them, each checked to be what the walk saw. Takes ownership of `root`:
 * plan.close() closes it; the caller removes plan.tempDir.
 */
export async function planExport(
  root: FileHandle,
  cfg: SnapshotConfig,
  warn: (line: string) => void = () => {},
): Promise<ExportPlan> {
  const full = cfg.method !== "";
  const excluded = excludeMatcher(cfg.exclude);
  const skipped: string[] = [];
  const changed: string[] = [];
  const onChanged = (rel: string, why: string) => {
    changed.push(`${rel}: ${why}`);
    warn(`${rel} ${why}`);
  };
  let tree: TreeEntry[];
  try {
    tree = await walkTree(root, (rel, why) => {
      skipped.push(rel);
      if (why.includes("replaced")) onChanged(rel, why);
    });
  } catch (e) {
    await root.close().catch(() => {});
    throw e;
  }
  const tempDir = await mkdtemp(join(tmpdir(), "mcp-export-"));
  const reader = new TreeReader(root, tree, onChanged);
  const vacuumed: string[] = [];
  const files: PackEntry[] = [];
  const dirs = new Map<string, PackEntry>();
  let copies = 0;
  for (const t of tree) {
    if (excluded(t.path)) {
      skipped.push(t.path);
      continue;
    }
    const e: PackEntry = { path: t.path, type: t.type, mode: t.mode, mtimeMs: t.mtimeMs };
    if (t.type === "dir") {
      dirs.set(t.path, e);
      continue;
    }
    if (SQLITE_SIDE_FILES.test(t.path) || (!full && !DEFAULT_SUFFIXES.some((s) => t.path.endsWith(s)))) {
      skipped.push(t.path);
      continue;
    }
    e.open = async () => {
      const fh = await reader.file(t);
      if (!fh || !t.path.endsWith(".db") || !(await isSqliteFd(fh))) return fh;
      // A database: archived from a consistent copy read through these same descriptors.
      try {
        const dir = await reader.dir(t.path.includes("/") ? t.path.slice(0, t.path.lastIndexOf("/")) : "");
        if (!dir) {
          onChanged(t.path, "its directory changed since the walk; skipped, not followed");
          return null;
        }
        const n = copies++;
        const copy = join(tempDir, `${n}.db`);
        await copySqlite(reader, dir, fh, t.path, join(tempDir, `work-${n}`), copy);
        vacuumed.push(t.path);
        return await open(copy, C.O_RDONLY | C.O_NOFOLLOW);
      } finally {
        await fh.close();
      }
    };
    files.push(e);
  }
  // Full: every kept directory (empty ones too). Default: only the parents of kept files.
  let keptDirs: PackEntry[];
  if (full) keptDirs = [...dirs.values()];
  else {
    const need = new Set<string>();
    for (const f of files) {
      const segs = f.path.split("/");
      for (let i = 1; i < segs.length; i++) need.add(segs.slice(0, i).join("/"));
    }
    keptDirs = [...dirs.values()].filter((d) => need.has(d.path));
  }
  // Parents before children: sorting by path puts "a" before "a/b" and any "a/..." file.
  const entries = [...keptDirs, ...files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await reader.close();
    await root.close().catch(() => {});
  };
  return { entries, vacuumed, skipped, changed, tempDir, close };
}

/** Runs the method's in-container step when a container of the service is running. */
async function runSnapshotCommand(
  ctx: AgentContext,
  service: string,
  method: string,
): Promise<string | null> {
  if (method === "" || method === "full") return null;
  if (method === "grpc") {
    ctx.logger.info(
      { service },
      "snapshot method grpc: no Snapshot RPC client; archiving as full with VACUUM INTO",
    );
    return null;
  }
  const argv = method === "cli" ? [service, "snapshot"] : method.replace(/^exec:\s*/, "").split(/\s+/);
  const rec = ctx.registry.getService(service);
  for (const c of rec?.components ?? []) {
    const name = containerName(service, c.name);
    const why = runtimeRefusal(ctx, service, c) ?? capabilityRefusal(ctx, service, c, "exec");
    if (why) throw failedPrecondition(`snapshot method ${JSON.stringify(method)}: ${why}`);
    const info = await ctx.runtime.inspect(name);
    if (info?.state !== "running") continue;
    const r = await ctx.runtime.exec(name, argv, SNAPSHOT_EXEC_TIMEOUT_MS);
    if (r.code !== 0) {
      const why = (r.stderr || r.stdout).trim().split("\n").pop() ?? "";
      throw failedPrecondition(
        `snapshot command ${JSON.stringify(argv.join(" "))} in ${name} exited ${r.code}${why ? `: ${why}` : ""}`,
      );
    }
    return name;
  }
  ctx.logger.info({ service, method }, "no running container: snapshot command skipped, archiving directly");
  return null;
}

async function dirExists(path: string): Promise<boolean> {
  try {
    return (await lstat(path)).isDirectory();
  } catch {
    return false;
  }
}

/** The tar.zst stream of a service's data; its temp copies go when the stream ends or is returned. */
export async function exportServiceData(
  ctx: AgentContext,
  service: string,
  opts: { allFiles?: boolean } = {},
): Promise<{ chunks: AsyncGenerator<Uint8Array>; plan: ExportPlan }> {
  checkServiceHome(ctx.settings, service);
  const dir = join(ctx.settings.srvRoot, service);
  const known = ctx.registry.getService(service) !== null;
  if (!(await dirExists(dir))) {
    throw notFound(
      known
        ? `service ${service} has no data directory ${dir} on node ${ctx.settings.nodeName}`
        : `unknown service ${service} on node ${ctx.settings.nodeName}`,
    );
  }
  const configured = snapshotConfigOf(ctx, service);
  await runSnapshotCommand(ctx, service, configured.method);
  // A migration must carry every file; the default method's toml/db/pem filter is for snapshots.
  const cfg = opts.allFiles && configured.method === "" ? { ...configured, method: "full" } : configured;
  const root = await openServiceDir(ctx.settings.srvRoot, service);
  const plan = await planExport(root, cfg, (line) =>
    ctx.logger.warn({ service }, `service data export: ${line}`),
  );
  const inner = packTarZst(plan.entries);
  const chunks = (async function* () {
    try {
      yield* inner;
    } finally {
      await plan.close();
      await rm(plan.tempDir, { recursive: true, force: true });
    }
  })();
  return { chunks, plan };
}

/** True when nothing is at `path` or it is a real, empty directory (never through a symlink). */
async function absentOrEmptyDir(path: string): Promise<boolean> {
  const st = await lstat(path).catch(() => null);
  if (!st) return true;
  return st.isDirectory() && (await readdir(path)).length === 0;
}

/** [agent] import_max_bytes default: the file content one import may expand to. */
export const DEFAULT_IMPORT_MAX_BYTES = 1024 ** 3;
/** [agent] import_max_entries default: files and directories in one import. */
export const DEFAULT_IMPORT_MAX_ENTRIES = 100_000;

export interface ImportLimits {
  /** File content bytes after decompression. */
  maxBytes: number;
  /** Files plus directories. */
  maxEntries: number;
}

export function importLimitsOf(ctx: AgentContext): ImportLimits {
  return {
    maxBytes: ctx.settings.importMaxBytes ?? DEFAULT_IMPORT_MAX_BYTES,
    maxEntries: ctx.settings.importMaxEntries ?? DEFAULT_IMPORT_MAX_ENTRIES,
  };
}

/**
 * The most compressed bytes an import within `l` can need: its tar (content, at most 1.5 KiB of
 * headers and padding per entry, the end marker) plus zstd's worst-case growth (1/128) and 1 MiB.
 * Beyond it a stream is refused even if it expands to nothing (zstd skippable frames).
 */
export function compressedLimit(l: ImportLimits): number {
  const tar = l.maxBytes + l.maxEntries * 1536 + 1024;
  return tar + Math.ceil(tar / 128) + 1024 * 1024;
}

/** Counts the compressed stream and ends it with TarLimitError past `limit`. */
async function* capped(src: AsyncIterable<Uint8Array>, limit: number): AsyncGenerator<Uint8Array> {
  let n = 0;
  for await (const c of src) {
    n += c.length;
    if (n > limit) throw new TarLimitError(`compressed archive exceeds ${limit} bytes`);
    yield c;
  }
}

/**
 * Extracts a tar.zst stream into <srv_root>/<service>/ through a temp dir and a rename, every
 * entry created relative to directory descriptors (files/tree.ts dirSink), within the import
 * limits. Returns the file bytes written. Any refusal leaves neither the temp dir nor a change.
 */
export async function importServiceData(
  ctx: AgentContext,
  service: string,
  force: boolean,
  data: AsyncIterable<Uint8Array>,
): Promise<number> {
  checkServiceHome(ctx.settings, service);
  const root = ctx.settings.srvRoot;
  const target = join(root, service);
  if (!force && !(await absentOrEmptyDir(target))) {
    throw failedPrecondition(
      `${target} on node ${ctx.settings.nodeName} exists and is not empty; use force to replace it`,
    );
  }
  const limits = importLimitsOf(ctx);
  await mkdir(root, { recursive: true });
  const tag = randomBytes(6).toString("hex");
  const temp = join(root, `.mcp-import-${service}-${tag}`);
  await mkdir(temp, { mode: 0o700 });
  try {
    let res: { bytes: number };
    const tempFh = await open(temp, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
    const sink = dirSink(tempFh);
    try {
      res = await extractTarZst(capped(data, compressedLimit(limits)), sink, {
        maxBytes: limits.maxBytes,
        maxEntries: limits.maxEntries,
      });
      // The service dir is world-readable like the ones the agent creates on deploy.
      await tempFh.chmod(0o755);
    } catch (e) {
      if (e instanceof TarLimitError)
        throw resourceExhausted(
          `service data for ${service} refused: ${e.message}; the node's limits are ${limits.maxBytes} bytes ` +
            `([agent] import_max_bytes) and ${limits.maxEntries} entries ([agent] import_max_entries)`,
        );
      if (e instanceof TarError) throw invalidArgument(`service data for ${service}: ${e.message}`);
      const msg = (e as Error).message ?? String(e);
      if (/zstd|Unknown frame|incorrect header|corrupt/i.test(msg))
        throw invalidArgument(`service data for ${service}: not a zstd stream (${msg})`);
      throw e;
    } finally {
      await sink.close();
      await tempFh.close();
    }
    // Whatever is at the target (a symlink included) is moved aside whole, never written through.
    if (
      await lstat(target).then(
        () => true,
        () => false,
      )
    ) {
      if (await absentOrEmptyDir(target)) await rmdir(target);
      else {
        if (!force) throw failedPrecondition(`${target} was filled while importing; use force to replace it`);
        const old = join(root, `.mcp-replaced-${service}-${tag}`);
        await rename(target, old);
        await rename(temp, target);
        await rm(old, { recursive: true, force: true });
        return res.bytes;
      }
    }
    await rename(temp, target);
    return res.bytes;
  } finally {
    await rm(temp, { recursive: true, force: true });
  }
}

export function serviceDataHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async exportServiceData(req, call, send) {
      const { chunks, plan } = await exportServiceData(ctx, req.serviceName, { allFiles: req.allFiles });
      let bytes = 0;
      try {
        for await (const data of chunks) {
          if (call.signal.aborted) break;
          await send({ data });
          bytes += data.length;
        }
      } finally {
        await chunks.return(undefined);
        await plan.close();
        await rm(plan.tempDir, { recursive: true, force: true });
      }
      ctx.logger.info(
        {
          service: req.serviceName,
          bytes,
          entries: plan.entries.length,
          vacuumed: plan.vacuumed,
          changed: plan.changed,
          caller: call.identity.name,
        },
        "service data exported",
      );
    },
    async importServiceData(reqs, call) {
      const it = reqs[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || !first.value.serviceName)
        throw invalidArgument("the first ImportServiceData message must name the service");
      const service = first.value.serviceName;
      const force = first.value.force;
      const data = (async function* () {
        if (first.value.data.length > 0) yield first.value.data;
        for (;;) {
          const r = await it.next();
          if (r.done) return;
          if (r.value.data.length > 0) yield r.value.data;
        }
      })();
      const bytes = await ctx.locks.run(service, () => importServiceData(ctx, service, force, data));
      ctx.logger.info({ service, bytes, force, caller: call.identity.name }, "service data imported");
      return { bytesWritten: BigInt(bytes) };
    },
  };
}
