// Whole-tree moves in and out of a service directory (export, snapshot, import) by descriptor,
// with the same primitives as push/pull (confine.ts): every directory is opened relative to its
// parent's fd with O_DIRECTORY|O_NOFOLLOW, every file relative to its directory's fd with
// O_NOFOLLOW, and what was opened is fstat'ed and compared with what the walk saw (device,
// inode, type). A container sharing the directory can swap a directory or a file for a symlink
// at any moment: a swap before an open is refused by O_NOFOLLOW, a swap between the walk and
// the read is caught by the identity check, and a swap after the open changes nothing (we hold
// the old object). Such an entry is skipped with one line, never followed.
//
// SQLite databases are copied through those descriptors too: SQLite itself only opens paths (and
// resolves symlinks in them), so it never sees a service directory. The database and its -wal /
// -journal are read through checked fds into a private temp dir, the copy is repeated until the
// database file and the WAL header did not change while it was read (a checkpoint or a rollback-
// mode commit in between), and `VACUUM INTO` of that private copy is what gets archived: WAL
// frames appended during the copy are cut at the last whole commit by SQLite's own recovery.
import { Database } from "bun:sqlite";
import { constants as C, rmSync } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir } from "node:fs/promises";
import { join } from "node:path";
import { failedPrecondition, RpcError } from "../../../rpc/errors.ts";
import { at, errCode, openChildDir } from "./confine.ts";

/** What the walk saw of an entry: the identity every later open is compared with. */
export interface TreeEntry {
  /** "/"-separated, relative to the service directory. */
  path: string;
  type: "file" | "dir";
  mode: number;
  mtimeMs: number;
  dev: number;
  ino: number;
}

const sameObject = (a: { dev: number; ino: number }, b: { dev: number; ino: number }) =>
  a.dev === b.dev && a.ino === b.ino;

const parentOf = (rel: string) => {
  const i = rel.lastIndexOf("/");
  return i < 0 ? ["", rel] : [rel.slice(0, i), rel.slice(i + 1)];
};

/** `name` in `dir` as a directory fd, or null when it is a symlink, gone, or not `expect`. */
async function openDirChecked(
  dir: FileHandle,
  name: string,
  expect: { dev: number; ino: number } | null,
): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    fh = await openChildDir(dir, name, name, false);
  } catch (err) {
    if (err instanceof RpcError) return null; // a symlink, a non-directory, or removed
    throw err;
  }
  const st = await fh.stat();
  if (!st.isDirectory() || (expect && !sameObject(st, expect))) {
    await fh.close();
    return null;
  }
  return fh;
}

/**
 * Every directory and regular file under the directory `root` refers to, parents first and
 * sorted by name, each with the identity the walk saw. Anything else (symlinks, sockets, FIFOs,
 * devices, a directory swapped while being walked) goes to `skip` with the reason.
 */
export async function walkTree(
  root: FileHandle,
  skip: (rel: string, why: string) => void,
): Promise<TreeEntry[]> {
  const out: TreeEntry[] = [];
  const walk = async (dir: FileHandle, rel: string): Promise<void> => {
    const names = (await readdir(`/proc/self/fd/${dir.fd}`)).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(at(dir, n)).catch((e) => {
        if (errCode(e) === "ENOENT") return null;
        throw e;
      });
      if (!st) {
        skip(r, "was removed during the walk");
        continue;
      }
      const entry = { path: r, mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, dev: st.dev, ino: st.ino };
      if (st.isDirectory()) {
        const child = await openDirChecked(dir, n, st);
        if (!child) {
          skip(r, "was replaced while being walked; not followed");
          continue;
        }
        try {
          out.push({ ...entry, type: "dir" });
          await walk(child, r);
        } finally {
          await child.close();
        }
      } else if (st.isFile()) out.push({ ...entry, type: "file" });
      else skip(r, st.isSymbolicLink() ? "is a symlink; not followed" : "is not a regular file or directory");
    }
  };
  await walk(root, "");
  return out;
}

/**
 * Opens what a walk found, re-walking from the root fd: each directory O_NOFOLLOW relative to
 * its parent and compared with the walk's identity, the file O_NOFOLLOW and compared too. The
 * last directory opened is kept (entries come parents first, so neighbours share it).
 */
export class TreeReader {
  private cached: { rel: string; fh: FileHandle } | null = null;
  private readonly dirs = new Map<string, TreeEntry>();

  constructor(
    private readonly root: FileHandle,
    entries: TreeEntry[],
    /** Told once per entry that changed since the walk (then skipped). */
    private readonly changed: (rel: string, why: string) => void,
  ) {
    for (const e of entries) if (e.type === "dir") this.dirs.set(e.path, e);
  }

  /** The directory `rel` ("" = the root) as the walk saw it, or null when it changed since. */
  async dir(rel: string): Promise<FileHandle | null> {
    if (rel === "") return this.root;
    if (this.cached?.rel === rel) return this.cached.fh;
    await this.dropCache();
    let cur = this.root;
    const segs = rel.split("/");
    for (let i = 0; i < segs.length; i++) {
      const seen = this.dirs.get(segs.slice(0, i + 1).join("/"));
      const next = seen ? await openDirChecked(cur, segs[i]!, seen) : null;
      if (cur !== this.root) await cur.close();
      if (!next) return null;
      cur = next;
    }
    this.cached = { rel, fh: cur };
    return cur;
  }

  /** A checked fd of the file the walk saw at `e.path`, or null (said through `changed`). */
  async file(e: TreeEntry): Promise<FileHandle | null> {
    const [parent, name] = parentOf(e.path);
    const dir = await this.dir(parent!);
    if (!dir) {
      this.changed(e.path, "its directory changed since the walk; skipped, not followed");
      return null;
    }
    return this.openIn(dir, name!, e.path, e);
  }

  /** `name` in `dir`, a regular file never reached through a symlink; `expect` its identity. */
  async openIn(
    dir: FileHandle,
    name: string,
    rel: string,
    expect: { dev: number; ino: number } | null,
  ): Promise<FileHandle | null> {
    let fh: FileHandle;
    try {
      fh = await open(at(dir, name), C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    } catch (err) {
      const code = errCode(err);
      if (code === "ENOENT" && !expect) return null;
      if (code === "ELOOP" || code === "ENOENT" || code === "ENXIO") {
        this.changed(rel, code === "ELOOP" ? "is now a symlink; not followed" : "was removed since the walk");
        return null;
      }
      throw err;
    }
    const st = await fh.stat();
    if (!st.isFile() || (expect && !sameObject(st, expect))) {
      await fh.close();
      this.changed(rel, "was replaced since the walk; skipped, not followed");
      return null;
    }
    return fh;
  }

  private async dropCache(): Promise<void> {
    const c = this.cached;
    this.cached = null;
    if (c) await c.fh.close().catch(() => {});
  }

  async close(): Promise<void> {
    await this.dropCache();
  }
}

const SQLITE_MAGIC = Buffer.from("SQLite format 3\0", "latin1");
/** Copies of a live database taken before giving up on one that never holds still. */
const COPY_ATTEMPTS = 5;

async function readAt(fh: FileHandle, n: number, pos: number): Promise<Buffer> {
  const buf = Buffer.alloc(n);
  const { bytesRead } = await fh.read(buf, 0, n, pos);
  return buf.subarray(0, bytesRead);
}

/** True when the file behind `fh` starts with the SQLite header. */
export async function isSqliteFd(fh: FileHandle): Promise<boolean> {
  return (await readAt(fh, 16, 0)).equals(SQLITE_MAGIC);
}

/** Copies `size` bytes of `src` from offset 0 to a new file `dest` (0600). */
async function copyFd(src: FileHandle, dest: string, size: number): Promise<void> {
  const out = await open(dest, C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, 0o600);
  try {
    const buf = Buffer.alloc(Math.min(size, 1 << 20) || 1);
    for (let pos = 0; pos < size; ) {
      const { bytesRead } = await src.read(buf, 0, Math.min(buf.length, size - pos), pos);
      if (bytesRead === 0) break;
      let w = 0;
      while (w < bytesRead) w += (await out.write(buf, w, bytesRead - w)).bytesWritten;
      pos += bytesRead;
    }
  } finally {
    await out.close();
  }
}

/** What must not change while a database is copied: its size and times, and its WAL's header. */
async function stamp(db: FileHandle, wal: FileHandle | null): Promise<string> {
  const s = await db.stat({ bigint: true });
  const walHead = wal ? (await readAt(wal, 32, 0)).toString("hex") : "";
  return `${s.size}/${s.mtimeNs}/${s.ctimeNs}/${walHead}`;
}

/**
 * Opens a database file a container wrote (our private copy of it) for reading: read-only, and
 * with the schema untrusted (no functions with side effects run from its views, triggers, CHECK
 * or DEFAULT expressions) and page cells checked. bun:sqlite has no sqlite3_db_config, so
 * SQLITE_DBCONFIG_DEFENSIVE cannot be set. A hot rollback journal can only be rolled back by a
 * writer: then (only then) the copy is opened read-write, with the same pragmas.
 */
export function openUntrustedSqlite(path: string, readonly = true): Database {
  const conn = new Database(path, readonly ? { readonly: true } : { readwrite: true, create: false });
  try {
    conn.run("PRAGMA trusted_schema = OFF");
    conn.run("PRAGMA cell_size_check = ON");
    conn.run("PRAGMA mmap_size = 0");
    return conn;
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** `VACUUM INTO dest` of the container-written copy at `copy`, opened by openUntrustedSqlite. */
export function vacuumUntrusted(copy: string, dest: string): void {
  const attempt = (readonly: boolean) => {
    const conn = openUntrustedSqlite(copy, readonly);
    try {
      conn.run("VACUUM INTO ?", [dest]);
    } finally {
      conn.close();
    }
  };
  try {
    attempt(true);
  } catch (e) {
    // SQLITE_READONLY_ROLLBACK / _RECOVERY: a hot journal or WAL a reader may not recover.
    if (!/readonly/i.test(String((e as { code?: string }).code ?? (e as Error).message))) throw e;
    rmSync(dest, { force: true });
    attempt(false);
  }
}

/**
 * A consistent `VACUUM INTO` copy (at `dest`) of the SQLite database open as `db` in `dir`,
 * read only through descriptors. `work` is a private temp dir of ours. Throws
 * FAILED_PRECONDITION when the database never held still or cannot be copied.
 */
export async function copySqlite(
  reader: TreeReader,
  dir: FileHandle,
  db: FileHandle,
  rel: string,
  work: string,
  dest: string,
): Promise<void> {
  const name = rel.slice(rel.lastIndexOf("/") + 1);
  // Side files are opened the same way; one that is a symlink or not a regular file is left out.
  const side = async (suffix: string) => reader.openIn(dir, `${name}${suffix}`, `${rel}${suffix}`, null);
  const wal = await side("-wal");
  const journal = await side("-journal");
  try {
    for (let attempt = 1; ; attempt++) {
      const copyDir = join(work, `copy-${attempt}`);
      await mkdir(copyDir, { recursive: true, mode: 0o700 });
      const copy = join(copyDir, "db");
      const before = await stamp(db, wal);
      await copyFd(db, copy, (await db.stat()).size);
      if (wal) await copyFd(wal, `${copy}-wal`, (await wal.stat()).size);
      if (journal) await copyFd(journal, `${copy}-journal`, (await journal.stat()).size);
      if ((await stamp(db, wal)) === before) {
        try {
          vacuumUntrusted(copy, dest);
          return;
        } catch (e) {
          throw failedPrecondition(`cannot copy database ${rel} consistently: ${(e as Error).message}`);
        }
      }
      if (attempt >= COPY_ATTEMPTS)
        throw failedPrecondition(
          `database ${rel} changed during each of ${COPY_ATTEMPTS} copies; try the export again`,
        );
      await Bun.sleep(50 * attempt);
    }
  } finally {
    await wal?.close();
    await journal?.close();
  }
}

// The descriptor-relative extraction sink lives with the archive code (the runtime layer's image
// export uses it too).
export { dirSink } from "../../../archive/dirsink.ts";
