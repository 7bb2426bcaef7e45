// Pid reuse (security review of issue 17): a VM's QEMU pid recorded in vm.json can be taken by
// another process after QEMU exits — for instance one in a container of another service, whose
// cmdline names the VM's pid file on purpose. The runtime must not take it for the VM (it would
// never restart the VM) nor signal it on stop.
import { afterEach, beforeEach, expect, test } from "bun:test";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stateFiles } from "../../../src/runtime/nanos/qemu.ts";
import type { UnikernelRuntime } from "../../../src/runtime/unikernel.ts";
import { offlineUnikernel } from "../../support/unikernel.ts";

let dir: string;
let rt: UnikernelRuntime;
let impostor: ChildProcess | null = null;

beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), "mcp-uk-pid-"));
  rt = offlineUnikernel(dir);
});

afterEach(() => {
  rt.close();
  if (impostor?.pid && impostor.exitCode === null) impostor.kill("SIGKILL");
  impostor = null;
  rmSync(dir, { recursive: true, force: true });
});

test("a process that took a VM's pid, with a cmdline naming its pid file, is not the VM and is not signalled", async () => {
  const vmDir = join(dir, "state", "vms", "web-app");
  mkdirSync(vmDir, { mode: 0o700 });
  // The impostor names the pid file in its argv, as QEMU's `-pidfile` does.
  impostor = spawn("sh", ["-c", "sleep 30; :", stateFiles(vmDir).pid], { stdio: "ignore" });
  const pid = impostor.pid!;
  // Right after spawn the child may not have exec'd yet: wait (bounded) for its argv.
  const cmdline = () => readFileSync(`/proc/${pid}/cmdline`, "utf8");
  for (let i = 0; i < 200 && !cmdline().includes(stateFiles(vmDir).pid); i++) await Bun.sleep(10);
  expect(cmdline()).toContain(stateFiles(vmDir).pid);
  // The record as boot wrote it for the QEMU that had this pid before (it started at another tick).
  const rec = {
    id: "a".repeat(64),
    name: "web-app",
    spec: { name: "web-app", image: "x", restart: "no" },
    createdAt: new Date().toISOString(),
    want: "running",
    pid,
    pidStart: "1",
    startedAt: new Date().toISOString(),
    exit: null,
    restarts: 0,
    image: join(dir, "state", "images", "k.img"),
  };
  writeFileSync(join(vmDir, "vm.json"), JSON.stringify(rec), { mode: 0o600 });

  expect((await rt.inspect("web-app"))?.state).toBe("exited");
  await rt.stop("web-app", 0);
  expect(impostor.exitCode).toBeNull();
  expect(impostor.signalCode).toBeNull();
  expect(() => process.kill(pid, 0)).not.toThrow();
});
