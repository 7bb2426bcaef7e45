// Prints the reliability suite's own summary (issue 10) from the JSON lines test/support/reliability.ts
// appended during one test run: one line per suite, then the totals. Prints nothing when no
// reliability test ran (a partial `npm test test/unit`).
import { existsSync, readFileSync } from "node:fs";

interface Rec {
  suite: string;
  cases: number;
  faults: number;
  dataLost: number;
  detail?: string;
}

const path = process.argv[2];
if (!path || !existsSync(path)) process.exit(0);
const recs: Rec[] = [];
for (const line of readFileSync(path, "utf8").split("\n")) {
  if (!line.trim()) continue;
  try {
    recs.push(JSON.parse(line) as Rec);
  } catch {
    console.log(`reliability: unreadable record skipped: ${line.slice(0, 80)}`);
  }
}
if (recs.length === 0) process.exit(0);
console.log("reliability suite:");
for (const r of recs) {
  const detail = r.detail ? `  ${r.detail}` : "";
  console.log(`  ${r.suite.padEnd(22)} cases=${r.cases} faults=${r.faults} data_lost=${r.dataLost}${detail}`);
}
const sum = (k: "cases" | "faults" | "dataLost") => recs.reduce((a, r) => a + (Number(r[k]) || 0), 0);
console.log(
  `reliability: ${recs.length} suites, ${sum("cases")} cases tried, ${sum("faults")} faults injected, data lost = ${sum("dataLost")}`,
);
