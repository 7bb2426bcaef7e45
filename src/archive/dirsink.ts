// An extraction sink that writes relative to directory descriptors (moved here from the agent's
// files/tree.ts so the runtime layer can extract an untrusted image filesystem the same way):
// every directory is made and reopened relative to its parent's fd without following a symlink,
// every file is created O_CREAT|O_EXCL|O_NOFOLLOW in its directory's fd, every symlink and hard
// link is made by name in its directory's fd. Node has no openat(): "relative to a fd" is spelled
// /proc/self/fd/<fd>/<name>, which the kernel resolves to the very directory the fd holds and then
// looks up exactly one name in it (see roles/agent/files/confine.ts). So a parent that is a
// symlink is refused for every kind of entry, and a swap after we opened a directory changes
// nothing.
import { constants as C } from "node:fs";
import { type FileHandle, link, mkdir, open, symlink } from "node:fs/promises";
import { type ExtractSink, TarError } from "./tar.ts";

const at = (dir: FileHandle, name: string) => `/proc/self/fd/${dir.fd}/${name}`;
const errCode = (err: unknown) => (err as NodeJS.ErrnoException)?.code;

const parentOf = (rel: string): [string, string] => {
  const i = rel.lastIndexOf("/");
  return i < 0 ? ["", rel] : [rel.slice(0, i), rel.slice(i + 1)];
};

/** `name` in `dir` as a directory fd, or null when it is a symlink, missing, or not a directory. */
async function openChildDirOrNull(dir: FileHandle, name: string): Promise<FileHandle | null> {
  let fh: FileHandle;
  try {
    fh = await open(at(dir, name), C.O_RDONLY | C.O_DIRECTORY | C.O_NOFOLLOW);
  } catch (e) {
    const code = errCode(e);
    if (code === "ENOENT" || code === "ENOTDIR" || code === "ELOOP") return null;
    throw e;
  }
  if (!(await fh.stat()).isDirectory()) {
    await fh.close();
    return null;
  }
  return fh;
}

/**
 * An extraction sink writing under the directory `root` refers to (see the file comment). Close it
 * when done; `root` stays the caller's.
 */
export function dirSink(root: FileHandle): ExtractSink & { close(): Promise<void> } {
  let cached: { rel: string; fh: FileHandle } | null = null;
  /** Opens `rel` segment by segment from `from` (root or an ancestor) on fresh descriptors. */
  const walk = async (from: FileHandle, rest: string, rel: string): Promise<FileHandle> => {
    let cur = from;
    for (const seg of rest.split("/")) {
      let next: FileHandle | null;
      try {
        next = await openChildDirOrNull(cur, seg);
      } finally {
        if (cur !== root && cur !== from) await cur.close();
      }
      if (!next) throw new TarError(`archive path ${rel}: exists and is not a directory`);
      cur = next;
    }
    return cur;
  };
  const dirOf = async (rel: string): Promise<FileHandle> => {
    if (rel === "") return root;
    if (cached?.rel === rel) return cached.fh;
    // Extraction goes parent then child: walking on from the cached directory when it is an
    // ancestor keeps a deep path linear (reopening every level from the root was quadratic).
    const prev = cached;
    cached = null;
    let fh: FileHandle;
    try {
      fh =
        prev && rel.startsWith(`${prev.rel}/`)
          ? await walk(prev.fh, rel.slice(prev.rel.length + 1), rel)
          : await walk(root, rel, rel);
    } finally {
      if (prev) await prev.fh.close().catch(() => {});
    }
    cached = { rel, fh };
    return fh;
  };
  return {
    async mkdir(rel) {
      const [parent, name] = parentOf(rel);
      const dir = await dirOf(parent);
      try {
        await mkdir(at(dir, name), 0o700); // never follows: EEXIST on a symlink
      } catch (e) {
        if (errCode(e) !== "EEXIST") throw e;
      }
      await dirOf(rel); // a symlink or a file at that name is refused here
    },
    async create(rel, mode) {
      const [parent, name] = parentOf(rel);
      const dir = await dirOf(parent);
      return open(at(dir, name), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode);
    },
    async finishDir(rel, mode, mtimeS) {
      const fh = await dirOf(rel);
      await fh.chmod(mode);
      await fh.utimes(mtimeS, mtimeS);
    },
    async symlink(rel, target) {
      const [parent, name] = parentOf(rel);
      const dir = await dirOf(parent);
      await symlink(target, at(dir, name)); // the text as is; EEXIST on any existing name
    },
    async link(rel, existing) {
      // The source's directory on its own descriptor (the cache holds the destination's); link(2)
      // never follows a symlink at the source's own name.
      const [srcParent, srcName] = parentOf(existing);
      const src = srcParent === "" ? root : await walk(root, srcParent, existing);
      try {
        const [parent, name] = parentOf(rel);
        const dir = await dirOf(parent);
        await link(at(src, srcName), at(dir, name));
      } finally {
        if (src !== root) await src.close();
      }
    },
    async close() {
      if (cached) await cached.fh.close().catch(() => {});
      cached = null;
    },
  };
}
