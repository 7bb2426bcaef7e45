// Property tests of the file-transfer confinement (src/roles/agent/files/confine.ts) on a real
// temp tree: hostile generated paths (.., ., empty, //, unicode, NUL, backslashes, 300+ byte names)
// against a service directory full of symlinks (inside, outside, to another service, to /,
// dangling, looping, and a symlinked service directory) never write or read outside
// <root>/<svc>/; legitimate nested paths always round-trip bytes and mode. 12,000 generated paths
// in total. A race test swaps a parent directory for a symlink to outside in a tight loop in a
// separate process while writes and reads run, and checks nothing outside ever changes.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { MAX_FILE_BYTES } from "../../../src/config/limits.ts";
import { NAME_RE } from "../../../src/config/service.ts";
import {
  checkServiceName,
  parseRelPath,
  readConfined,
  writeConfined,
} from "../../../src/roles/agent/files/confine.ts";
import { RpcError } from "../../../src/rpc/errors.ts";

const SECRET = `SECRET-OUTSIDE-${Math.random().toString(36).slice(2)}`;
const EXPECTED_CODES = new Set([
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.FAILED_PRECONDITION,
  status.RESOURCE_EXHAUSTED,
]);

let top = ""; // temp root: outside/, srv/
let srv = ""; // srv_root
let svcDir = "";
let svcReal = "";
let outside = "";
let srv2 = ""; // a second srv_root, in its own temp dir, for the safe-path and race services

/** Every entry under `dir` except the service directory's subtree, with what would show a write. */
function snapshot(dir: string, skip: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir).sort()) {
    const p = join(dir, name);
    if (p === skip) {
      out.push(`${p} (service dir)`);
      continue;
    }
    const st = lstatSync(p);
    out.push(`${p} ${st.mode} ${st.size} ${st.mtimeMs} ${st.ino}`);
    if (st.isDirectory()) snapshot(p, skip, out);
  }
  return out;
}

let outsideBefore = "";
const outsideNow = () => snapshot(top, svcDir).join("\n");

function expectRpcRefusal(err: unknown): void {
  expect(err).toBeInstanceOf(RpcError);
  expect(EXPECTED_CODES.has((err as RpcError).code)).toBe(true);
  expect((err as RpcError).message).not.toContain("\n");
}

function insideService(p: string): boolean {
  return realpathSync(p).startsWith(`${svcReal}/`);
}

beforeAll(() => {
  top = mkdtempSync(join(tmpdir(), "mcp-confine-"));
  srv2 = join(mkdtempSync(join(tmpdir(), "mcp-confine2-")), "srv");
  mkdirSync(srv2);
  outside = join(top, "outside");
  srv = join(top, "srv");
  svcDir = join(srv, "svc");
  mkdirSync(join(outside, "d", "e"), { recursive: true });
  writeFileSync(join(outside, "secret"), SECRET);
  writeFileSync(join(outside, "f"), SECRET);
  writeFileSync(join(outside, "d", "e", "f"), SECRET);
  mkdirSync(join(srv, "other"), { recursive: true });
  writeFileSync(join(srv, "other", "secret"), SECRET);
  symlinkSync(outside, join(srv, "lnksvc")); // a symlinked service directory
  mkdirSync(join(svcDir, "d", "e"), { recursive: true });
  writeFileSync(join(svcDir, "f"), "inside f");
  writeFileSync(join(svcDir, "d", "e", "f"), "inside d/e/f");
  symlinkSync("d", join(svcDir, "in")); // points inside
  symlinkSync(outside, join(svcDir, "out")); // points outside (absolute)
  symlinkSync(join(outside, "secret"), join(svcDir, "outf")); // a file outside
  symlinkSync("../..", join(svcDir, "d", "up")); // relative escape from a subdirectory
  symlinkSync("/", join(svcDir, "abs"));
  symlinkSync("../other", join(svcDir, "sib")); // another service's directory
  symlinkSync(join(outside, "new-file"), join(svcDir, "dangling")); // would create outside
  symlinkSync("loop", join(svcDir, "loop"));
  symlinkSync(outside, join(svcDir, "d", "e", "x")); // symlinked parent deeper down
  svcReal = realpathSync(svcDir);
  outsideBefore = outsideNow();
});

// Removing the trees the property tests filled can take seconds on a loaded machine (bun's hook
// default is 5 s; it timed out there once).
afterAll(() => {
  rmSync(top, { recursive: true, force: true });
  rmSync(join(srv2, ".."), { recursive: true, force: true });
}, 60_000);

// Segments chosen to hit the tree above, plus every awkward shape of a name.
const NAMES = [
  "d",
  "e",
  "f",
  "x",
  "in",
  "out",
  "outf",
  "up",
  "abs",
  "sib",
  "dangling",
  "loop",
  "secret",
  "new",
];
const AWKWARD = [
  "..",
  ".",
  "",
  "...",
  "..\\..",
  "a\\b",
  "\\",
  "a\0b",
  "\0",
  "🚀",
  "e\u0301\u0301",
  "\u05e9\u05dc\u05d5\u05dd",
  "\u202egnp.exe",
  "\u0627\u0644\u0633\u0644\u0627\u0645",
  "x".repeat(300),
  "é".repeat(130), // 260 bytes: over NAME_MAX in bytes, under it in characters
  "y".repeat(255),
  " ",
  "-rf",
  "~",
  "$HOME",
];
const segment = fc.oneof(
  { weight: 5, arbitrary: fc.constantFrom(...NAMES) },
  { weight: 4, arbitrary: fc.constantFrom(...AWKWARD) },
  { weight: 2, arbitrary: fc.string({ unit: "grapheme", maxLength: 12 }) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 8 }) },
);
const hostilePath = fc
  .tuple(
    fc.constantFrom("", "", "", "/", "//", "./"),
    fc.array(fc.tuple(segment, fc.constantFrom("/", "/", "//", "/./")), { minLength: 1, maxLength: 6 }),
    fc.constantFrom("", "", "", "/", "/."),
  )
  .map(([lead, parts, trail]) => {
    const s = parts.map(([seg, sep], i) => (i === parts.length - 1 ? seg : seg + sep)).join("");
    return lead + s + trail;
  });

describe("confinement properties", () => {
  test("parseRelPath: accepted paths are relative, have no '..', '.', empty or NUL segments (4,000 paths)", () => {
    fc.assert(
      fc.property(fc.oneof(hostilePath, fc.string({ unit: "binary", maxLength: 40 })), (p) => {
        let segs: string[];
        try {
          segs = parseRelPath(p);
        } catch (err) {
          expectRpcRefusal(err);
          expect((err as RpcError).code).toBe(status.INVALID_ARGUMENT);
          return;
        }
        expect(p.startsWith("/")).toBe(false);
        expect(p.includes("\0")).toBe(false);
        expect(segs.length).toBeGreaterThan(0);
        for (const s of segs) {
          expect(s === "" || s === "." || s === ".." || s.includes("/")).toBe(false);
          expect(Buffer.byteLength(s)).toBeLessThanOrEqual(255);
        }
        // The segments are the path with only "" and "." removed: nothing else is reinterpreted.
        expect(segs).toEqual(p.split("/").filter((s) => s !== "" && s !== "."));
      }),
      { numRuns: 4000 },
    );
  });

  test("service names: only NAME_RE names pass", () => {
    fc.assert(
      fc.property(
        fc.oneof(fc.string({ maxLength: 20 }), fc.constantFrom("svc", "..", ".", "a/b", "A", "-x")),
        (n) => {
          let ok = true;
          try {
            checkServiceName(n);
          } catch (err) {
            expectRpcRefusal(err);
            ok = false;
          }
          expect(ok).toBe(NAME_RE.test(n) && n.length <= 64);
        },
      ),
      { numRuns: 500 },
    );
  });

  test("no write or read ever lands outside <root>/<svc>/ (5,000 hostile paths on a tree of symlinks)", async () => {
    let wrote = 0;
    let read = 0;
    await fc.assert(
      fc.asyncProperty(hostilePath, fc.uint8Array({ maxLength: 64 }), async (p, content) => {
        try {
          const r = await writeConfined(srv, "svc", p, content, 0o644);
          wrote++;
          expect(r.path).toBe(join(svcDir, ...parseRelPath(p)));
          expect(insideService(r.path)).toBe(true);
          expect(lstatSync(r.path).isFile()).toBe(true);
          expect(new Uint8Array(readFileSync(r.path))).toEqual(content);
        } catch (err) {
          if (!(err instanceof RpcError)) throw err;
          expectRpcRefusal(err);
        }
        try {
          const r = await readConfined(srv, "svc", p);
          read++;
          expect(insideService(r.path)).toBe(true);
          expect(new Uint8Array(r.content)).toEqual(new Uint8Array(readFileSync(r.path)));
          expect(Buffer.from(r.content).toString("latin1")).not.toContain(SECRET);
        } catch (err) {
          if (!(err instanceof RpcError)) throw err;
          expectRpcRefusal(err);
        }
        expect(outsideNow()).toBe(outsideBefore);
      }),
      { numRuns: 5000 },
    );
    // The generator reaches both outcomes, so the property is not vacuous.
    expect(wrote).toBeGreaterThan(100);
    expect(read).toBeGreaterThan(100);
    expect(readFileSync(join(outside, "secret"), "utf8")).toBe(SECRET);
  }, 30_000);

  test("legitimate nested paths always work: bytes and mode round-trip (3,000 paths)", async () => {
    mkdirSync(join(srv2, "safe"));
    const safeSeg = fc.oneof(
      fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9._-]{0,30}$/),
      fc
        .string({ unit: "grapheme", minLength: 1, maxLength: 16 })
        .filter((s) => !s.includes("/") && !s.includes("\0") && s !== "." && s !== ".."),
    );
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.array(safeSeg, { minLength: 1, maxLength: 6 }),
        fc.constantFrom("", "/", "//", "/./"),
        fc.uint8Array({ maxLength: 2048 }),
        fc.constantFrom(0o600, 0o640, 0o644, 0o755, 0o700, 0o400, 0o444),
        async (segs, sep, content, mode) => {
          // A fresh top directory per run: a file from one run never blocks a directory of another.
          const rel = `r${run++}/${segs.join(sep || "/")}`;
          const w = await writeConfined(srv2, "safe", rel, content, mode);
          expect(w.bytes).toBe(content.byteLength);
          const r = await readConfined(srv2, "safe", rel);
          expect(r.path).toBe(w.path);
          expect(new Uint8Array(r.content)).toEqual(content);
          expect(r.mode).toBe(mode);
          expect(statSync(w.path).mode & 0o777).toBe(mode);
          expect(realpathSync(w.path).startsWith(`${realpathSync(join(srv2, "safe"))}/`)).toBe(true);
        },
      ),
      { numRuns: 3000 },
    );
  }, 30_000);
});

describe("confinement examples", () => {
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
      return "ok";
    } catch (err) {
      expectRpcRefusal(err);
      return `${status[(err as RpcError).code]}: ${(err as Error).message}`;
    }
  };

  test("each escape is refused with a clear reason", async () => {
    const w = (p: string) => code(writeConfined(srv, "svc", p, new Uint8Array([1])));
    expect(await w("../x")).toMatch(/^INVALID_ARGUMENT: .*contains "\.\."/);
    expect(await w("/etc/passwd")).toMatch(/^INVALID_ARGUMENT: .*absolute/);
    expect(await w("a\0b")).toMatch(/^INVALID_ARGUMENT: .*NUL/);
    expect(await w("out/x")).toMatch(/^INVALID_ARGUMENT: svc:out is a symlink/);
    expect(await w("outf")).toMatch(/^INVALID_ARGUMENT: svc:outf is a symlink/);
    expect(await w("dangling")).toMatch(/^INVALID_ARGUMENT: svc:dangling is a symlink/);
    expect(await w("d/up/other/x")).toMatch(/^INVALID_ARGUMENT: svc:d\/up is a symlink/);
    expect(await w("in/x")).toMatch(/^INVALID_ARGUMENT: svc:in is a symlink/); // even pointing inside
    expect(await w("loop/x")).toMatch(/^INVALID_ARGUMENT: svc:loop is a symlink/);
    expect(await w("f/x")).toMatch(/^FAILED_PRECONDITION: svc:f is not a directory/);
    expect(await w("d")).toMatch(/^FAILED_PRECONDITION: svc:d is a directory/);
    expect(await w("dir/")).toMatch(/^INVALID_ARGUMENT: .*names a directory/);
    expect(await w("x".repeat(300))).toMatch(/^INVALID_ARGUMENT: .*300 bytes long; the limit is 255/);
    expect(await code(writeConfined(srv, "lnksvc", "x", new Uint8Array([1])))).toMatch(
      /^INVALID_ARGUMENT: service directory lnksvc\/ is a symlink/,
    );
    expect(await code(writeConfined(srv, "../srv", "x", new Uint8Array([1])))).toMatch(
      /^INVALID_ARGUMENT: service name/,
    );
    expect(await code(writeConfined(srv, "svc", "m", new Uint8Array([1]), 0o4755))).toMatch(
      /^INVALID_ARGUMENT: mode 04755/,
    );
    expect(outsideNow()).toBe(outsideBefore);
  });

  test("reads refuse symlinks, directories, special files and missing files", async () => {
    const r = (p: string, svc = "svc") => code(readConfined(srv, svc, p));
    expect(await r("outf")).toMatch(/^INVALID_ARGUMENT: svc:outf is a symlink/);
    expect(await r("sib/secret")).toMatch(/^INVALID_ARGUMENT: svc:sib is a symlink/);
    expect(await r("d")).toMatch(/^FAILED_PRECONDITION: svc:d is a directory/);
    expect(await r("nope")).toMatch(/^NOT_FOUND: svc:nope: no such file/);
    expect(await r("nope/deeper")).toMatch(/^NOT_FOUND: svc:nope: no such file/);
    expect(await r("secret", "lnksvc")).toMatch(/^INVALID_ARGUMENT: service directory lnksvc\/ is a symlink/);
    const fifo = Bun.spawnSync(["mkfifo", join(svcDir, "fifo")]);
    expect(fifo.exitCode).toBe(0);
    expect(await r("fifo")).toMatch(/^FAILED_PRECONDITION: svc:fifo is not a regular file/);
    expect(await r("f")).toBe("ok");
  });

  test("the size limit is stated and enforced on both write and read", async () => {
    const big = new Uint8Array(MAX_FILE_BYTES + 1);
    expect(await code(writeConfined(srv, "svc", "big", big))).toBe(
      `RESOURCE_EXHAUSTED: file is ${MAX_FILE_BYTES + 1} bytes; the limit is 8 MiB`,
    );
    expect(lstatSync(join(svcDir, "big"), { throwIfNoEntry: false })).toBeUndefined();
    writeFileSync(join(svcDir, "huge"), big);
    expect(await code(readConfined(srv, "svc", "huge"))).toBe(
      `RESOURCE_EXHAUSTED: svc:huge is ${MAX_FILE_BYTES + 1} bytes; the limit is 8 MiB`,
    );
    expect(await code(writeConfined(srv, "svc", "exact", new Uint8Array(MAX_FILE_BYTES)))).toBe("ok");
  });

  test("overwrite replaces the file by rename (new inode), creates parents 0755, leaves no temp files", async () => {
    await writeConfined(srv, "svc", "deep/er/conf", new TextEncoder().encode("one"), 0o600);
    const ino = statSync(join(svcDir, "deep", "er", "conf")).ino;
    await writeConfined(srv, "svc", "deep/er/conf", new TextEncoder().encode("two"), 0o640);
    const st = statSync(join(svcDir, "deep", "er", "conf"));
    expect(st.ino).not.toBe(ino);
    expect(st.mode & 0o777).toBe(0o640);
    expect(readFileSync(join(svcDir, "deep", "er", "conf"), "utf8")).toBe("two");
    expect(statSync(join(svcDir, "deep")).isDirectory()).toBe(true);
    expect(readdirSync(join(svcDir, "deep", "er"))).toEqual(["conf"]);
    // mode 0 (unset in proto3) means the default 0644
    const w = await writeConfined(srv, "svc", "deep/default", new Uint8Array([1]), 0);
    expect(w.mode).toBe(0o644);
    expect(statSync(join(svcDir, "deep", "default")).mode & 0o777).toBe(0o644);
  });
});

describe("race: a parent directory swapped for a symlink to outside", () => {
  test("never results in a write or read outside the service directory", async () => {
    const race = join(srv2, "race");
    const victim = join(race, "a");
    mkdirSync(join(victim, "b"), { recursive: true });
    for (let i = 0; i < 4; i++) writeFileSync(join(victim, "b", `f${i}`), "inside");
    // The swap target mirrors the layout, so a followed symlink would find (and overwrite) these.
    mkdirSync(join(outside, "b"), { recursive: true });
    for (let i = 0; i < 4; i++) writeFileSync(join(outside, "b", `f${i}`), SECRET);
    const before = outsideNow();

    // The swapper runs in its own process, so the swaps really interleave with our syscalls.
    const script = join(srv2, "..", "swapper.ts");
    writeFileSync(
      script,
      `import { existsSync, lstatSync, renameSync, rmSync, symlinkSync, unlinkSync } from "node:fs";
const [victim, target, ms] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const hidden = victim + ".real";
const end = Date.now() + ms;
let swaps = 0;
const attempt = (f) => { try { f(); return true; } catch { return false; } };
// Put the real directory back, dropping whatever took its name meanwhile (our symlink, or a
// directory a push created while the name was free).
const restore = () => {
  if (!existsSync(hidden)) return;
  attempt(() => (lstatSync(victim).isSymbolicLink() ? unlinkSync(victim) : rmSync(victim, { recursive: true, force: true })));
  attempt(() => renameSync(hidden, victim));
};
while (Date.now() < end) {
  if (!attempt(() => renameSync(victim, hidden))) { restore(); continue; }
  if (attempt(() => symlinkSync(target, victim))) swaps++;
  restore();
}
restore();
console.log(swaps);
`,
    );
    const swapper = Bun.spawn([process.execPath, script, victim, outside, "2500"], {
      stdout: "pipe",
      stderr: "pipe",
    });
    let done = false;
    void swapper.exited.then(() => {
      done = true;
    });
    let ok = 0;
    let refusedSymlink = 0;
    let other = 0;
    const content = new TextEncoder().encode("from the race");
    for (let i = 0; !done && i < 200_000; i++) {
      const p = `a/b/f${i % 4}`;
      for (const op of [
        () => writeConfined(srv2, "race", p, content, 0o644),
        () =>
          readConfined(srv2, "race", p).then((r) => {
            expect(Buffer.from(r.content).toString()).not.toContain(SECRET);
            expect(r.path.startsWith(`${race}/`)).toBe(true);
          }),
      ]) {
        try {
          await op();
          ok++;
        } catch (err) {
          if (!(err instanceof RpcError)) throw err;
          expectRpcRefusal(err);
          if (/is a symlink/.test(err.message)) refusedSymlink++;
          else other++;
        }
      }
    }
    const swaps = Number((await new Response(swapper.stdout).text()).trim());
    expect(await swapper.exited).toBe(0);
    expect(swaps).toBeGreaterThan(100);
    expect(ok).toBeGreaterThan(0);
    expect(refusedSymlink).toBeGreaterThan(0); // the race was really hit
    expect(outsideNow()).toBe(before);
    for (let i = 0; i < 4; i++) expect(readFileSync(join(outside, "b", `f${i}`), "utf8")).toBe(SECRET);
    // Whatever the race created lives under the service directory.
    const realRace = realpathSync(race);
    for (const f of readdirSync(race, { recursive: true }) as string[]) {
      const p = join(race, f);
      if (!lstatSync(p).isSymbolicLink()) expect(realpathSync(p).startsWith(`${realRace}/`)).toBe(true);
    }
    console.log(
      `race: ${swaps} swaps, ${ok} ok, ${refusedSymlink} symlink refusals, ${other} other refusals`,
    );
  }, 20_000);
});
