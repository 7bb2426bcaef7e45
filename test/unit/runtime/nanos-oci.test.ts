// extractTar with `links: true` (what the Nanos image export uses on an untrusted image's filesystem),
// through both sinks (the descriptor-relative dirSink and the path sink), on hand-made tar streams:
// symlinks are made as symlinks with their text as is and never followed (an entry "through" one is
// refused and nothing is written outside), hard links resolve only to files the same extraction wrote
// ("../x" and absolute targets refused, a missing or non-file target skipped with its reason), devices,
// FIFOs and whiteouts are skipped, "./"-prefixed and plain names both land, modes stay <= 0755 with
// owner access, and GNU/pax long names and link targets are read. Plus parseImageConfig on captured
// podman and docker `image inspect` output.
import { afterAll, describe, expect, test } from "bun:test";
import {
  constants as C,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
} from "node:fs";
import { open } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { dirSink } from "../../../src/archive/dirsink.ts";
import { BLOCK, type ExtractOptions, extractTar, TarError, TarLimitError } from "../../../src/archive/tar.ts";
import { OciError, parseImageConfig } from "../../../src/runtime/nanos/oci.ts";

const base = mkdtempSync(join(tmpdir(), "mcp-nanos-oci-unit-"));
afterAll(() => rmSync(base, { recursive: true, force: true }));
let n = 0;
/** outer/ holding target/ (extraction goes there) and elsewhere/ (must stay empty). */
function fresh(): { outer: string; dst: string; elsewhere: string } {
  const outer = join(base, `case-${n++}`);
  mkdirSync(join(outer, "target"), { recursive: true });
  mkdirSync(join(outer, "elsewhere"));
  return { outer, dst: join(outer, "target"), elsewhere: join(outer, "elsewhere") };
}

interface Entry {
  name: string;
  type: string;
  body?: string | Uint8Array;
  link?: string;
  mode?: number;
}

const enc = new TextEncoder();

function header(name: string, type: string, size: number, mode: number, link: string): Uint8Array {
  const h = new Uint8Array(BLOCK);
  const put = (off: number, s: string) => h.set(enc.encode(s), off);
  const oct = (off: number, len: number, v: number) => put(off, v.toString(8).padStart(len - 1, "0"));
  put(0, name);
  oct(100, 8, mode);
  oct(108, 8, 0);
  oct(116, 8, 0);
  oct(124, 12, size);
  oct(136, 12, 1_700_000_000);
  put(156, type);
  put(157, link);
  put(257, "ustar\0");
  put(263, "00");
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  put(148, `${sum.toString(8).padStart(6, "0")}\0 `);
  return h;
}

const pad = (len: number) => new Uint8Array((BLOCK - (len % BLOCK)) % BLOCK);

/** A tar of raw entries; names and link texts over 100 bytes get a pax header ("x"). */
function tar(entries: Entry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  for (const e of entries) {
    const body = typeof e.body === "string" ? enc.encode(e.body) : (e.body ?? new Uint8Array(0));
    let name = e.name;
    let link = e.link ?? "";
    let records = "";
    const rec = (k: string, v: string) => {
      const tail = ` ${k}=${v}\n`;
      let len = enc.encode(tail).length + 1;
      while (String(len).length + enc.encode(tail).length !== len)
        len = String(len).length + enc.encode(tail).length;
      records += `${len}${tail}`;
    };
    if (enc.encode(name).length > 100) {
      rec("path", name);
      name = "long";
    }
    if (enc.encode(link).length > 100) {
      rec("linkpath", link);
      link = "long";
    }
    if (records) {
      const b = enc.encode(records);
      parts.push(header("PaxHeader", "x", b.length, 0o644, ""), b, pad(b.length));
    }
    parts.push(header(name, e.type, body.length, e.mode ?? 0o644, link), body, pad(body.length));
  }
  parts.push(new Uint8Array(BLOCK * 2));
  return Buffer.concat(parts);
}

async function* chunks(data: Uint8Array, size = 700): AsyncGenerator<Uint8Array> {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}

const LINKS: ExtractOptions = { links: true, ownerAccess: true };
const SINKS = ["dirSink", "pathSink"] as const;

/** Extracts through the named sink; returns the result or the error. */
async function extract(data: Uint8Array, dst: string, sink: (typeof SINKS)[number], opts = LINKS) {
  if (sink === "pathSink") return extractTar(chunks(data), dst, opts).catch((e: unknown) => e as Error);
  const root = await open(dst, C.O_RDONLY | C.O_DIRECTORY);
  const s = dirSink(root);
  try {
    return await extractTar(chunks(data), s, opts).catch((e: unknown) => e as Error);
  } finally {
    await s.close();
    await root.close();
  }
}

for (const sink of SINKS) {
  describe(`links: true through ${sink}`, () => {
    test("a file entry through a symlink made earlier is refused and nothing is written outside", async () => {
      const { outer, dst, elsewhere } = fresh();
      for (const [link, inner] of [
        [elsewhere, "link/x"],
        ["../elsewhere", "link/x"],
        [elsewhere, "./link/deeper/x"],
      ] as const) {
        const err = await extract(
          tar([
            { name: "link", type: "2", link },
            { name: inner, type: "0", body: "pwned" },
          ]),
          dst,
          sink,
        );
        expect(err).toBeInstanceOf(TarError);
        expect((err as Error).message).toMatch(/link: exists and is not a directory/);
        expect(readdirSync(elsewhere)).toEqual([]);
        rmSync(join(dst, "link"));
      }
      // The same through a symlink entry, a hard link entry and a directory entry.
      for (const second of [
        { name: "link/s", type: "2", link: "/etc/passwd" },
        { name: "link/h", type: "1", link: "f" },
        { name: "link/d/", type: "5" },
      ]) {
        const err = await extract(
          tar([{ name: "f", type: "0", body: "x" }, { name: "link", type: "2", link: elsewhere }, second]),
          dst,
          sink,
        );
        expect(err).toBeInstanceOf(TarError);
        expect(readdirSync(elsewhere)).toEqual([]);
        rmSync(join(dst, "link"));
        rmSync(join(dst, "f"));
      }
      // A directory entry named like the symlink is refused too (never reopened through it).
      const err = await extract(
        tar([
          { name: "link", type: "2", link: elsewhere },
          { name: "link/", type: "5" },
        ]),
        dst,
        sink,
      );
      expect(err).toBeInstanceOf(TarError);
      expect(readdirSync(outer).sort()).toEqual(["elsewhere", "target"]);
      expect(readdirSync(elsewhere)).toEqual([]);
    });

    test("symlinks are created with their text as is (absolute, relative, ..) and never followed", async () => {
      const { dst, elsewhere } = fresh();
      const r = await extract(
        tar([
          { name: "./etc/", type: "5", mode: 0o755 },
          { name: "./etc/hostname-link", type: "2", link: "/etc/hostname" },
          { name: "./etc/rel", type: "2", link: "../bin/busybox" },
          { name: "up", type: "2", link: "../../../../etc/passwd" },
          { name: "./out", type: "2", link: `${elsewhere}/created-by-nobody` },
          { name: "dangling", type: "2", link: "nowhere/at/all" },
        ]),
        dst,
        sink,
      );
      expect(r).toMatchObject({ symlinks: 5, dirs: 1, files: 0, skipped: [] });
      expect(lstatSync(join(dst, "etc/hostname-link")).isSymbolicLink()).toBe(true);
      expect(readlinkSync(join(dst, "etc/hostname-link"))).toBe("/etc/hostname");
      expect(readlinkSync(join(dst, "etc/rel"))).toBe("../bin/busybox");
      expect(readlinkSync(join(dst, "up"))).toBe("../../../../etc/passwd");
      expect(readlinkSync(join(dst, "out"))).toBe(`${elsewhere}/created-by-nobody`);
      expect(readlinkSync(join(dst, "dangling"))).toBe("nowhere/at/all");
      expect(readdirSync(elsewhere)).toEqual([]);
    });

    test("a name that exists already is refused, whatever the kinds", async () => {
      const { dst } = fresh();
      for (const pair of [
        [
          { name: "a", type: "2", link: "x" },
          { name: "a", type: "2", link: "y" },
        ],
        [
          { name: "b/", type: "5" },
          { name: "b", type: "2", link: "/" },
        ],
        [
          { name: "c", type: "2", link: "/etc/passwd" },
          { name: "c", type: "0", body: "overwrite?" },
        ],
        [
          { name: "d", type: "0", body: "1" },
          { name: "e", type: "0", body: "2" },
          { name: "e", type: "1", link: "d" },
        ],
      ]) {
        const err = await extract(tar(pair), dst, sink);
        expect(err).toBeInstanceOf(TarError);
        expect((err as Error).message).toMatch(/appears twice|not a directory/);
      }
      expect(readFileSync(join(dst, "e"), "utf8")).toBe("2");
    });

    test("hard links: to an earlier file a link; .. and absolute refused; anything else skipped", async () => {
      const { dst, elsewhere } = fresh();
      const r = await extract(
        tar([
          { name: "./bin/", type: "5", mode: 0o755 },
          { name: "./bin/prog", type: "0", body: "#!static", mode: 0o755 },
          { name: "./bin/alias", type: "1", link: "bin/prog" },
          { name: "./bin/alias2", type: "1", link: "./bin/alias" },
          { name: "sym", type: "2", link: "bin/prog" },
          { name: "to-sym", type: "1", link: "sym" },
          { name: "to-dir", type: "1", link: "bin" },
          { name: "to-missing", type: "1", link: "not/there" },
          { name: "before", type: "1", link: "later" },
          { name: "later", type: "0", body: "L" },
        ]),
        dst,
        sink,
      );
      expect(r).toMatchObject({ files: 2, hardlinks: 2, symlinks: 1 });
      const skipped = (r as { skipped: string[] }).skipped;
      expect(skipped).toHaveLength(4);
      for (const name of ["to-sym", "to-dir", "to-missing", "before"])
        expect(skipped.some((s) => s.startsWith(`${name}: a hard link to`) && s.endsWith("skipped"))).toBe(
          true,
        );
      expect(readFileSync(join(dst, "bin/alias"), "utf8")).toBe("#!static");
      expect(statSync(join(dst, "bin/alias2")).ino).toBe(statSync(join(dst, "bin/prog")).ino);
      expect(statSync(join(dst, "bin/prog")).mode & 0o777).toBe(0o755);
      for (const name of ["to-sym", "to-dir", "to-missing", "before"])
        expect(() => lstatSync(join(dst, name))).toThrow();

      for (const [link, why] of [
        ["../x", /contains "\.\."/],
        ["a/../../x", /contains "\.\."/],
        ["/etc/passwd", /is absolute/],
      ] as const) {
        const d = fresh();
        const err = await extract(
          tar([
            { name: "x", type: "0", body: "inside" },
            { name: "h", type: "1", link },
          ]),
          d.dst,
          sink,
        );
        expect(err).toBeInstanceOf(TarError);
        expect((err as Error).message).toMatch(/^archive hard link "h": /);
        expect((err as Error).message).toMatch(why);
        expect(readdirSync(d.dst)).toEqual(["x"]);
        expect(readdirSync(d.elsewhere)).toEqual([]);
      }
      expect(readdirSync(elsewhere)).toEqual([]);
    });

    test("devices, FIFOs and whiteouts are skipped with a reason; paths are still checked", async () => {
      const { dst } = fresh();
      const r = await extract(
        tar([
          { name: "dev/", type: "5" },
          { name: "dev/null", type: "3" },
          { name: "dev/sda", type: "4" },
          { name: "fifo", type: "6" },
          { name: "etc/.wh.passwd", type: "0", body: "" },
          { name: ".wh..wh..opq", type: "0" },
          { name: "dir/.wh.gone", type: "2", link: "x" },
          { name: "ok", type: "0", body: "fine" },
        ]),
        dst,
        sink,
      );
      expect(r).toMatchObject({ files: 1, dirs: 1 });
      expect((r as { skipped: string[] }).skipped).toEqual([
        "dev/null: a device; skipped",
        "dev/sda: a device; skipped",
        "fifo: a FIFO; skipped",
        "etc/.wh.passwd: a whiteout; skipped",
        ".wh..wh..opq: a whiteout; skipped",
        "dir/.wh.gone: a whiteout; skipped",
      ]);
      expect(readdirSync(dst).sort()).toEqual(["dev", "ok"]);
      expect(readdirSync(join(dst, "dev"))).toEqual([]);
      for (const bad of ["../dev", "/dev/null"]) {
        const d = fresh();
        expect(await extract(tar([{ name: bad, type: "3" }]), d.dst, sink)).toBeInstanceOf(TarError);
      }
    });

    test("modes: no setuid/group/world write, owner can always read files and walk directories", async () => {
      const { dst } = fresh();
      await extract(
        tar([
          { name: "d/", type: "5", mode: 0o555 },
          { name: "d/locked/", type: "5", mode: 0o000 },
          { name: "d/locked/f", type: "0", body: "x", mode: 0o000 },
          { name: "d/suid", type: "0", body: "x", mode: 0o4777 },
          { name: "d/exec", type: "0", body: "x", mode: 0o111 },
        ]),
        dst,
        sink,
      );
      const mode = (p: string) => statSync(join(dst, p)).mode & 0o7777;
      expect(mode("d")).toBe(0o755);
      expect(mode("d/locked")).toBe(0o700);
      expect(mode("d/locked/f")).toBe(0o400);
      expect(mode("d/suid")).toBe(0o755);
      expect(mode("d/exec")).toBe(0o511);
    });

    test("long names and link texts (pax and GNU L/K) are read", async () => {
      const { dst } = fresh();
      const longDir = `${"d".repeat(60)}/${"e".repeat(60)}`;
      const longTarget = `/${"t".repeat(150)}/target`;
      const gnu = (type: "L" | "K", value: string) => ({ name: "././@LongLink", type, body: `${value}\0` });
      const r = await extract(
        tar([
          { name: `${longDir}/file`, type: "0", body: "deep" },
          { name: `${longDir}/sym`, type: "2", link: longTarget },
          gnu("L", `${longDir}/gnu-file`),
          { name: "cut", type: "0", body: "gnu" },
          gnu("L", `${longDir}/gnu-sym`),
          gnu("K", longTarget),
          { name: "cut2", type: "2", link: "cut" },
        ]),
        dst,
        sink,
      );
      expect(r).toMatchObject({ files: 2, symlinks: 2 });
      expect(readFileSync(join(dst, longDir, "file"), "utf8")).toBe("deep");
      expect(readFileSync(join(dst, longDir, "gnu-file"), "utf8")).toBe("gnu");
      expect(readlinkSync(join(dst, longDir, "sym"))).toBe(longTarget);
      expect(readlinkSync(join(dst, longDir, "gnu-sym"))).toBe(longTarget);
      expect(readdirSync(dst)).toEqual(["d".repeat(60)]);
    });

    test("maxEntries counts links and skipped entries", async () => {
      const { dst } = fresh();
      const many = Array.from({ length: 5 }, (_, i) => ({ name: `l${i}`, type: "2", link: "x" }));
      const err = await extract(tar([...many, { name: "fifo", type: "6" }]), dst, sink, {
        ...LINKS,
        maxEntries: 5,
      });
      expect(err).toBeInstanceOf(TarLimitError);
      expect((err as Error).message).toMatch(/more than 5 entries/);
    });
  });
}

test("without links: true, symlinks and hard links are still refused (snapshots, imports)", async () => {
  const { dst } = fresh();
  const err = await extract(tar([{ name: "l", type: "2", link: "/etc" }]), dst, "dirSink", {});
  expect((err as Error).message).toMatch(/is a symlink; only files and directories are allowed/);
  const err2 = await extract(tar([{ name: "fifo", type: "6" }]), dst, "pathSink", {});
  expect((err2 as Error).message).toMatch(/entry type "6"/);
  expect(readdirSync(dst)).toEqual([]);
});

test("a symlinked parent already in the target refuses symlink and hard link entries (dirSink)", async () => {
  const { dst, elsewhere } = fresh();
  symlinkSync(elsewhere, join(dst, "sub"));
  for (const [i, e] of [
    { name: "sub/l", type: "2", link: "/etc/passwd" },
    { name: "sub/h", type: "1", link: "f1" },
  ].entries()) {
    const err = await extract(tar([{ name: `f${i}`, type: "0", body: "x" }, e]), dst, "dirSink");
    expect(err).toBeInstanceOf(TarError);
    expect((err as Error).message).toMatch(/sub: exists and is not a directory/);
  }
  expect(readdirSync(elsewhere)).toEqual([]);
});

describe("parseImageConfig", () => {
  const id = "a".repeat(64);
  test("podman and docker shapes", () => {
    const podman = JSON.stringify([
      {
        Id: id,
        Architecture: "amd64",
        Os: "linux",
        Config: { Entrypoint: ["/app"], Cmd: ["--port", "80"], Env: ["A=1"], WorkingDir: "/srv" },
      },
    ]);
    expect(parseImageConfig(podman, "img")).toEqual({
      id,
      architecture: "amd64",
      os: "linux",
      entrypoint: ["/app"],
      cmd: ["--port", "80"],
      env: ["A=1"],
      workingDir: "/srv",
    });
    const docker = JSON.stringify([
      {
        Id: `sha256:${id}`,
        Architecture: "arm64",
        Os: "linux",
        Config: { Entrypoint: null, Cmd: null, Env: null },
      },
    ]);
    expect(parseImageConfig(docker, "img")).toEqual({
      id,
      architecture: "arm64",
      os: "linux",
      entrypoint: [],
      cmd: [],
      env: [],
      workingDir: "",
    });
  });
  test("no usable ID or no JSON is one clear error", () => {
    expect(() => parseImageConfig("[]", "img")).toThrow(OciError);
    expect(() => parseImageConfig(JSON.stringify([{ Id: "sha256:xyz" }]), "img")).toThrow(
      /no sha256 image ID/,
    );
    expect(() => parseImageConfig("not json", "img")).toThrow(/not JSON/);
  });
});
