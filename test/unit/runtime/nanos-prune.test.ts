// The VM image cache prune (security review of issue 17): it runs after every deploy, while another
// service's VM may be building (a start, a restart, a policy restart). It must not delete the
// exported filesystem a build is about to read, nor an image no vm.json names yet.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ImageConfig } from "../../../src/runtime/nanos/oci.ts";
import type { UnikernelRuntime } from "../../../src/runtime/unikernel.ts";
import { bareSpec } from "../../support/containers.ts";
import { offlineUnikernel } from "../../support/unikernel.ts";

const ID = "ab".repeat(32);
let dir: string;
let rt: UnikernelRuntime;
let release: (c: ImageConfig) => void;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mcp-uk-prune-"));
  const configGate = new Promise<ImageConfig>((r) => {
    release = r;
  });
  rt = offlineUnikernel(dir, {
    // The build waits here, as it does on a real engine's `image inspect`.
    config: () => configGate,
    exportRootfs: async () => {
      throw new Error("the exported filesystem was deleted under the build");
    },
  });
});

afterEach(() => {
  rt.close();
  rmSync(dir, { recursive: true, force: true });
});

test("a prune while a VM builds keeps the exported filesystem the build reads", async () => {
  // The image's filesystem, exported earlier (an earlier deploy of the same image).
  const rootfs = join(dir, "state", "rootfs", ID);
  mkdirSync(rootfs, { recursive: true });
  writeFileSync(join(rootfs, "app"), "not an ELF");
  const running = rt.run(bareSpec("web-app", "reg/web:1", { restart: "no" })).catch((e: Error) => e);
  await Bun.sleep(20);
  // The deploy of another service finished: its image list does not name this one (for instance
  // the engine no longer answers for it), so only the build in flight protects it.
  await rt.prune(new Set());
  expect(existsSync(rootfs)).toBe(true);
  release({
    id: ID,
    architecture: "amd64",
    os: "linux",
    entrypoint: ["/app"],
    cmd: [],
    env: [],
    workingDir: "",
  });
  const err = await running;
  // The build went on with its filesystem: it got as far as the entrypoint check.
  expect(String(err)).toContain("entrypoint /app is not an ELF program");
});
