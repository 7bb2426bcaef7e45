// e2e test of `mcp logs` through the COMPILED binary against a real local agent and real podman
// containers that print a counter line every 200 ms. Shows: --tail, prefixes with several
// components, -f showing a line written after the call started, Ctrl-C (SIGINT) ending the CLI
// quietly with exit 0, and — the point of the streaming design — that cancelling the stream, or
// killing the CLI outright, ends the agent's `podman logs --follow` process.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { mcpBinary } from "../support/binary.ts";
import { busyboxImage, pidsWhereArgv, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `logs-${rand()}`;
const MAIN = `${SVC}-main`;
const SIDE = `${SVC}-side`;

let agent: LocalAgent;

const loop = (word: string) => [
  "/bin/sh",
  "-c",
  `trap 'exit 0' TERM; i=0; while true; do echo ${word} $i; i=$((i+1)); sleep 0.2; done & wait`,
];

/** Pids of `podman … logs --follow … <container>` processes on this machine (read from /proc). */
function followers(container: string): number[] {
  return pidsWhereArgv(
    (argv) =>
      argv[0]?.split("/").pop() === "podman" &&
      argv.includes("logs") &&
      argv.includes("--follow") &&
      argv.includes(container),
  );
}

/** Polls until cond() holds or ms pass; returns whether it held. */
async function eventually(cond: () => boolean, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return true;
    await Bun.sleep(50);
  }
  return cond();
}

/** A spawned `mcp logs -f` whose stdout is collected as it arrives. */
function spawnFollow(args: string[]) {
  const proc = Bun.spawn([mcpBinary(), "logs", ...args], {
    env: { ...process.env, ...agent.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const state = { out: "", err: "" };
  const collect = async (s: ReadableStream<Uint8Array>, key: "out" | "err") => {
    const dec = new TextDecoder();
    for await (const chunk of s) state[key] += dec.decode(chunk, { stream: true });
  };
  const done = Promise.all([collect(proc.stdout, "out"), collect(proc.stderr, "err")]);
  return { proc, state, done };
}

/** Exit code of proc, or null if it is still running after ms. */
async function exitWithin(proc: ReturnType<typeof Bun.spawn>, ms: number): Promise<number | null> {
  const t = Bun.sleep(ms).then(() => null);
  return Promise.race([proc.exited, t]);
}

beforeAll(async () => {
  const [a, image] = await Promise.all([startLocalAgent(), busyboxImage()]);
  agent = a;
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    [
      `name = "${SVC}"`,
      "",
      "[[components]]",
      'name = "main"',
      `image = "${image}"`,
      `cmd = ${JSON.stringify(loop("line"))}`,
      "",
      "[[components]]",
      'name = "side"',
      `image = "${image}"`,
      `cmd = ${JSON.stringify(loop("side"))}`,
      "",
    ].join("\n"),
  );
  const r = await agent.mcp(["deploy", SVC, "--pull", "never"], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`deploy failed: ${r.stderr}${r.stdout}`);
  // Enough history for --tail to cut.
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    const l = await podman("logs", MAIN);
    if (l.stdout.split("\n").length >= 6) break;
    await Bun.sleep(200);
  }
}, 90_000);

afterAll(async () => {
  await removeContainers([MAIN, SIDE]);
  await agent?.stop();
}, 30_000);

describe("mcp logs (compiled binary, real agent, real podman)", () => {
  test("--tail 3 of one component prints its last 3 lines, unprefixed", async () => {
    const r = await agent.mcp(["logs", `${SVC}/main`, "--tail", "3"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(3);
    const n = lines.map((l) => Number(/^line (\d+)$/.exec(l)?.[1]));
    expect(n.every(Number.isInteger)).toBe(true);
    expect(n[1]).toBe(n[0]! + 1);
    expect(n[2]).toBe(n[0]! + 2);
  });

  test("without a component: every component's lines, prefixed `<comp> | `; --json gives one object per line", async () => {
    const r = await agent.mcp(["logs", SVC, "--tail", "2"]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(4);
    expect(lines.filter((l) => /^main \| line \d+$/.test(l))).toHaveLength(2);
    expect(lines.filter((l) => /^side \| side \d+$/.test(l))).toHaveLength(2);

    const j = await agent.mcp(["logs", `${SVC}/side`, "--tail", "2", "--json"]);
    expect(j.code).toBe(0);
    const objs = j.stdout
      .trimEnd()
      .split("\n")
      .map((l) => JSON.parse(l) as { component: string; line: string });
    expect(objs).toHaveLength(2);
    for (const o of objs) {
      expect(o.component).toBe("side");
      expect(o.line).toMatch(/^side \d+$/);
    }
  });

  test("-f shows a line written after the call started; SIGINT exits 0 quietly and kills the agent's podman logs", async () => {
    expect(followers(MAIN)).toEqual([]);
    const f = spawnFollow([`${SVC}/main`, "-f", "--tail", "1"]);
    try {
      expect(await eventually(() => /line \d+\n/.test(f.state.out), 10_000)).toBe(true);
      // The agent runs one follower for this container while the call is open.
      expect(await eventually(() => followers(MAIN).length === 1, 5_000)).toBe(true);

      const mark = `MARK-${rand()}`;
      const ex = await podman("exec", MAIN, "/bin/sh", "-c", `echo ${mark} > /proc/1/fd/1`);
      expect(ex.code).toBe(0);
      expect(await eventually(() => f.state.out.includes(`${mark}\n`), 10_000)).toBe(true);
      // Later counter lines keep arriving too: the stream is live, not a snapshot.
      const before = f.state.out.length;
      expect(await eventually(() => f.state.out.length > before, 5_000)).toBe(true);

      f.proc.kill("SIGINT");
      expect(await exitWithin(f.proc, 5_000)).toBe(0);
      await f.done;
      expect(f.state.err).toBe("");
      expect(await eventually(() => followers(MAIN).length === 0, 5_000)).toBe(true);
    } finally {
      f.proc.kill("SIGKILL");
    }
  }, 40_000);

  test("-f over several components merges both, and SIGKILL of the CLI still ends every agent-side follower", async () => {
    const last = await agent.mcp(["logs", `${SVC}/main`, "--tail", "1"]);
    const seen = Number(/^line (\d+)$/.exec(last.stdout.trim())?.[1]);
    expect(seen).toBeGreaterThan(0);
    const f = spawnFollow([SVC, "-f", "--tail", "0"]);
    try {
      expect(
        await eventually(
          () => /^main \| line \d+$/m.test(f.state.out) && /^side \| side \d+$/m.test(f.state.out),
          10_000,
        ),
      ).toBe(true);
      // --tail 0: only lines written after the call started, so the first is newer than `seen`
      // (with the whole history it would be "line 0").
      const first = Number(/^main \| line (\d+)$/m.exec(f.state.out)?.[1]);
      expect(first).toBeGreaterThan(seen);
      expect(followers(MAIN).length + followers(SIDE).length).toBe(2);

      f.proc.kill("SIGKILL");
      await f.proc.exited;
      expect(await eventually(() => followers(MAIN).length + followers(SIDE).length === 0, 10_000)).toBe(
        true,
      );
    } finally {
      f.proc.kill("SIGKILL");
    }
  }, 40_000);

  test("SIGTERM also ends -f with exit 0", async () => {
    const f = spawnFollow([`${SVC}/side`, "-f"]);
    try {
      expect(await eventually(() => /side \d+\n/.test(f.state.out), 10_000)).toBe(true);
      f.proc.kill("SIGTERM");
      expect(await exitWithin(f.proc, 5_000)).toBe(0);
      await f.done;
      expect(f.state.err).toBe("");
      expect(await eventually(() => followers(SIDE).length === 0, 5_000)).toBe(true);
    } finally {
      f.proc.kill("SIGKILL");
    }
  }, 30_000);

  test("-f whose reader goes away (stdout closed, EPIPE) exits 0 and ends the agent-side follower", async () => {
    const proc = Bun.spawn([mcpBinary(), "logs", `${SVC}/main`, "-f"], {
      env: { ...process.env, ...agent.env },
      stdin: "ignore",
      stdout: "pipe",
      stderr: "pipe",
    });
    try {
      const reader = (proc.stdout as ReadableStream<Uint8Array>).getReader();
      const first = await reader.read();
      expect(new TextDecoder().decode(first.value)).toMatch(/^line \d+\n/);
      await reader.cancel(); // closes our end of the pipe; the next write fails with EPIPE
      expect(await exitWithin(proc, 5_000)).toBe(0);
      expect(await new Response(proc.stderr).text()).toBe("");
      expect(await eventually(() => followers(MAIN).length === 0, 5_000)).toBe(true);
    } finally {
      proc.kill("SIGKILL");
    }
  }, 30_000);

  test("bad input: unknown service, unknown component, bad --since, bad --tail → one line, non-zero", async () => {
    const cases: [string[], RegExp, number][] = [
      [["logs", `nope-${rand()}`], /^mcp: local: NOT_FOUND: unknown service "nope-\w+" on node local$/, 1],
      [
        ["logs", `${SVC}/nope`, "-n", "local"],
        /^mcp: local: NOT_FOUND: service .* has no component "nope"$/,
        1,
      ],
      [["logs", SVC, "--since", "yesterday"], /^mcp: local: INVALID_ARGUMENT: since: expected/, 1],
      [["logs", SVC, "--tail", "x"], /^mcp: --tail: expected a number/, 2],
    ];
    for (const [args, re, code] of cases) {
      const r = await agent.mcp(args);
      expect({ args, code: r.code }).toEqual({ args, code });
      expect(r.stdout).toBe("");
      const lines = r.stderr.trimEnd().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(re);
    }
  }, 30_000);
});
