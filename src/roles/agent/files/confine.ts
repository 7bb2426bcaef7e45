// File transfer confinement (SPEC §5.6, §9): every PushFile/PullFile path resolves to
// <srv_root>/<service>/<path> and can never touch anything outside <srv_root>/<service>/.
//
// How the confinement holds, even against a process inside a container that shares the service
// directory and swaps directories for symlinks while we work:
//  1. The path is parsed lexically first (parseRelPath): no absolute paths, no "..", no NUL,
//     bounded segment and total lengths. "" and "." segments are dropped ("a//./b" is "a/b").
//  2. The walk never resolves a multi-component path. It opens srv_root once (trusted config,
//     which may itself be a symlink such as /srv → /data/srv), then opens each component with
//     O_DIRECTORY|O_NOFOLLOW *relative to the directory fd it already holds*. Node has no openat(),
//     so "relative to a fd" is spelled /proc/self/fd/<fd>/<name>: the kernel resolves the
//     /proc/self/fd/<fd> magic link to the very directory that fd refers to (not to a path that
//     could have changed since), and then looks up exactly one name in it. O_NOFOLLOW makes that
//     last lookup fail on a symlink instead of following it. So a symlink swapped in for a
//     directory after we opened it changes nothing (we keep the old directory's fd), and one
//     swapped in before we open it is refused.
//  3. The file itself is written to a temp name created O_CREAT|O_EXCL|O_NOFOLLOW in the final
//     directory's fd, fsynced, then renamed over the target within that same directory fd, and the
//     directory is fsynced. rename() never follows a symlink at the target name: at worst it
//     replaces the symlink itself, which is inside the service directory.
//  Reads open the final name with O_NOFOLLOW|O_NONBLOCK in the directory fd and check with fstat
//  that it is a regular file (never a directory, FIFO or device).
// A directory that is *renamed* out of the service directory while we hold its fd would still be
// written into; that needs rename rights on both sides, which a container confined to its own
// service directory does not have.
import { randomBytes } from "node:crypto";
import { constants as C } from "node:fs";
import { type FileHandle, lstat, mkdir, open, rename, unlink } from "node:fs/promises";
import { join } from "node:path";
import { MAX_FILE_BYTES, tooLargeMessage } from "../../../config/limits.ts";
import { NAME_RE, reservedServiceName } from "../../../config/names.ts";
import { failedPrecondition, invalidArgument, notFound, resourceExhausted } from "../../../rpc/errors.ts";

/** Linux NAME_MAX and PATH_MAX, checked up front so the operator gets a clear message. */
export const NAME_MAX_BYTES = 255;
export const PATH_MAX_BYTES = 4096;
/** Mode for pushed files when the request carries none (proto3 cannot tell 0 from unset). */
export const DEFAULT_FILE_MODE = 0o644;
const DIR_MODE = 0o755;

const utf8Len = (s: string) => Buffer.byteLength(s, "utf8");

export function checkServiceName(service: string): void {
  if (!service) throw invalidArgument("service name is required");
  if (!NAME_RE.test(service) || service.length > 64) {
    throw invalidArgument(
      `service name ${JSON.stringify(service)}: expected lower-case letters, digits and "-" (at most 64)`,
    );
  }
  const reserved = reservedServiceName(service);
  if (reserved) throw invalidArgument(reserved);
}

/**
 * Splits a relative path into its segments, refusing anything that could name a place outside
 * the service directory or that Linux would reject anyway. Throws RpcError(INVALID_ARGUMENT).
 */
export function parseRelPath(path: string): string[] {
  const shown = JSON.stringify(path);
  if (path === "") throw invalidArgument("path is required (relative to the service directory)");
  if (path.includes("\0")) throw invalidArgument(`path ${JSON.stringify(path)} contains a NUL byte`);
  if (path.startsWith("/"))
    throw invalidArgument(`path ${shown} is absolute; give it relative to the service directory`);
  if (utf8Len(path) > PATH_MAX_BYTES)
    throw invalidArgument(`path is ${utf8Len(path)} bytes long; the limit is ${PATH_MAX_BYTES}`);
  const raw = path.split("/");
  const last = raw[raw.length - 1];
  if (last === "" || last === ".") throw invalidArgument(`path ${shown} names a directory, not a file`);
  const segs: string[] = [];
  for (const s of raw) {
    if (s === "" || s === ".") continue;
    if (s === "..")
      throw invalidArgument(`path ${shown} contains "..": it must stay inside the service directory`);
    if (utf8Len(s) > NAME_MAX_BYTES) {
      throw invalidArgument(
        `path ${shown}: a name is ${utf8Len(s)} bytes long; the limit is ${NAME_MAX_BYTES}`,
      );
    }
    segs.push(s);
  }
  return segs;
}

export function checkMode(mode: number): number {
  if (mode === 0) return DEFAULT_FILE_MODE;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) {
    throw invalidArgument(
      `mode 0${mode.toString(8)}: only permission bits (0000-0777) are allowed, no setuid/setgid/sticky`,
    );
  }
  return mode;
}

/** A name looked up in the directory a held fd refers to (openat() spelled through /proc). */
export const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;

export const errCode = (err: unknown) => (err as NodeJS.ErrnoException)?.code;

/** Opens `name` inside `dir` as a directory, never following a symlink; creates it if asked. */
export async function openChildDir(
  dir: FileHandle,
  name: string,
  shown: string,
  create: boolean,
): Promise<FileHandle> {
  const flags = C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      return await open(at(dir, name), flags);
    } catch (err) {
      const code = errCode(err);
      if (code === "ENOENT" && create && attempt === 0) {
        try {
          await mkdir(at(dir, name), DIR_MODE); // never follows: EEXIST on a symlink
        } catch (e) {
          if (errCode(e) !== "EEXIST") throw concurrentRemoval(e, shown);
        }
        continue;
      }
      if (code === "ENOENT") throw notFound(`${shown}: no such file or directory`);
      if (code === "ENOTDIR" || code === "ELOOP") {
        const st = await lstat(at(dir, name)).catch(() => null);
        if (st?.isSymbolicLink()) throw symlinkRefused(shown);
        throw failedPrecondition(`${shown} is not a directory`);
      }
      throw err;
    }
  }
  throw notFound(`${shown}: no such file or directory`);
}

export function symlinkRefused(shown: string): Error {
  return invalidArgument(`${shown} is a symlink; symlinks inside a service directory are refused`);
}

/**
 * A full disk (or quota) while writing the temp file: the temp file is already gone and the
 * target was never touched, so say so (the raw "ENOSPC: no space left on device, write" names
 * neither the file nor the outcome).
 */
function noSpace(err: unknown, shown: string, existed: boolean): Error | null {
  const code = errCode(err);
  if (code !== "ENOSPC" && code !== "EDQUOT") return null;
  const what = code === "ENOSPC" ? "no space left on device" : "disk quota exceeded";
  const kept = existed ? "it keeps its previous content" : "nothing was written";
  return resourceExhausted(`${what} for ${shown} on this node; ${kept}`);
}

/** ENOENT inside a directory we hold open: someone removed that directory while we worked. */
function concurrentRemoval(err: unknown, shown: string): unknown {
  if (errCode(err) !== "ENOENT") return err;
  return failedPrecondition(`${shown}: its directory was removed while writing; nothing was written`);
}

export interface Target {
  /** The directory holding the file (an open fd: the confinement anchor). */
  dir: FileHandle;
  /** The final name inside `dir`. */
  name: string;
  /** <srv_root>/<service>/<segments...>: where the file is, for messages and tests. */
  path: string;
  /** "<service>:<path>" for messages. */
  shown: string;
}

/** Walks <srv_root>/<service>/<dirs...> fd by fd; the caller must close target.dir. */
async function resolveTarget(
  srvRoot: string,
  service: string,
  path: string,
  create: boolean,
): Promise<Target> {
  checkServiceName(service);
  const segs = parseRelPath(path);
  const name = segs[segs.length - 1]!;
  const rel = segs.join("/");
  let cur: FileHandle;
  try {
    cur = await open(srvRoot, C.O_RDONLY | C.O_DIRECTORY);
  } catch {
    throw failedPrecondition(`srv_root ${srvRoot} is not an accessible directory on this node`);
  }
  const walked: string[] = [];
  try {
    for (const seg of [service, ...segs.slice(0, -1)]) {
      walked.push(seg);
      const shown =
        walked.length === 1 ? `service directory ${service}/` : `${service}:${walked.slice(1).join("/")}`;
      const next = await openChildDir(cur, seg, shown, create);
      await cur.close();
      cur = next;
    }
  } catch (err) {
    await cur.close().catch(() => {});
    throw err;
  }
  return { dir: cur, name, path: join(srvRoot, service, ...segs), shown: `${service}:${rel}` };
}

/**
 * Opens <srv_root>/<service> itself as a directory fd (never through a symlink): the anchor of
 * the descriptor walks in tree.ts (export, snapshot, import). The caller closes it.
 */
export async function openServiceDir(srvRoot: string, service: string): Promise<FileHandle> {
  checkServiceName(service);
  let root: FileHandle;
  try {
    root = await open(srvRoot, C.O_RDONLY | C.O_DIRECTORY);
  } catch {
    throw failedPrecondition(`srv_root ${srvRoot} is not an accessible directory on this node`);
  }
  try {
    return await openChildDir(root, service, `service directory ${service}/`, false);
  } finally {
    await root.close().catch(() => {});
  }
}

export interface WriteResult {
  path: string;
  bytes: number;
  mode: number;
}

/**
 * Writes content to <srvRoot>/<service>/<path> atomically with `mode` (0 → 0644), creating parent
 * directories (0755). Throws RpcError: INVALID_ARGUMENT (bad path, symlink, bad mode),
 * FAILED_PRECONDITION (a file where a directory must be, a directory at the target),
 * RESOURCE_EXHAUSTED (over MAX_FILE_BYTES).
 */
export async function writeConfined(
  srvRoot: string,
  service: string,
  path: string,
  content: Uint8Array,
  mode = 0,
  limit = MAX_FILE_BYTES,
): Promise<WriteResult> {
  const fileMode = checkMode(mode);
  if (content.byteLength > limit) throw resourceExhausted(tooLargeMessage("file", content.byteLength, limit));
  const t = await resolveTarget(srvRoot, service, path, true);
  try {
    const existing = await lstat(at(t.dir, t.name)).catch((e) => {
      if (errCode(e) === "ENOENT") return null;
      throw e;
    });
    if (existing?.isSymbolicLink()) throw symlinkRefused(t.shown);
    if (existing?.isDirectory()) throw failedPrecondition(`${t.shown} is a directory`);
    if (existing && !existing.isFile()) throw failedPrecondition(`${t.shown} is not a regular file`);

    // The temp name does not derive from the target name, so it never exceeds NAME_MAX.
    const tmp = `.mcp-push-${randomBytes(8).toString("hex")}.tmp`;
    const fh = await open(at(t.dir, tmp), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, fileMode).catch(
      (err) => {
        throw noSpace(err, t.shown, existing !== null) ?? concurrentRemoval(err, t.shown);
      },
    );
    try {
      try {
        await fh.writeFile(content);
        await fh.chmod(fileMode); // the umask may have cleared bits the operator asked for
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(at(t.dir, tmp), at(t.dir, t.name));
    } catch (err) {
      await unlink(at(t.dir, tmp)).catch(() => {});
      if (errCode(err) === "EISDIR") throw failedPrecondition(`${t.shown} is a directory`);
      throw noSpace(err, t.shown, existing !== null) ?? concurrentRemoval(err, t.shown);
    }
    await t.dir.sync(); // make the rename itself durable
    return { path: t.path, bytes: content.byteLength, mode: fileMode };
  } finally {
    await t.dir.close().catch(() => {});
  }
}

export interface ReadResult {
  path: string;
  content: Uint8Array;
  mode: number;
}

/**
 * Reads <srvRoot>/<service>/<path>: a regular file only, never through a symlink. Throws
 * RpcError: INVALID_ARGUMENT, NOT_FOUND, FAILED_PRECONDITION (directory, special file),
 * RESOURCE_EXHAUSTED (over MAX_FILE_BYTES).
 */
export async function readConfined(
  srvRoot: string,
  service: string,
  path: string,
  limit = MAX_FILE_BYTES,
): Promise<ReadResult> {
  const t = await resolveTarget(srvRoot, service, path, false);
  try {
    // lstat before open: opening a device or FIFO can have side effects or block.
    const pre = await lstat(at(t.dir, t.name)).catch((e) => {
      if (errCode(e) === "ENOENT") throw notFound(`${t.shown}: no such file`);
      throw e;
    });
    if (pre.isSymbolicLink()) throw symlinkRefused(t.shown);
    if (pre.isDirectory()) throw failedPrecondition(`${t.shown} is a directory, not a file`);
    if (!pre.isFile()) throw failedPrecondition(`${t.shown} is not a regular file`);
    let fh: FileHandle;
    try {
      fh = await open(at(t.dir, t.name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = errCode(err);
      if (code === "ELOOP") throw symlinkRefused(t.shown);
      if (code === "ENOENT") throw notFound(`${t.shown}: no such file`);
      throw err;
    }
    try {
      // fstat the opened file: what we read is what we checked, whatever was swapped in since.
      const st = await fh.stat();
      if (!st.isFile()) throw failedPrecondition(`${t.shown} is not a regular file`);
      if (st.size > limit) throw resourceExhausted(tooLargeMessage(t.shown, st.size, limit));
      const buf = Buffer.alloc(st.size);
      let off = 0;
      while (off < st.size) {
        const { bytesRead } = await fh.read(buf, off, st.size - off, off);
        if (bytesRead === 0) break; // truncated while reading: return what is there
        off += bytesRead;
      }
      return { path: t.path, content: buf.subarray(0, off), mode: st.mode & 0o777 };
    } finally {
      await fh.close();
    }
  } finally {
    await t.dir.close().catch(() => {});
  }
}

/** True when <srvRoot>/<service> exists as an entry (directory or not; the walk judges it). */
export async function serviceDirExists(srvRoot: string, service: string): Promise<boolean> {
  checkServiceName(service);
  return lstat(join(srvRoot, service)).then(
    () => true,
    () => false,
  );
}
