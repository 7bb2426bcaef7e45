// Issue 18 benchmarks (container state from the runtime's event stream instead of a poll every
// monitor interval):
// - drift-latency: a local agent (monitor interval 60 s, cooldown 1 s, an alert command that
//   appends a timestamped line to a file) with one long-running container; the container's main
//   process is SIGKILLed from outside `--kills` times and each time the delay until the alert
//   command ran is measured. Raw side: `podman wait` on the same container, started before the
//   same kill (how soon the runtime itself reports the exit).
// - monitor-cpu: CPU time per hour of an idle agent (the fleet's 100 services, default interval
//   60 s) over a `--window`, the agent plus every descendant (its podman API service, podman CLI
//   children). Raw side: one `podman ps -a --format json` per interval over the same window.
import { Database } from "bun:sqlite";
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mcpBinary } from "../../test/support/binary.ts";
import { freePort, podmanEnv } from "../../test/support/env.ts";
import { type LocalAgent, startLocalAgent } from "../../test/support/local-agent.ts";
import { copyRegistry, fleet, waitUntil } from "./agent.ts";
import {
  type BenchContext,
  type Figure,
  percentile,
  printFigure,
  type Result,
  stats,
  timeSpawn,
} from "./lib.ts";

const MONITOR_INTERVAL_MS = 60_000;
const DRIFT_TARGET_MS = 2_000;
const DRIFT_SERVICE = "mcpbench-drift";
// `podman wait` is given this long to attach before the kill (its own startup is ~0.1-0.3 s).
const WAIT_ATTACH_MS = 1_000;
const COOLDOWN_MS = 1_000;

/** Alert command: one line per alert, "<epoch ms> <type> <service>/<component>", appended to $1. */
const ALERT_SCRIPT = `#!/bin/sh
printf '%s %s %s/%s\\n' "$(date +%s%3N)" "$MCP_ALERT_TYPE" "$MCP_SERVICE" "$MCP_COMPONENT" >> "$1"
`;

interface AlertLine {
  at: number;
  type: string;
  key: string;
}

function alertLines(file: string): AlertLine[] {
  if (!existsSync(file)) return [];
  const out: AlertLine[] = [];
  for (const l of readFileSync(file, "utf8").split("\n")) {
    const [at, type, key] = l.split(" ");
    if (at && type && key) out.push({ at: Number(at), type, key });
  }
  return out;
}

function observedState(agent: LocalAgent, service: string, component: string): string | null {
  const db = new Database(join(agent.dir, "mcp.db"), { readonly: true });
  try {
    return (
      db
        .query<{ s: string }, [string, string]>(
          "SELECT observed_state AS s FROM components WHERE service = ? AND name = ?",
        )
        .get(service, component)?.s ?? null
    );
  } finally {
    db.close();
  }
}

export async function driftLatencyBench(ctx: BenchContext): Promise<Result[]> {
  const pe = await podmanEnv();
  const image = await ctx.image();
  const kills = ctx.opts.kills;
  const spreadMs = ctx.opts.spreadSec * 1000;
  const dir = mkdtempSync(join(tmpdir(), "mcpbench-drift-"));
  const script = join(dir, "alert.sh");
  const alerts = join(dir, "alerts.log");
  writeFileSync(script, ALERT_SCRIPT);
  chmodSync(script, 0o755);
  const local = await startLocalAgent({
    node: "bench-drift",
    appendConfig: [
      "[monitor]",
      `interval = "${MONITOR_INTERVAL_MS / 1000}s"`,
      `cooldown = "${COOLDOWN_MS / 1000}s"`,
      // 20 kills are 40 transitions: no flapping alert instead of the drift one.
      "flap_threshold = 1000",
      `alert_command = ${JSON.stringify([script, alerts])}`,
    ].join("\n"),
  });
  const agentStarted = Date.now();
  ctx.defer(async () => {
    await local.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  // restart = "no": the killed container stays exited until we start it (the default
  // unless-stopped would have podman restart it at once).
  writeFileSync(
    join(local.servicesDir, `${DRIFT_SERVICE}.toml`),
    `name = "${DRIFT_SERVICE}"\nactive = true\n\n[[components]]\nname = "${DRIFT_SERVICE}"\nimage = "${image}"\nrestart = "no"\n`,
  );
  ctx.created.push(DRIFT_SERVICE);
  const d = await local.mcp(["deploy", DRIFT_SERVICE, "--pull", "never"], { timeoutMs: 120_000 });
  if (d.code !== 0) throw new Error(`deploy ${DRIFT_SERVICE} failed: ${d.stderr.trim().split("\n")[0]}`);
  const key = `${DRIFT_SERVICE}/${DRIFT_SERVICE}`;
  const podman = (...args: string[]) => ["podman", ...pe.globalArgs, ...args];

  const latencies: number[] = [];
  const waits: number[] = [];
  const types: string[] = [];
  // The first tick runs at agent start; later ones every interval. Each kill is placed at a phase
  // ((i + 0.5) / kills of the spread) after the previous alert (≈ a tick under polling), so the
  // samples cover the interval instead of all landing just after a tick.
  let ref = agentStarted;
  for (let i = 0; i < kills; i++) {
    await waitUntil(
      `${DRIFT_SERVICE} observed running by the agent`,
      () => observedState(local, DRIFT_SERVICE, DRIFT_SERVICE) === "running",
      MONITOR_INTERVAL_MS * 2 + 30_000,
    );
    if (spreadMs > 0) {
      let at = ref + ((i + 0.5) / kills) * spreadMs;
      while (at < Date.now()) at += spreadMs;
      await Bun.sleep(at - Date.now());
    }
    const pid = Number(
      (await timeSpawn(podman("inspect", "--format", "{{.State.Pid}}", DRIFT_SERVICE), pe.env)).stdout.trim(),
    );
    if (!Number.isInteger(pid) || pid <= 0)
      throw new Error(`${DRIFT_SERVICE} has no main process (pid ${pid})`);
    const waiter = Bun.spawn(podman("wait", DRIFT_SERVICE), {
      env: { ...process.env, ...pe.env },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "ignore",
    });
    await Bun.sleep(WAIT_ATTACH_MS);
    if (waiter.exitCode !== null) throw new Error(`podman wait ${DRIFT_SERVICE} returned before the kill`);
    const seen = alertLines(alerts).length;
    const t0 = Date.now();
    const p0 = performance.now();
    process.kill(pid, "SIGKILL");
    const code = await Promise.race([waiter.exited, Bun.sleep(30_000).then(() => null)]);
    if (code === null) {
      waiter.kill("SIGKILL");
      throw new Error(`podman wait ${DRIFT_SERVICE} did not return within 30 s of the kill`);
    }
    waits.push(performance.now() - p0);
    let line: AlertLine | undefined;
    await waitUntil(
      `the drift alert for kill ${i + 1}`,
      () => {
        line = alertLines(alerts)
          .slice(seen)
          .find((l) => l.key === key);
        return line !== undefined;
      },
      MONITOR_INTERVAL_MS * 2 + 30_000,
    );
    const got = line as AlertLine;
    latencies.push(got.at - t0);
    types.push(got.type);
    ref = got.at;
    console.log(`drift-latency kill ${i + 1}/${kills}: alert ${got.type} after ${got.at - t0} ms`);
    const s = await local.mcp(["start", DRIFT_SERVICE], { timeoutMs: 60_000 });
    if (s.code !== 0) throw new Error(`mcp start ${DRIFT_SERVICE} failed: ${s.stderr.trim().split("\n")[0]}`);
    await Bun.sleep(COOLDOWN_MS);
  }
  const extra = alertLines(alerts).filter((l) => l.key === key).length - latencies.length;
  const A = { ...stats(latencies), p90: percentile(latencies, 90) };
  const B = { ...stats(waits), p90: percentile(waits, 90) };
  const fig: Figure = {
    name: "drift-latency",
    status: "ok",
    unit: "ms",
    a: { label: "container SIGKILLed from outside → alert command ran (agent)", ...A },
    b: { label: "same kill → podman wait returned", ...B },
    ratio: A.median / B.median,
    target: { of: "value", max: DRIFT_TARGET_MS },
    met: A.median <= DRIFT_TARGET_MS,
    notes:
      `${kills} kills (kill -9 of {{.State.Pid}}), monitor interval ${MONITOR_INTERVAL_MS / 1000} s, cooldown ` +
      `${COOLDOWN_MS / 1000} s, flap_threshold 1000; restart = "no", restarted with mcp start after each alert; ` +
      `kill i placed ((i+0.5)/${kills}) x ${ctx.opts.spreadSec} s after the previous alert (phase spread); ` +
      `alert types: ${types.join(",")}; alert lines beyond one per kill: ${extra}; ` +
      `median ${Math.round(A.median)} ms p90 ${Math.round(A.p90)} ms (podman wait p90 ${Math.round(B.p90)} ms)`,
  };
  printFigure(fig);
  return [fig];
}

/** utime+stime (and cutime+cstime: reaped children) of one process in clock ticks, with its ppid. */
interface ProcStat {
  pid: number;
  ppid: number;
  comm: string;
  own: number;
  reaped: number;
}

function procStat(pid: number): ProcStat | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return null; // exited meanwhile
  }
  const close = text.lastIndexOf(")");
  const comm = text.slice(text.indexOf("(") + 1, close);
  const f = text
    .slice(close + 2)
    .split(" ")
    .map((x) => Number(x));
  // After "(comm) ": state ppid … utime(14) stime(15) cutime(16) cstime(17), 1-based from pid.
  return {
    pid,
    ppid: f[1] as number,
    comm,
    own: (f[11] as number) + (f[12] as number),
    reaped: (f[13] as number) + (f[14] as number),
  };
}

interface TreeCpu {
  /** Seconds. */
  self: number;
  reaped: number;
  live: number;
  descendants: string[];
}

const CLK_TCK = 100;

/** CPU of `root` and of every live descendant (ppid chains over /proc), in seconds. */
function treeCpu(root: number): TreeCpu {
  const all: ProcStat[] = [];
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    const s = procStat(Number(e));
    if (s) all.push(s);
  }
  const r = all.find((s) => s.pid === root);
  if (!r) throw new Error(`process ${root} is gone`);
  const children = new Map<number, ProcStat[]>();
  for (const s of all) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s]);
  let live = 0;
  const descendants: string[] = [];
  const queue = [...(children.get(root) ?? [])];
  for (let i = 0; i < queue.length && i < all.length; i++) {
    const s = queue[i] as ProcStat;
    live += s.own + s.reaped;
    descendants.push(`${s.comm}(${s.pid})`);
    queue.push(...(children.get(s.pid) ?? []));
  }
  return { self: r.own / CLK_TCK, reaped: r.reaped / CLK_TCK, live: live / CLK_TCK, descendants };
}

export async function monitorCpuBench(ctx: BenchContext): Promise<Result[]> {
  const f = await fleet(ctx);
  const pe = await podmanEnv();
  const windowMs = ctx.opts.windowSec * 1000;
  const dir = mkdtempSync(join(tmpdir(), "mcpbench-cpu-"));
  // A second agent on a copy of the fleet's registry (the same 100 containers) with the default
  // 60 s interval; the fleet agent (1 s ticks) is stopped meanwhile so it loads nothing.
  const dbPath = copyRegistry(join(f.local.dir, "mcp.db"), dir);
  const port = await freePort();
  const base = readFileSync(f.local.agentConfig, "utf8");
  const cut = base.indexOf("\n[monitor]");
  const config = `${(cut >= 0 ? base.slice(0, cut) : base)
    .replace(/^grpc_addr = .*$/m, `grpc_addr = "127.0.0.1:${port}"`)
    .replace(
      /^path = .*$/m,
      `path = ${JSON.stringify(dbPath)}`,
    )}\n[monitor]\ninterval = "${MONITOR_INTERVAL_MS / 1000}s"\n`;
  const cfgPath = join(dir, "mcp-agent.toml");
  writeFileSync(cfgPath, config);
  process.kill(f.pid, "SIGSTOP");
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  const stopAgent = async () => {
    const p = proc;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill("SIGTERM");
    const t = setTimeout(() => p.kill("SIGKILL"), 5000);
    await p.exited;
    clearTimeout(t);
  };
  ctx.defer(async () => {
    await stopAgent();
    rmSync(dir, { recursive: true, force: true });
  });
  try {
    const p = Bun.spawn([mcpBinary(), "agent", "--config", cfgPath], {
      env: { ...process.env, ...pe.env },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
    });
    proc = p;
    let ticks = 0;
    void (async () => {
      const dec = new TextDecoder();
      let tail = "";
      for await (const chunk of p.stderr as ReadableStream<Uint8Array>) {
        const lines = (tail + dec.decode(chunk)).split("\n");
        tail = lines.pop() ?? "";
        for (const l of lines) if (l.includes('"msg":"monitor tick"')) ticks++;
      }
    })();
    await waitUntil("the cpu agent's first monitor tick", () => ticks >= 1 || p.exitCode !== null, 60_000);
    if (p.exitCode !== null) throw new Error(`cpu agent exited with ${p.exitCode}`);
    // Let the start-up work (first reconcile, API service start) settle before the window.
    await Bun.sleep(5_000);
    const t0 = treeCpu(p.pid);
    const ticks0 = ticks;
    const w0 = performance.now();
    // Raw side over the same window: one podman ps per interval, half an interval off the
    // agent's ticks (which came right before the window) so the two do not contend.
    const rawRuns = Math.max(1, Math.floor(windowMs / MONITOR_INTERVAL_MS));
    let rawCpuUs = 0;
    let rawDone = 0;
    for (let k = 0; k < rawRuns; k++) {
      const at = w0 + k * MONITOR_INTERVAL_MS + Math.min(MONITOR_INTERVAL_MS, windowMs) / 2;
      await Bun.sleep(Math.max(0, at - performance.now()));
      const r = Bun.spawn(["podman", ...pe.globalArgs, "ps", "-a", "--format", "json"], {
        env: { ...process.env, ...pe.env },
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      });
      await r.exited;
      const ru = r.resourceUsage();
      if (ru) rawCpuUs += Number(ru.cpuTime.total);
      rawDone++;
    }
    await Bun.sleep(Math.max(0, w0 + windowMs - performance.now()));
    const t1 = treeCpu(p.pid);
    const elapsedH = (performance.now() - w0) / 3_600_000;
    const windowTicks = ticks - ticks0;
    const d = {
      self: t1.self - t0.self,
      reaped: t1.reaped - t0.reaped,
      live: t1.live - t0.live,
    };
    const agentS = d.self + d.reaped + d.live;
    const perHour = agentS / elapsedH;
    const rawPerHour = rawCpuUs / 1e6 / elapsedH;
    const fig: Figure = {
      name: "monitor-cpu",
      status: "ok",
      unit: "cpu-s/h",
      a: {
        label: `idle mcp agent with ${f.services.length} services, with descendants`,
        ...stats([perHour]),
      },
      b: {
        label: `podman ps -a --format json once per ${MONITOR_INTERVAL_MS / 1000} s`,
        ...stats([rawPerHour]),
      },
      ratio: perHour / rawPerHour,
      notes:
        `target: below the issue 18 BEFORE figure (bench/results/issue18-before.json); ` +
        `window ${Math.round(elapsedH * 3_600_000)} ms (${(windowMs / MONITOR_INTERVAL_MS).toFixed(1)} intervals of ` +
        `${MONITOR_INTERVAL_MS / 1000} s), ${windowTicks} monitor ticks in it, extrapolated to 1 h; agent CPU in the ` +
        `window: self ${d.self.toFixed(2)} s + reaped children ${d.reaped.toFixed(2)} s + live descendants ` +
        `${d.live.toFixed(2)} s (${t1.descendants.join(" ") || "none"}); raw: ${rawDone} podman ps runs, ` +
        `${(rawCpuUs / 1e6).toFixed(2)} s CPU; /proc/<pid>/stat at ${CLK_TCK} ticks/s; not counted: conmon and ` +
        `other processes the runtime starts outside the agent's tree (not its descendants); debug log level ` +
        `(ticks are counted from it); a second agent on a copy of the fleet registry, the fleet agent ` +
        `SIGSTOPped meanwhile`,
    };
    printFigure(fig);
    return [fig];
  } finally {
    await stopAgent();
    process.kill(f.pid, "SIGCONT");
  }
}
