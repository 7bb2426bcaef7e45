// The staging walk and the entrypoint check for Nanos images (issue 17). The staging directory mirrors
// the guest's "/" (an OCI image's filesystem plus each volume's host directory at its guest path); the walk
// turns it into the manifest writer's guest tree. It is a security boundary (issue 17, "Images from the
// same registry"):
// - lstat only, never stat/realpath: a symlink is baked as a guest symlink (`linktarget`, its text as is;
//   the guest resolves it), never read through, so a link to /etc/hostname can never put the host file's
//   content into the image;
// - every `host:` path handed to mkfs is a regular file reached through directories lstat'd as real
//   directories, and is checked to lie under the staging root after normalisation (no `mkfs -r`, which
//   silently falls back to host paths);
// - devices, sockets and fifos are skipped and reported;
// - names the writer cannot express faithfully (not UTF-8, NUL, "."/"..") are refused with one line naming
//   the path; the walk is bounded in entries and depth.
// Caller's duty: the staging root is the agent's own directory (nobody else can swap a directory for a
// symlink between this walk and mkfs reading the files).

import type { Stats } from "node:fs";
import {
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readdirSync,
  readlinkSync,
  readSync,
} from "node:fs";
import { isAbsolute, join, resolve, sep } from "node:path";
import type { GuestDir, GuestNode } from "./manifest.ts";

export const MAX_ENTRIES = 100_000;
export const MAX_DEPTH = 256;
/** Symlink hops allowed while resolving the entrypoint inside the staging tree (Linux's MAXSYMLINKS). */
export const MAX_LINK_HOPS = 40;

/** A staging tree or entrypoint that cannot be baked; the message is one line naming the path. */
export class StageError extends Error {
  override name = "StageError";
}

export interface GuestTree {
  /** The guest's "/". */
  root: GuestDir;
  /** Guest paths left out, each with its kind, e.g. "/run/app.sock (socket)". */
  skipped: string[];
  /** Entries walked (files, directories, symlinks and skipped ones; the root not counted). */
  entries: number;
}

export interface StageLimits {
  maxEntries?: number;
  maxDepth?: number;
}

const utf8 = new TextDecoder("utf-8", { fatal: true });

function decodeName(raw: Buffer, where: string): string {
  try {
    return utf8.decode(raw);
  } catch {
    throw new StageError(
      `staging: ${where}: name is not valid UTF-8 (${JSON.stringify(raw.toString("latin1"))})`,
    );
  }
}

function guestJoin(dir: string, name: string): string {
  return dir === "/" ? `/${name}` : `${dir}/${name}`;
}

function kindOf(st: Stats): string {
  if (st.isSocket()) return "socket";
  if (st.isFIFO()) return "fifo";
  if (st.isCharacterDevice()) return "character device";
  if (st.isBlockDevice()) return "block device";
  return "unknown file type";
}

/** The staging root as an absolute normalised path; it must be a real directory (not a symlink). */
function stagingRoot(root: string): string {
  if (!isAbsolute(root))
    throw new StageError(`staging: root ${JSON.stringify(root)} is not an absolute path`);
  const abs = resolve(root);
  let st: Stats;
  try {
    st = lstatSync(abs);
  } catch (e) {
    throw new StageError(`staging: root ${abs}: ${(e as Error).message}`);
  }
  if (!st.isDirectory()) throw new StageError(`staging: root ${abs} is not a directory (lstat)`);
  return abs;
}

/**
 * Walks the staging directory `root` (which stands for the guest's "/") with lstat only and returns the
 * guest tree for the manifest writer. Iterative (an explicit stack), so depth costs no call stack.
 */
export function stageTree(root: string, limits: StageLimits = {}): GuestTree {
  const maxEntries = limits.maxEntries ?? MAX_ENTRIES;
  const maxDepth = limits.maxDepth ?? MAX_DEPTH;
  const base = stagingRoot(root);
  const prefix = base === sep ? sep : base + sep;
  const top = new Map<string, GuestNode>();
  const skipped: string[] = [];
  let entries = 0;
  const stack: { host: string; guest: string; depth: number; children: Map<string, GuestNode> }[] = [
    { host: base, guest: "/", depth: 0, children: top },
  ];
  while (stack.length > 0) {
    const d = stack.pop()!;
    let raws: Buffer[];
    try {
      raws = readdirSync(d.host, { encoding: "buffer" });
    } catch (e) {
      throw new StageError(`staging: ${d.guest}: cannot read directory: ${(e as Error).message}`);
    }
    for (const raw of raws) {
      const name = decodeName(raw, `in ${d.guest}`);
      const guest = guestJoin(d.guest, name);
      if (name === "" || name === "." || name === ".." || name.includes("/") || name.includes("\0"))
        throw new StageError(`staging: ${guest}: invalid entry name ${JSON.stringify(name)}`);
      if (++entries > maxEntries)
        throw new StageError(`staging: more than ${maxEntries} entries under ${base} (at ${guest})`);
      const host = join(d.host, name);
      // join normalises; a name can hold no "/" and is not ".."/".", so this holds by construction —
      // checked anyway, because a host path outside the staging root must never reach mkfs.
      if (!resolve(host).startsWith(prefix) || resolve(host) !== host)
        throw new StageError(`staging: ${guest}: host path ${host} is not under ${base}`);
      const st = lstatSync(host);
      if (st.isSymbolicLink()) {
        const target = decodeName(readlinkSync(host, { encoding: "buffer" }), `symlink ${guest} target`);
        if (target === "" || target.includes("\0"))
          throw new StageError(
            `staging: ${guest}: symlink target ${JSON.stringify(target)} cannot be written`,
          );
        d.children.set(name, { kind: "symlink", target });
      } else if (st.isFile()) {
        d.children.set(name, { kind: "file", host });
      } else if (st.isDirectory()) {
        if (d.depth + 1 > maxDepth)
          throw new StageError(`staging: ${guest}: deeper than ${maxDepth} directory levels`);
        const children = new Map<string, GuestNode>();
        d.children.set(name, { kind: "dir", children });
        stack.push({ host, guest, depth: d.depth + 1, children });
      } else {
        skipped.push(`${guest} (${kindOf(st)})`);
      }
    }
  }
  skipped.sort();
  return { root: { kind: "dir", children: top }, skipped, entries };
}

// ---- the entrypoint check ----

const MACHINES: Record<number, string> = {
  3: "x86 (i386)",
  8: "MIPS",
  20: "PowerPC",
  21: "PowerPC64",
  22: "s390x",
  40: "arm (32-bit)",
  62: "x86-64",
  183: "arm64 (aarch64)",
  243: "RISC-V",
  258: "LoongArch",
};

/**
 * The host path of guest path `program` resolved inside the staging tree `root` by hand: every component
 * is lstat'd, symlinks are followed as the guest would (absolute targets from the staging root, `..` never
 * above it), at most MAX_LINK_HOPS of them. Nothing outside `root` is ever looked at.
 */
export function resolveInStaging(root: string, program: string, what = `entrypoint ${program}`): string {
  const base = stagingRoot(root);
  if (!program.startsWith("/")) throw new StageError(`${what} is not an absolute guest path`);
  let pending = program.split("/").filter((c) => c !== "" && c !== ".");
  const done: string[] = [];
  let hops = 0;
  while (pending.length > 0) {
    const c = pending.shift()!;
    if (c === "..") {
      done.pop(); // "/.." is "/": clamped at the guest root, like the guest itself
      continue;
    }
    const host = join(base, ...done, c);
    let st: Stats;
    try {
      st = lstatSync(host);
    } catch {
      throw new StageError(`${what}: /${[...done, c].join("/")} does not exist in the image`);
    }
    if (st.isSymbolicLink()) {
      if (++hops > MAX_LINK_HOPS) throw new StageError(`${what}: more than ${MAX_LINK_HOPS} symlink hops`);
      const target = readlinkSync(host, "utf8");
      if (target.startsWith("/")) done.length = 0;
      pending = [...target.split("/").filter((x) => x !== "" && x !== "."), ...pending];
      continue;
    }
    if (pending.length > 0 && !st.isDirectory())
      throw new StageError(`${what}: /${[...done, c].join("/")} is not a directory`);
    done.push(c);
  }
  const host = join(base, ...done);
  if (host !== base && !host.startsWith(base === sep ? sep : base + sep))
    throw new StageError(`${what}: resolves outside the staging tree`);
  return host;
}

/** Why the first bytes `head` of a file are not an x86-64 ELF executable, or null when they are. */
export function elfProblem(head: Uint8Array): string | null {
  if (head.length >= 2 && head[0] === 0x23 && head[1] === 0x21) {
    const line = new TextDecoder().decode(head).split("\n")[0]!.slice(0, 40);
    return `is a script (${JSON.stringify(line)}), not an ELF program`;
  }
  if (head.length < 4 || head[0] !== 0x7f || head[1] !== 0x45 || head[2] !== 0x4c || head[3] !== 0x46)
    return "is not an ELF program";
  if (head.length < 64) return `is a truncated ELF file (${head.length} bytes)`;
  if (head[4] !== 2)
    return head[4] === 1 ? "is a 32-bit ELF program" : `is an ELF file of unknown class ${head[4]}`;
  if (head[5] !== 1) return "is a big-endian ELF program";
  const dv = new DataView(head.buffer, head.byteOffset, head.byteLength);
  const machine = dv.getUint16(18, true);
  if (machine !== 0x3e) {
    const name = MACHINES[machine] ?? `machine 0x${machine.toString(16)}`;
    return `is an ${name} ELF program`;
  }
  const type = dv.getUint16(16, true);
  if (type !== 2 && type !== 3)
    return `is an ELF file of type ${type}, not an executable (ET_EXEC or ET_DYN)`;
  return null;
}

/**
 * Refuses, with one line naming the component when given, an entrypoint that is not an ELF64
 * little-endian x86-64 executable (ET_EXEC or ET_DYN). `program` is the guest path; a symlink in the image
 * is resolved inside `root` (resolveInStaging) and the file is opened with O_NOFOLLOW.
 */
export function checkProgram(root: string, program: string, component?: string): void {
  const what = `${component ? `component ${component}: ` : ""}entrypoint ${program}`;
  const host = resolveInStaging(root, program, what);
  let fd: number;
  try {
    fd = openSync(host, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (e) {
    throw new StageError(
      `${what}: cannot open: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  try {
    if (!fstatSync(fd).isFile()) throw new StageError(`${what} is not a regular file`);
    const head = new Uint8Array(64);
    let n = 0;
    while (n < 64) {
      const r = readSync(fd, head, n, 64 - n, n);
      if (r === 0) break;
      n += r;
    }
    const problem = elfProblem(head.subarray(0, n));
    if (problem) throw new StageError(`${what} ${problem}; Nanos runs only x86-64 ELF programs`);
  } finally {
    closeSync(fd);
  }
}
