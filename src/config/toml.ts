// Reading TOML config files: UTF-8 only, every failure one ConfigError naming the file (and line).
// Kept apart from load.ts (the zod side) so reading a file does not load the validation library:
// the CLI config is checked without zod when it is plain (cli-fast.ts).
import { readFileSync } from "node:fs";
import { parse as parseToml, TomlError } from "smol-toml";
import { ConfigError } from "./errors.ts";

/** Reads and parses a TOML file; every failure is a ConfigError naming the file (and line). */
export function loadToml(file: string): Record<string, unknown> {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "ENOENT") throw new ConfigError(file, "", "file not found");
    if (code === "EACCES") throw new ConfigError(file, "", "cannot read file: permission denied");
    if (code === "EISDIR") throw new ConfigError(file, "", "is a directory, expected a TOML file");
    throw new ConfigError(file, "", `cannot read file: ${(e as Error).message}`);
  }
  return parseTomlText(decodeUtf8(bytes, file), file);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * TOML files must be UTF-8. A lossy decode would turn a stray Latin-1 byte into U+FFFD and let it
 * through silently (e.g. into a user name or an env value), so invalid bytes are an error naming
 * the first line that has one.
 */
export function decodeUtf8(bytes: Uint8Array, file: string): string {
  try {
    return strictUtf8.decode(bytes);
  } catch {
    // Bounded: one decode per line until the bad one; only reached for a broken file.
    let start = 0;
    for (let line = 1; start <= bytes.length; line++) {
      let end = bytes.indexOf(0x0a, start);
      if (end < 0) end = bytes.length;
      try {
        strictUtf8.decode(bytes.subarray(start, end));
      } catch {
        throw new ConfigError(file, `line ${line}`, "invalid UTF-8 (TOML files must be UTF-8)", line);
      }
      start = end + 1;
    }
    throw new ConfigError(file, "", "invalid UTF-8 (TOML files must be UTF-8)");
  }
}

/** Parses TOML text; syntax errors become `<file>: line N: <reason>`. */
export function parseTomlText(text: string, file: string): Record<string, unknown> {
  try {
    return parseToml(text) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof TomlError) {
      // smol-toml's message carries a multi-line code excerpt; keep only the reason.
      const reason = (e.message.replace(/^Invalid TOML document: /, "").split("\n")[0] ?? "").trim();
      throw new ConfigError(file, `line ${e.line}`, reason || "invalid TOML", e.line);
    }
    throw new ConfigError(file, "", `invalid TOML: ${(e as Error).message}`);
  }
}
