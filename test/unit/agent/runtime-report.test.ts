// What a node says about its runtimes (NodeStatus, Register, Heartbeat): the router's kinds, and
// the unikernel accelerator from the runtime's hook only when the node has that runtime.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../../src/registry/index.ts";
import { runtimeReport } from "../../../src/roles/agent/status.ts";
import { PodmanRuntime } from "../../../src/runtime/podman.ts";
import { RuntimeRouter } from "../../../src/runtime/router.ts";
import type { RuntimeKind } from "../../../src/runtime/runtime.ts";
import { testAgentContext } from "../../support/agent-context.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-runtime-report-"));
const registry = openRegistry(join(dir, "mcp.db"));
afterAll(() => {
  registry.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A runtime object of kind "unikernel" (never called: only its kind is read here). */
class UnikernelKind extends PodmanRuntime {
  override readonly kind: RuntimeKind = "unikernel";
}

const containers = new PodmanRuntime({ globalArgs: [], env: {} });
const hook = () => ({ accel: "tcg", reason: "/dev/kvm missing" });

describe("runtimeReport", () => {
  test("container-only node: its kinds and no accelerator, even if a hook answers", () => {
    const ctx = testAgentContext({ runtime: containers, registry });
    expect(runtimeReport(ctx)).toEqual({
      runtimes: ["container"],
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
    ctx.unikernelInfo = hook;
    expect(runtimeReport(ctx)).toEqual({
      runtimes: ["container"],
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
  });

  test("a node with the unikernel runtime reports the hook's accelerator and why", () => {
    const ctx = testAgentContext({ runtime: containers, registry });
    ctx.runtime = new RuntimeRouter({
      runtimes: [new UnikernelKind({ globalArgs: [], env: {} }), containers],
    });
    expect(runtimeReport(ctx)).toEqual({
      runtimes: ["container", "unikernel"],
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
    ctx.unikernelInfo = hook;
    expect(runtimeReport(ctx)).toEqual({
      runtimes: ["container", "unikernel"],
      unikernelAccel: "tcg",
      unikernelAccelReason: "/dev/kvm missing",
    });
    ctx.unikernelInfo = () => undefined;
    expect(runtimeReport(ctx).unikernelAccel).toBe("");
  });
});
