// The agent daemon's JavaScriptCore (and allocator) options, applied by re-executing itself once at start.

/**
 * JavaScriptCore options the agent daemon runs with: the baseline JIT only, and only for code run
 * 20,000 times (JSC's default is 500), so only an RPC path under real load is compiled; no DFG or
 * FTL optimizing tiers. The agent is I/O-bound (podman, SQLite and TLS are native code) and the
 * optimizing tiers' compilers, code and profiling data were ~14 of its 72 MB resident with 100
 * services (issue 10's agent-rss figure, target 60 MB). Measured on 2 cores (RSS idle / 100
 * services; RPCs in the 30 s load test): JSC defaults 58 / 72 MB, 176k; these 49 / 58 MB, 91k;
 * late DFG as well 52 / 61 MB, 137k; interpreter only 50 / 55 MB, 63k. A single call (ps-local)
 * is no slower. An operator who wants the throughput back sets BUN_JSC_useDFGJIT=1 in the unit.
 *
 * Issue 18 (the agent keeps a live view and more code paths ran): 100 services measured 59.1-59.9 MB,
 * at the target's edge. Two more: the baseline JIT compiles on the main thread (useConcurrentJIT=0:
 * it compiles so rarely at 20,000 runs that two JIT worker threads and their stacks cost more
 * than they save) and no pre-warmed GC blocks (useWarmUpMarkedBlocks=0: the JSCWarmUp thread keeps
 * free marked blocks committed to shave allocation latency, which an idle daemon does not need).
 * Measured with AGENT_ALLOCATOR_OPTIONS below, same session, quiet 2 cores: idle 50.8 -> 47.4 MB,
 * 100 services 59.1 -> 56.1 MB, monitor CPU idle with 100 services not higher (README "Benchmarks").
 * Interpreter only (useJIT=0) would give 54 MB but cost ~45% more CPU per monitor tick.
 */
export const AGENT_JSC_OPTIONS: Readonly<Record<string, string>> = {
  BUN_JSC_useDFGJIT: "0",
  BUN_JSC_thresholdForJITAfterWarmUp: "20000",
  BUN_JSC_thresholdForJITSoon: "20000",
  BUN_JSC_useConcurrentJIT: "0",
  BUN_JSC_useWarmUpMarkedBlocks: "0",
};

/**
 * mimalloc (Bun's allocator for native memory: SQLite, TLS, HTTP/2 buffers) returns freed pages to
 * the OS at once instead of after its default delay, so the burst of a fleet deploy does not stay
 * resident. Set only when the operator has not set it.
 */
export const AGENT_ALLOCATOR_OPTIONS: Readonly<Record<string, string>> = {
  MIMALLOC_PURGE_DELAY: "0",
};

/**
 * Options must be set before the VM starts, so the agent re-executes itself once (same pid, argv
 * and environment plus AGENT_JSC_OPTIONS) before loading anything. Any BUN_JSC_* variable already
 * in the environment means the operator chose (e.g. BUN_JSC_useDFGJIT=1 in the unit): no re-exec.
 * An allocator variable the operator set is kept as given.
 */
export function reexecWithAgentJscOptions(): void {
  if (typeof process.execve !== "function") return;
  if (Object.keys(process.env).some((k) => k.startsWith("BUN_JSC_"))) return;
  // A compiled binary sees argv as ["bun", "/$bunfs/root/<name>", ...args]; `bun main.ts` as
  // [bun, main.ts, ...args]. argv0 (how it was invoked, e.g. the mcp-agent link) is kept.
  const args = Bun.main.startsWith("/$bunfs/") ? process.argv.slice(2) : process.argv.slice(1);
  try {
    process.execve(process.execPath, [process.argv0 || process.execPath, ...args], {
      ...AGENT_ALLOCATOR_OPTIONS,
      ...process.env,
      ...AGENT_JSC_OPTIONS,
    });
  } catch {
    // Could not exec (binary replaced or gone): run on with JSC's defaults.
  }
}
