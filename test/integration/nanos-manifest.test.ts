// A manifest from src/runtime/nanos/manifest.ts booted for real: a small static C program (built here with
// `gcc -static`) is baked with mkfs into a Nanos image beside files, an empty directory and a symlink whose
// names and host paths hold spaces, quotes, `#`, `:`, parentheses and `|`; QEMU boots it under TCG (these
// machines' /dev/kvm is PVM, shared/unikernel/README.md §4) with no network; the program prints its argv,
// environment, the files and the link on the serial console and exits 7, which isa-debug-exit turns into
// QEMU's exit status (7<<1)|1 = 15. The tmpfs+shmem klibs are loaded and proven by memfd_create.
//
// Needs: gcc with a static libc (libc6-dev), qemu-system-x86_64 (both installed by scripts/ci-deps.sh;
// missing ones fail the test), and the Nanos files (kernel.img, boot.img, mkfs,
// klibs/) from $MCP_NANOS_DIR, default `<repo>/../shared/unikernel`, else /work/shared/unikernel. They are
// never copied into the repository.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAfter, run } from "../../src/runtime/exec.ts";
import { type GuestDir, type GuestNode, writeManifest } from "../../src/runtime/nanos/manifest.ts";
import { nanosDir, QEMU, requireTools } from "../support/unikernel.ts";

let NANOS_DIR = "";
const BOOT_TIMEOUT_MS = 30_000;
const EXIT_CODE = 7;

/** The escaping the C program applies: bytes outside printable ASCII, and the backslash, as \xNN. */
function esc(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    out +=
      b >= 0x20 && b < 0x7f && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`;
  }
  return out;
}

/** A C string literal for an ASCII path (JSON's escaping of `"` and `\` is C's). */
const cstr = (s: string): string => JSON.stringify(s);

// Guest paths the program reads; each name holds characters the tuple syntax gives a meaning to.
const G_FILE = '/dir with space/f"q.txt';
const G_ODD = "/#etc/a:b (c)|d\\e";
const G_EMPTY = "/dir with space/empty dir";
const G_LINK = "/link to file";
const FILE_TEXT = 'baked "content"\nline 2 \\ end\n';
const ODD_TEXT = "odd # name\n";

const ARGS = [
  "/app/prog",
  "a b",
  "",
  'q"uote',
  "back\\slash",
  "#hash",
  "k:v",
  "(p)",
  "[v]",
  "x|y",
  "/p/q",
  "last",
];
const ENV: Record<string, string> = {
  EMPTY: "",
  SPACE: "hi there",
  QUOTE: 'say "hi"',
  BACK: "C:\\dir\\",
  HASH: "#not a comment",
  URL: "http://h:1/p?q=(1)&r=[2]|3",
  NL: "two\nlines",
};

const PROGRAM_C = `#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
extern char **environ;
static void esc(const char *tag, const char *s, size_t n) {
  printf("T:%s=", tag);
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c >= 0x20 && c < 0x7f && c != 0x5c) putchar(c); else printf("\\\\x%02x", c);
  }
  putchar('\\n');
}
static void cat(const char *tag, const char *path) {
  char buf[4096];
  int fd = open(path, O_RDONLY);
  if (fd < 0) { printf("T:%s=open failed errno %d\\n", tag, errno); return; }
  ssize_t n = read(fd, buf, sizeof buf);
  close(fd);
  esc(tag, buf, n < 0 ? 0 : (size_t)n);
}
int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IONBF, 0);
  printf("T:ARGC=%d\\n", argc);
  for (int i = 0; i < argc; i++) esc("ARGV", argv[i], strlen(argv[i]));
  for (char **e = environ; *e; e++) esc("ENV", *e, strlen(*e));
  cat("FILE", ${cstr(G_FILE)});
  cat("ODD", ${cstr(G_ODD)});
  char t[4096];
  ssize_t n = readlink(${cstr(G_LINK)}, t, sizeof t);
  esc("LINK", t, n < 0 ? 0 : (size_t)n);
  cat("VIALINK", ${cstr(G_LINK)});
  struct stat st;
  DIR *d = opendir(${cstr(G_EMPTY)});
  int entries = 0;
  if (d) { struct dirent *de; while ((de = readdir(d))) if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) entries++; closedir(d); }
  printf("T:EMPTYDIR=%s entries=%d\\n", stat(${cstr(G_EMPTY)}, &st) == 0 && S_ISDIR(st.st_mode) ? "dir" : "missing", entries);
  int m = memfd_create("t", 0);
  printf("T:MEMFD=%s\\n", m >= 0 ? "ok" : "failed");
  printf("T:END\\n");
  return ${EXIT_CODE};
}
`;

describe("a written manifest boots under Nanos", () => {
  let dir = "";
  let qemu = "";

  beforeAll(async () => {
    NANOS_DIR = nanosDir();
    for (const f of ["klibs/tmpfs", "klibs/shmem"]) {
      if (!existsSync(join(NANOS_DIR, f))) {
        throw new Error(`Nanos files: ${join(NANOS_DIR, f)} is missing (set MCP_NANOS_DIR)`);
      }
    }
    requireTools();
    qemu = QEMU;
    dir = await mkdtemp(join(tmpdir(), "mcp-nanos-"));
  }, 180_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test("argv, environment, files, empty dir, symlink and klibs as written; exit code through isa-debug-exit", async () => {
    // Host side: the program and the files to bake, under host paths that themselves need quoting.
    const hostDir = join(dir, "host dir", 'with "quote" #1');
    await mkdir(hostDir, { recursive: true });
    await writeFile(join(dir, "prog.c"), PROGRAM_C);
    const cc = await run(["gcc", "-static", "-O2", "-o", join(hostDir, "prog"), join(dir, "prog.c")], {
      timeoutMs: 60_000,
    });
    expect(cc.stderr).toBe("");
    expect(cc.code).toBe(0);
    await writeFile(join(hostDir, 'f"q.txt'), FILE_TEXT);
    await writeFile(join(hostDir, "odd"), ODD_TEXT);

    const d = (entries: [string, GuestNode][]): GuestDir => ({ kind: "dir", children: new Map(entries) });
    const root = d([
      ["app", d([["prog", { kind: "file", host: join(hostDir, "prog") }]])],
      [
        "dir with space",
        d([
          ['f"q.txt', { kind: "file", host: join(hostDir, 'f"q.txt') }],
          ["empty dir", d([])],
        ]),
      ],
      ["#etc", d([["a:b (c)|d\\e", { kind: "file", host: join(hostDir, "odd") }]])],
      ["link to file", { kind: "symlink", target: G_FILE }],
    ]);
    const manifest = writeManifest({
      root,
      program: "/app/prog",
      args: ARGS,
      environment: ENV,
      klibs: { tmpfs: join(NANOS_DIR, "klibs", "tmpfs"), shmem: join(NANOS_DIR, "klibs", "shmem") },
    });
    await writeFile(join(dir, "app.manifest"), manifest); // kept beside the image for a failing run's reader

    const img = join(dir, "out.img");
    const mk = await run(
      [
        join(NANOS_DIR, "mkfs"),
        "-b",
        join(NANOS_DIR, "boot.img"),
        "-k",
        join(NANOS_DIR, "kernel.img"),
        "-t",
        "(debug_exit:t)",
        img,
      ],
      { input: manifest, timeoutMs: 30_000 },
    );
    // mkfs prints its errors on stdout (README §1).
    if (mk.code !== 0) throw new Error(`mkfs exited ${mk.code}: ${mk.stdout}${mk.stderr}`);

    const serial = join(dir, "serial.log");
    const argv = [
      qemu,
      ...["-machine", "q35", "-accel", "tcg", "-m", "64M", "-smp", "1", "-display", "none"],
      ...["-serial", `file:${serial}`, "-no-reboot", "-device", "isa-debug-exit"],
      ...[
        "-drive",
        `if=none,id=hd0,format=raw,file=${img},snapshot=on`,
        "-device",
        "virtio-blk-pci,drive=hd0",
      ],
    ];
    const started = performance.now();
    const p = Bun.spawn(argv, { stdin: "ignore", stdout: "pipe", stderr: "pipe" });
    const deadline = killAfter(p, BOOT_TIMEOUT_MS);
    const [status, qerr] = await Promise.all([p.exited, new Response(p.stderr).text()]);
    deadline.clear();
    const ms = Math.round(performance.now() - started);
    const log = existsSync(serial) ? readFileSync(serial, "utf8").replaceAll("\r", "") : "";
    console.log(`nanos boot (TCG): qemu exited ${status} after ${ms} ms`);
    if (deadline.timedOut)
      throw new Error(`qemu killed after ${BOOT_TIMEOUT_MS} ms; stderr: ${qerr}\nserial:\n${log}`);

    const lines = log.split("\n").filter((l) => l.startsWith("T:"));
    const values = (tag: string): string[] =>
      lines.filter((l) => l.startsWith(`T:${tag}=`)).map((l) => l.slice(tag.length + 3));
    expect(lines.at(-1), `serial log:\n${log}\nqemu stderr: ${qerr}`).toBe("T:END");
    expect(values("ARGC")).toEqual([String(ARGS.length)]);
    expect(values("ARGV")).toEqual(ARGS.map(esc));
    // Nanos adds no variable of its own: the environment is exactly the manifest's.
    expect(values("ENV").sort()).toEqual(
      Object.entries(ENV)
        .map(([k, v]) => esc(`${k}=${v}`))
        .sort(),
    );
    expect(values("FILE")).toEqual([esc(FILE_TEXT)]);
    expect(values("ODD")).toEqual([esc(ODD_TEXT)]);
    expect(values("LINK")).toEqual([esc(G_FILE)]);
    expect(values("VIALINK")).toEqual([esc(FILE_TEXT)]);
    expect(values("EMPTYDIR")).toEqual(["dir entries=0"]);
    // memfd_create needs the tmpfs and shmem klibs (README §6): proof the boot tree was read.
    expect(values("MEMFD")).toEqual(["ok"]);
    expect(status).toBe((EXIT_CODE << 1) | 1);
  }, 120_000);
});
