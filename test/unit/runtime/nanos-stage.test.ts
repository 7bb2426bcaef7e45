// The staging walk and entrypoint check (src/runtime/nanos/stage.ts) against real temp dirs: files, empty
// directories, symlinks baked as links (never read through: a link to /etc/hostname leaves no host path
// outside the staging root anywhere in the tree), a fifo and a unix socket skipped, names with spaces and
// quotes, bounds; checkProgram against a `gcc -static` ELF (when gcc is present), a script, a truncated
// file, a crafted aarch64 header, and entrypoint symlink chains inside and pointing outside the root.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { GuestDir, GuestNode } from "../../../src/runtime/nanos/manifest.ts";
import { writeManifest } from "../../../src/runtime/nanos/manifest.ts";
import { checkProgram, elfProblem, StageError, stageTree } from "../../../src/runtime/nanos/stage.ts";

let tmp: string;
beforeAll(() => {
  tmp = mkdtempSync(join(tmpdir(), "mcp-stage-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

let n = 0;
const freshRoot = (): string => {
  const d = join(tmp, `root${n++}`);
  mkdirSync(d);
  return d;
};

function child(dir: GuestDir, path: string): GuestNode | undefined {
  let node: GuestNode | undefined = dir;
  for (const c of path.split("/").filter(Boolean)) {
    if (node?.kind !== "dir") return undefined;
    node = node.children.get(c);
  }
  return node;
}

function allHostPaths(node: GuestNode): string[] {
  if (node.kind === "file") return [node.host];
  if (node.kind === "symlink") return [];
  return [...node.children.values()].flatMap(allHostPaths);
}

/** An ELF64 LE header with the given e_machine and e_type, 64 bytes. */
function elfHeader(machine: number, type = 2, cls = 2, data = 1): Uint8Array {
  const b = new Uint8Array(64);
  b.set([0x7f, 0x45, 0x4c, 0x46, cls, data, 1]);
  const dv = new DataView(b.buffer);
  dv.setUint16(16, type, true);
  dv.setUint16(18, machine, true);
  dv.setUint32(20, 1, true);
  return b;
}

async function sh(argv: string[]): Promise<number> {
  const p = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe" });
  return await p.exited;
}

describe("stageTree", () => {
  let server: Server | undefined;
  afterAll(() => server?.close());

  test("files, empty dirs, links to host files and dirs, fifo and socket skipped, odd names", async () => {
    const root = freshRoot();
    mkdirSync(join(root, "app"));
    writeFileSync(join(root, "app", "server"), "x");
    mkdirSync(join(root, "srv", "demo", 'dir "with" space'), { recursive: true });
    writeFileSync(join(root, "srv", "demo", 'f"q \\ #:().txt'), "hello");
    writeFileSync(join(root, "srv", "demo", "empty"), "");
    mkdirSync(join(root, "etc"));
    symlinkSync("/etc/hostname", join(root, "etc", "hostname"));
    symlinkSync("/etc", join(root, "hostetc"));
    symlinkSync("../app/server", join(root, "srv", "rel link"));
    symlinkSync("/nonexistent/dangling", join(root, "dangling"));
    expect(await sh(["mkfifo", join(root, "srv", "fifo")])).toBe(0);
    server = createServer();
    const sock = join(root, "app", "s.sock");
    await new Promise<void>((ok) => server!.listen(sock, ok));

    const t = stageTree(root);
    expect(t.skipped).toEqual(["/app/s.sock (socket)", "/srv/fifo (fifo)"]);
    expect(t.entries).toBe(14);
    expect(child(t.root, "app/server")).toEqual({ kind: "file", host: join(root, "app", "server") });
    expect(child(t.root, "srv/demo/empty")).toEqual({
      kind: "file",
      host: join(root, "srv", "demo", "empty"),
    });
    expect(child(t.root, 'srv/demo/f"q \\ #:().txt')).toEqual({
      kind: "file",
      host: join(root, "srv", "demo", 'f"q \\ #:().txt'),
    });
    expect(child(t.root, 'srv/demo/dir "with" space')).toEqual({ kind: "dir", children: new Map() });
    expect(child(t.root, "etc/hostname")).toEqual({ kind: "symlink", target: "/etc/hostname" });
    expect(child(t.root, "hostetc")).toEqual({ kind: "symlink", target: "/etc" });
    expect(child(t.root, "srv/rel link")).toEqual({ kind: "symlink", target: "../app/server" });
    expect(child(t.root, "dangling")).toEqual({ kind: "symlink", target: "/nonexistent/dangling" });
    expect(child(t.root, "srv/fifo")).toBeUndefined();
    expect(child(t.root, "app/s.sock")).toBeUndefined();
    // No host path outside the staging root anywhere; nothing under the linked host /etc was walked.
    const hosts = allHostPaths(t.root);
    expect(hosts.length).toBe(3);
    for (const h of hosts) expect(h.startsWith(`${root}/`)).toBe(true);
    // And the writer accepts the tree as is.
    const text = writeManifest({ root: t.root, program: "/app/server", args: ["server"], environment: {} });
    expect(text).toContain('"hostname":(linktarget:"/etc/hostname")');
    expect(text).not.toContain('(host:"/etc');
  });

  test("an empty root is an empty guest /", () => {
    const t = stageTree(freshRoot());
    expect(t).toEqual({ root: { kind: "dir", children: new Map() }, skipped: [], entries: 0 });
  });

  test("refusals are one line naming the path", () => {
    const root = freshRoot();
    const bad = Buffer.concat([Buffer.from(`${root}/bad-`), Buffer.from([0xff, 0xfe])]);
    writeFileSync(bad, "x");
    const e = (() => {
      try {
        stageTree(root);
      } catch (err) {
        return err as Error;
      }
      throw new Error("no error");
    })();
    expect(e).toBeInstanceOf(StageError);
    expect(e.message).toContain("not valid UTF-8");
    expect(e.message).toContain("bad-");
    expect(e.message).not.toContain("\n");

    expect(() => stageTree("relative/dir")).toThrow(/not an absolute path/);
    const linkRoot = join(tmp, `linkroot${n++}`);
    symlinkSync(root, linkRoot);
    expect(() => stageTree(linkRoot)).toThrow(/is not a directory \(lstat\)/);
  });

  test("bounded: entries and depth", () => {
    const root = freshRoot();
    for (let i = 0; i < 5; i++) writeFileSync(join(root, `f${i}`), "");
    expect(() => stageTree(root, { maxEntries: 4 })).toThrow(/more than 4 entries/);
    expect(stageTree(root, { maxEntries: 5 }).entries).toBe(5);
    const deep = freshRoot();
    mkdirSync(join(deep, "a/b/c/d"), { recursive: true });
    expect(() => stageTree(deep, { maxDepth: 3 })).toThrow(/\/a\/b\/c\/d: deeper than 3 directory levels/);
    expect(() => stageTree(deep, { maxDepth: 4 })).not.toThrow();
  });
});

describe("checkProgram", () => {
  const refusal = (root: string, program: string, component?: string): string => {
    try {
      checkProgram(root, program, component);
    } catch (e) {
      expect(e).toBeInstanceOf(StageError);
      expect((e as Error).message).not.toContain("\n");
      return (e as Error).message;
    }
    throw new Error(`${program} was accepted`);
  };

  test("a gcc -static program is accepted, directly and through a link chain inside root", async () => {
    if (!Bun.which("gcc")) {
      console.log("gcc missing: static ELF case skipped");
      return;
    }
    const root = freshRoot();
    mkdirSync(join(root, "app", "bin"), { recursive: true });
    writeFileSync(join(tmp, "hello.c"), "int main(void){return 0;}\n");
    const out = join(root, "app", "bin", "real");
    expect(await sh(["gcc", "-static", "-O2", "-o", out, join(tmp, "hello.c")])).toBe(0);
    checkProgram(root, "/app/bin/real", "web");
    // /app/cur -> bin/next (relative), /app/bin/next -> /app/bin/real (absolute, resolved inside root),
    // /lnk -> app (a directory link in the middle of the path)
    symlinkSync("bin/next", join(root, "app", "cur"));
    symlinkSync("/app/bin/real", join(root, "app", "bin", "next"));
    symlinkSync("app", join(root, "lnk"));
    checkProgram(root, "/app/cur", "web");
    checkProgram(root, "/lnk/cur");
    checkProgram(root, "/../../app/./bin/../cur");
  });

  test("a link pointing outside root is resolved inside root and refused", () => {
    const root = freshRoot();
    const outside = join(tmp, `outside-elf${n++}`);
    writeFileSync(outside, elfHeader(0x3e)); // a valid header on the host, outside root
    mkdirSync(join(root, "app"));
    symlinkSync(outside, join(root, "app", "server"));
    expect(refusal(root, "/app/server", "web")).toMatch(
      /^component web: entrypoint \/app\/server: .* does not exist in the image$/,
    );
    symlinkSync("../../../../../../..", join(root, "app", "up"));
    expect(refusal(root, "/app/up", "web")).toMatch(/is not a regular file/);
    symlinkSync("loop", join(root, "loop"));
    expect(refusal(root, "/loop")).toMatch(/more than 40 symlink hops/);
  });

  test("scripts, truncated files, arm64 and other headers are refused naming the component", () => {
    const root = freshRoot();
    writeFileSync(join(root, "run.sh"), "#!/bin/sh\necho hi\n");
    writeFileSync(join(root, "trunc"), elfHeader(0x3e).subarray(0, 20));
    writeFileSync(join(root, "arm"), elfHeader(0xb7));
    writeFileSync(join(root, "text"), "hello");
    writeFileSync(join(root, "empty"), "");
    writeFileSync(join(root, "elf32"), elfHeader(0x3e, 2, 1));
    writeFileSync(join(root, "rel"), elfHeader(0x3e, 1));
    writeFileSync(join(root, "ok-exec"), elfHeader(0x3e, 2));
    writeFileSync(join(root, "ok-dyn"), elfHeader(0x3e, 3));
    mkdirSync(join(root, "d"));
    expect(refusal(root, "/run.sh", "web")).toBe(
      'component web: entrypoint /run.sh is a script ("#!/bin/sh"), not an ELF program; Nanos runs only x86-64 ELF programs',
    );
    expect(refusal(root, "/trunc", "web")).toMatch(
      /^component web: entrypoint \/trunc is a truncated ELF file \(20 bytes\)/,
    );
    expect(refusal(root, "/arm", "api")).toBe(
      "component api: entrypoint /arm is an arm64 (aarch64) ELF program; Nanos runs only x86-64 ELF programs",
    );
    expect(refusal(root, "/text")).toMatch(/^entrypoint \/text is not an ELF program/);
    expect(refusal(root, "/empty")).toMatch(/is not an ELF program/);
    expect(refusal(root, "/elf32")).toMatch(/is a 32-bit ELF program/);
    expect(refusal(root, "/rel")).toMatch(/type 1, not an executable/);
    expect(refusal(root, "/d")).toMatch(/is not a regular file/);
    expect(refusal(root, "/missing")).toMatch(/\/missing does not exist in the image/);
    expect(refusal(root, "/ok-exec/x")).toMatch(/\/ok-exec is not a directory/);
    expect(refusal(root, "relative")).toMatch(/not an absolute guest path/);
    checkProgram(root, "/ok-exec");
    checkProgram(root, "/ok-dyn");
  });

  test("a fifo entrypoint is refused without blocking", async () => {
    const root = freshRoot();
    expect(await sh(["mkfifo", join(root, "p")])).toBe(0);
    expect(refusal(root, "/p")).toMatch(/is not a regular file/);
  });

  test("elfProblem on headers alone", () => {
    expect(elfProblem(elfHeader(0x3e))).toBeNull();
    expect(elfProblem(elfHeader(0x3e, 2, 2, 2))).toBe("is a big-endian ELF program");
    expect(elfProblem(elfHeader(0x1234))).toBe("is an machine 0x1234 ELF program");
  });
});
