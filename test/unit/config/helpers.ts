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

/** The CLI config example of SPEC.md (every section), shared by the CLI config tests. */
export const SPEC_EXAMPLE = `[services]
dir = "/home/op/.config/mcp/services"
[mcias]
server_url = "https://mcias.example.net:8443"
ca_cert = ""
service_name = "mcp"
[auth]
token_path = "/home/op/.config/mcp/token"
[tls]
ca_cert = "/home/op/.config/mcp/ca.pem"
[master]
address = "rift.example.ts.net:9555"
[[nodes]]
name = "rift"
address = "100.95.252.120:9444"
addresses = ["192.168.88.181:9444"]
ssh = "rift"
arch = "amd64"
[[nodes]]
name = "orion"
address = "[fd7a:115c::1]:9444"
arch = "arm64"
`;
