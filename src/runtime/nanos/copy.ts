// Copies a volume's host directory into a VM's private staging tree by descriptor, never through a
// symlink: the directory may be shared with a container (or written by `mcp push`) while it is read.
// Every directory is opened O_DIRECTORY|O_NOFOLLOW relative to its parent's fd, every file
// O_NOFOLLOW|O_NONBLOCK relative to its directory's fd and fstat'ed, so an entry swapped for a
// symlink between the listing and the open is refused by the open, and one swapped after it changes
// nothing (we hold the old object). Symlinks are copied as symlinks (their text, never followed:
// the guest resolves them inside the VM), sockets, FIFOs and devices are skipped. A hash of what
// was copied (paths, kinds, modes, contents, link texts) keys the image cache.
import { createHash, type Hash } from "node:crypto";
import {
  constants as C,
  closeSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
  symlinkSync,
  writeSync,
} from "node:fs";
import { join } from "node:path";
import { StageError } from "./stage.ts";

export interface CopyLimits {
  maxEntries: number;
  maxBytes: number;
  maxDepth: number;
}

export const DEFAULT_COPY_LIMITS: CopyLimits = {
  maxEntries: 100_000,
  maxBytes: 1024 ** 3,
  maxDepth: 256,
};

export interface CopyResult {
  entries: number;
  bytes: number;
  /** What was left out, each with why ("a/b (socket)"). */
  skipped: string[];
}

const at = (fd: number, name: string) => `/proc/self/fd/${fd}/${name}`;
const code = (e: unknown) => (e as NodeJS.ErrnoException).code;

function openDir(path: string): number {
  return openSync(path, C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
}

/** A source path that cannot be opened without following a symlink; `at` is where it failed. */
class PathRefused extends Error {}

/**
 * Opens the absolute directory `path` one component at a time from "/", each relative to its
 * parent's fd with O_NOFOLLOW: a symlink anywhere on the way (not only at the end) is refused, so
 * a directory of the path swapped for a symlink after the host-access check (by a container
 * sharing <srv_root>/<service>/, between a check and a policy restart) cannot lead the copy into
 * the agent's own files. A ".." segment is refused too (the kernel would resolve it through a link).
 */
function openSourceNoFollow(path: string): number {
  if (!path.startsWith("/")) throw new PathRefused("is not an absolute path");
  const segs = path.split("/").filter((s) => s !== "" && s !== ".");
  if (segs.includes("..")) throw new PathRefused('has a ".." segment; name the real path');
  let fd = openDir("/");
  let walked = "";
  try {
    for (const seg of segs) {
      walked += `/${seg}`;
      let next: number;
      try {
        next = openDir(at(fd, seg));
      } catch (e) {
        if (code(e) === "ELOOP" || code(e) === "ENOTDIR") {
          let link = false;
          try {
            link = lstatSync(at(fd, seg)).isSymbolicLink();
          } catch {}
          throw new PathRefused(
            link
              ? `passes through the symlink ${walked}; a baked volume must name the real path`
              : `is not a directory at ${walked}`,
          );
        }
        throw e;
      }
      closeSync(fd);
      fd = next;
    }
    return fd;
  } catch (e) {
    closeSync(fd);
    throw e;
  }
}

/**
 * Copies the directory `src` into `dest` (created, must not exist) and feeds `hash`. `label` names
 * the volume in errors. A `src` with a symlink anywhere on its path is refused (openSourceNoFollow).
 */
export function copyTreeNoFollow(
  src: string,
  dest: string,
  hash: Hash,
  label: string,
  limits: CopyLimits = DEFAULT_COPY_LIMITS,
): CopyResult {
  let rootFd: number;
  try {
    rootFd = openSourceNoFollow(src);
  } catch (e) {
    const why =
      e instanceof PathRefused ? e.message : code(e) === "ENOENT" ? "does not exist" : (e as Error).message;
    throw new StageError(`${label}: host directory ${src} ${why}`);
  }
  const res: CopyResult = { entries: 0, bytes: 0, skipped: [] };
  const buf = Buffer.allocUnsafe(1 << 16);
  /** open(), or null with `r` recorded as skipped when it fails with one of `codes` (the entry changed under us). */
  const openOrSkip = (r: string, codes: string[], open: () => number): number | null => {
    try {
      return open();
    } catch (e) {
      if (!codes.includes(code(e) ?? "")) throw e;
      res.skipped.push(`${r} (changed while being copied; not followed)`);
      return null;
    }
  };
  const walk = (fd: number, out: string, rel: string, depth: number): void => {
    mkdirSync(out, { mode: 0o700 });
    const names = readdirSync(`/proc/self/fd/${fd}`).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      if (++res.entries > limits.maxEntries)
        throw new StageError(`${label}: more than ${limits.maxEntries} entries under ${src}`);
      let st: ReturnType<typeof lstatSync>;
      try {
        st = lstatSync(at(fd, n));
      } catch (e) {
        if (code(e) === "ENOENT") continue; // removed while we read: not there, not baked
        throw e;
      }
      const target = join(out, n);
      if (st.isSymbolicLink()) {
        const text = readlinkSync(at(fd, n));
        symlinkSync(text, target);
        hash.update(`L\0${r}\0${text}\0`);
      } else if (st.isDirectory()) {
        if (depth + 1 > limits.maxDepth)
          throw new StageError(`${label}: ${r} is deeper than ${limits.maxDepth} levels`);
        const child = openOrSkip(r, ["ELOOP", "ENOTDIR", "ENOENT"], () => openDir(at(fd, n)));
        if (child === null) continue;
        try {
          hash.update(`D\0${r}\0${st.mode & 0o7777}\0`);
          walk(child, target, r, depth + 1);
        } finally {
          closeSync(child);
        }
      } else if (st.isFile()) {
        const f = openOrSkip(r, ["ELOOP", "ENOENT", "ENXIO"], () =>
          openSync(at(fd, n), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK),
        );
        if (f === null) continue;
        try {
          const fst = fstatSync(f);
          if (!fst.isFile()) {
            res.skipped.push(`${r} (not a regular file when opened)`);
            continue;
          }
          const mode = fst.mode & 0o755;
          hash.update(`F\0${r}\0${mode}\0`);
          // The content goes in as its own digest: fed raw, a file's bytes could spell the entries
          // after it and two different trees would share a cache key (and one boot the other's image).
          const content = createHash("sha256");
          const o = openSync(target, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode | 0o600);
          try {
            for (;;) {
              const got = readSync(f, buf, 0, buf.length, null);
              if (got === 0) break;
              res.bytes += got;
              if (res.bytes > limits.maxBytes)
                throw new StageError(`${label}: more than ${limits.maxBytes} bytes under ${src}`);
              content.update(buf.subarray(0, got));
              writeSync(o, buf, 0, got);
            }
          } finally {
            closeSync(o);
          }
          hash.update(`${content.digest("hex")}\0`);
        } finally {
          closeSync(f);
        }
      } else {
        res.skipped.push(`${r} (${st.isSocket() ? "socket" : st.isFIFO() ? "fifo" : "device"})`);
      }
    }
  };
  try {
    walk(rootFd, dest, "", 0);
  } finally {
    closeSync(rootFd);
  }
  return res;
}

/** A fresh sha256 for copyTreeNoFollow. */
export const newContentHash = (): Hash => createHash("sha256");
