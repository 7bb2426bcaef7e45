// The unikernel component rules (config/unikernel.ts): each field a Nanos VM cannot honour is
// refused at validation with its key, one line; what it can honour passes. The same rules guard
// the runtime (vmSpecProblem), so a spec from the registry is refused the same way.
import { describe, expect, test } from "bun:test";
import { parseServiceDef } from "../../../src/config/service.ts";
import { unikernelProblems, vmMemoryMiB } from "../../../src/config/unikernel.ts";
import { exitCodeOf, shouldRestart, vmSpecProblem } from "../../../src/runtime/unikernel.ts";
import { bareSpec } from "../../support/containers.ts";

const ok = {
  memory: "64m",
  user: "",
  network: "user",
  ports: ["127.0.0.1:18080:8080"],
  volumes: ["/srv/web:/srv/web"],
  restart: "unless-stopped",
};

function refusal(component: Record<string, unknown>): string {
  try {
    parseServiceDef(
      { name: "web", components: [{ name: "vm", image: "reg/web:1", runtime: "unikernel", ...component }] },
      "web.toml",
    );
  } catch (e) {
    return (e as Error).message;
  }
  return "";
}

describe("unikernel component rules", () => {
  test("a component a VM can run has no problems; memory defaults to 64 MiB", () => {
    expect(unikernelProblems(ok)).toEqual([]);
    expect(unikernelProblems({ ...ok, memory: "", network: "", ports: [] })).toEqual([]);
    expect(vmMemoryMiB("")).toBe(64);
    expect(vmMemoryMiB("1g")).toBe(1024);
  });

  test.each([
    [
      { memory: "16m" },
      /components\[0\]\.memory: 16m is below the 32 MiB a Nanos VM needs \(component "vm" runs as a unikernel\)/,
    ],
    [
      { network: "host" },
      /components\[0\]\.network: "host" is not available to a unikernel \(use "user" or "none"\)/,
    ],
    [{ ports: ["8080:8080"] }, /components\[0\]\.ports: need network = "user"/],
    [{ network: "user", ports: ["[::1]:8080:80"] }, /IPv4 host addresses only/],
    [{ user: "1000" }, /components\[0\]\.user: cannot be set for a unikernel/],
    [{ volumes: ["data:/data"] }, /a named volume cannot be baked/],
    [{ volumes: ["/srv/web:/srv/web:rw"] }, /option rw has no meaning for a baked copy/],
    [
      { volumes: ["/srv/web:/"] },
      /volumes: \/srv\/web:\/: target "\/" would replace the image's whole filesystem/,
    ],
    [
      { volumes: ["/srv/web:/srv/../etc"] },
      /volumes: \/srv\/web:\/srv\/\.\.\/etc: target has a "\." or "\.\." segment/,
    ],
    [
      { health: { type: "exec", cmd: ["true"] } },
      /components\[0\]\.health: an exec health check cannot run in a unikernel \(no exec\)/,
    ],
  ])("refused at validation: %j", (c, re) => {
    const msg = refusal(c);
    expect(msg).toMatch(re);
    expect(msg.split("\n")).toHaveLength(1);
    expect(msg).toStartWith("web.toml: ");
  });

  test("the same fields on a container component are not a unikernel's business", () => {
    expect(
      refusal({
        runtime: "container",
        memory: "16m",
        network: "host",
        user: "1000",
        volumes: ["data:/data"],
      }),
    ).toBe("");
  });

  test("the runtime refuses a spec from anywhere with the same rule", () => {
    const spec = bareSpec("web-vm", "reg/web:1", { network: "none", memory: "8m", runtime: "unikernel" });
    expect(vmSpecProblem(spec)).toBe("component web-vm: memory 8m is below the 32 MiB a Nanos VM needs");
    expect(vmSpecProblem({ ...spec, memory: "" })).toBeNull();
    expect(vmSpecProblem({ ...spec, memory: "", restart: "sometimes" })).toMatch(
      /restart "sometimes" is not a policy/,
    );
  });
});

describe("VM exits and the restart policy", () => {
  test("isa-debug-exit statuses give the program's code; signals 128+n; host-initiated 0", () => {
    expect(exitCodeOf(7, null)).toBe(3); // program exit 3 → (3<<1)|1
    expect(exitCodeOf(1, null)).toBe(0);
    expect(exitCodeOf(31, null)).toBe(15);
    expect(exitCodeOf(0, null)).toBe(0); // QMP quit, SIGTERM to QEMU
    expect(exitCodeOf(null, "SIGKILL")).toBe(137);
    expect(exitCodeOf(null, null)).toBeNull();
  });

  test.each([
    ["always", 0, 0, true],
    ["unless-stopped", 0, 5, true],
    ["no", 1, 0, false],
    ["", 1, 0, false],
    ["on-failure", 0, 0, false],
    ["on-failure", 1, 9, true],
    ["on-failure", null, 0, true],
    ["on-failure:2", 1, 1, true],
    ["on-failure:2", 1, 2, false],
  ] as const)("policy %s, exit %p after %d restarts → restart %p", (p, code, n, want) => {
    expect(shouldRestart(p, code, n)).toBe(want);
  });
});
