// Issue 10 agent benchmarks: monitor-tick (one monitor iteration over 100 services, in-process,
// vs one `podman ps -a --format json`) and agent-rss (VmRSS of a real compiled agent process:
// idle right after start, and with those 100 services after 10 monitor ticks).
// Both share one fleet: a dedicated local agent (monitor interval 1 s, debug log so its ticks
// can be counted) and 100 one-container services mcpbench-m<i>, deployed once per run.
import { Database } from "bun:sqlite";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { LocalTokenValidator } from "../../src/auth/local.ts";
import { Monitor } from "../../src/monitor/monitor.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { Runtime } from "../../src/runtime/runtime.ts";
import { mcpBinary, REPO_ROOT } from "../../test/support/binary.ts";
import { type PodmanEnv, podmanEnv } from "../../test/support/env.ts";
import { type LocalAgent, startLocalAgent } from "../../test/support/local-agent.ts";
import { abRounds, type BenchContext, measure, type Result, stats, timeSpawn } from "./lib.ts";

const SERVICES = 100;
const INTERVAL_MS = 1_000;
const DEPLOY_CONCURRENCY = 3;
const RSS_TARGET_MB = 60;

/** The dedicated agent process and its 100 services. */
export interface Fleet {
  local: LocalAgent;
  pid: number;
  /** Completed monitor ticks so far (counted from the agent's debug log). */
  ticks(): number;
  /** VmRSS samples (MB) taken right after start, before any service existed. */
  idleRss: number[];
  /** RssAnon/RssFile at the last idle sample. */
  idleSplit: string;
  services: string[];
  deployMs: number;
}

let fleetPromise: Promise<Fleet> | undefined;

/** The shared fleet (started on first use, once per run); monitor-cpu reuses its 100 services. */
export function fleet(ctx: BenchContext): Promise<Fleet> {
  fleetPromise ??= startFleet(ctx);
  return fleetPromise;
}

/** VmRSS of a live process in MB (from /proc/<pid>/status). */
export function rssMb(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) / 1024;
}

/** "anon X MB + file Y MB": heap and private data vs pages mapped from the executable (shared). */
function rssSplit(pid: number): string {
  const st = readFileSync(`/proc/${pid}/status`, "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(st)?.[1] ?? Number.NaN);
  return `RssAnon ${(kb("RssAnon") / 1024).toFixed(1)} MB + RssFile ${(kb("RssFile") / 1024).toFixed(1)} MB`;
}

async function samplesOf(pid: number, n: number, gapMs: number): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i > 0) await Bun.sleep(gapMs);
    out.push(rssMb(pid));
  }
  return out;
}

export async function waitUntil(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

async function startFleet(ctx: BenchContext): Promise<Fleet> {
  const pe = await podmanEnv();
  const image = await ctx.image();
  const local = await startLocalAgent({ node: "bench-fleet" });
  // Our own agent process instead of the helper's: we need its pid, a 1 s monitor interval and
  // a debug log (the "monitor tick" lines are how ticks are counted).
  await local.stopAgent();
  const cfg = readFileSync(local.agentConfig, "utf8").replace('level = "info"', 'level = "debug"');
  writeFileSync(local.agentConfig, `${cfg}\n[monitor]\ninterval = "${INTERVAL_MS / 1000}s"\n`);
  const proc = Bun.spawn([mcpBinary(), "agent", "--config", local.agentConfig], {
    env: { ...process.env, ...pe.env },
    stdin: "ignore",
    stdout: "ignore",
    stderr: "pipe",
  });
  let ticks = 0;
  let tail = "";
  void (async () => {
    const dec = new TextDecoder();
    for await (const chunk of proc.stderr as ReadableStream<Uint8Array>) {
      const text = tail + dec.decode(chunk);
      const lines = text.split("\n");
      tail = lines.pop() ?? "";
      for (const l of lines) if (l.includes('"msg":"monitor tick"')) ticks++;
    }
  })();
  ctx.defer(async () => {
    proc.kill("SIGTERM");
    const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
    await proc.exited;
    clearTimeout(t);
    await local.stop();
  });
  await waitUntil("the fleet agent's first monitor tick", () => ticks >= 1 || proc.exitCode !== null, 30_000);
  if (proc.exitCode !== null) throw new Error(`fleet agent exited with ${proc.exitCode}`);
  const idleRss = await samplesOf(proc.pid, 5, 300);
  const idleSplit = rssSplit(proc.pid);

  const services: string[] = [];
  for (let i = 0; i < SERVICES; i++) {
    const name = `mcpbench-m${i}`;
    services.push(name);
    // Component named after its service: the container is called mcpbench-m<i>.
    writeFileSync(
      join(local.servicesDir, `${name}.toml`),
      `name = "${name}"\nactive = true\n\n[[components]]\nname = "${name}"\nimage = "${image}"\n`,
    );
    ctx.created.push(name);
  }
  const t0 = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < services.length) {
      const name = services[next++] as string;
      const d = await local.mcp(["deploy", name, "--pull", "never"], { timeoutMs: 120_000 });
      if (d.code !== 0) throw new Error(`deploy ${name} failed: ${d.stderr.trim().split("\n")[0]}`);
    }
  };
  await Promise.all(Array.from({ length: DEPLOY_CONCURRENCY }, worker));
  const deployMs = performance.now() - t0;
  return { local, pid: proc.pid, ticks: () => ticks, idleRss, idleSplit, services, deployMs };
}

/** A consistent copy of the fleet agent's registry (VACUUM INTO is safe against a live WAL db). */
export function copyRegistry(src: string, dir: string): string {
  const dst = join(dir, "mcp.db");
  const db = new Database(src, { readonly: true });
  try {
    db.run(`VACUUM INTO '${dst.replaceAll("'", "''")}'`);
  } finally {
    db.close();
  }
  return dst;
}

/** The runtime with every method call counted into `calls` (how many podman runs a tick costs). */
function counting(rt: Runtime, calls: Record<string, number>): Runtime {
  return new Proxy(rt, {
    get(target, prop, receiver) {
      const v: unknown = Reflect.get(target, prop, receiver);
      if (typeof v !== "function") return v;
      return (...args: unknown[]) => {
        calls[String(prop)] = (calls[String(prop)] ?? 0) + 1;
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

export async function monitorTickBench(ctx: BenchContext): Promise<Result[]> {
  const f = await fleet(ctx);
  const pe = await podmanEnv();
  const dir = mkdtempSync(join(tmpdir(), "mcpbench-monitor-"));
  let agent: RunningAgent | undefined;
  const calls: Record<string, number> = {};
  // api: true is what the agent daemon builds by default ([agent] runtime_api = "auto").
  const runtime = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env, api: true });
  ctx.defer(async () => {
    await agent?.close();
    runtime.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const dbPath = copyRegistry(join(f.local.dir, "mcp.db"), dir);
  // The agent's own wiring (startAgent → startMonitor) on the copied registry; a 1 h interval so
  // only our tickOnce() calls run after the first tick, which start() fires at once.
  agent = await startAgent({
    nodeName: "bench-fleet",
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: readFileSync(join(f.local.dir, "certs", "agent.pem"), "utf8"),
    tlsKeyPem: readFileSync(join(f.local.dir, "certs", "agent.key"), "utf8"),
    dbPath,
    validator: new LocalTokenValidator([]),
    runtime: counting(runtime, calls),
    srvRoot: join(dir, "srv"),
    portRange: [20000, 20100],
    pullPolicy: "never",
    logger: pino({ level: "silent" }),
    version: "0.0.0-bench",
    monitor: {
      intervalMs: 3_600_000,
      alertCommand: [],
      cooldownMs: 900_000,
      flapThreshold: 3,
      flapWindowMs: 600_000,
      retentionMs: 30 * 86_400_000,
      alertTimeoutMs: 30_000,
    },
  });
  const monitor = (await agent.startup).find((b): b is Monitor => b instanceof Monitor);
  if (!monitor) throw new Error("in-process agent started without a monitor");
  const services = agent.registry.listServices();
  const ours = services.filter((s) => s.name.startsWith("mcpbench-m")).length;
  const running = services
    .filter((s) => s.name.startsWith("mcpbench-m"))
    .filter((s) => s.components.every((c) => c.observedState === "running")).length;
  // The fleet agent ticks every second (a podman ps each): pause it so neither side races it
  // for podman's locks; agent-rss counts its ticks afterwards.
  process.kill(f.pid, "SIGSTOP");
  try {
    return [
      await tickFigure(
        ctx,
        monitor,
        pe,
        calls,
        `${ours} mcpbench-m services (${running} running), ${services.length} registry services in all`,
      ),
    ];
  } finally {
    process.kill(f.pid, "SIGCONT");
  }
}

async function tickFigure(
  ctx: BenchContext,
  monitor: Monitor,
  pe: PodmanEnv,
  calls: Record<string, number>,
  registry: string,
): Promise<Result> {
  let ticks = 0;
  for (const k of Object.keys(calls)) delete calls[k];
  const fig = await abRounds(
    "monitor-tick",
    {
      label: "one monitor iteration (Monitor.tickOnce)",
      run: async () => {
        const t0 = performance.now();
        await monitor.tickOnce();
        ticks++;
        return performance.now() - t0;
      },
    },
    {
      label: "podman ps -a --format json",
      run: async () =>
        (await timeSpawn(["podman", ...pe.globalArgs, "ps", "-a", "--format", "json"], pe.env)).ms,
    },
    { rounds: ctx.opts.rounds, perRound: 3, target: { of: "ratio", max: 1.15 } },
  );
  const perTick = Object.entries(calls)
    .map(([m, n]) => `${m} ${(n / ticks).toFixed(2)}`)
    .join(", ");
  fig.notes =
    `in-process agent (startAgent) on a copy of the fleet agent's registry: ${registry} (containers ` +
    `of other runs are discovered as ignore); real podman runtime with the test podman env; the ` +
    `fleet agent process is SIGSTOPped meanwhile; runtime calls per tick: ${perTick || "none"}`;
  return fig;
}

/** RSS floor: a `bun build --compile`d script that only sleeps. */
async function emptyBinaryRss(): Promise<{ samples: number[]; split: string }> {
  const dir = mkdtempSync(join(tmpdir(), "mcpbench-empty-"));
  try {
    const src = join(dir, "sleep.ts");
    writeFileSync(src, "setInterval(() => {}, 1000);\n");
    const out = join(dir, "sleep");
    await timeSpawn([
      join(REPO_ROOT, "node_modules", ".bin", "bun"),
      "build",
      "--compile",
      src,
      "--outfile",
      out,
    ]);
    const p = Bun.spawn([out], { stdin: "ignore", stdout: "ignore", stderr: "ignore" });
    try {
      await Bun.sleep(1000);
      const samples = await samplesOf(p.pid, 5, 200);
      return { samples, split: rssSplit(p.pid) };
    } finally {
      p.kill("SIGKILL");
      await p.exited;
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function agentRssBench(ctx: BenchContext): Promise<Result[]> {
  const f = await fleet(ctx);
  const from = f.ticks();
  // One tick takes one podman ps (~0.1-1 s): allow a slow, loaded machine several times over.
  await waitUntil("10 monitor ticks with 100 services", () => f.ticks() >= from + 10, INTERVAL_MS * 10 * 6);
  const loaded = await samplesOf(f.pid, 5, 300);
  const loadedSplit = rssSplit(f.pid);
  const floor = await emptyBinaryRss();
  const floorMb = stats(floor.samples).median;
  const floorNote = `floor: an empty bun --compile binary that only sleeps has VmRSS ${floorMb.toFixed(1)} MB (${floor.split}; Bun ${Bun.version})`;
  return [
    measure("agent-rss-idle", "mcp agent VmRSS right after start, no services", f.idleRss, {
      unit: "MB",
      target: { of: "value", max: RSS_TARGET_MB },
      notes: `5 samples 300 ms apart after the first monitor tick; last: ${f.idleSplit}; ${floorNote}`,
    }),
    measure("agent-rss-100", `mcp agent VmRSS with ${f.services.length} services after 10 ticks`, loaded, {
      unit: "MB",
      target: { of: "value", max: RSS_TARGET_MB },
      notes:
        `monitor interval ${INTERVAL_MS} ms, debug log (ticks counted from it); ${f.ticks() - from} ticks ` +
        `since the deploy of ${f.services.length} services (took ${Math.round(f.deployMs)} ms, ` +
        `${DEPLOY_CONCURRENCY} CLI deploys at a time); last sample: ${loadedSplit}; ${floorNote}`,
    }),
  ];
}
