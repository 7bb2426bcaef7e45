// Security tests for the volume copy of unikernel images (nanos/copy.ts): what a service owner or a
// container sharing <srv_root>/<service>/ can plant must never bring a file the agent can read,
// but the service may not, into a VM image; and the hash that keys the image cache must not let two
// different trees share a key (the cache is shared by every service of the node).
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { copyTreeNoFollow, newContentHash } from "../../../src/runtime/nanos/copy.ts";
import { StageError } from "../../../src/runtime/nanos/stage.ts";

let base: string;

beforeEach(() => {
  base = mkdtempSync(join(tmpdir(), "mcp-nanos-copy-"));
});
afterEach(() => {
  rmSync(base, { recursive: true, force: true });
});

/** The agent's own files (a TLS key) and a service directory a container may write into. */
function layout() {
  const agent = join(base, "agent");
  mkdirSync(join(agent, "data"), { recursive: true });
  writeFileSync(join(agent, "data", "key.pem"), "AGENT PRIVATE KEY");
  const svc = join(base, "srv", "web");
  mkdirSync(svc, { recursive: true });
  return { agent, svc };
}

function copy(src: string) {
  const out = join(base, "stage");
  return { out, run: () => copyTreeNoFollow(src, out, newContentHash(), "component web/app: volume v") };
}

describe("copyTreeNoFollow: the volume's host path", () => {
  test("a directory of the path swapped for a symlink (not the last one) is refused, nothing copied", () => {
    const { agent, svc } = layout();
    // Checked as a real directory at deploy; swapped by a container sharing /srv/web afterwards.
    symlinkSync(agent, join(svc, "a"));
    const { out, run } = copy(join(svc, "a", "data"));
    let err: unknown;
    try {
      run();
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(StageError);
    expect((err as Error).message).toBe(
      `component web/app: volume v: host directory ${join(svc, "a", "data")} passes through the symlink ${join(svc, "a")}; a baked volume must name the real path`,
    );
    expect((err as Error).message).not.toContain("\n");
    expect(existsSync(join(out, "key.pem"))).toBe(false);
  });

  test("a symlink as the last component is refused", () => {
    const { agent, svc } = layout();
    symlinkSync(join(agent, "data"), join(svc, "data"));
    expect(() => copy(join(svc, "data")).run()).toThrow(/passes through the symlink .*\/srv\/web\/data;/);
  });

  test("/proc/self/root and /proc/self/cwd (magic links to the agent's view) are refused", () => {
    const { agent } = layout();
    expect(() => copy(`/proc/self/root${join(agent, "data")}`).run()).toThrow(
      /passes through the symlink \/proc\/self; /,
    );
    expect(() => copy("/proc/self/cwd").run()).toThrow(/passes through the symlink \/proc\/self;/);
  });

  test('a ".." segment is refused (the kernel resolves it through a symlink)', () => {
    const { svc } = layout();
    expect(() => copy(`${svc}/../../agent/data`).run()).toThrow(/has a "\.\." segment/);
  });

  test("a real path is copied as before", () => {
    const { svc } = layout();
    mkdirSync(join(svc, "site"));
    writeFileSync(join(svc, "site", "index.html"), "hello");
    const { out, run } = copy(join(svc, "site"));
    const res = run();
    expect(res.entries).toBe(1);
    expect(readFileSync(join(out, "index.html"), "utf8")).toBe("hello");
    expect(readdirSync(out)).toEqual(["index.html"]);
  });
});

describe("copyTreeNoFollow: the cache key", () => {
  function digestOf(files: Record<string, string>): string {
    const src = mkdtempSync(join(base, "src-"));
    for (const [n, c] of Object.entries(files)) writeFileSync(join(src, n), c, { mode: 0o644 });
    const h = newContentHash();
    copyTreeNoFollow(src, join(base, `out-${readdirSync(base).length}`), h, "v");
    return h.digest("hex");
  }

  test("two different trees never hash the same (file contents cannot imitate entries)", () => {
    // One file whose content spells the hash stream of a second file, and the two files.
    const mode = 0o644 & 0o755;
    const two = digestOf({ a: "x", b: "y" });
    const one = digestOf({ a: `x\0F\0b\0${mode}\0y` });
    expect(one).not.toBe(two);
  });
});
