// Which agent binary goes to a node (shared by `mcp agent upgrade` and `mcp node provision`):
// --binary when given, else this executable when the node has this machine's arch, else the
// sibling build `mcp-linux-<arch>` beside it (for amd64 also `mcp-linux-x64`, the name the build
// script gives it). Every candidate's ELF header is checked against the node's arch, so an x64
// binary never lands on an arm64 node. Also: the CLI's own version and a file's SHA-256.
import { createHash } from "node:crypto";
import { closeSync, createReadStream, existsSync, openSync, readSync, realpathSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import type { Arch } from "../../config/cli.ts";
import { CliError } from "./output.ts";

declare const MCP_VERSION: string;
/** The version compiled into this executable (same rule as src/main.ts). */
export const CLI_VERSION: string = typeof MCP_VERSION === "string" ? MCP_VERSION : "0.0.0-dev";

// ELF e_machine values (scripts/build.ts checks the same ones).
const ELF_MACHINE: Record<Arch, number> = { amd64: 0x3e, arm64: 0xb7 };

/** This machine's arch in node terms, or undefined when it is neither. */
export function hostArch(): Arch | undefined {
  if (process.arch === "x64") return "amd64";
  if (process.arch === "arm64") return "arm64";
  return undefined;
}

/** The arch an ELF file was built for; undefined when it is not an ELF of a known machine. */
export function elfArch(path: string): Arch | undefined {
  const head = Buffer.alloc(20);
  let n = 0;
  try {
    const fd = openSync(path, "r");
    try {
      n = readSync(fd, head, 0, 20, 0);
    } finally {
      closeSync(fd);
    }
  } catch {
    return undefined;
  }
  if (n < 20 || head[0] !== 0x7f || head.toString("latin1", 1, 4) !== "ELF") return undefined;
  const machine = head.readUInt16LE(18);
  return (Object.keys(ELF_MACHINE) as Arch[]).find((a) => ELF_MACHINE[a] === machine);
}

export interface AgentBinary {
  path: string;
  arch: Arch;
  /** flag: --binary; self: this executable; sibling: mcp-linux-<arch> beside it. */
  source: "flag" | "self" | "sibling";
  /**
   * The version the agent will report: this CLI's for self and siblings (built together);
   * for --binary, its `--version` output when it runs here, else undefined (not knowable).
   */
  version: string | undefined;
}

/** This process's executable when it is a compiled mcp (not the bun runtime running sources). */
export function selfExecutable(): string | undefined {
  const exe = process.execPath;
  const name = basename(exe);
  if (name === "bun" || name.startsWith("bun-") || name === "node") return undefined;
  return exe;
}

function siblingNames(arch: Arch): string[] {
  return arch === "amd64" ? ["mcp-linux-amd64", "mcp-linux-x64"] : ["mcp-linux-arm64"];
}

async function versionOf(path: string): Promise<string | undefined> {
  try {
    const p = Bun.spawn([path, "--version"], { stdout: "pipe", stderr: "ignore", stdin: "ignore" });
    const timer = setTimeout(() => p.kill("SIGKILL"), 10_000);
    const [out, code] = await Promise.all([new Response(p.stdout).text(), p.exited]);
    clearTimeout(timer);
    const m = /^mcp (\S+)/.exec(out.trim());
    return code === 0 && m ? m[1] : undefined;
  } catch {
    return undefined;
  }
}

/** Picks the binary for a node of `arch`; a missing or wrong-arch file is a CliError naming it. */
export async function agentBinaryFor(arch: Arch, opts: { binary?: string } = {}): Promise<AgentBinary> {
  if (opts.binary) {
    const path = opts.binary;
    if (!existsSync(path)) throw new CliError(`--binary ${path}: file not found`, 2);
    const got = elfArch(path);
    if (got !== arch) {
      throw new CliError(
        `--binary ${path}: ${got ? `built for ${got}` : "not a linux amd64/arm64 executable"}, the node is ${arch}`,
        2,
      );
    }
    const version = embeddedVersion(path) ?? (got === hostArch() ? await versionOf(path) : undefined);
    return { path, arch, source: "flag", version };
  }
  const self = selfExecutable();
  if (self && hostArch() === arch && elfArch(self) === arch) {
    return { path: self, arch, source: "self", version: CLI_VERSION };
  }
  const dirs = new Set<string>();
  if (self) {
    dirs.add(dirname(self));
    try {
      dirs.add(dirname(realpathSync(self)));
    } catch {
      // The executable vanished after start: only its recorded directory is left to look in.
    }
  }
  const tried: string[] = [];
  for (const dir of dirs) {
    for (const name of siblingNames(arch)) {
      const path = join(dir, name);
      tried.push(path);
      if (existsSync(path) && elfArch(path) === arch) {
        // A stale sibling from another build says so through its stamp.
        return { path, arch, source: "sibling", version: embeddedVersion(path) ?? CLI_VERSION };
      }
    }
  }
  throw new CliError(
    `no ${arch} agent binary: ${self ? `looked for ${tried.join(", ")}` : "not running as a compiled mcp"}; pass --binary <file>`,
    2,
  );
}

// What src/main.ts VERSION_STAMP compiles to. Written as a regex so this module's own bytes in
// the binary ("mcp-version:(") never match it.
const STAMP_RE = /mcp-version:([0-9A-Za-z][0-9A-Za-z.+_~-]{0,63});/;
const SCAN_CHUNK = 4 * 1024 * 1024;

/**
 * The version baked into an mcp build (its `mcp-version:<v>;` stamp), read from the file's bytes
 * so it works for a build of another arch that cannot run here; undefined when there is none.
 */
export function embeddedVersion(path: string): string | undefined {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch {
    return undefined;
  }
  try {
    const buf = Buffer.alloc(SCAN_CHUNK + 128);
    let carry = 0;
    let pos = 0;
    // Chunks overlap by 128 bytes so a stamp across a chunk boundary is still found.
    for (;;) {
      const n = readSync(fd, buf, carry, SCAN_CHUNK, pos);
      if (n <= 0) return undefined;
      pos += n;
      const m = STAMP_RE.exec(buf.toString("latin1", 0, carry + n));
      if (m) return m[1];
      const end = carry + n;
      carry = Math.min(128, end);
      buf.copy(buf, 0, end - carry, end);
    }
  } finally {
    closeSync(fd);
  }
}

/** Hex SHA-256 of a local file, streamed (agent binaries are ~100 MiB). */
export function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash("sha256");
    createReadStream(path)
      .on("data", (d) => h.update(d))
      .on("error", reject)
      .on("end", () => resolve(h.digest("hex")));
  });
}
