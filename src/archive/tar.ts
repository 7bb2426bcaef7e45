// A small pure-TS tar (POSIX ustar + pax path/size records) for service snapshots and migration:
// regular files and directories with mode and mtime, nothing else. Both directions stream:
// packTar yields 512-byte-aligned chunks as it reads each file; extractTar consumes chunks and
// writes file data as it arrives, so neither side ever holds a whole archive in memory.
//
// Extraction is confined to the target directory: absolute paths, `..` segments, NUL bytes,
// links, devices/FIFOs and any other entry type are refused (the whole extraction fails, so the
// caller throws its temp dir away). With `links: true` (an OCI image's filesystem, which needs its
// symlinks), symlinks are created as symlinks with their text as is (never followed, never
// resolved), hard links become links to a regular file extracted earlier in the same archive, and
// devices, FIFOs, sockets and whiteouts are skipped with a reason; parents are checked to be real directories (never a
// symlink) and files are created O_EXCL|O_NOFOLLOW, so even a target dir that something else
// writes into cannot redirect a write outside it. Modes are masked to 0755 (no setuid, setgid,
// sticky, group or world write). Limits on the total content bytes and the entry count are
// checked against each header's declared size before anything of that entry is written.
//
// Where the bytes come from and go to is the caller's: a PackEntry may carry an `open` that
// returns an already-checked descriptor (the agent's descriptor walk, files/tree.ts), and
// extraction writes through an ExtractSink (the agent's writes every entry relative to directory
// descriptors); a plain path is accepted for trees nobody else writes into (tests, temp dirs).
import { constants as C } from "node:fs";
import { chmod, type FileHandle, link, lstat, mkdir, open, readdir, symlink, utimes } from "node:fs/promises";
import { join } from "node:path";

export const BLOCK = 512;
/** Read/write granularity for file data. */
const IO_CHUNK = 256 * 1024;
/** Largest size the 11 octal digits of a ustar header hold; above it a pax size record is written. */
const USTAR_MAX_SIZE = 8 ** 11 - 1;

export class TarError extends Error {}

export interface PackEntry {
  /** Relative, "/"-separated path inside the archive (no leading "/", no ".."). */
  path: string;
  type: "file" | "dir";
  mode: number;
  mtimeMs: number;
  /** Files: where the bytes are read from (may differ from `path`, e.g. a vacuumed copy). */
  source?: string;
  /**
   * Files: opens the bytes to archive instead of `source` (a descriptor already checked to be the
   * file the walk saw); null skips the entry (the opener says why).
   */
  open?: () => Promise<FileHandle | null>;
}

/** Mode bits an extracted file or directory keeps: no setuid/setgid/sticky, no group/world write. */
export const EXTRACT_MODE_MASK = 0o755;

const enc = new TextEncoder();
const dec = new TextDecoder("utf-8", { fatal: false });

/**
 * Checks and normalizes an archive path: "" and "." segments dropped, trailing "/" removed.
 * Throws TarError for absolute paths, "..", NUL and empty results.
 */
export function safeRelPath(raw: string): string {
  if (raw.includes("\0")) throw new TarError(`archive path ${JSON.stringify(raw)} contains a NUL byte`);
  if (raw.startsWith("/")) throw new TarError(`archive path ${JSON.stringify(raw)} is absolute`);
  const segs = raw.split("/").filter((s) => s !== "" && s !== ".");
  if (segs.includes("..")) throw new TarError(`archive path ${JSON.stringify(raw)} contains ".."`);
  if (segs.length === 0) throw new TarError(`archive path ${JSON.stringify(raw)} is empty`);
  return segs.join("/");
}

function putString(buf: Uint8Array, off: number, len: number, s: string): void {
  const b = enc.encode(s);
  if (b.length > len) throw new TarError(`tar header field too long: ${s}`);
  buf.set(b, off);
}

function putOctal(buf: Uint8Array, off: number, len: number, n: number): void {
  // len-1 digits then NUL, zero padded (the classic form every tar reads).
  putString(buf, off, len, n.toString(8).padStart(len - 1, "0"));
}

function checksum(h: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  return sum;
}

/** Splits a path into ustar (prefix, name), or null when it needs a pax record. */
function splitUstar(path: string): [string, string] | null {
  if (enc.encode(path).length <= 100) return ["", path];
  for (let i = path.indexOf("/"); i >= 0; i = path.indexOf("/", i + 1)) {
    const prefix = path.slice(0, i);
    const name = path.slice(i + 1);
    if (enc.encode(prefix).length <= 155 && enc.encode(name).length <= 100 && name !== "") {
      return [prefix, name];
    }
  }
  return null;
}

function header(name: string, prefix: string, type: string, mode: number, size: number, mtimeS: number) {
  const h = new Uint8Array(BLOCK);
  putString(h, 0, 100, name);
  putOctal(h, 100, 8, mode & 0o7777);
  putOctal(h, 108, 8, 0);
  putOctal(h, 116, 8, 0);
  putOctal(h, 124, 12, size);
  putOctal(h, 136, 12, Math.max(0, mtimeS));
  putString(h, 156, 1, type);
  putString(h, 257, 6, "ustar\0");
  putString(h, 263, 2, "00");
  putString(h, 345, 155, prefix);
  putString(h, 148, 8, `${checksum(h).toString(8).padStart(6, "0")}\0 `);
  return h;
}

/** A pax record "<len> key=value\n" whose length prefix counts itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  const bodyLen = enc.encode(body).length;
  let len = bodyLen + 1;
  while (String(len).length + bodyLen !== len) len = String(len).length + bodyLen;
  return `${len}${body}`;
}

function padding(size: number): Uint8Array {
  const rem = size % BLOCK;
  return new Uint8Array(rem === 0 ? 0 : BLOCK - rem);
}

/** The header block(s) of one entry: a pax extended header first when path or size need it. */
export function entryHeaders(
  path: string,
  type: "file" | "dir",
  mode: number,
  size: number,
  mtimeMs: number,
) {
  const full = type === "dir" ? `${path}/` : path;
  const split = splitUstar(full);
  const mtimeS = Math.floor(mtimeMs / 1000);
  const out: Uint8Array[] = [];
  let records = "";
  if (!split) records += paxRecord("path", full);
  if (size > USTAR_MAX_SIZE) records += paxRecord("size", String(size));
  if (records) {
    const body = enc.encode(records);
    out.push(header("PaxHeader", "", "x", 0o644, body.length, mtimeS), body, padding(body.length));
  }
  const [prefix, name] = split ?? ["", full.slice(-100).replace(/^[^/]*\//, "") || "long-name"];
  out.push(header(name, prefix, type === "dir" ? "5" : "0", mode, size > USTAR_MAX_SIZE ? 0 : size, mtimeS));
  return out;
}

async function* readExactly(fh: FileHandle, size: number): AsyncGenerator<Uint8Array> {
  {
    let left = size;
    while (left > 0) {
      const buf = new Uint8Array(Math.min(IO_CHUNK, left));
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      // A file that shrank while we read it (a live service) is padded with zeros: the header
      // already promised `size` bytes and the archive must stay well-formed.
      if (bytesRead === 0) {
        while (left > 0) {
          const z = Math.min(IO_CHUNK, left);
          yield new Uint8Array(z);
          left -= z;
        }
        return;
      }
      yield bytesRead === buf.length ? buf : buf.subarray(0, bytesRead);
      left -= bytesRead;
    }
  }
}

/** Streams a tar of `entries` (in the given order; parents should precede children). */
export async function* packTar(
  entries: Iterable<PackEntry> | AsyncIterable<PackEntry>,
): AsyncGenerator<Uint8Array> {
  for await (const e of entries) {
    const path = safeRelPath(e.path);
    if (e.type === "dir") {
      yield* entryHeaders(path, "dir", e.mode, 0, e.mtimeMs);
      continue;
    }
    let fh: FileHandle;
    if (e.open) {
      const got = await e.open();
      if (!got) continue;
      fh = got;
    } else if (e.source) fh = await open(e.source, C.O_RDONLY | C.O_NOFOLLOW | C.O_NONBLOCK);
    else throw new TarError(`file entry ${path} has no source`);
    try {
      const st = await fh.stat();
      if (!st.isFile()) throw new TarError(`${e.source ?? path} is not a regular file`);
      // The size at open time is what the header records (the file may grow while we read).
      yield* entryHeaders(path, "file", e.mode, st.size, e.mtimeMs);
      yield* readExactly(fh, st.size);
      const pad = padding(st.size);
      if (pad.length) yield pad;
    } finally {
      await fh.close();
    }
  }
  yield new Uint8Array(BLOCK * 2);
}

/**
 * The regular files and directories under `root` as pack entries, parents first, sorted by
 * name; symlinks, sockets, FIFOs and devices are returned in `skipped` (never followed).
 * Path-based: only for trees nobody else writes into. A service directory, which a container
 * shares, is walked by descriptor (src/roles/agent/files/tree.ts).
 */
export async function collectTree(root: string): Promise<{ entries: PackEntry[]; skipped: string[] }> {
  const entries: PackEntry[] = [];
  const skipped: string[] = [];
  const walk = async (dir: string, rel: string): Promise<void> => {
    const names = (await readdir(dir)).sort();
    for (const n of names) {
      const abs = join(dir, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = await lstat(abs);
      if (st.isDirectory()) {
        entries.push({ path: r, type: "dir", mode: st.mode & 0o7777, mtimeMs: st.mtimeMs });
        await walk(abs, r);
      } else if (st.isFile()) {
        entries.push({ path: r, type: "file", mode: st.mode & 0o7777, mtimeMs: st.mtimeMs, source: abs });
      } else skipped.push(r);
    }
  };
  await walk(root, "");
  return { entries, skipped };
}

/** Pull-based reader over a chunk stream: take exactly n bytes, or up to n for data. */
class ByteQueue {
  private chunks: Uint8Array[] = [];
  private off = 0;
  private avail = 0;
  private done = false;
  constructor(private it: AsyncIterator<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    if (this.done) return false;
    const r = await this.it.next();
    if (r.done) {
      this.done = true;
      return false;
    }
    if (r.value.length > 0) {
      this.chunks.push(r.value);
      this.avail += r.value.length;
    }
    return true;
  }

  /** Exactly n bytes, or null at a clean end of input (nothing buffered). */
  async take(n: number): Promise<Uint8Array | null> {
    while (this.avail < n) {
      if (!(await this.fill())) {
        if (this.avail === 0) return null;
        throw new TarError("archive is truncated");
      }
    }
    const out = new Uint8Array(n);
    let w = 0;
    while (w < n) {
      const c = this.chunks[0]!;
      const k = Math.min(n - w, c.length - this.off);
      out.set(c.subarray(this.off, this.off + k), w);
      w += k;
      this.consume(k, c);
    }
    return out;
  }

  /** Between 1 and n bytes without copying when possible; throws at end of input. */
  async some(n: number): Promise<Uint8Array> {
    while (this.avail === 0) {
      if (!(await this.fill())) throw new TarError("archive is truncated");
    }
    const c = this.chunks[0]!;
    const k = Math.min(n, c.length - this.off);
    const out = c.subarray(this.off, this.off + k);
    this.consume(k, c);
    return out;
  }

  private consume(k: number, c: Uint8Array): void {
    this.off += k;
    this.avail -= k;
    if (this.off === c.length) {
      this.chunks.shift();
      this.off = 0;
    }
  }
}

function readString(h: Uint8Array, off: number, len: number): string {
  const field = h.subarray(off, off + len);
  const nul = field.indexOf(0);
  return dec.decode(nul >= 0 ? field.subarray(0, nul) : field);
}

function readOctal(h: Uint8Array, off: number, len: number, what: string): number {
  if ((h[off]! & 0x80) !== 0) throw new TarError(`tar header: base-256 ${what} is not supported`);
  const s = readString(h, off, len).trim();
  if (s === "") return 0;
  if (!/^[0-7]+$/.test(s)) throw new TarError(`tar header: bad ${what} field ${JSON.stringify(s)}`);
  return Number.parseInt(s, 8);
}

function parsePax(body: Uint8Array): Map<string, string> {
  const out = new Map<string, string>();
  let i = 0;
  while (i < body.length) {
    const sp = body.indexOf(0x20, i);
    if (sp < 0) break;
    const len = Number.parseInt(dec.decode(body.subarray(i, sp)), 10);
    if (!Number.isFinite(len) || len <= 0 || i + len > body.length) throw new TarError("bad pax record");
    const rec = dec.decode(body.subarray(sp + 1, i + len - 1));
    const eq = rec.indexOf("=");
    if (eq > 0) out.set(rec.slice(0, eq), rec.slice(eq + 1));
    i += len;
  }
  return out;
}

export interface ExtractResult {
  files: number;
  dirs: number;
  /** File content bytes written. */
  bytes: number;
  /** Symlinks created (only with `links: true`). */
  symlinks: number;
  /** Hard links created (only with `links: true`). */
  hardlinks: number;
  /** Entries left out, each "path: why" (only with `links: true`; otherwise they are refused). */
  skipped: string[];
}

/** A limit an archive went over: the caller turns it into its own one-line refusal. */
export class TarLimitError extends TarError {}

/** The longest entry path extraction takes, in bytes (Linux PATH_MAX). */
export const MAX_EXTRACT_PATH_BYTES = 4096;
/** The most path segments (directory levels plus the name) an extracted entry may have. */
export const MAX_EXTRACT_PATH_DEPTH = 256;

/** Refuses an entry path (already through safeRelPath) longer or deeper than extraction takes. */
function checkPathBounds(rel: string): void {
  const bytes = enc.encode(rel).length;
  const depth = rel.split("/").length;
  if (bytes > MAX_EXTRACT_PATH_BYTES || depth > MAX_EXTRACT_PATH_DEPTH)
    throw new TarError(
      `archive path ${JSON.stringify(`${rel.slice(0, 40)}…`)} is ${bytes} bytes and ${depth} levels deep; ` +
        `at most ${MAX_EXTRACT_PATH_BYTES} bytes and ${MAX_EXTRACT_PATH_DEPTH} levels are allowed`,
    );
}

export interface ExtractOptions {
  /** Refuse archives whose file content exceeds this many bytes in total (checked per header). */
  maxBytes?: number;
  /** Refuse archives with more than this many files and directories (and links, skipped entries). */
  maxEntries?: number;
  /**
   * Create symlinks (their text as is) and hard links (to a regular file this extraction already
   * wrote; any other target is skipped), and skip devices, FIFOs, sockets and whiteouts with a
   * reason instead of refusing the archive. The sink must implement symlink and link.
   */
  links?: boolean;
  /** Give the owner (us) read access to every file and rwx to every directory. */
  ownerAccess?: boolean;
}

/** The longest symlink text extraction takes, in bytes (Linux PATH_MAX less the NUL). */
export const MAX_SYMLINK_BYTES = 4095;
/** Skipped entries listed by name in an ExtractResult; the rest are counted. */
export const MAX_SKIPPED_LINES = 1000;

/**
 * Where extraction writes. Every call names a path already checked by safeRelPath whose parent
 * was made by an earlier mkdir (or is the root "").
 */
export interface ExtractSink {
  /** Makes directory `rel`; an existing real directory is fine, anything else throws TarError. */
  mkdir(rel: string): Promise<void>;
  /** Creates file `rel` new (exclusive, never through a symlink); an existing name throws EEXIST. */
  create(rel: string, mode: number): Promise<FileHandle>;
  /** Sets a directory's final mode and mtime (called last, deepest first). */
  finishDir(rel: string, mode: number, mtimeS: number): Promise<void>;
  /** Creates symlink `rel` holding `target` as is (never followed); an existing name throws EEXIST. */
  symlink?(rel: string, target: string): Promise<void>;
  /** Makes `rel` a hard link to the regular file `existing` (both relative); EEXIST as above. */
  link?(rel: string, existing: string): Promise<void>;
}

/** A sink writing under `dest` by path: for directories nobody else writes into. */
export function pathSink(dest: string): ExtractSink {
  return {
    async mkdir(rel) {
      const abs = join(dest, rel);
      try {
        await mkdir(abs, { mode: 0o700 });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
        const st = await lstat(abs);
        if (!st.isDirectory() || st.isSymbolicLink())
          throw new TarError(`archive path ${rel}: exists and is not a directory`);
      }
    },
    create: (rel, mode) => open(join(dest, rel), C.O_WRONLY | C.O_CREAT | C.O_EXCL | C.O_NOFOLLOW, mode),
    async finishDir(rel, mode, mtimeS) {
      const abs = join(dest, rel);
      const st = await lstat(abs);
      if (!st.isDirectory()) throw new TarError(`archive path ${rel}: not a directory`);
      await chmod(abs, mode);
      await utimes(abs, mtimeS, mtimeS);
    },
    symlink: (rel, target) => symlink(target, join(dest, rel)),
    link: (rel, existing) => link(join(dest, existing), join(dest, rel)),
  };
}

/**
 * Extracts a tar stream into `dest` (an existing directory, normally a fresh private temp dir, or
 * a sink). Throws TarError on anything unsafe or malformed (TarLimitError over a limit); what was
 * written so far stays for the caller to remove.
 */
export async function extractTar(
  src: AsyncIterable<Uint8Array>,
  dest: string | ExtractSink,
  opts: ExtractOptions = {},
): Promise<ExtractResult> {
  const sink = typeof dest === "string" ? pathSink(dest) : dest;
  const q = new ByteQueue(src[Symbol.asyncIterator]());
  const res: ExtractResult = { files: 0, dirs: 0, bytes: 0, symlinks: 0, hardlinks: 0, skipped: [] };
  const links = opts.links === true;
  if (links && (!sink.symlink || !sink.link)) throw new TarError("extraction sink cannot create links");
  // Regular files this extraction wrote: the only targets a hard link may name.
  const written = new Set<string>();
  // Skipped entries are reported by name up to a bound (each costs an entry, so maxEntries also
  // bounds them); past it only their number.
  let skippedUnnamed = 0;
  const noteSkip = (line: string) => {
    if (res.skipped.length < MAX_SKIPPED_LINES) res.skipped.push(line);
    else skippedUnnamed++;
  };
  const dirs = new Set<string>([""]);
  const dirMeta: { path: string; mode: number; mtimeS: number }[] = [];
  let pax = new Map<string, string>();
  const gnu = new Map<string, string>();

  // What maxEntries counts: every file, every directory made (an entry's own or a parent its
  // path implies), and a directory entry repeated. A directory entry for a parent an earlier path
  // already made costs nothing more: that directory was counted when it was made.
  let counted = 0;
  const countEntry = () => {
    if (opts.maxEntries !== undefined && counted >= opts.maxEntries)
      throw new TarLimitError(`archive has more than ${opts.maxEntries} entries`);
    counted++;
  };
  // Each parent must be a real directory we created or found (never a symlink). Counted before
  // it is made, so an archive over the limit stops without making the directory that breaks it.
  const ensureDir = async (rel: string): Promise<void> => {
    if (dirs.has(rel)) return;
    const slash = rel.lastIndexOf("/");
    await ensureDir(slash < 0 ? "" : rel.slice(0, slash));
    countEntry();
    await sink.mkdir(rel);
    dirs.add(rel);
  };
  const explicitDirs = new Set<string>();

  const skipBytes = async (n: number): Promise<void> => {
    let left = n;
    while (left > 0) left -= (await q.some(left)).length;
  };
  // An entry's data plus its padding to the next block.
  const skip = (size: number) => skipBytes(size + padding(size).length);
  // Creates a new name; one that exists (an earlier entry, a directory) refuses the archive.
  const exclusive = async <T>(rel: string, make: () => Promise<T>): Promise<T> => {
    try {
      return await make();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST")
        throw new TarError(`archive path ${rel} appears twice or clashes with a directory`);
      throw e;
    }
  };

  for (;;) {
    const h = await q.take(BLOCK);
    // The end-of-archive block is required: zstd does not notice a stream cut between its
    // blocks, so a missing marker is how a truncated transfer is caught.
    if (!h) throw new TarError("archive is truncated (no end-of-archive marker)");
    if (h.every((b) => b === 0)) break;
    const sum = readOctal(h, 148, 8, "checksum");
    if (sum !== checksum(h)) throw new TarError("tar header checksum mismatch (not a tar archive?)");
    const type = String.fromCharCode(h[156]!);
    let size = readOctal(h, 124, 12, "size");
    const magic = readString(h, 257, 6);
    const prefix = magic === "ustar" ? readString(h, 345, 155) : "";
    let name = readString(h, 0, 100);
    name = prefix ? `${prefix}/${name}` : name;
    if (type === "x" || type === "g") {
      if (size > 1024 * 1024) throw new TarError(`pax header of ${size} bytes is too large`);
      const body = await q.take(size);
      if (!body) throw new TarError("archive is truncated");
      await skipBytes(padding(size).length);
      if (type === "x") pax = parsePax(body);
      continue;
    }
    // GNU long name / long link target (Go's and GNU tar's writers fall back to them): the body
    // is the next entry's name or link text. Only with `links`; otherwise refused as before.
    if (links && (type === "L" || type === "K")) {
      if (size > MAX_EXTRACT_PATH_BYTES + 1) throw new TarError(`GNU long name of ${size} bytes is too long`);
      const body = await q.take(size);
      if (!body) throw new TarError("archive is truncated");
      await skipBytes(padding(size).length);
      const nul = body.indexOf(0);
      gnu.set(type, dec.decode(nul >= 0 ? body.subarray(0, nul) : body));
      continue;
    }
    const p = pax.get("path") ?? gnu.get("L");
    if (p !== undefined) name = p;
    const linkname = pax.get("linkpath") ?? gnu.get("K") ?? readString(h, 157, 100);
    gnu.clear();
    const ps = pax.get("size");
    if (ps !== undefined) {
      if (!/^\d+$/.test(ps)) throw new TarError(`bad pax size ${JSON.stringify(ps)}`);
      size = Number(ps);
    }
    pax = new Map();
    const ownerBits = opts.ownerAccess ? (type === "5" ? 0o700 : 0o400) : 0;
    const mode = (readOctal(h, 100, 8, "mode") & EXTRACT_MODE_MASK) | ownerBits;
    const mtimeS = readOctal(h, 136, 12, "mtime");

    if (links && type !== "0" && type !== "\0" && type !== "5") {
      const rel = safeRelPath(name);
      checkPathBounds(rel);
      const slash = rel.lastIndexOf("/");
      const skipEntry = async (why: string) => {
        countEntry();
        noteSkip(`${rel}: ${why}`);
        await skip(size);
      };
      if (rel.slice(slash + 1).startsWith(".wh.")) {
        await skipEntry("a whiteout; skipped");
        continue;
      }
      if (type === "2") {
        if (linkname === "") throw new TarError(`archive symlink ${JSON.stringify(rel)} has an empty target`);
        if (linkname.includes("\0") || enc.encode(linkname).length > MAX_SYMLINK_BYTES)
          throw new TarError(
            `archive symlink ${JSON.stringify(rel)}: target has a NUL byte or is over ${MAX_SYMLINK_BYTES} bytes`,
          );
        await ensureDir(slash < 0 ? "" : rel.slice(0, slash));
        countEntry();
        await exclusive(rel, () => sink.symlink!(rel, linkname));
        res.symlinks++;
        await skip(size);
        continue;
      }
      if (type === "1") {
        // Resolved only against what this extraction wrote: never a path outside it, never a
        // name reached through a symlink (safeRelPath refuses absolute and ".." targets).
        let target: string;
        try {
          target = safeRelPath(linkname);
        } catch (e) {
          throw new TarError(`archive hard link ${JSON.stringify(rel)}: ${(e as Error).message}`);
        }
        if (!written.has(target)) {
          await skipEntry(
            `a hard link to ${JSON.stringify(linkname)}, not a regular file extracted before it; skipped`,
          );
          continue;
        }
        await ensureDir(slash < 0 ? "" : rel.slice(0, slash));
        countEntry();
        await exclusive(rel, () => sink.link!(rel, target));
        written.add(rel);
        res.hardlinks++;
        await skip(size);
        continue;
      }
      const kind =
        type === "3" || type === "4"
          ? "a device"
          : type === "6"
            ? "a FIFO"
            : `of entry type ${JSON.stringify(type)}`;
      await skipEntry(`${kind}; skipped`);
      continue;
    }
    if (type !== "0" && type !== "\0" && type !== "5") {
      const what =
        type === "1" ? "a hard link" : type === "2" ? "a symlink" : `entry type ${JSON.stringify(type)}`;
      throw new TarError(
        `archive entry ${JSON.stringify(name)} is ${what}; only files and directories are allowed`,
      );
    }
    // "./" (tar -C dir .) names the target itself: nothing to create.
    if (type === "5" && !name.startsWith("/") && name.split("/").every((x) => x === "" || x === ".")) {
      await skip(size);
      continue;
    }
    const rel = safeRelPath(name);
    checkPathBounds(rel);
    if (links && rel.slice(rel.lastIndexOf("/") + 1).startsWith(".wh.")) {
      countEntry();
      noteSkip(`${rel}: a whiteout; skipped`);
      await skip(size);
      continue;
    }
    if (type === "5") {
      if (explicitDirs.has(rel)) countEntry();
      explicitDirs.add(rel);
      await ensureDir(rel);
      dirMeta.push({ path: rel, mode, mtimeS });
      res.dirs++;
      await skip(size);
      continue;
    }
    // The declared size is checked before a byte of the entry is written: an archive that says
    // it holds 1 TiB is refused at its header, not after filling the disk.
    if (opts.maxBytes !== undefined && res.bytes + size > opts.maxBytes)
      throw new TarLimitError(
        `archive content exceeds ${opts.maxBytes} bytes (entry ${JSON.stringify(rel)} declares ${size})`,
      );
    const slash = rel.lastIndexOf("/");
    await ensureDir(slash < 0 ? "" : rel.slice(0, slash));
    countEntry();
    const fh = await exclusive(rel, () => sink.create(rel, mode));
    try {
      let left = size;
      while (left > 0) {
        const c = await q.some(Math.min(left, IO_CHUNK));
        let w = 0;
        while (w < c.length) w += (await fh.write(c, w, c.length - w)).bytesWritten;
        left -= c.length;
      }
      await fh.chmod(mode);
      await fh.utimes(mtimeS, mtimeS);
    } finally {
      await fh.close();
    }
    await skipBytes(padding(size).length);
    res.files++;
    res.bytes += size;
    if (links) written.add(rel);
  }
  // Directory modes and mtimes last, deepest first: writing children changed the mtimes, and a
  // read-only directory mode would have blocked them.
  dirMeta.sort((a, b) => b.path.length - a.path.length);
  for (const d of dirMeta) await sink.finishDir(d.path, d.mode, d.mtimeS);
  if (skippedUnnamed > 0) res.skipped.push(`(${skippedUnnamed} more entries skipped)`);
  return res;
}
