// e2e: the compiled agent daemon re-executes itself once with its JavaScriptCore options (src/util/jsc-options.ts
// AGENT_JSC_OPTIONS: baseline JIT only, late, on the main thread; AGENT_ALLOCATOR_OPTIONS; why: README "Benchmarks", agent-rss). The process
// keeps its pid (so systemd, setpriv's parent-death signal and these tests still see one process),
// its argv and its environment, and serves as before; a BUN_JSC_* variable already in the
// environment is the operator's choice and is kept as given, with no re-exec.
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { AGENT_ALLOCATOR_OPTIONS, AGENT_JSC_OPTIONS } from "../../src/util/jsc-options.ts";
import { mcpBinary } from "../support/binary.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";

const agents: LocalAgent[] = [];
afterAll(async () => {
  for (const a of agents) await a.stop();
}, 30_000);

function procOf(pid: number): { env: Map<string, string>; argv: string[] } {
  const env = new Map<string, string>();
  for (const kv of readFileSync(`/proc/${pid}/environ`, "utf8").split("\0")) {
    const i = kv.indexOf("=");
    if (i > 0) env.set(kv.slice(0, i), kv.slice(i + 1));
  }
  const argv = readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0").filter(Boolean);
  return { env, argv };
}

test("the agent runs with its JSC options after one re-exec: same pid, argv and environment, still serving", async () => {
  const agent = await startLocalAgent({ env: { MCP_JIT_TEST_MARKER: "kept" } });
  agents.push(agent);
  const pid = agent.pid();
  expect(pid).not.toBeNull();
  const { env, argv } = procOf(pid as number);
  for (const [k, v] of Object.entries(AGENT_JSC_OPTIONS)) expect(env.get(k)).toBe(v);
  for (const [k, v] of Object.entries(AGENT_ALLOCATOR_OPTIONS)) expect(env.get(k)).toBe(v);
  expect(env.get("MCP_JIT_TEST_MARKER")).toBe("kept");
  expect(argv[0]).toBe(mcpBinary());
  expect(argv.slice(1, 4)).toEqual(["agent", "--config", agent.agentConfig]);
  // The re-executed image is the one listening: the spawned pid answers RPCs.
  const ps = await agent.mcp(["ps", "--json"]);
  expect(ps.code).toBe(0);
  expect(JSON.parse(ps.stdout).errors).toEqual([]);
  expect(agent.log().match(/"agent listening"/g)?.length).toBe(1);
}, 60_000);

test("a BUN_JSC_* option set by the operator is kept (no re-exec)", async () => {
  const agent = await startLocalAgent({ env: { BUN_JSC_useJIT: "1" } });
  agents.push(agent);
  const { env } = procOf(agent.pid() as number);
  expect(env.get("BUN_JSC_useJIT")).toBe("1");
  for (const k of Object.keys(AGENT_JSC_OPTIONS)) expect(env.has(k)).toBe(false);
  expect((await agent.mcp(["node", "list"])).code).toBe(0);
}, 60_000);

test("an allocator option set by the operator is kept over the agent's own", async () => {
  const agent = await startLocalAgent({ env: { MIMALLOC_PURGE_DELAY: "250" } });
  agents.push(agent);
  const { env } = procOf(agent.pid() as number);
  expect(env.get("MIMALLOC_PURGE_DELAY")).toBe("250");
  for (const [k, v] of Object.entries(AGENT_JSC_OPTIONS)) expect(env.get(k)).toBe(v);
  expect((await agent.mcp(["node", "list"])).code).toBe(0);
}, 60_000);
