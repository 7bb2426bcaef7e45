// Reliability (issue 10): a push into a full disk fails cleanly. The service's directory on the
// node (<srv_root>/<svc>/, where the agent writes `mcp push`) is a real size-limited tmpfs of
// 256 KiB mounted for this test (we run as root; unmounted in afterAll). A new version of a file
// that does not fit, a new file that does not fit, and a tiny push into a disk filled to the last
// byte each exit non-zero with one line naming the file and "no space left", keep the previous
// content byte for byte, leave no temp file behind, and the agent keeps serving: once space is
// freed, the same push works. Bounded: 6 CLI runs plus one fill loop capped at the tmpfs size.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { RunResult } from "../support/binary.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";
import { recordSuite } from "../support/reliability.ts";

const SVC = `disk-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const TMPFS_BYTES = 256 * 1024;

let agent: LocalAgent;
let work = ""; // the operator's local files
let svcDir = ""; // <srv_root>/<SVC>: the tmpfs mount point
let mounted = false;
let faults = 0;

async function run(argv: string[]): Promise<{ code: number; stderr: string }> {
  const p = Bun.spawn(argv, { stdout: "ignore", stderr: "pipe", stdin: "ignore" });
  const [stderr, code] = await Promise.all([new Response(p.stderr).text(), p.exited]);
  return { code, stderr };
}

/** Writes `name` locally and pushes it to SVC:cfg-path. */
async function push(name: string, content: Uint8Array | string, path = "cfg.txt"): Promise<RunResult> {
  const f = join(work, name);
  writeFileSync(f, content);
  return agent.mcp(["push", f, SVC, path], { cwd: work, timeoutMs: 20_000 });
}

/** The refusal contract: non-zero exit, nothing on stdout, one line naming the file and the cause. */
function refusedForSpace(r: RunResult, path: string): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  const lines = r.stderr.split("\n").filter((l) => l !== "");
  expect(lines).toHaveLength(1);
  expect(r.code).not.toBe(0);
  expect(r.stdout).toBe("");
  const line = lines[0]!;
  expect(line).toContain("no space left on device");
  expect(line).toContain(`${SVC}:${path}`);
  return line;
}

/** Only the files we put there: a failed push must not leave `.mcp-push-*.tmp` behind. */
const listing = () => readdirSync(svcDir).sort();

beforeAll(async () => {
  agent = await startLocalAgent();
  work = mkdtempSync(join(tmpdir(), "mcp-full-disk-"));
  svcDir = join(agent.dir, "srv", SVC);
  mkdirSync(svcDir, { recursive: true });
  const m = await run(["mount", "-t", "tmpfs", "-o", `size=${TMPFS_BYTES},mode=0755`, "tmpfs", svcDir]);
  if (m.code !== 0) throw new Error(`mount -t tmpfs failed (this test needs root): ${m.stderr.trim()}`);
  mounted = true;
}, 60_000);

afterAll(async () => {
  if (mounted) {
    const u = await run(["umount", svcDir]);
    if (u.code !== 0) await run(["umount", "-l", svcDir]);
  }
  await agent?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
}, 30_000);

test("a push into a full tmpfs fails with one line and keeps the previous file intact", async () => {
  const t0 = performance.now();
  const v1 = `listen = "127.0.0.1:8080"\n# ${randomBytes(512).toString("hex")}\n`;
  const first = await push("cfg-v1.txt", v1);
  expect(first.stderr).toBe("");
  expect(first.code).toBe(0);
  expect(readFileSync(join(svcDir, "cfg.txt"), "utf8")).toBe(v1);
  expect(listing()).toEqual(["cfg.txt"]);

  // 1. A new version of cfg.txt bigger than the whole disk.
  const tooBig = randomBytes(TMPFS_BYTES + 64 * 1024);
  const over = await push("cfg-v2.txt", tooBig);
  faults++;
  const line = refusedForSpace(over, "cfg.txt");
  expect(line).toContain("keeps its previous content");
  expect(readFileSync(join(svcDir, "cfg.txt"), "utf8")).toBe(v1);
  expect(listing()).toEqual(["cfg.txt"]);
  console.log(`full disk, overwrite: ${line}`);

  // 2. A new file that does not fit.
  const newFile = await push("big.bin", tooBig, "data/big.bin");
  faults++;
  expect(refusedForSpace(newFile, "data/big.bin")).toContain("nothing was written");
  expect(readFileSync(join(svcDir, "cfg.txt"), "utf8")).toBe(v1);
  // The parent directory was created on the way (it fitted); the file and its temp did not.
  expect(listing()).toEqual(["cfg.txt", "data"]);
  expect(readdirSync(join(svcDir, "data"))).toEqual([]);

  // 3. The disk filled to the last byte by someone else: even a tiny update fails the same way.
  const filler = join(svcDir, "filler");
  const fd = openSync(filler, "w");
  const chunk = Buffer.alloc(4096, 0x5a);
  let filled = 0;
  try {
    // Bounded: the tmpfs holds at most TMPFS_BYTES, so at most that many chunks fit.
    for (let i = 0; i <= TMPFS_BYTES / chunk.length; i++) {
      writeSync(fd, chunk);
      filled += chunk.length;
    }
    throw new Error(`wrote ${filled} bytes into a ${TMPFS_BYTES}-byte tmpfs without ENOSPC`);
  } catch (err) {
    expect((err as NodeJS.ErrnoException).code).toBe("ENOSPC");
  } finally {
    closeSync(fd);
  }
  const v3 = `listen = "127.0.0.1:9090"\n`;
  const tiny = await push("cfg-v3.txt", v3);
  faults++;
  refusedForSpace(tiny, "cfg.txt");
  expect(readFileSync(join(svcDir, "cfg.txt"), "utf8")).toBe(v1);
  expect(listing()).toEqual(["cfg.txt", "data", "filler"]);

  // 4. Space freed: the same agent (never restarted) takes the same push.
  unlinkSync(filler);
  const after = await push("cfg-v3.txt", v3);
  expect(after.stderr).toBe("");
  expect(after.code).toBe(0);
  expect(readFileSync(join(svcDir, "cfg.txt"), "utf8")).toBe(v3);
  expect(listing()).toEqual(["cfg.txt", "data"]);
  const pulled = join(work, "pulled.txt");
  const pull = await agent.mcp(["pull", SVC, "cfg.txt", pulled], { cwd: work });
  expect(pull.code).toBe(0);
  expect(readFileSync(pulled, "utf8")).toBe(v3);
  const list = await agent.mcp(["list", "--json"]);
  expect(list.code).toBe(0);

  recordSuite({
    suite: "full-disk",
    cases: 4,
    faults,
    dataLost: 0,
    detail: `tmpfs=${TMPFS_BYTES / 1024}KiB ${((performance.now() - t0) / 1000).toFixed(1)}s`,
  });
}, 60_000);
