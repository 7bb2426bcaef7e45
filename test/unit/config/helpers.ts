// Temp-dir helpers for config tests: real files under the OS temp dir.

import { afterAll } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), "mcp-config-test-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

let counter = 0;
export function writeTemp(dir: string, text: string, name?: string): string {
  const file = join(dir, name ?? `f${counter++}.toml`);
  writeFileSync(file, text);
  return file;
}

/** Runs fn and returns what it threw (failing the test when it does not throw). */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    return e as Error;
  }
  throw new Error("expected the call to throw");
}
