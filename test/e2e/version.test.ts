// e2e: the shipped binaries. Both architectures carry the same baked-in version, are ELF files for
// the right machine, answer `--version` under any name (mcp, mcp-agent), and the build's version
// override and ssh2 native-addon stub really work in a compiled executable.
import { afterAll, describe, expect, test } from "bun:test";
import {
  closeSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stubNativeAddons } from "../../scripts/build.ts";
import { mcpArm64Binary, mcpBinary, qemuArm64, REPO_ROOT, runMcp } from "../support/binary.ts";

const VERSION_LINE = /^mcp \S+\n$/;
const BUN = join(REPO_ROOT, "node_modules", ".bin", "bun");

const tmpRoot = mkdtempSync(join(tmpdir(), "mcp-version-test-"));
afterAll(() => rmSync(tmpRoot, { recursive: true, force: true }));

// Reads e_ident and e_machine from the ELF header (no dependency on file(1)).
function elfHeader(path: string): {
  magic: boolean;
  class64: boolean;
  littleEndian: boolean;
  machine: number;
} {
  const h = Buffer.alloc(20);
  const fd = openSync(path, "r");
  try {
    readSync(fd, h, 0, 20, 0);
  } finally {
    closeSync(fd);
  }
  return {
    magic: h[0] === 0x7f && h.toString("latin1", 1, 4) === "ELF",
    class64: h[4] === 2,
    littleEndian: h[5] === 1,
    machine: h.readUInt16LE(18),
  };
}

describe("compiled binaries", () => {
  test("x64 binary is a 64-bit little-endian ELF for x86-64", () => {
    expect(elfHeader(mcpBinary())).toEqual({ magic: true, class64: true, littleEndian: true, machine: 0x3e });
  });

  test("arm64 binary is a 64-bit little-endian ELF for aarch64", () => {
    expect(elfHeader(mcpArm64Binary())).toEqual({
      magic: true,
      class64: true,
      littleEndian: true,
      machine: 0xb7,
    });
  });

  test("x64 and arm64 (under qemu) print the same version line", async () => {
    const x64 = await runMcp(["--version"]);
    expect(x64.stderr).toBe("");
    expect(x64.code).toBe(0);
    expect(x64.stdout).toMatch(VERSION_LINE);
    // "dev" is main.ts's fallback when MCP_VERSION was not defined: the build must bake a version in.
    expect(x64.stdout).not.toBe("mcp dev\n");

    const arm = await runMcp(["--version"], { ...qemuArm64, bin: mcpArm64Binary(), timeoutMs: 60_000 });
    expect(arm.stderr).toBe("");
    expect(arm.code).toBe(0);
    expect(arm.stdout).toBe(x64.stdout);
  });

  test("invoked as mcp-agent through a symlink, --version still works", async () => {
    const dir = mkdtempSync(join(tmpRoot, "agent-"));
    const agent = join(dir, "mcp-agent");
    symlinkSync(mcpBinary(), agent);
    const main = await runMcp(["--version"]);
    const viaAgent = await runMcp(["--version"], { bin: agent, cwd: dir });
    expect(viaAgent.code).toBe(0);
    expect(viaAgent.stdout).toMatch(VERSION_LINE);
    expect(viaAgent.stdout).toBe(main.stdout);
  });

  test("the binary ignores a bunfig.toml in its working directory", async () => {
    const dir = mkdtempSync(join(tmpRoot, "cwd-"));
    // With autoloadBunfig on, this missing preload makes the binary exit 1 ("preload not found").
    writeFileSync(join(dir, "bunfig.toml"), 'preload = ["./does-not-exist.ts"]\n');
    const r = await runMcp(["--version"], { cwd: dir });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(VERSION_LINE);
  });
});

describe("build script", () => {
  test("MCP_BUILD_VERSION overrides the baked-in version (built into a temp dir, not dist/)", async () => {
    const outdir = join(tmpRoot, "build-override");
    const build = Bun.spawnSync(
      [BUN, join(REPO_ROOT, "scripts", "build.ts"), "--target", "x64", "--outdir", outdir],
      {
        cwd: REPO_ROOT,
        env: { ...process.env, MCP_BUILD_VERSION: "9.8.7-e2e" },
        stdout: "pipe",
        stderr: "pipe",
        timeout: 120_000,
      },
    );
    expect(build.stderr.toString()).toBe("");
    expect(build.exitCode).toBe(0);
    const r = await runMcp(["--version"], { bin: join(outdir, "mcp-linux-x64") });
    expect(r.stdout).toBe("mcp 9.8.7-e2e\n");
    rmSync(outdir, { recursive: true, force: true });
  });

  test("rejects a bad --target with one clear line", () => {
    const r = Bun.spawnSync([BUN, join(REPO_ROOT, "scripts", "build.ts"), "--target", "sparc"], {
      cwd: REPO_ROOT,
      stdout: "pipe",
      stderr: "pipe",
    });
    expect(r.exitCode).toBe(2);
    expect(r.stderr.toString()).toBe("build: --target must be x64, arm64 or all, got 'sparc'\n");
  });

  // Without the stub, bun embeds ssh2's .node addons and extracts them into $TMPDIR on every start.
  test("ssh2 native addons are stubbed: a compiled ssh2 program extracts no .node files and uses node:crypto", async () => {
    const dir = mkdtempSync(join(tmpRoot, "ssh2-"));
    symlinkSync(join(REPO_ROOT, "node_modules"), join(dir, "node_modules"));
    const entry = join(dir, "entry.ts");
    writeFileSync(
      entry,
      [
        'import { utils } from "ssh2";',
        'const k = utils.generateKeyPairSync("ed25519");',
        'console.log(k.public.startsWith("ssh-ed25519 ") ? "ok" : "bad");',
      ].join("\n"),
    );
    const compile = async (plugins: Bun.BunPlugin[], outfile: string) => {
      await Bun.build({
        entrypoints: [entry],
        target: "bun",
        minify: true,
        bytecode: true,
        plugins,
        compile: { target: "bun-linux-x64", outfile, autoloadDotenv: false, autoloadBunfig: false },
      });
      const scratch = mkdtempSync(join(dir, "tmp-"));
      const r = await runMcp([], { bin: outfile, env: { TMPDIR: scratch } });
      const extracted = readdirSync(scratch).filter((f) => f.endsWith(".node"));
      rmSync(outfile, { force: true });
      return { ...r, extracted };
    };

    const stubbed = await compile([stubNativeAddons], join(dir, "with-stub"));
    expect(stubbed.stdout).toBe("ok\n");
    expect(stubbed.code).toBe(0);
    expect(stubbed.extracted).toEqual([]);

    // Control: proves the check above can see the problem the stub exists to prevent.
    const plain = await compile([], join(dir, "without-stub"));
    expect(plain.stdout).toBe("ok\n");
    expect(plain.extracted.length).toBeGreaterThan(0);
  });
});
