// How the CLI shows a node's runtimes: `mcp agent status` (the runtime column's note and --json)
// and the RUNTIMES column of `mcp node list`.
import { describe, expect, test } from "bun:test";
import { create } from "@bufbuild/protobuf";
import { NodeStatusResponseSchema } from "../../../src/gen/mcp/v1/mcp_pb.ts";
import { kindsNote, statusRow } from "../../../src/roles/cli/agent-status.ts";
import { runtimesCell } from "../../../src/roles/cli/views.ts";

const node = { name: "n1", address: "127.0.0.1:1", addresses: [], arch: "amd64" as const };

describe("agent status runtimes", () => {
  test("the unikernel runtime with its accelerator and why, in the row and its JSON", () => {
    const value = create(NodeStatusResponseSchema, {
      runtime: "podman",
      runtimes: ["container", "unikernel"],
      unikernelAccel: "tcg",
      unikernelAccelReason: "/dev/kvm missing",
    });
    const row = statusRow({ node, value });
    expect(row).toMatchObject({
      runtimes: ["container", "unikernel"],
      unikernelAccel: "tcg",
      unikernelAccelReason: "/dev/kvm missing",
    });
    expect(kindsNote(row)).toBe(" +unikernel (tcg: /dev/kvm missing)");
    expect(JSON.parse(JSON.stringify(row))).toMatchObject({ unikernelAccel: "tcg" });
  });

  test("container only: no note and no accelerator fields", () => {
    const row = statusRow({ node, value: create(NodeStatusResponseSchema, { runtimes: ["container"] }) });
    expect(kindsNote(row)).toBe("");
    expect("unikernelAccel" in row).toBe(false);
    expect("unikernelAccelReason" in row).toBe(false);
  });

  test("accelerator without a reason; an agent's control characters never reach the terminal", () => {
    expect(kindsNote({ runtimes: ["container", "unikernel"], unikernelAccel: "kvm" })).toBe(
      " +unikernel (kvm)",
    );
    expect(kindsNote({ runtimes: ["container", "unikernel"] })).toBe(" +unikernel");
    expect(
      kindsNote({
        runtimes: ["container", "unikernel"],
        unikernelAccel: "tcg",
        unikernelAccelReason: "a\u001b[2Jb\n",
      }),
    ).toBe(" +unikernel (tcg: a?[2Jb?)");
  });
});

describe("node list RUNTIMES column", () => {
  test("kinds joined by commas, '-' when not reported, only [a-z0-9-] shown", () => {
    expect(runtimesCell(["container"])).toBe("container");
    expect(runtimesCell(["container", "unikernel"])).toBe("container,unikernel");
    expect(runtimesCell([])).toBe("-");
    expect(runtimesCell(["contai\u001b[31mner", "\n"])).toBe("contai31mner");
  });
});
