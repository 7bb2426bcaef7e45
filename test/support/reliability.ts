// Reliability suite bookkeeping (issue 10): every test under test/reliability/ records what it tried
// (cases, faults injected, data lost) as one JSON line in $MCP_RELIABILITY_LOG; scripts/test.sh
// prints the suite's summary from that file after the run. Records are also echoed as a
// `RELIABILITY …` line so a single test file run shows them.
import { appendFileSync, mkdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { REPO_ROOT } from "./binary.ts";

export interface SuiteRecord {
  /** Short name: "crash-consistency", "auth-matrix", … */
  suite: string;
  /** Distinct cases tried (inputs, RPC × identity pairs, operations). */
  cases: number;
  /** Faults injected (SIGKILLs, full disks, malformed payloads sent). */
  faults: number;
  /** Data lost: must be 0; the test asserts it before recording. */
  dataLost: number;
  /** One line of detail for the summary (e.g. "p50=3.1ms p99=12ms"). */
  detail?: string;
}

export function reliabilityLogPath(): string {
  return process.env.MCP_RELIABILITY_LOG ?? join(REPO_ROOT, ".cache", "reliability.jsonl");
}

export function recordSuite(r: SuiteRecord): void {
  const line = `RELIABILITY ${r.suite} cases=${r.cases} faults=${r.faults} data_lost=${r.dataLost}${r.detail ? ` ${r.detail}` : ""}`;
  console.log(line);
  const path = reliabilityLogPath();
  mkdirSync(dirname(path), { recursive: true });
  appendFileSync(path, `${JSON.stringify({ ...r, at: new Date().toISOString() })}\n`);
}
