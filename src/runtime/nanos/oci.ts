// An OCI image as the Nanos image builder needs it (issue 17, "Images from the same registry"): its
// configuration (ID, platform, entrypoint, cmd, env, working directory) from the node's container
// engine, and its filesystem as a plain directory tree.
//
// The filesystem comes from `<engine> create` (a container that is never started) and `<engine>
// export` (the flattened filesystem as a tar on stdout, so no whiteouts), streamed into extractTar:
// the image is untrusted, so the extraction is confined like a service-data import (every entry made
// relative to directory descriptors, no `..` or absolute names, a symlinked parent refused), with
// symlinks created as symlinks (their text as is: a link to /etc/hostname stays a link and the
// host's file is never read) and hard links resolved only against files of the same export. Limits
// on bytes and entries stop a huge image at its header. The tree lands in a temp sibling that is
// renamed to the destination only when complete, and the temp container is removed in every case.
import { randomBytes } from "node:crypto";
import { constants as C } from "node:fs";
import { type FileHandle, lstat, mkdtemp, open, rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { dirSink } from "../../archive/dirsink.ts";
import { type ExtractResult, extractTar, TarError, TarLimitError } from "../../archive/tar.ts";
import { failure, killAfter, type RunResult, run, stderrSummary } from "../exec.ts";
import type { Engine } from "../runtime.ts";

/** How to run the node's container engine CLI (what PodmanRuntime/DockerRuntime.cli() give). */
export interface EngineCli {
  engine: Engine;
  /** Client binary, e.g. "podman" or "/usr/bin/docker". */
  binary: string;
  /** Global flags placed right after the binary, e.g. ["--runtime", "runc"] or ["-H", host]. */
  globalArgs?: string[];
  /** Extra environment for every call (CONTAINERS_CONF, DOCKER_HOST...). */
  env?: Record<string, string>;
  /** Limit for one inspect/create/rm call (default 60 s). */
  callTimeoutMs?: number;
}

export interface ImageConfig {
  /** The image ID: 64 hex digits, no "sha256:" (the cache key of a built VM image). */
  id: string;
  /** As the image says, e.g. "amd64". */
  architecture: string;
  os: string;
  entrypoint: string[];
  cmd: string[];
  /** "NAME=value" entries. */
  env: string[];
  /** "" when the image sets none. */
  workingDir: string;
}

/** An image that cannot be inspected or exported; the message is one line. */
export class OciError extends Error {
  override name = "OciError";
}

export const DEFAULT_EXPORT_MAX_BYTES = 4 * 1024 ** 3;
export const DEFAULT_EXPORT_MAX_ENTRIES = 200_000;
const DEFAULT_EXPORT_TIMEOUT_MS = 10 * 60_000;
/** Bytes after the end-of-archive marker read (and dropped) so the engine can finish writing. */
const MAX_TRAILING_BYTES = 1024 * 1024;
const STDERR_KEEP = 64 * 1024;

export interface ExportLimits {
  /** Total file content (default 4 GiB), checked at each entry's header. */
  maxBytes?: number;
  /** Files, directories, links and skipped entries (default 200,000). */
  maxEntries?: number;
  /** The whole export (default 10 min); the engine's export is killed after it. */
  timeoutMs?: number;
}

/** What an export extracted: counts, and the entries left out (devices, FIFOs...) with why. */
export type ExportResult = ExtractResult;

const HEX64 = /^[0-9a-f]{64}$/;

function checkImage(image: string): void {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: refusing control characters is the point
  if (image === "" || image.startsWith("-") || /[\s\x00-\x1f\x7f]/.test(image))
    throw new OciError(`invalid image reference ${JSON.stringify(image)}`);
}

const binName = (e: EngineCli) => e.binary.split("/").pop() ?? e.binary;
const argvOf = (e: EngineCli, sub: string[]) => [e.binary, ...(e.globalArgs ?? []), ...sub];

function call(e: EngineCli, sub: string[], label: string): Promise<RunResult> {
  return run(argvOf(e, sub), {
    ...(e.env ? { env: e.env } : {}),
    timeoutMs: e.callTimeoutMs ?? 60_000,
    label: `${binName(e)} ${label}`,
  });
}

const strs = (v: unknown): string[] =>
  Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
const str = (v: unknown): string => (typeof v === "string" ? v : "");
const obj = (v: unknown): Record<string, unknown> =>
  v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Record<string, unknown>) : {};

/** Parses `podman image inspect` / `docker image inspect` output (an array of one image). */
export function parseImageConfig(stdout: string, image: string): ImageConfig {
  let data: unknown;
  try {
    data = JSON.parse(stdout);
  } catch {
    throw new OciError(`image inspect of ${image}: output is not JSON: ${stdout.slice(0, 80)}`);
  }
  const img = obj(Array.isArray(data) ? data[0] : data);
  const id = str(img["Id"]).replace(/^sha256:/, "");
  if (!HEX64.test(id)) throw new OciError(`image inspect of ${image}: no sha256 image ID in its output`);
  const cfg = obj(img["Config"]);
  return {
    id,
    architecture: str(img["Architecture"]),
    os: str(img["Os"]),
    entrypoint: strs(cfg["Entrypoint"]),
    cmd: strs(cfg["Cmd"]),
    env: strs(cfg["Env"]),
    workingDir: str(cfg["WorkingDir"]),
  };
}

/** The image's configuration from the engine's local store; a missing image is one clear line. */
export async function imageConfig(engine: EngineCli, image: string): Promise<ImageConfig> {
  checkImage(image);
  const sub = ["image", "inspect", image];
  const res = await call(engine, sub, `image inspect ${image}`);
  if (res.code !== 0) {
    if (/image not known|no such image|no such object/i.test(res.stderr))
      throw new OciError(
        `image ${image} is not in the node's ${binName(engine)} image store (pull it first)`,
      );
    throw failure(argvOf(engine, sub), res, `${binName(engine)} image inspect ${image}`);
  }
  return parseImageConfig(res.stdout, image);
}

/** Reads a stream to its end, keeping at most `keep` bytes (stderr of a long export). */
async function readBounded(stream: ReadableStream<Uint8Array>, keep: number): Promise<string> {
  const parts: Uint8Array[] = [];
  let have = 0;
  try {
    for await (const c of stream) {
      if (have < keep) {
        parts.push(c.subarray(0, keep - have));
        have += Math.min(c.length, keep - have);
      }
    }
  } catch {
    // a killed child closes its pipe abruptly; what was read is kept
  }
  return Buffer.concat(parts).toString("utf8");
}

/**
 * Writes the filesystem of `image` into `destDir`, a directory that must not exist yet (its parent
 * must): created 0700, complete or not at all. Returns what was extracted and skipped. Throws
 * OciError (or the engine's RuntimeError) in one line; the temp container never outlives the call.
 */
export async function exportRootfs(
  engine: EngineCli,
  image: string,
  destDir: string,
  limits: ExportLimits = {},
): Promise<ExportResult> {
  checkImage(image);
  const exists = await lstat(destDir).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return false;
      throw e;
    },
  );
  if (exists) throw new OciError(`cannot export ${image} into ${destDir}: it already exists`);
  // A private (0700) temp sibling: on the same filesystem, so the final rename is atomic.
  const tmp = await mkdtemp(join(dirname(destDir), `.${basename(destDir)}.partial-`));
  const name = `mcp-export-${randomBytes(8).toString("hex")}`;
  let done = false;
  try {
    let result: ExportResult | undefined;
    let primary: unknown;
    try {
      // Never started: the cmd given only satisfies create for images without CMD/ENTRYPOINT.
      const create = ["create", "--name", name, "--pull", "never", image, "/mcp-export-never-started"];
      const res = await call(engine, create, `create ${image}`);
      if (res.code !== 0) {
        if (/image not known|no such image|unable to find image/i.test(res.stderr))
          throw new OciError(
            `image ${image} is not in the node's ${binName(engine)} image store (pull it first)`,
          );
        throw failure(argvOf(engine, create), res, `${binName(engine)} create ${image}`);
      }
      result = await streamExport(engine, name, image, tmp, limits);
    } catch (e) {
      primary = e;
    }
    // Removed whatever happened above (-v: anonymous volumes an image's VOLUME made at create).
    const rmRes = await call(engine, ["rm", "-f", "-v", name], `rm ${name}`).catch((e: Error) => e);
    const rmFailed =
      rmRes instanceof Error
        ? rmRes.message
        : rmRes.code !== 0 && !/no such container|no container with name/i.test(rmRes.stderr)
          ? `${binName(engine)} rm ${name} failed (exit ${rmRes.code}): ${stderrSummary(rmRes.stderr)}`
          : "";
    if (primary !== undefined) {
      if (rmFailed && primary instanceof Error) primary.message += `; also: ${rmFailed}`;
      throw primary;
    }
    if (rmFailed) throw new OciError(`exported ${image} but could not remove container ${name}: ${rmFailed}`);
    await rename(tmp, destDir);
    done = true;
    return result!;
  } finally {
    if (!done) await rm(tmp, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * Opens the FIFO `path` for reading (blocks until the writer opens it). A writer that exits without
 * ever opening it would leave that open blocked: then the FIFO is opened for writing once and closed
 * by us, which completes the open and reads as an empty (truncated) stream.
 */
async function openFifo(path: string, exited: Promise<unknown>): Promise<FileHandle> {
  let opened = false;
  const reader = open(path, C.O_RDONLY).then((fh) => {
    opened = true;
    return fh;
  });
  void exited.then(async () => {
    for (let i = 0; i < 200 && !opened; i++) {
      // O_NONBLOCK: ENXIO (no reader in open yet) instead of blocking; retried, bounded.
      const w = await open(path, C.O_WRONLY | C.O_NONBLOCK).catch(() => null);
      if (w) {
        await w.close();
        return;
      }
      await Bun.sleep(25);
    }
  });
  return reader;
}

async function* readChunks(fh: FileHandle): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buf = new Uint8Array(256 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, null);
    if (bytesRead === 0) return;
    yield buf.subarray(0, bytesRead);
  }
}

/**
 * `<engine> export <name>` streamed into a confined extraction under `dir` (never buffered whole).
 * Docker writes the tar to its stdout. Podman (4.x) opens "/dev/stdout" by path, which fails on the
 * socket Bun gives a child as its stdout pipe (ENXIO), so podman writes into a FIFO in a private
 * temp directory beside `dir` instead (`-o <fifo>`).
 */
async function streamExport(
  engine: EngineCli,
  name: string,
  image: string,
  dir: string,
  limits: ExportLimits,
): Promise<ExportResult> {
  const what = `${binName(engine)} export of ${image}`;
  const fifoDir = engine.engine === "podman" ? await mkdtemp(`${dir}.fifo-`) : null;
  const fifo = fifoDir ? join(fifoDir, "export.tar") : null;
  let fifoFh: FileHandle | null = null;
  try {
    if (fifo) {
      const mk = await run(["mkfifo", "-m", "600", fifo], { timeoutMs: 10_000 });
      if (mk.code !== 0) throw new OciError(`cannot make a FIFO for ${what}: ${stderrSummary(mk.stderr)}`);
    }
    const argv = argvOf(engine, fifo ? ["export", "-o", fifo, name] : ["export", name]);
    let proc: ReturnType<typeof Bun.spawn<"ignore", "pipe", "pipe">>;
    try {
      proc = Bun.spawn(argv, {
        ...(engine.env ? { env: { ...process.env, ...engine.env } } : {}),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
    } catch (e) {
      throw new OciError(`cannot execute ${engine.binary}: ${(e as Error).message}`);
    }
    const stdout = fifo ? readBounded(proc.stdout, STDERR_KEEP) : null;
    const stderr = readBounded(proc.stderr, STDERR_KEEP);
    const timeoutMs = limits.timeoutMs ?? DEFAULT_EXPORT_TIMEOUT_MS;
    const deadline = killAfter(proc, timeoutMs);
    try {
      if (fifo) fifoFh = await openFifo(fifo, proc.exited);
      // One iterator over the bytes, shared by the extraction and the drain after it.
      const it = fifoFh ? readChunks(fifoFh) : proc.stdout[Symbol.asyncIterator]();
      const src: AsyncIterable<Uint8Array> = { [Symbol.asyncIterator]: () => ({ next: () => it.next() }) };
      const root = await open(dir, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
      const sink = dirSink(root);
      let res: ExportResult;
      try {
        res = await extractTar(src, sink, {
          links: true,
          ownerAccess: true,
          maxBytes: limits.maxBytes ?? DEFAULT_EXPORT_MAX_BYTES,
          maxEntries: limits.maxEntries ?? DEFAULT_EXPORT_MAX_ENTRIES,
        });
      } catch (e) {
        proc.kill("SIGKILL");
        const code = await proc.exited;
        if (deadline.timedOut) throw new OciError(`${what} timed out after ${timeoutMs} ms`);
        if (e instanceof TarLimitError) throw new OciError(`${what} refused: ${e.message}`);
        // A cut stream is usually the engine failing: its own error says more than "truncated".
        const err = stderrSummary(await stderr);
        if (code !== 0 && err && !(e instanceof TarError && !/truncated/.test(e.message)))
          throw new OciError(`${what} failed (exit ${code}): ${err}`);
        if (e instanceof TarError) throw new OciError(`${what} refused: ${e.message}`);
        throw e;
      } finally {
        await sink.close();
        await root.close();
      }
      // What follows the end-of-archive marker (record padding) is read and dropped, bounded.
      let trailing = 0;
      for (;;) {
        const r = await it.next().catch(() => ({ done: true as const, value: undefined }));
        if (r.done) break;
        trailing += r.value.length;
        if (trailing > MAX_TRAILING_BYTES) {
          proc.kill("SIGKILL");
          await proc.exited;
          throw new OciError(`${what}: more than ${MAX_TRAILING_BYTES} bytes after the end of the archive`);
        }
      }
      const code = await proc.exited;
      if (deadline.timedOut) throw new OciError(`${what} timed out after ${timeoutMs} ms`);
      if (code !== 0)
        throw new OciError(`${what} failed (exit ${code}): ${stderrSummary(await stderr) || "(no stderr)"}`);
      await stdout;
      return res;
    } finally {
      deadline.clear();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await proc.exited;
    }
  } finally {
    await fifoFh?.close().catch(() => {});
    if (fifoDir) await rm(fifoDir, { recursive: true, force: true }).catch(() => {});
  }
}
