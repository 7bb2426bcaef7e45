// Alert delivery (reference "Alert Command"): every alert is logged as one JSON line, then the
// operator's alert_command runs as an argv array (never a shell, so container names cannot
// inject anything) with the alert in MCP_* environment variables. Its run time is bounded and
// its failure is logged, never thrown: a broken notifier must not take the agent down.
import type { Logger } from "pino";

/** drift and flapping come from the monitor loop; boot (and later unhealthy) from other agent parts. */
export type AlertType = "drift" | "flapping" | "unhealthy" | "boot";

export interface Alert {
  type: AlertType;
  service: string;
  component: string;
  desired: string;
  observed: string;
  prev: string;
  /** Transitions within the flap window (the flap rate; informative for other types). */
  transitions: number;
  /** Free-text reason, e.g. which boot health check failed; passed as MCP_DETAIL when set. */
  detail?: string;
}

export interface AlertSink {
  node: string;
  /** argv; empty = log only. */
  command: readonly string[];
  timeoutMs: number;
  logger: Logger;
}

export interface AlertOutcome {
  /** false when the command is empty (log only) or could not be started. */
  ran: boolean;
  /** Exit code; null when killed by a signal or not run. */
  code: number | null;
  timedOut: boolean;
  error?: string;
}

const DEFAULT_TIMEOUT_MS = 30_000;
const STDERR_KEEP = 2048;
// After the command exits, a background grandchild may still hold its stderr open; do not wait
// for it longer than this.
const STDERR_GRACE_MS = 200;

/** The sink described by agent settings (structural, so this module imports no role). */
export function alertSink(settings: {
  nodeName: string;
  logger: Logger;
  monitor?: { alertCommand: string[]; alertTimeoutMs: number };
}): AlertSink {
  return {
    node: settings.nodeName,
    command: settings.monitor?.alertCommand ?? [],
    timeoutMs: settings.monitor?.alertTimeoutMs ?? DEFAULT_TIMEOUT_MS,
    logger: settings.logger,
  };
}

/**
 * The agent's environment without any MCP_* variable: the alert command must see exactly this
 * alert's MCP_* values, never stale ones the agent itself was started with (MCP_TOKEN included).
 */
export function inheritedEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && !k.startsWith("MCP_")) env[k] = v;
  return env;
}

export function alertEnv(node: string, a: Alert): Record<string, string> {
  const env: Record<string, string> = {
    MCP_COMPONENT: a.component,
    MCP_SERVICE: a.service,
    MCP_NODE: node,
    MCP_DESIRED: a.desired,
    MCP_OBSERVED: a.observed,
    MCP_PREV_STATE: a.prev,
    MCP_ALERT_TYPE: a.type,
    MCP_TRANSITIONS: String(a.transitions),
  };
  if (a.detail !== undefined) env.MCP_DETAIL = a.detail;
  return env;
}

function logFields(node: string, a: Alert): Record<string, unknown> {
  return {
    alert_type: a.type,
    service: a.service,
    component: a.component,
    node,
    desired: a.desired,
    observed: a.observed,
    prev_state: a.prev,
    transitions: a.transitions,
    ...(a.detail !== undefined ? { detail: a.detail } : {}),
  };
}

/** Reads a stream keeping only its last STDERR_KEEP characters. */
async function tail(stream: ReadableStream<Uint8Array>, into: { text: string }): Promise<void> {
  const dec = new TextDecoder();
  try {
    for await (const chunk of stream) {
      into.text = (into.text + dec.decode(chunk, { stream: true })).slice(-STDERR_KEEP);
    }
  } catch {
    // a killed child closes its pipe abruptly; what was read is kept
  }
}

/**
 * Logs the alert and runs the sink's command. Never throws. The command runs in its own process
 * group so a timeout kills everything it started (a shell script's `sleep` included).
 */
export async function raiseAlert(sink: AlertSink, alert: Alert): Promise<AlertOutcome> {
  const fields = logFields(sink.node, alert);
  sink.logger.warn(fields, `alert: ${alert.type} ${alert.service}/${alert.component}`);
  if (sink.command.length === 0) return { ran: false, code: null, timedOut: false };

  let proc: ReturnType<typeof Bun.spawn>;
  try {
    proc = Bun.spawn([...sink.command], {
      env: { ...inheritedEnv(), ...alertEnv(sink.node, alert) },
      stdin: "ignore",
      stdout: "ignore",
      stderr: "pipe",
      detached: true,
    });
  } catch (err) {
    const error = `cannot execute ${sink.command[0]}: ${(err as Error).message}`;
    sink.logger.error({ ...fields, command: sink.command[0], error }, "alert command failed to start");
    return { ran: false, code: null, timedOut: false, error };
  }
  const started = Date.now();
  const stderr = { text: "" };
  const reading = tail(proc.stderr as ReadableStream<Uint8Array>, stderr);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-proc.pid, "SIGKILL");
    } catch {
      proc.kill("SIGKILL");
    }
  }, sink.timeoutMs);
  const code = await proc.exited;
  clearTimeout(timer);
  await Promise.race([reading, Bun.sleep(STDERR_GRACE_MS)]);
  const ms = Date.now() - started;
  const err = stderr.text.trim();
  const detail = {
    ...fields,
    command: sink.command[0],
    exit_code: code,
    ms,
    ...(err ? { stderr: err } : {}),
  };
  if (timedOut) {
    const error = `alert command timed out after ${sink.timeoutMs} ms and was killed`;
    sink.logger.error({ ...detail, error }, error);
    return { ran: true, code: null, timedOut: true, error };
  }
  if (code !== 0) {
    const error = `alert command exited with code ${code}`;
    sink.logger.error({ ...detail, error }, error);
    return { ran: true, code, timedOut: false, error };
  }
  sink.logger.info(detail, "alert command ran");
  return { ran: true, code, timedOut: false };
}
