// Container events as the runtimes publish them, parsed into one shape. Two wire formats:
//   podman's CLI (`podman events --format json`): {"ID","Image","Name","Status","Time" (RFC 3339,
//     ns),"Type","Attributes" (the container's labels),"ContainerExitCode","HealthStatus"};
//   Docker's (`docker events --format '{{json .}}'`, also podman's REST API): {"Type", "Action",
//     "Actor":{"ID","Attributes" (labels + name, image, exitCode or containerExitCode)},"time",
//     "timeNano"}.
// Parsers are pure (fixtures in test/unit/runtime/fixtures/); a line that is not a container
// event of a known shape is null (the stream skips it), never an exception.

/**
 * What happened, in the runtime's own order. Only the first group changes observed state:
 * create (exists, never started), start (running), die (exited, with its code), stop (exited),
 * pause/unpause, remove (gone). oom precedes a die; health carries a health check's result.
 */
export type EventAction =
  | "create"
  | "start"
  | "die"
  | "stop"
  | "pause"
  | "unpause"
  | "remove"
  | "rename"
  | "oom"
  | "health"
  | "other";

export interface RuntimeEvent {
  action: EventAction;
  /** The runtime's own word ("died", "destroy", "health_status: healthy"). */
  word: string;
  id: string;
  name: string;
  image: string;
  /** When it happened, in ms since the epoch (fractional: the runtimes give ns). */
  time: number;
  /** die only: the main process's exit code, when the runtime says. */
  exitCode: number | null;
  /** health only: "healthy", "unhealthy", "starting". */
  health?: string;
  /** The container's labels as the event carries them (docker: also name/image/exitCode). */
  labels: Record<string, string>;
}

/** How to run and read one runtime's event stream (PodmanRuntime/DockerRuntime eventSource()). */
export interface EventSource {
  /** What logs call it ("podman events"). */
  label: string;
  /** The stream's argv, replaying events from `sinceMs` (ms since the epoch) on. */
  argv(sinceMs: number): string[];
  env?: Record<string, string>;
  /** One stdout line → an event, or null (skipped). */
  parse(line: string): RuntimeEvent | null;
  /**
   * The runtime's API stream, preferred over the child when it answers (podman: its REST
   * service's /libpod/events, one process fewer): a body of JSON lines for `parse`, or null when
   * the API is not available now (the child is used for this life of the stream).
   */
  api?: {
    label: string;
    open(sinceMs: number, signal: AbortSignal): Promise<ReadableStream<Uint8Array> | null>;
    parse(line: string): RuntimeEvent | null;
  };
}

const ACTIONS: Record<string, EventAction> = {
  create: "create",
  start: "start",
  restart: "other", // docker sends die + start around it; podman sends them too
  died: "die",
  die: "die",
  stop: "stop",
  pause: "pause",
  unpause: "unpause",
  remove: "remove",
  destroy: "remove",
  rename: "rename",
  oom: "oom",
  health_status: "health",
};

function actionOf(word: string): EventAction {
  // Docker: "health_status: healthy", "exec_start: sh -c …"
  const head = word.split(":")[0]!.trim();
  return ACTIONS[head] ?? "other";
}

type Json = Record<string, unknown>;

function obj(v: unknown): Json {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {};
}
function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}
function labelsOf(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(obj(v))) if (typeof x === "string") out[k] = x;
  return out;
}
function intOf(v: unknown): number | null {
  if (typeof v === "number" && Number.isInteger(v)) return v;
  if (typeof v === "string" && /^-?\d+$/.test(v)) return Number(v);
  return null;
}

/**
 * RFC 3339 with up to nanoseconds → ms since the epoch, keeping the sub-millisecond part (two
 * events in the same millisecond still order). NaN when it is not such a time.
 */
export function isoToMs(s: string): number {
  const m = /^(.*T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(s);
  if (!m) return Number.NaN;
  const whole = Date.parse(`${m[1]}${m[3]}`);
  const frac = m[2] ? Number(`0.${m[2]}`) * 1000 : 0;
  return whole + frac;
}

function parseLine(line: string): Json | null {
  const t = line.trim();
  if (!t.startsWith("{")) return null;
  try {
    return obj(JSON.parse(t));
  } catch {
    return null;
  }
}

/** One line of `podman events --format json`; null for other types and other shapes. */
export function parsePodmanEvent(line: string): RuntimeEvent | null {
  const j = parseLine(line);
  if (!j || str(j["Type"]) !== "container") return null;
  const word = str(j["Status"]);
  const id = str(j["ID"]);
  const time = isoToMs(str(j["Time"]));
  if (word === "" || id === "" || Number.isNaN(time)) return null;
  const action = actionOf(word);
  const attrs = labelsOf(j["Attributes"]);
  const health = str(j["HealthStatus"]) || attrs["health_status"];
  return {
    action,
    word,
    id,
    name: str(j["Name"]),
    image: str(j["Image"]),
    time,
    exitCode: action === "die" ? intOf(j["ContainerExitCode"]) : null,
    ...(action === "health" && health ? { health } : {}),
    labels: attrs,
  };
}

/** One line of Docker's event JSON (docker events, the compat API); null for other types. */
export function parseCompatEvent(line: string): RuntimeEvent | null {
  const j = parseLine(line);
  if (!j || str(j["Type"]) !== "container") return null;
  const word = str(j["Action"]) || str(j["status"]);
  const actor = obj(j["Actor"]);
  const id = str(actor["ID"]) || str(j["id"]);
  const nano = typeof j["timeNano"] === "number" ? (j["timeNano"] as number) : null;
  const time =
    nano !== null ? nano / 1e6 : typeof j["time"] === "number" ? (j["time"] as number) * 1000 : NaN;
  if (word === "" || id === "" || Number.isNaN(time)) return null;
  const action = actionOf(word);
  const attrs = labelsOf(actor["Attributes"]);
  const health = action === "health" ? word.slice(word.indexOf(":") + 1).trim() : "";
  return {
    action,
    word,
    id,
    name: attrs["name"] ?? "",
    image: attrs["image"] ?? str(j["from"]),
    time,
    // docker: exitCode; podman's REST API: containerExitCode
    exitCode: action === "die" ? intOf(attrs["exitCode"] ?? attrs["containerExitCode"]) : null,
    ...(health ? { health } : {}),
    labels: attrs,
  };
}
