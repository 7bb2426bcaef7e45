// Test support: locates the compiled mcp binary and runs it as a real process (argv, never a shell).
// e2e tests exercise the shipped artefact, so they go through here rather than importing src/.
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { killAfter } from "../../src/runtime/exec.ts";

/** Repository root (this file lives in test/support/). */
export const REPO_ROOT = resolve(import.meta.dir, "..", "..");

/** Path of the compiled x64 binary; env MCP_BIN overrides. Throws if it has not been built. */
export function mcpBinary(): string {
  const path = process.env["MCP_BIN"] || resolve(REPO_ROOT, "dist", "mcp-linux-x64");
  if (!existsSync(path)) {
    throw new Error(`mcp binary not found at ${path}: run \`npm run build\` first (or set MCP_BIN)`);
  }
  return path;
}

/** Path of the compiled arm64 binary (run it under qemu with qemuArm64). */
export function mcpArm64Binary(): string {
  const path = resolve(REPO_ROOT, "dist", "mcp-linux-arm64");
  if (!existsSync(path))
    throw new Error(`mcp arm64 binary not found at ${path}: run \`npm run build\` first`);
  return path;
}

export interface RunOptions {
  /** Merged over process.env (a value of undefined removes the variable). */
  env?: Record<string, string | undefined>;
  /** Written to stdin, which is then closed; without it stdin is /dev/null. */
  input?: string | Uint8Array;
  cwd?: string;
  /** Kill the process (SIGKILL) and reject after this long. Default 30 s. */
  timeoutMs?: number;
  /** Run this executable instead of mcpBinary() (e.g. a symlink named mcp-agent). */
  bin?: string;
  /** Prefix argv, e.g. ["qemu-aarch64-static"] to run an arm64 build. */
  wrapper?: readonly string[];
  /** Run as this user/group (setuid/setgid in the child; supplementary groups dropped). Root only. */
  uid?: number;
  gid?: number;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs `mcp ...args` to completion and returns its exit code and output. */
export async function runMcp(args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const bin = opts.bin ?? mcpBinary();
  const argv = [...(opts.wrapper ?? []), bin, ...args];
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...opts.env })) if (v !== undefined) env[k] = v;
  const input = typeof opts.input === "string" ? new TextEncoder().encode(opts.input) : opts.input;
  const proc = Bun.spawn(argv, {
    cwd: opts.cwd,
    env,
    uid: opts.uid,
    gid: opts.gid,
    stdin: input ?? "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const deadline = killAfter(proc, timeoutMs);
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (deadline.timedOut) {
      throw new Error(`${argv.join(" ")} timed out after ${timeoutMs} ms; stderr so far: ${stderr.trim()}`);
    }
    return { code, stdout, stderr };
  } finally {
    deadline.clear();
  }
}

/** Argv prefix and env that run an arm64 binary on this x64 host through qemu user emulation. */
export const qemuArm64: Required<Pick<RunOptions, "wrapper" | "env">> = {
  wrapper: ["qemu-aarch64-static"],
  env: { QEMU_LD_PREFIX: "/usr/aarch64-linux-gnu" },
};
