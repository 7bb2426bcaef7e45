// The executor against real processes (busybox applets): exit codes, stdin, env, timeouts,
// missing binaries, error messages, and line streaming with kill.
import { describe, expect, test } from "bun:test";
import { RuntimeError, run, runOk, stderrSummary, streamLines } from "../../../src/runtime/exec.ts";

const BB = "/bin/busybox";

describe("run / runOk", () => {
  test("captures stdout, stderr and the exit code without a shell", async () => {
    const res = await run([BB, "sh", "-c", 'echo out "$1"; echo err >&2; exit 3', "sh", "a b;$(x)"]);
    expect(res).toEqual({ code: 3, stdout: "out a b;$(x)\n", stderr: "err\n" });
  });

  test("argv elements are passed verbatim (metacharacters are not interpreted)", async () => {
    const res = await run([BB, "echo", "$HOME", "`id`", "a;b", "*"]);
    expect(res.stdout).toBe("$HOME `id` a;b *\n");
  });

  test("input goes to stdin; env is merged over the process env", async () => {
    expect((await run([BB, "cat"], { input: "hello\nworld" })).stdout).toBe("hello\nworld");
    expect((await run([BB, "cat"], { input: new Uint8Array([104, 105]) })).stdout).toBe("hi");
    // biome-ignore lint/suspicious/noTemplateCurlyInString: shell parameter expansion, not a JS template
    const res = await run([BB, "sh", "-c", 'echo "$MCP_X:${PATH:+haspath}"'], { env: { MCP_X: "y" } });
    expect(res.stdout).toBe("y:haspath\n");
  });

  test("runOk throws a RuntimeError carrying argv, code and stderr", async () => {
    const argv = [BB, "sh", "-c", "echo progress >&2; echo 'Error: no such thing' >&2; exit 125"];
    const e = await runOk(argv).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(RuntimeError);
    const err = e as RuntimeError;
    expect(err.argv).toEqual(argv);
    expect(err.code).toBe(125);
    expect(err.stderr).toContain("Error: no such thing");
    expect(err.message).toBe("busybox sh -c failed (exit 125): Error: no such thing");
  });

  test("runOk uses a given label and returns the result on success", async () => {
    const e = (await runOk([BB, "false"], { label: "podman stop web" }).catch((x: unknown) => x)) as Error;
    expect(e.message).toBe("podman stop web failed (exit 1): (no stderr)");
    expect((await runOk([BB, "echo", "ok"])).stdout).toBe("ok\n");
  });

  test("a timeout kills the process and throws", async () => {
    const t0 = performance.now();
    const e = (await run([BB, "sleep", "10"], { timeoutMs: 150 }).catch((x: unknown) => x)) as RuntimeError;
    expect(e).toBeInstanceOf(RuntimeError);
    expect(e.code).toBe(-1);
    expect(e.message).toBe("busybox sleep 10 timed out after 150 ms");
    expect(performance.now() - t0).toBeLessThan(3000);
  });

  test("a missing binary is one clear error, not a crash", async () => {
    const e = (await run(["/nonexistent/podman", "ps"]).catch((x: unknown) => x)) as RuntimeError;
    expect(e).toBeInstanceOf(RuntimeError);
    expect(e.code).toBe(127);
    expect(e.message).toContain("cannot execute /nonexistent/podman");
    expect(e.message.includes("\n")).toBe(false);
  });

  test("stderrSummary prefers podman's Error lines and stays on one line", () => {
    expect(stderrSummary("Trying to pull x...\nError: initializing source: boom\n")).toBe(
      "Error: initializing source: boom",
    );
    expect(stderrSummary("a\nb\nc\nd\n")).toBe("b | c | d");
    expect(stderrSummary("")).toBe("");
  });
});

describe("streamLines", () => {
  test("yields stdout and stderr lines and ends when the process exits", async () => {
    const s = streamLines([BB, "sh", "-c", "echo one; echo two >&2; printf 'three'"]);
    const lines: string[] = [];
    for await (const l of s.lines) lines.push(l);
    expect(lines.sort()).toEqual(["one", "three", "two"]);
    expect(await s.exited).toBe(0);
  });

  test("kill() ends a never-ending stream", async () => {
    const s = streamLines([BB, "sh", "-c", "echo first; exec sleep 30"]);
    const got: string[] = [];
    const t0 = performance.now();
    for await (const l of s.lines) {
      got.push(l);
      s.kill();
    }
    expect(got).toEqual(["first"]);
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(await s.exited).not.toBe(0);
  });

  test("breaking out of the loop kills the process", async () => {
    const s = streamLines([BB, "sh", "-c", "while true; do echo tick; sleep 0.05; done"]);
    let n = 0;
    for await (const _ of s.lines) {
      if (++n === 3) break;
    }
    expect(n).toBe(3);
    expect(await s.exited).not.toBe(0);
  });
});
