// The staging walk (src/runtime/nanos/stage.ts) through the real mkfs: a staging tree holding a symlink to
// /etc/hostname and one to a host file with a unique marker (both outside the staging root) is staged,
// written with the manifest writer and baked with mkfs; `dump -t` shows both as links in the image with
// their text as is, and neither host file's bytes are in the image, while a regular staged file's marker is
// (the positive control that the byte search would see baked content). No boot.
//
// Needs the Nanos files (boot.img, kernel.img, mkfs, dump) from $MCP_NANOS_DIR, default
// `<repo>/../shared/unikernel`, else /work/shared/unikernel (never copied into the repository).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run as exec } from "../../src/runtime/exec.ts";
import { writeManifest } from "../../src/runtime/nanos/manifest.ts";
import { stageTree } from "../../src/runtime/nanos/stage.ts";
import { nanosDir } from "../support/unikernel.ts";

let NANOS_DIR = "";

/** argv to completion (30 s at most), stdout and stderr as one text. */
async function run(argv: string[], input?: string): Promise<{ code: number; out: string }> {
  const r = await exec(argv, { input, timeoutMs: 30_000 });
  return { code: r.code, out: r.stdout + r.stderr };
}

const contains = (hay: Uint8Array, needle: string): boolean => Buffer.from(hay).includes(Buffer.from(needle));

let tmp: string;
beforeAll(() => {
  NANOS_DIR = nanosDir();
  tmp = mkdtempSync(join(tmpdir(), "mcp-stage-int-"));
});
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe("staging walk through mkfs", () => {
  test("links to host files are links in the image; the host files' bytes are not baked", async () => {
    const marker = `HOST-SECRET-${crypto.randomUUID()}`;
    const baked = `BAKED-${crypto.randomUUID()}`;
    const hostFile = join(tmp, "host-secret");
    writeFileSync(hostFile, `${marker}\n`);
    const root = join(tmp, "staging");
    mkdirSync(join(root, "etc"), { recursive: true });
    mkdirSync(join(root, "srv", "demo", "vol"), { recursive: true });
    mkdirSync(join(root, "app"));
    writeFileSync(join(root, "app", "server"), "not run here");
    writeFileSync(join(root, "srv", "demo", "msg.txt"), `${baked}\n`);
    symlinkSync("/etc/hostname", join(root, "etc", "hostname")); // as in an OCI image
    symlinkSync(hostFile, join(root, "srv", "demo", "vol", "leak")); // as in a volume directory

    const t = stageTree(root);
    expect(t.skipped).toEqual([]);
    const manifest = writeManifest({
      root: t.root,
      program: "/app/server",
      args: ["server"],
      environment: {},
    });
    const img = join(tmp, "app.img");
    const mk = await run(
      [join(NANOS_DIR, "mkfs"), "-b", join(NANOS_DIR, "boot.img"), "-k", join(NANOS_DIR, "kernel.img"), img],
      manifest,
    );
    if (mk.code !== 0) throw new Error(`mkfs exited ${mk.code}: ${mk.out}`);

    const dump = await run([join(NANOS_DIR, "dump"), "-t", img]);
    expect(dump.code).toBe(0);
    // biome-ignore lint/suspicious/noControlCharactersInRegex: dump -t writes ANSI colour codes
    const tree = dump.out.replace(/\x1b\[[0-9;]*m/g, "");
    expect(tree).toMatch(/^hostname -> \/etc\/hostname$/m);
    expect(tree).toMatch(new RegExp(`^leak -> ${hostFile.replaceAll("/", "\\/")}$`, "m"));
    expect(tree).toMatch(/^msg\.txt$/m);

    const bytes = readFileSync(img);
    expect(contains(bytes, baked)).toBe(true); // positive control: baked content is findable
    expect(contains(bytes, marker)).toBe(false);
  });
});
