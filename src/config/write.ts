// Writing config files: TOML value encoding for the hand-laid-out files this
// layer writes (service definitions, CLI config) and atomic replacement.
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from "node:fs";
import { basename, dirname, join } from "node:path";
import { ConfigError } from "./errors.ts";

/** A TOML basic string; every control character is escaped as TOML requires. */
export function tomlString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"') out += '\\"';
    else if (ch === "\\") out += "\\\\";
    else if (ch === "\n") out += "\\n";
    else if (ch === "\t") out += "\\t";
    else if (ch === "\r") out += "\\r";
    else if (code < 0x20 || code === 0x7f) out += `\\u${code.toString(16).padStart(4, "0")}`;
    else out += ch;
  }
  return `${out}"`;
}

export function tomlKey(k: string): string {
  return /^[A-Za-z0-9_-]+$/.test(k) ? k : tomlString(k);
}

/** Inline array of strings, one item per line when it would not fit on one line. */
export function tomlStringArray(items: readonly string[]): string {
  const parts = items.map(tomlString);
  const inline = `[${parts.join(", ")}]`;
  if (inline.length <= 80) return inline;
  return `[\n${parts.map((p) => `  ${p},`).join("\n")}\n]`;
}

/** temp file in the same directory + fsync + rename, keeping the original file mode. */
export function writeFileAtomic(file: string, content: string, mode?: number): void {
  let fileMode = mode;
  if (fileMode === undefined) {
    try {
      fileMode = statSync(file).mode & 0o7777;
    } catch {
      fileMode = 0o644;
    }
  }
  mkdirSync(dirname(file), { recursive: true });
  const tmp = join(
    dirname(file),
    `.${basename(file)}.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`,
  );
  try {
    const fd = openSync(tmp, "wx", fileMode);
    try {
      writeSync(fd, content);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (e) {
    try {
      unlinkSync(tmp);
    } catch {
      // the temp file may not exist; the original error matters
    }
    throw new ConfigError(file, "", `cannot write file: ${(e as Error).message}`);
  }
}
