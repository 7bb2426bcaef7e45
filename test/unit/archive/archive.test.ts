// src/archive: generated trees round-trip through packTarZst → extractTarZst with identical
// checksums, modes and mtimes (fast-check); GNU tar reads what packTar writes (long names via
// pax); and extraction refuses absolute paths, "..", links, devices and symlinked parents,
// never writing outside the target (hand-built headers, generated hostile paths).
import { afterAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import {
  chmodSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import {
  collectTree,
  extractTarZst,
  packTarZst,
  safeRelPath,
  TarError,
  TarLimitError,
} from "../../../src/archive/index.ts";
import {
  BLOCK,
  entryHeaders,
  extractTar,
  MAX_EXTRACT_PATH_BYTES,
  MAX_EXTRACT_PATH_DEPTH,
  packTar,
} from "../../../src/archive/tar.ts";

const base = mkdtempSync(join(tmpdir(), "mcp-archive-test-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
const fresh = (tag: string) => {
  const d = join(base, `${tag}-${n++}`);
  mkdirSync(d);
  return d;
};

function snapshot(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const abs = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(abs);
      const meta = `${(st.mode & 0o777).toString(8)} ${Math.floor(st.mtimeMs / 1000)}`;
      if (st.isDirectory()) {
        out[`${r}/`] = meta;
        walk(abs, r);
      } else out[r] = `${createHash("sha256").update(readFileSync(abs)).digest("hex")} ${meta}`;
    }
  };
  walk(root, "");
  return out;
}

async function collect(it: AsyncIterable<Uint8Array>): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const c of it) out.push(c);
  return out;
}

async function* from(chunks: Uint8Array[], size?: number): AsyncGenerator<Uint8Array> {
  const all = Buffer.concat(chunks);
  if (!size) return yield* chunks;
  for (let i = 0; i < all.length; i += size) yield all.subarray(i, i + size);
}

// Segment names: ASCII, unicode, spaces, long (to force pax/prefix), never "." or "..".
const segment = fc
  .oneof(
    fc.stringMatching(/^[a-z0-9._-]{1,12}$/),
    fc.constantFrom("ünï", "日本語", "a b", "x".repeat(99), "y".repeat(140), "émoji😀"),
  )
  .filter((s) => s !== "." && s !== ".." && !s.includes("/"));
const treeSpec = fc.array(
  fc.record({
    path: fc.array(segment, { minLength: 1, maxLength: 4 }),
    dir: fc.boolean(),
    size: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2000 }), fc.integer({ min: 511, max: 513 })),
    mode: fc.constantFrom(0o644, 0o600, 0o755, 0o400, 0o750),
    mtime: fc.integer({ min: 0, max: 2_000_000_000 }),
    seed: fc.integer({ min: 0, max: 255 }),
  }),
  { maxLength: 12 },
);

function build(
  root: string,
  spec: { path: string[]; dir: boolean; size: number; mode: number; mtime: number; seed: number }[],
): void {
  const dirs: [string, number, number][] = [];
  for (const e of spec) {
    const abs = join(root, ...e.path);
    try {
      mkdirSync(join(root, ...e.path.slice(0, -1)), { recursive: true });
      if (e.dir) {
        mkdirSync(abs);
        dirs.push([abs, e.mode | 0o700, e.mtime]);
      } else {
        writeFileSync(abs, Buffer.alloc(e.size, e.seed), { flag: "wx", mode: e.mode });
        utimesSync(abs, e.mtime, e.mtime);
      }
    } catch {
      // a clash with an earlier entry (file vs dir): keep the tree as it is
    }
  }
  for (const [d, mode, mtime] of dirs.reverse()) {
    chmodSync(d, mode);
    utimesSync(d, mtime, mtime);
  }
}

describe("round trip", () => {
  test("generated trees extract to the same files, modes and mtimes (any chunking)", async () => {
    await fc.assert(
      fc.asyncProperty(treeSpec, fc.constantFrom(0, 1, 7, 512, 4096), async (spec, chunk) => {
        const src = fresh("src");
        build(src, spec);
        const { entries } = await collectTree(src);
        const packed = await collect(packTarZst(entries));
        const dst = fresh("dst");
        const r = await extractTarZst(from(packed, chunk), dst);
        expect(snapshot(dst)).toEqual(snapshot(src));
        expect(r.files).toBe(entries.filter((e) => e.type === "file").length);
      }),
      { numRuns: 60 },
    );
  });

  test("GNU tar lists and extracts the archive (pax long names included)", async () => {
    const src = fresh("gnu-src");
    build(src, [
      {
        path: ["a", "x".repeat(120), "y".repeat(90)],
        dir: false,
        size: 5000,
        mode: 0o640,
        mtime: 1e9,
        seed: 3,
      },
      { path: ["z".repeat(200)], dir: false, size: 10, mode: 0o600, mtime: 1.5e9, seed: 4 },
      { path: ["empty"], dir: true, size: 0, mode: 0o755, mtime: 1.2e9, seed: 0 },
    ]);
    const file = join(fresh("gnu"), "a.tar.zst");
    writeFileSync(file, Buffer.concat(await collect(packTarZst((await collectTree(src)).entries))));
    const dst = fresh("gnu-dst");
    const p = Bun.spawnSync(["tar", "--zstd", "-xpf", file, "-C", dst]);
    expect(p.stderr.toString()).toBe("");
    expect(p.exitCode).toBe(0);
    expect(snapshot(dst)).toEqual(snapshot(src));
  });

  test("our reader extracts what GNU tar writes", async () => {
    const src = fresh("gt-src");
    build(src, [
      { path: ["d", "f.txt"], dir: false, size: 700, mode: 0o644, mtime: 1.1e9, seed: 9 },
      { path: ["q".repeat(150)], dir: false, size: 1, mode: 0o600, mtime: 1.1e9, seed: 1 },
    ]);
    const file = join(fresh("gt"), "b.tar");
    const p = Bun.spawnSync(["tar", "--format=pax", "-cf", file, "-C", src, "."]);
    expect(p.exitCode).toBe(0);
    const dst = fresh("gt-dst");
    await extractTar(from([readFileSync(file)], 333), dst);
    expect(snapshot(dst)).toEqual(snapshot(src));
  });
});

/** A one-entry tar (plus end blocks) with a raw name and type flag. */
function rawTar(name: string, type: string, body = new Uint8Array(0), linkname = ""): Uint8Array {
  const [h] = entryHeaders("placeholder", "file", 0o644, body.length, 0).slice(-1);
  const hdr = Uint8Array.from(h!);
  hdr.fill(0, 0, 100);
  hdr.set(new TextEncoder().encode(name).subarray(0, 100), 0);
  hdr[156] = type.charCodeAt(0);
  hdr.set(new TextEncoder().encode(linkname), 157);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : hdr[i]!;
  hdr.set(new TextEncoder().encode(`${sum.toString(8).padStart(6, "0")}\0 `), 148);
  const pad = new Uint8Array((BLOCK - (body.length % BLOCK)) % BLOCK);
  return Buffer.concat([hdr, body, pad, new Uint8Array(BLOCK * 2)]);
}

async function refuse(tar: Uint8Array, msg: RegExp): Promise<string> {
  const outer = fresh("outer");
  const dst = join(outer, "target");
  mkdirSync(dst);
  let err: unknown;
  try {
    await extractTar(from([tar]), dst);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TarError);
  expect((err as Error).message).toMatch(msg);
  expect(readdirSync(outer)).toEqual(["target"]); // nothing next to the target
  return dst;
}

describe("confinement", () => {
  test("absolute, .., links and special entries are refused", async () => {
    await refuse(rawTar("/etc/evil", "0"), /is absolute/);
    await refuse(rawTar("../evil", "0"), /contains "\.\."/);
    await refuse(rawTar("a/../../evil", "0"), /contains "\.\."/);
    await refuse(rawTar("link", "2", undefined, "/etc/passwd"), /is a symlink/);
    await refuse(rawTar("hard", "1", undefined, "../x"), /is a hard link/);
    await refuse(rawTar("dev", "3"), /entry type "3"/);
    await refuse(rawTar("fifo", "6"), /entry type "6"/);
    await refuse(rawTar("", "0"), /is empty/);
  });

  test("a symlinked parent already in the target is not followed", async () => {
    const outer = fresh("sym");
    const dst = join(outer, "target");
    mkdirSync(dst);
    mkdirSync(join(outer, "elsewhere"));
    symlinkSync(join(outer, "elsewhere"), join(dst, "sub"));
    await expect(extractTar(from([rawTar("sub/file", "0", new Uint8Array(3))]), dst)).rejects.toThrow(
      /not a directory/,
    );
    symlinkSync(join(outer, "elsewhere", "f"), join(dst, "f"));
    await expect(extractTar(from([rawTar("f", "0", new Uint8Array(3))]), dst)).rejects.toThrow();
    expect(readdirSync(join(outer, "elsewhere"))).toEqual([]);
  });

  test("truncated archives and bad checksums are refused", async () => {
    const good = rawTar("ok", "0", new Uint8Array(1000).fill(1));
    await refuse(good.subarray(0, 700), /truncated/);
    await refuse(good.subarray(0, BLOCK * 3), /truncated/);
    const bad = Uint8Array.from(good);
    bad[0] = 0x41;
    await refuse(bad, /checksum/);
  });

  test("generated hostile paths either land inside the target or are refused", async () => {
    const seg = fc.oneof(
      fc.constantFrom("..", ".", "", "a", "b", "ü", "\0x", "..."),
      fc.stringMatching(/^[a-z.]{1,5}$/),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(seg, { minLength: 1, maxLength: 6 }), fc.boolean(), async (segs, abs) => {
        const name = (abs ? "/" : "") + segs.join("/");
        let ok = true;
        try {
          safeRelPath(name);
        } catch {
          ok = false;
        }
        const outer = fresh("h");
        const dst = join(outer, "t");
        mkdirSync(dst);
        const tar = rawTar(name, "0", new Uint8Array(2));
        const r = await extractTar(from([tar]), dst).then(
          () => true,
          (e) => {
            expect(e).toBeInstanceOf(TarError);
            return false;
          },
        );
        // Names the raw header can hold (NUL ends the field) are judged on the stored name.
        expect(readdirSync(outer)).toEqual(["t"]);
        if (!name.includes("\0") && Buffer.byteLength(name) <= 100) expect(r).toBe(ok);
      }),
      { numRuns: 400 },
    );
  });
});

test("packTar refuses unsafe entry paths before writing anything", async () => {
  await expect(collect(packTar([{ path: "../x", type: "dir", mode: 0o755, mtimeMs: 0 }]))).rejects.toThrow(
    TarError,
  );
});

/** A tar of hand-made entries (directories, and files of `size` zero bytes). */
function tarOf(entries: { path: string; type: "file" | "dir"; size?: number }[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const size = e.size ?? 0;
    parts.push(...entryHeaders(e.path, e.type, 0o755, size, 0));
    if (size) parts.push(new Uint8Array(size + ((BLOCK - (size % BLOCK)) % BLOCK)));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

/** Every directory under `root` (itself excluded), by path. */
function dirsUnder(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((d) => d.isDirectory())
    .map((d) => d.name);
}

describe("extraction limits", () => {
  test("maxEntries counts the parent directories a path implies, before making them", async () => {
    // Security review 16: 10 entries, each 400 levels deep, passed a limit of 20 entries and made
    // 4,011 directories. Here: 3 files each 10 levels deep = 3 files + 30 directories.
    const tar = tarOf(
      [0, 1, 2].map((i) => ({ path: `d${i}/${"a/".repeat(9)}f`, type: "file" as const, size: 1 })),
    );
    const dst = fresh("implied");
    const err = await extractTar(from([tar]), dst, { maxEntries: 20 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TarLimitError);
    expect((err as Error).message).toBe("archive has more than 20 entries");
    // The directory that would have been the 21st entry was never made.
    expect(readdirSync(dst, { recursive: true })).toHaveLength(20);
    // Exactly at the limit is fine: 3 × (10 directories + 1 file) = 33.
    expect(await extractTar(from([tar]), fresh("implied-ok"), { maxEntries: 33 })).toMatchObject({
      files: 3,
    });
  });

  test("a directory entry for a parent already made is not counted twice; a repeated one is", async () => {
    const implied = tarOf([
      { path: "a/b/f", type: "file", size: 1 },
      { path: "a", type: "dir" },
      { path: "a/b", type: "dir" },
    ]);
    expect(await extractTar(from([implied]), fresh("dup-ok"), { maxEntries: 3 })).toMatchObject({ files: 1 });
    const repeated = tarOf([
      { path: "a", type: "dir" },
      { path: "a", type: "dir" },
      { path: "a", type: "dir" },
    ]);
    await expect(extractTar(from([repeated]), fresh("dup"), { maxEntries: 2 })).rejects.toThrow(
      "archive has more than 2 entries",
    );
  });

  test("paths deeper than 256 levels or longer than 4096 bytes are refused at their header, in one line", async () => {
    expect([MAX_EXTRACT_PATH_DEPTH, MAX_EXTRACT_PATH_BYTES]).toEqual([256, 4096]);
    // Security review 16: one entry 800 levels deep (a 128-byte .tar.zst) kept the agent busy 33 s.
    const deep = fresh("deep");
    const t0 = performance.now();
    const err = await extractTar(
      from([tarOf([{ path: `${"a/".repeat(800)}f`, type: "file", size: 1 }])]),
      deep,
    ).catch((e: unknown) => e);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(err).toBeInstanceOf(TarError);
    expect((err as Error).message).toBe(
      `archive path "${"a/".repeat(20)}…" is 1601 bytes and 801 levels deep; at most 4096 bytes and 256 levels are allowed`,
    );
    expect(readdirSync(deep)).toEqual([]);
    const long = fresh("long");
    const seg = "x".repeat(99);
    const longErr = await extractTar(
      from([tarOf([{ path: `${`${seg}/`.repeat(41)}f`, type: "file", size: 1 }])]),
      long,
    ).catch((e: unknown) => e);
    expect((longErr as Error).message).toMatch(/ is 4101 bytes and 42 levels deep; at most 4096 bytes/);
    expect(readdirSync(long)).toEqual([]);
    // At the bound: 255 directories and a file, accepted (linear in depth: well under a second).
    const edge = fresh("edge");
    const t1 = performance.now();
    await extractTar(from([tarOf([{ path: `${"a/".repeat(255)}f`, type: "file", size: 1 }])]), edge);
    expect(performance.now() - t1).toBeLessThan(1000);
    expect(dirsUnder(edge)).toHaveLength(255);
  });
});
