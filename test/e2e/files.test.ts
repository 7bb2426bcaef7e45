// e2e: `mcp push` / `mcp pull` through the COMPILED binary against a real local agent over TLS.
// Round-trips bytes (all 256 byte values, a 1 MiB random file) and mode (0600, 0755, --mode),
// nested paths create parents, an omitted path means the basename, overwrites are atomic (a
// reader polling the file during a push only ever sees the old or the new content), and every
// bad input (unknown service, node down, file too large on either side, path escapes, missing
// file, existing local file) gives one line on stderr and a non-zero exit, changing nothing.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { CallError, connect } from "../../src/rpc/client.ts";
import { mcpBinary, type RunResult } from "../support/binary.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";

const SVC = `files-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const MiB = 1024 * 1024;

let agent: LocalAgent;
let work = ""; // local files of the "operator"
let svcDir = ""; // <srv_root>/<SVC> on the node
let outside = ""; // a directory next to srv_root that nothing may touch

/** Exactly one non-empty stderr line, no stack frames; returns that line. */
function oneLine(r: RunResult): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines).toHaveLength(1);
  return lines[0]!;
}

/** Runs a command that must be refused: one line, the exit code, nothing on stdout. */
async function refused(args: string[], code: number): Promise<string> {
  const r = await agent.mcp(args, { cwd: work });
  const line = oneLine(r);
  expect(r.code).toBe(code);
  expect(r.stdout).toBe("");
  return line;
}

function local(name: string, content: Uint8Array | string, mode = 0o644): string {
  const p = join(work, name);
  writeFileSync(p, content);
  chmodSync(p, mode);
  return p;
}

const modeOf = (p: string) => statSync(p).mode & 0o777;
const outsideState = () =>
  readdirSync(outside)
    .sort()
    .map((f) => `${f}:${readFileSync(join(outside, f), "utf8")}`)
    .join(",");

beforeAll(async () => {
  mcpBinary(); // fail early with the build hint
  agent = await startLocalAgent();
  work = mkdtempSync(join(tmpdir(), "mcp-files-e2e-"));
  svcDir = join(agent.dir, "srv", SVC);
  outside = join(agent.dir, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "secret"), "outside secret");
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("push and pull", () => {
  test("push to a service the node does not know needs --create", async () => {
    const f = local("first.toml", "a = 1\n");
    const line = await refused(["push", f, SVC], 1);
    expect(line).toBe(
      `mcp: local: NOT_FOUND: unknown service ${SVC} on node local; pass --create to push before the first deploy`,
    );
    expect(existsSync(svcDir)).toBe(false);
    const r = await agent.mcp(["push", f, SVC, "--create"], { cwd: work });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`pushed ${f} → ${SVC}:first.toml on local (6B, 0644)\n`);
    expect(readFileSync(join(svcDir, "first.toml"), "utf8")).toBe("a = 1\n");
  });

  test("1 MiB of random bytes round-trips with mode 0600 (measured)", async () => {
    const data = randomBytes(MiB);
    const f = local("blob.bin", data, 0o600);
    let t = performance.now();
    const push = await agent.mcp(["push", f, SVC, "data/blob.bin", "--json"], { cwd: work });
    const pushMs = performance.now() - t;
    expect(push.stderr).toBe("");
    expect(push.code).toBe(0);
    expect(JSON.parse(push.stdout)).toEqual({
      service: SVC,
      node: "local",
      path: "data/blob.bin",
      bytes: MiB,
      mode: "0600",
    });
    expect(Buffer.compare(readFileSync(join(svcDir, "data", "blob.bin")), data)).toBe(0);
    expect(modeOf(join(svcDir, "data", "blob.bin"))).toBe(0o600);

    const back = join(work, "blob.back");
    t = performance.now();
    const pull = await agent.mcp(["pull", SVC, "data/blob.bin", back, "--json"], { cwd: work });
    const pullMs = performance.now() - t;
    expect(pull.stderr).toBe("");
    expect(pull.code).toBe(0);
    expect(JSON.parse(pull.stdout)).toEqual({
      service: SVC,
      node: "local",
      path: "data/blob.bin",
      bytes: MiB,
      mode: "0600",
      file: back,
    });
    expect(Buffer.compare(readFileSync(back), data)).toBe(0);
    expect(modeOf(back)).toBe(0o600);

    // The RPCs alone, over the same TLS connection (no process start-up).
    const client = await connect(McpAgent, {
      addresses: [agent.address],
      caPem: agent.caPem,
      token: agent.token,
    });
    try {
      await client.pushFile({ service: SVC, path: "warm", content: new Uint8Array(1), mode: 0o644 });
      t = performance.now();
      await client.pushFile({ service: SVC, path: "data/rpc.bin", content: data, mode: 0o600 });
      const rpcPush = performance.now() - t;
      t = performance.now();
      const res = await client.pullFile({ service: SVC, path: "data/rpc.bin" });
      const rpcPull = performance.now() - t;
      expect(Buffer.compare(Buffer.from(res.content), data)).toBe(0);
      console.log(
        `1 MiB over TLS: mcp push ${pushMs.toFixed(0)} ms, mcp pull ${pullMs.toFixed(0)} ms (whole CLI process); ` +
          `PushFile RPC ${rpcPush.toFixed(1)} ms, PullFile RPC ${rpcPull.toFixed(1)} ms`,
      );
    } finally {
      client.close();
    }
  });

  test("every byte value survives, and 0755 stays executable", async () => {
    const all = new Uint8Array(256 * 4).map((_, i) => i % 256);
    const f = local("tool.sh", all, 0o755);
    const r = await agent.mcp(["push", f, SVC, "bin/tool.sh"], { cwd: work });
    expect(r.code).toBe(0);
    expect(modeOf(join(svcDir, "bin", "tool.sh"))).toBe(0o755);
    const back = join(work, "tool.back");
    const p = await agent.mcp(["pull", SVC, "bin/tool.sh", back], { cwd: work });
    expect(p.code).toBe(0);
    expect(new Uint8Array(readFileSync(back))).toEqual(all);
    expect(modeOf(back)).toBe(0o755);
  });

  test("--mode overrides the local file's mode", async () => {
    const f = local("conf.toml", "x = 1\n", 0o644);
    for (const [flag, mode] of [
      ["0640", 0o640],
      ["0o600", 0o600],
      ["755", 0o755],
    ] as const) {
      const r = await agent.mcp(["push", f, SVC, "--mode", flag, "--json"], { cwd: work });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout).mode).toBe(`0${mode.toString(8)}`);
      expect(modeOf(join(svcDir, "conf.toml"))).toBe(mode);
    }
  });

  test("a nested path creates its parents (0755); an omitted path is the basename", async () => {
    const f = local("cert.pem", "-----BEGIN CERT-----\n");
    expect((await agent.mcp(["push", f, SVC, "certs/live/site/cert.pem"], { cwd: work })).code).toBe(0);
    expect(readFileSync(join(svcDir, "certs", "live", "site", "cert.pem"), "utf8")).toBe(
      "-----BEGIN CERT-----\n",
    );
    for (const d of ["certs", "certs/live", "certs/live/site"])
      expect(statSync(join(svcDir, d)).isDirectory()).toBe(true);
    expect(modeOf(join(svcDir, "certs", "live"))).toBe(0o755 & ~process.umask());
    // a path ending in "/" is a directory for the file's basename
    expect((await agent.mcp(["push", f, SVC, "certs/"], { cwd: work })).code).toBe(0);
    expect(existsSync(join(svcDir, "certs", "cert.pem"))).toBe(true);
    // omitted: the basename, at the top of the service directory
    expect((await agent.mcp(["push", f, SVC], { cwd: work })).code).toBe(0);
    expect(existsSync(join(svcDir, "cert.pem"))).toBe(true);
    // pull without a local name: the basename, in the current directory
    const sub = join(work, "pulled");
    mkdirSync(sub);
    const r = await agent.mcp(["pull", SVC, "certs/live/site/cert.pem"], { cwd: sub });
    expect(r.code).toBe(0);
    expect(readFileSync(join(sub, "cert.pem"), "utf8")).toBe("-----BEGIN CERT-----\n");
  });

  test("an overwrite is atomic: a reader sees the old content until the rename, then the new", async () => {
    const A = Buffer.alloc(MiB, "A");
    const B = Buffer.alloc(MiB, "B");
    const target = join(svcDir, "atomic.bin");
    expect((await agent.mcp(["push", local("a.bin", A), SVC, "atomic.bin"], { cwd: work })).code).toBe(0);
    const inoBefore = statSync(target).ino;
    const push = agent.mcp(["push", local("b.bin", B), SVC, "atomic.bin"], { cwd: work });
    let finished = false;
    void push.then(() => {
      finished = true;
    });
    const seen = { A: 0, B: 0 };
    for (let i = 0; !finished && i < 100_000; i++) {
      const now = readFileSync(target);
      const isA = Buffer.compare(now, A) === 0;
      const isB = Buffer.compare(now, B) === 0;
      expect(isA || isB).toBe(true); // never empty, partial or mixed
      seen[isA ? "A" : "B"]++;
      await Bun.sleep(0);
    }
    expect((await push).code).toBe(0);
    expect(seen.A).toBeGreaterThan(0);
    expect(Buffer.compare(readFileSync(target), B)).toBe(0);
    expect(statSync(target).ino).not.toBe(inoBefore); // replaced by rename, not rewritten in place
    expect(readdirSync(svcDir).filter((n) => n.includes(".mcp-push-"))).toEqual([]);
  });
});

describe("bad input: one line, non-zero exit, nothing changed", () => {
  test("path escapes: ../x, /etc/passwd, a symlink in the service directory pointing out", async () => {
    const f = local("evil.txt", "evil");
    expect(await refused(["push", f, SVC, "../x"], 1)).toBe(
      `mcp: local: INVALID_ARGUMENT: path "../x" contains "..": it must stay inside the service directory`,
    );
    expect(await refused(["push", f, SVC, "a/../../x"], 1)).toContain('contains ".."');
    expect(await refused(["push", f, SVC, "/etc/passwd"], 1)).toBe(
      `mcp: local: INVALID_ARGUMENT: path "/etc/passwd" is absolute; give it relative to the service directory`,
    );
    expect(await refused(["pull", SVC, "/etc/passwd", join(work, "passwd")], 1)).toContain("is absolute");
    expect(await refused(["pull", SVC, "../../outside/secret", join(work, "s1")], 1)).toContain(
      'contains ".."',
    );
    symlinkSync(outside, join(svcDir, "escape"));
    symlinkSync(join(outside, "secret"), join(svcDir, "secret-link"));
    expect(await refused(["push", f, SVC, "escape/x"], 1)).toBe(
      `mcp: local: INVALID_ARGUMENT: ${SVC}:escape is a symlink; symlinks inside a service directory are refused`,
    );
    expect(await refused(["push", f, SVC, "secret-link"], 1)).toContain(`${SVC}:secret-link is a symlink`);
    expect(await refused(["pull", SVC, "escape/secret", join(work, "s2")], 1)).toContain("is a symlink");
    expect(await refused(["pull", SVC, "secret-link", join(work, "s3")], 1)).toContain("is a symlink");
    expect(outsideState()).toBe("secret:outside secret");
    expect(existsSync(join(work, "s2")) || existsSync(join(work, "s3"))).toBe(false);
  });

  test("unknown service and missing file", async () => {
    expect(await refused(["pull", SVC, "nope.toml", join(work, "nope")], 1)).toBe(
      `mcp: local: NOT_FOUND: ${SVC}:nope.toml: no such file`,
    );
    expect(await refused(["pull", "no-such-svc", "x", join(work, "nope")], 1)).toBe(
      "mcp: local: NOT_FOUND: unknown service no-such-svc on node local",
    );
    expect(await refused(["push", join(work, "missing.txt"), SVC], 2)).toBe(
      `mcp: ${join(work, "missing.txt")}: file not found`,
    );
    expect(await refused(["pull", SVC, "certs", join(work, "d")], 1)).toContain(
      `${SVC}:certs is a directory`,
    );
    expect(await refused(["push", local("m.txt", "m"), SVC, "--mode", "4755"], 2)).toContain("--mode");
  });

  test("pull refuses to overwrite an existing local file without --force", async () => {
    const dest = local("existing.toml", "mine\n");
    expect(await refused(["pull", SVC, "first.toml", dest], 2)).toBe(
      `mcp: ${dest} already exists (pass --force to overwrite)`,
    );
    expect(readFileSync(dest, "utf8")).toBe("mine\n");
    const r = await agent.mcp(["pull", SVC, "first.toml", dest, "--force"], { cwd: work });
    expect(r.code).toBe(0);
    expect(readFileSync(dest, "utf8")).toBe("a = 1\n");
  });

  test("file too large: refused by the CLI before sending, and by the agent", async () => {
    const big = local("big.bin", Buffer.alloc(9 * MiB, 1));
    const before = readdirSync(svcDir).sort();
    expect(await refused(["push", big, SVC], 2)).toBe(
      `mcp: ${big}: file is ${9 * MiB} bytes; the limit is 8 MiB`,
    );
    expect(readdirSync(svcDir).sort()).toEqual(before);
    // Agent side: a client that does not check (the raw RPC) …
    const client = await connect(McpAgent, {
      addresses: [agent.address],
      caPem: agent.caPem,
      token: agent.token,
    });
    try {
      const err = await client
        .pushFile({ service: SVC, path: "big.bin", content: new Uint8Array(8 * MiB + 1), mode: 0o644 })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(err).toBeInstanceOf(CallError);
      expect((err as CallError).message).toBe(
        `RESOURCE_EXHAUSTED: file is ${8 * MiB + 1} bytes; the limit is 8 MiB`,
      );
    } finally {
      client.close();
    }
    expect(readdirSync(svcDir).sort()).toEqual(before);
    // … and a pull of a file that grew too big on the node.
    writeFileSync(join(svcDir, "huge.log"), Buffer.alloc(9 * MiB, 2));
    expect(await refused(["pull", SVC, "huge.log", join(work, "huge.log")], 1)).toBe(
      `mcp: local: RESOURCE_EXHAUSTED: ${SVC}:huge.log is ${9 * MiB} bytes; the limit is 8 MiB`,
    );
    expect(existsSync(join(work, "huge.log"))).toBe(false);
  });

  test("node down: push and pull say which node and why", async () => {
    await agent.stopAgent();
    try {
      const f = local("down.txt", "x");
      for (const args of [
        ["push", f, SVC],
        ["pull", SVC, "first.toml", join(work, "down.back")],
      ]) {
        const line = await refused(args, 1);
        expect(line).toStartWith("mcp: local: UNAVAILABLE: ");
        expect(line).toContain(agent.address);
      }
      expect(existsSync(join(work, "down.back"))).toBe(false);
    } finally {
      await agent.startAgent();
    }
  }, 30_000);
});
