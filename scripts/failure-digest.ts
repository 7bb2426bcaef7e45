// Prints, after a test run, each failing test with the error output bun printed just above it.
// bun's own closing block names the failing tests but not why; CI keeps only the tail of a run,
// so without this the reason of a failure in an early file is lost. Reads the run's log (ANSI
// colours stripped); prints nothing when nothing failed.
//
// Usage: bun scripts/failure-digest.ts <test.log> [max failures (5)] [max lines each (40)]
import { existsSync, readFileSync } from "node:fs";

const [path, maxFailuresArg, maxLinesArg] = process.argv.slice(2);
if (!path || !existsSync(path)) process.exit(0);
const maxFailures = Number(maxFailuresArg ?? 5) || 5;
const maxLines = Number(maxLinesArg ?? 40) || 40;

const ansi = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, "g");
const lines = readFileSync(path, "utf8").replace(ansi, "").split("\n");

// bun's closing " N tests failed:" block repeats the (fail) lines without their errors: stop there.
let end = lines.length;
for (let i = lines.length - 1; i >= 0; i--) {
  if (/^\s*\d+ tests? failed:\s*$/.test(lines[i] ?? "")) {
    end = i;
    break;
  }
}

const isFileHeader = (l: string) => /^\S.*\.test\.[jt]sx?:$/.test(l);
// A "  ^ a hook timed out" note belongs to the (fail) line above it, not to the next test.
const isBoundary = (l: string) =>
  /^\((pass|fail|skip|todo)\) /.test(l) ||
  isFileHeader(l) ||
  /^\s*\^ \S/.test(l) ||
  l.startsWith("bun test v");

const failures: { file: string; head: string; body: string[] }[] = [];
let file = "";
for (let i = 0; i < end; i++) {
  const l = lines[i] ?? "";
  if (isFileHeader(l)) file = l.slice(0, -1);
  if (!l.startsWith("(fail) ")) continue;
  let start = i;
  while (start > 0 && !isBoundary(lines[start - 1] ?? "")) start--;
  const body = lines.slice(start, i).filter((x) => x.trim() !== "");
  // A "^ hook timed out" note follows the (fail) line itself.
  const after: string[] = [];
  for (let j = i + 1; j < end && after.length < 3 && /^\s*\^ /.test(lines[j] ?? ""); j++)
    after.push(lines[j] ?? "");
  failures.push({ file, head: l, body: [...body, ...after] });
}
if (failures.length === 0) process.exit(0);

console.log(`failing tests (${failures.length}), with what bun printed before each:`);
for (const f of failures.slice(0, maxFailures)) {
  console.log(`--- ${f.file}: ${f.head}`);
  const body = f.body.length > maxLines ? [...f.body.slice(-maxLines)] : f.body;
  if (f.body.length > maxLines) console.log(`  … ${f.body.length - maxLines} earlier lines in the log`);
  for (const b of body) console.log(`  ${b}`);
}
if (failures.length > maxFailures) console.log(`… and ${failures.length - maxFailures} more in the log`);
