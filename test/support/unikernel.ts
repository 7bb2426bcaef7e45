// Test support for the unikernel runtime (issue 17): where the Nanos files are (never copied into the
// repository), the fixture HTTP server (test/fixtures/unikernel/httpd.c) built with `gcc -static` into
// FROM scratch OCI images pushed to a test registry, and the agent's `[runtimes.unikernel]` table.
// Images are built once per test process and registry (cached promises): CI time matters.
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { run } from "../../src/runtime/exec.ts";
import { type ImageSource, UnikernelRuntime } from "../../src/runtime/unikernel.ts";
import { REPO_ROOT } from "./binary.ts";
import { pidsWhereArgv, podman, pushToRegistry } from "./env.ts";

export const QEMU = "qemu-system-x86_64";
export const HTTPD_SOURCE = join(REPO_ROOT, "test", "fixtures", "unikernel", "httpd.c");

/**
 * The Nanos files: $MCP_NANOS_DIR, else ../shared/unikernel beside the repository (in a worktree under
 * /work/wt/<name>, /work/shared/unikernel is tried too, as the groundwork tests do); throws when incomplete.
 */
export function nanosDir(): string {
  const beside = resolve(REPO_ROOT, "..", "shared", "unikernel");
  const dir =
    process.env.MCP_NANOS_DIR ||
    [beside, "/work/shared/unikernel"].find((d) => existsSync(join(d, "kernel.img"))) ||
    beside;
  const missing = ["kernel.img", "boot.img", "mkfs", "dump"].filter((f) => !existsSync(join(dir, f)));
  if (missing.length > 0) {
    throw new Error(
      `Nanos files missing in ${dir}: ${missing.join(", ")} (set MCP_NANOS_DIR to a directory with kernel.img, boot.img, mkfs, dump)`,
    );
  }
  return dir;
}

/** QEMU and gcc from PATH (scripts/ci-deps.sh installs them); missing is a failure, never a skip. */
export function requireTools(): void {
  if (!Bun.which(QEMU)) throw new Error(`${QEMU} is missing: install qemu-system-x86 (scripts/ci-deps.sh)`);
  if (!Bun.which("gcc")) throw new Error("gcc is missing: install gcc and libc6-dev (scripts/ci-deps.sh)");
}

/**
 * A runtime over `dir` (Nanos files expected in dir/nanos, state in dir/state) whose mkfs is /bin/false,
 * accel tcg, and whose image source has every image and pulls nothing; `images` replaces its calls
 * (config() and exportRootfs() are not used unless given).
 */
export function offlineUnikernel(dir: string, images: Partial<ImageSource> = {}): UnikernelRuntime {
  return new UnikernelRuntime({
    nanosDir: join(dir, "nanos"),
    mkfs: "/bin/false",
    qemu: QEMU,
    accel: "tcg",
    stateDir: join(dir, "state"),
    images: {
      pull: async () => {},
      imageExists: async () => true,
      config: async () => {
        throw new Error("not used");
      },
      exportRootfs: async () => {},
      ...images,
    },
  });
}

export interface UnikernelConfig {
  nanosDir: string;
  stateDir: string;
  /** The `[runtimes.unikernel]` table, ready to append to an agent config. */
  toml: string;
}

/** `[runtimes.unikernel]` for an agent: Nanos files from nanosDir(), accel auto, state in `stateDir`. */
export function unikernelAgentConfig(
  stateDir: string,
  accel: "auto" | "kvm" | "tcg" = "auto",
): UnikernelConfig {
  const dir = nanosDir();
  const toml = [
    "",
    "[runtimes.unikernel]",
    `nanos_dir = ${JSON.stringify(dir)}`,
    `mkfs = ${JSON.stringify(join(dir, "mkfs"))}`,
    `qemu = ${JSON.stringify(QEMU)}`,
    `accel = ${JSON.stringify(accel)}`,
    `state_dir = ${JSON.stringify(stateDir)}`,
    "",
  ].join("\n");
  return { nanosDir: dir, stateDir, toml };
}

let binary: Promise<string> | undefined;

/**
 * The fixture server, `gcc -static -O2`, built once per source into the repository's .cache/
 * (ignored by git; kept between test processes, so nothing is left in /tmp: bun test does not run
 * process "exit" handlers, which left a temp dir per process before). Returns the binary's path.
 */
export function httpdBinary(): Promise<string> {
  binary ??= (async () => {
    requireTools();
    const hash = createHash("sha256").update(readFileSync(HTTPD_SOURCE)).digest("hex").slice(0, 16);
    const dir = join(REPO_ROOT, ".cache", "unikernel");
    const out = join(dir, `httpd-${hash}`);
    if (existsSync(out)) return out;
    await mkdir(dir, { recursive: true });
    // Built beside, then renamed: a concurrent test process never sees a half-written binary.
    const tmp = `${out}.${process.pid}.tmp`;
    const cc = await run(["gcc", "-static", "-O2", "-o", tmp, HTTPD_SOURCE], { timeoutMs: 120_000 });
    if (cc.code !== 0) {
      await rm(tmp, { force: true });
      throw new Error(`gcc -static of ${HTTPD_SOURCE} failed (${cc.code}): ${cc.stderr.trim()}`);
    }
    renameSync(tmp, out);
    return out;
  })();
  binary.catch(() => {
    binary = undefined;
  });
  return binary;
}

/**
 * The fixture server in a FROM scratch image in the local store only (`localhost/...`, for agents
 * with pull policy "never"): ENTRYPOINT ["/httpd"], or nothing to run with `entrypoint: false`.
 * The caller removes it (podman rmi) when done.
 */
export async function buildLocalHttpdImage(ref: string, opts: { entrypoint?: boolean } = {}): Promise<void> {
  const ctx = await mkdtemp(join(tmpdir(), "mcp-httpd-local-"));
  try {
    await mkdir(join(ctx, "rootfs"));
    await copyFile(await httpdBinary(), join(ctx, "rootfs", "httpd"));
    await chmod(join(ctx, "rootfs", "httpd"), 0o755);
    const entry = opts.entrypoint === false ? "" : 'ENTRYPOINT ["/httpd"]\n';
    await writeFile(join(ctx, "Containerfile"), `FROM scratch\nCOPY rootfs/ /\n${entry}`);
    const b = await podman("build", "-q", "-t", ref, "-f", join(ctx, "Containerfile"), ctx);
    if (b.code !== 0) throw new Error(`podman build of ${ref} failed (${b.code}): ${b.stderr}`);
  } finally {
    await rm(ctx, { recursive: true, force: true });
  }
}

/** The kinds of test image: the server; the server plus /etc/leak -> /etc/hostname; refused entrypoints. */
export type HttpdVariant = "plain" | "leak" | "script" | "arm64";

const REPO_NAMES: Record<HttpdVariant, string> = {
  plain: "mcp-test-httpd",
  leak: "mcp-test-httpd-leak",
  script: "mcp-test-script",
  arm64: "mcp-test-arm64",
};

/** An aarch64 ELF shipped by Debian's libc6-arm64-cross (installed by ci-deps for the arm64 tests). */
export const ARM64_ELF = "/usr/aarch64-linux-gnu/lib/libc.so.6";

const images = new Map<string, Promise<string>>();

/** Removes from the local store every image buildHttpdImage pushed in this process (by reference). */
export async function removeHttpdImages(): Promise<void> {
  const refs = await Promise.all([...images.values()].map((p) => p.catch(() => "")));
  images.clear();
  for (const ref of refs) if (ref) await podman("rmi", "--force", "--ignore", ref);
}

/**
 * Builds a FROM scratch image of `variant` and pushes it to `registry` ("127.0.0.1:PORT") as
 * `<registry>/<name>:<tag>`; once per process, registry and tag. Returns the pushed reference.
 *   plain:  /httpd (ENTRYPOINT ["/httpd"])
 *   leak:   the same plus /etc/leak, a symlink to /etc/hostname (the staging walk must keep it a link)
 *   script: /run.sh, a shell script, as the entrypoint (not an ELF)
 *   arm64:  /app, an aarch64 ELF, as the entrypoint
 */
export function buildHttpdImage(
  registry: string,
  tag: string,
  variant: HttpdVariant = "plain",
): Promise<string> {
  const key = `${registry}/${variant}:${tag}`;
  let p = images.get(key);
  if (!p) {
    p = buildImage(registry, tag, variant);
    images.set(key, p);
    p.catch(() => images.delete(key));
  }
  return p;
}

async function buildImage(registry: string, tag: string, variant: HttpdVariant): Promise<string> {
  const ctx = await mkdtemp(join(tmpdir(), "mcp-httpd-image-"));
  const local = `localhost/${REPO_NAMES[variant]}-${process.pid}:${tag}`;
  try {
    const rootfs = join(ctx, "rootfs");
    await mkdir(rootfs);
    let entry = "/httpd";
    if (variant === "plain" || variant === "leak") {
      await copyFile(await httpdBinary(), join(rootfs, "httpd"));
      await chmod(join(rootfs, "httpd"), 0o755);
    }
    if (variant === "leak") {
      await mkdir(join(rootfs, "etc"));
      await symlink("/etc/hostname", join(rootfs, "etc", "leak"));
    }
    if (variant === "script") {
      entry = "/run.sh";
      await writeFile(join(rootfs, "run.sh"), "#!/bin/sh\necho not an ELF\n", { mode: 0o755 });
    }
    if (variant === "arm64") {
      if (!existsSync(ARM64_ELF)) throw new Error(`${ARM64_ELF} is missing: install libc6-arm64-cross`);
      entry = "/app";
      await copyFile(ARM64_ELF, join(rootfs, "app"));
      await chmod(join(rootfs, "app"), 0o755);
    }
    // COPY of a directory keeps symlinks as symlinks (checked by the e2e test through `dump`).
    await writeFile(
      join(ctx, "Containerfile"),
      `FROM scratch\nCOPY rootfs/ /\nENTRYPOINT ${JSON.stringify([entry])}\n`,
    );
    const ref = `${registry}/${REPO_NAMES[variant]}:${tag}`;
    // Pushed by the image ID `build -q` prints. Seen once under parallel load: the tag was unknown to
    // the push right after a successful build; one more build+push then (bounded: two attempts).
    for (let attempt = 1; ; attempt++) {
      const b = await podman("build", "-q", "-t", local, "-f", join(ctx, "Containerfile"), ctx);
      if (b.code !== 0) throw new Error(`podman build of ${local} failed (${b.code}): ${b.stderr}`);
      const id = b.stdout.trim().split("\n").pop() ?? "";
      try {
        await pushToRegistry(/^[0-9a-f]{64}$/.test(id) ? id : local, ref);
        return ref;
      } catch (e) {
        if (attempt >= 2) throw e;
      }
    }
  } finally {
    await podman("rmi", "--force", "--ignore", local);
    await rm(ctx, { recursive: true, force: true });
  }
}

/** QEMU processes whose command line holds `-name <name>` (exact, as qemuArgv writes it), by pid. */
export function qemuPidsNamed(name: string): number[] {
  return pidsWhereArgv((argv) => {
    if (!(argv[0] ?? "").endsWith(QEMU)) return false;
    const i = argv.indexOf("-name");
    const v = i >= 0 ? (argv[i + 1] ?? "") : "";
    return v === name || v.startsWith(`${name},`);
  });
}
