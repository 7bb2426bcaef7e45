// Benchmark toolkit for issue 10: spawn timing, median/min/max, A/B rounds alternated inside one
// process run (so both sides see the same machine state), the BENCH line and the JSON writer.
import { mkdirSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { dirname } from "node:path";

export interface Stats {
  median: number;
  min: number;
  max: number;
  /** 90th percentile (nearest rank), where a figure reports it. */
  p90?: number;
  samples: number[];
}

/** A goal to report against (never asserted): `ratio <= 1.3`, `value <= 60`. */
export interface Target {
  of: "ratio" | "value";
  max: number;
}

export interface Figure {
  name: string;
  status: "ok";
  unit: string;
  target?: Target;
  /** Whether the target was met (present when a target is). */
  met?: boolean;
  /** Side A: mcp. */
  a: Stats & { label: string };
  /** Side B: the podman baseline. */
  b: Stats & { label: string };
  /** A median / B median. */
  ratio: number;
  notes?: string;
}

/** A figure without a raw-tool side (RSS, heartbeat latency): one measured quantity. */
export interface Measure {
  name: string;
  status: "ok";
  unit: string;
  label: string;
  value: Stats;
  target?: Target;
  met?: boolean;
  notes?: string;
}

export interface Skipped {
  name: string;
  status: "failed";
  reason?: string;
}

export function stats(samples: number[]): Stats {
  if (samples.length === 0) throw new Error("no samples");
  const s = [...samples].sort((x, y) => x - y);
  const mid = Math.floor(s.length / 2);
  const median = s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
  return { median, min: s[0] as number, max: s[s.length - 1] as number, samples };
}

/** Nearest-rank percentile (p in 0-100) of samples. */
export function percentile(samples: number[], p: number): number {
  if (samples.length === 0) throw new Error("no samples");
  const s = [...samples].sort((x, y) => x - y);
  const rank = Math.max(1, Math.ceil((p / 100) * s.length));
  return s[rank - 1] as number;
}

export interface SpawnResult {
  ms: number;
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv to completion (never a shell) and returns wall time in ms; throws on non-zero exit. */
export async function timeSpawn(argv: string[], env: Record<string, string> = {}): Promise<SpawnResult> {
  const t0 = performance.now();
  const p = Bun.spawn(argv, {
    env: { ...process.env, ...env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const [stdout, stderr, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  const ms = performance.now() - t0;
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${stderr.trim().split("\n")[0] ?? ""}`);
  return { ms, code, stdout, stderr };
}

export interface Side {
  label: string;
  /** One measured operation; returns its duration in ms. */
  run(): Promise<number>;
}

/**
 * Warm-up (one call each side), then `rounds` rounds of `perRound` calls per side, alternating
 * which side goes first each round so neither always runs on a warmer cache.
 */
export async function abRounds(
  name: string,
  a: Side,
  b: Side,
  opts: { rounds: number; perRound: number; unit?: string; notes?: string; target?: Target },
): Promise<Figure> {
  await a.run();
  await b.run();
  const sa: number[] = [];
  const sb: number[] = [];
  for (let r = 0; r < opts.rounds; r++) {
    const order: [Side, number[]][] =
      r % 2 === 0
        ? [
            [a, sa],
            [b, sb],
          ]
        : [
            [b, sb],
            [a, sa],
          ];
    for (const [side, out] of order) for (let i = 0; i < opts.perRound; i++) out.push(await side.run());
  }
  const A = stats(sa);
  const B = stats(sb);
  const fig: Figure = {
    name,
    status: "ok",
    unit: opts.unit ?? "ms",
    a: { label: a.label, ...A },
    b: { label: b.label, ...B },
    ratio: A.median / B.median,
    ...(opts.notes ? { notes: opts.notes } : {}),
  };
  if (opts.target) {
    fig.target = opts.target;
    fig.met = (opts.target.of === "ratio" ? fig.ratio : A.median) <= opts.target.max;
  }
  printFigure(fig);
  return fig;
}

/** A single-sided figure from samples, printed as a BENCH line with `ratio=-`. */
export function measure(
  name: string,
  label: string,
  samples: number[],
  opts: { unit: string; target?: Target; notes?: string },
): Measure {
  const value = stats(samples);
  const m: Measure = {
    name,
    status: "ok",
    unit: opts.unit,
    label,
    value,
    ...(opts.notes ? { notes: opts.notes } : {}),
  };
  if (opts.target) {
    m.target = opts.target;
    m.met = value.median <= opts.target.max;
  }
  printMeasure(m);
  return m;
}

const r2 = (n: number) => Math.round(n * 100) / 100;

const targetText = (t: Target | undefined, met: boolean | undefined) =>
  t ? ` target=${t.of}<=${t.max} ${met ? "met" : "MISSED"}` : "";

export function printFigure(f: Figure): void {
  console.log(
    `BENCH ${f.name} ${r2(f.a.median)} ${f.unit} ratio=${r2(f.ratio)} min=${r2(f.a.min)} max=${r2(f.a.max)}` +
      (f.a.p90 !== undefined ? ` p90=${r2(f.a.p90)}` : "") +
      ` baseline=${r2(f.b.median)} baseline_min=${r2(f.b.min)} baseline_max=${r2(f.b.max)}` +
      targetText(f.target, f.met),
  );
}

export function printMeasure(m: Measure): void {
  console.log(
    `BENCH ${m.name} ${r2(m.value.median)} ${m.unit} ratio=- min=${r2(m.value.min)} max=${r2(m.value.max)}` +
      targetText(m.target, m.met),
  );
}

export interface Machine {
  cores: number;
  cpuModel: string;
  memoryBytes: number;
  versions: { bun: string; podman: string; mcp: string };
}

export async function machineInfo(mcpBin: string): Promise<Machine> {
  const ver = async (argv: string[]) => {
    try {
      return (await timeSpawn(argv)).stdout.trim();
    } catch (e) {
      return `unknown (${(e as Error).message})`;
    }
  };
  const c = cpus();
  return {
    cores: c.length,
    cpuModel: c[0]?.model ?? "unknown",
    memoryBytes: totalmem(),
    versions: {
      bun: Bun.version,
      podman: await ver(["podman", "--version"]),
      mcp: await ver([mcpBin, "--version"]),
    },
  };
}

export type Result = Figure | Measure | Skipped;

export function writeResults(path: string, machine: Machine, results: Result[]): void {
  mkdirSync(dirname(path), { recursive: true });
  const doc = { date: new Date().toISOString(), machine, results };
  writeFileSync(path, `${JSON.stringify(doc, null, 2)}\n`);
}

export interface BenchOpts {
  n: number;
  rounds: number;
  events: number;
  out: string;
  /** drift-latency: containers killed (one latency sample each). */
  kills: number;
  /** drift-latency: the kills' phases are spread over this many seconds after the previous alert. */
  spreadSec: number;
  /** monitor-cpu: the CPU sampling window in seconds. */
  windowSec: number;
}

/** What every benchmark gets from the runner: options, a shared local agent and cleanup. */
export interface BenchContext {
  opts: BenchOpts;
  /** Starts (once per run) and returns the shared local agent (init --local, test podman env). */
  localAgent(): Promise<import("../../test/support/local-agent.ts").LocalAgent>;
  /** The cached busybox test image (localhost/mcp-test-busybox:v1.0.0). */
  image(): Promise<string>;
  /** Container names removed by name at the end of the run. */
  created: string[];
  /** Cleanup run at the end of the run, last registered first. */
  defer(fn: () => Promise<void> | void): void;
}

/** One benchmark: returns its figures (one or several). Throwing records it as failed. */
export type Bench = (ctx: BenchContext) => Promise<Result[]>;
