// [runtimes.unikernel] as the agent reads it (daemon.ts buildUnikernel): the Nanos files and mkfs
// are checked at start and a bad one is refused naming its key; the state directory defaults beside
// the registry. And the node offers the runtime only when QEMU answers (agent.ts offeredUnikernel):
// a QEMU that does not run leaves the node with containers only and one warning saying why.
import { afterAll, describe, expect, test } from "bun:test";
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { parseAgentConfig } from "../../../src/config/agent.ts";
import { offeredUnikernel } from "../../../src/roles/agent/agent.ts";
import type { AgentSettings } from "../../../src/roles/agent/context.ts";
import { buildRuntime, buildUnikernel } from "../../../src/roles/agent/daemon.ts";
import { bareSpec } from "../../support/containers.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-ukcfg-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const file = join(dir, "mcp-agent.toml");
const silent = pino({ level: "silent" });

const nanos = join(dir, "nanos");
mkdirSync(nanos);
writeFileSync(join(nanos, "kernel.img"), "k");
writeFileSync(join(nanos, "boot.img"), "b");
writeFileSync(join(nanos, "mkfs"), "#!/bin/sh\n");
chmodSync(join(nanos, "mkfs"), 0o755);

function config(uk: Record<string, unknown>) {
  return parseAgentConfig(
    {
      server: { grpc_addr: "127.0.0.1:9444", tls_cert: "c.pem", tls_key: "k.pem" },
      database: { path: join(dir, "db", "mcp.db") },
      auth: { mode: "local", tokens: [{ name: "admin", role: "admin", sha256: "a".repeat(64) }] },
      runtimes: { unikernel: uk },
    },
    file,
  ).config;
}

function refusal(uk: Record<string, unknown>): string {
  try {
    const cfg = config(uk);
    buildUnikernel(cfg, file, buildRuntime(cfg), silent)?.close();
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

describe("[runtimes.unikernel]", () => {
  test("absent: no unikernel runtime", () => {
    const cfg = parseAgentConfig(
      {
        server: { grpc_addr: "127.0.0.1:9444", tls_cert: "c.pem", tls_key: "k.pem" },
        auth: { mode: "local", tokens: [{ name: "admin", role: "admin", sha256: "a".repeat(64) }] },
      },
      file,
    ).config;
    expect(buildUnikernel(cfg, file, buildRuntime(cfg), silent)).toBeUndefined();
  });

  test("a Nanos dir without kernel.img or a mkfs that is not executable: refused with the key", () => {
    expect(refusal({ nanos_dir: dir, mkfs: join(nanos, "mkfs") })).toBe(
      `${file}: runtimes.unikernel.nanos_dir: ${dir} has no kernel.img (expected a Nanos release)`,
    );
    expect(refusal({ nanos_dir: nanos, mkfs: join(nanos, "kernel.img") })).toBe(
      `${file}: runtimes.unikernel.mkfs: ${join(nanos, "kernel.img")} is not an executable file`,
    );
    expect(refusal({ nanos_dir: nanos })).toMatch(/runtimes\.unikernel\.mkfs/);
    // A state directory under a regular file cannot be created: its key, not a stack trace.
    expect(
      refusal({ nanos_dir: nanos, mkfs: join(nanos, "mkfs"), state_dir: join(nanos, "kernel.img", "vm") }),
    ).toBe(`${file}: runtimes.unikernel.state_dir: cannot use ${join(nanos, "kernel.img", "vm")}: ENOTDIR`);
    expect(refusal({ nanos_dir: nanos, mkfs: "mkfs", accel: "fast" })).toMatch(/runtimes\.unikernel\.accel/);
  });

  test("relative paths are the config file's; state beside the registry by default", () => {
    const cfg = config({ nanos_dir: "nanos", mkfs: "nanos/mkfs", accel: "tcg" });
    const u = buildUnikernel(cfg, file, buildRuntime(cfg), silent)!;
    try {
      expect(u.accel).toEqual({ accel: "tcg", reason: 'accel = "tcg" in the agent config' });
      expect(u.describeRun(bareSpec("web-vm", "x:1")).join(" ")).toContain(
        `${join(dir, "db", "unikernel", "vms", "web-vm")}/qemu.pid`,
      );
    } finally {
      u.close();
    }
  });

  test("the node offers the runtime only when QEMU answers", async () => {
    const lines: string[] = [];
    const logger = pino({ level: "info" }, { write: (l: string) => void lines.push(l) });
    const base = config({ nanos_dir: nanos, mkfs: "nanos/mkfs", accel: "tcg", qemu: join(dir, "no-qemu") });
    const broken = buildUnikernel(base, file, buildRuntime(base), silent)!;
    const none = await offeredUnikernel({ unikernel: broken, logger } as unknown as AgentSettings);
    broken.close();
    expect(none).toBeUndefined();
    expect(lines.join("")).toContain("unikernel runtime not offered: QEMU did not answer");
    const good = config({ nanos_dir: nanos, mkfs: "nanos/mkfs", accel: "tcg" });
    const u = buildUnikernel(good, file, buildRuntime(good), silent)!;
    expect(await offeredUnikernel({ unikernel: u, logger } as unknown as AgentSettings)).toBe(u);
    u.close();
  });
});
