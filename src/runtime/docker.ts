// Docker implementation of Runtime. The docker CLI takes the same run/start/stop/rm/logs argv as
// podman, so DockerRuntime extends PodmanRuntime and overrides only what differs:
//   - `ps --format` prints one JSON object per line (not an array), with other field names and no
//     start time; list() adds ONE `container inspect` over the running ids for their StartedAt,
//     so a listing stays at two calls at most;
//   - there is no `image exists`: `image inspect` and its "No such image" answer stand in;
//   - version() is the engine's (server) version: that is what runs the containers, and asking
//     for it also proves the engine is reachable;
//   - `rm -f` takes no stop timeout: stopAndRemove is `stop -t` then `rm -f` (two calls);
//   - inspect reports the default network mode as "default" (read back as "", like an unset one);
//   - error output carries "docker: " prefixes and "See 'docker run --help'." lines, dropped so a
//     failure reads as one line.
// The engine endpoint comes from DOCKER_HOST or from global args (`-H unix:///…`).
// Pure builders and parsers are exported for unit tests with output captured from a real engine.

import { parseCompatEvent, type RuntimeEvent } from "./events.ts";
import { failure, type RunResult, RuntimeError, run } from "./exec.ts";
import {
  eventsArgs,
  type ImageDefaults,
  ownerField,
  PodmanRuntime,
  parseInspect,
  parseTime,
} from "./podman.ts";
import { type ContainerDetails, type ContainerInfo, type Engine, mapState, OWNER_LABELS } from "./runtime.ts";

// ---------------------------------------------------------------------------------------------
// argv builders

function positional(value: string, what: string): string {
  if (value === "" || value.startsWith("-")) {
    throw new Error(`invalid ${what} ${JSON.stringify(value)}: must be non-empty and not start with "-"`);
  }
  return value;
}

/**
 * Full ids (--no-trunc) so the follow-up inspect and the callers see the same ids podman gives.
 * The owner labels come as their own JSON strings after the row, tab-separated (JSON escapes a
 * tab, so the separator is unambiguous): ps prints Labels as one "k=v,k=v" string in no fixed
 * order, where an image label "x=a,mcp.service=victim" reads as a second owner label.
 */
export function dockerPsArgs(): string[] {
  return [
    "ps",
    "-a",
    "--no-trunc",
    "--format",
    `{{json .}}\t{{json (.Label "${OWNER_LABELS.service}")}}\t{{json (.Label "${OWNER_LABELS.component}")}}`,
  ];
}

/** One line "<id> <StartedAt>" per container; used for the running containers of a listing. */
export function dockerStartTimesArgs(ids: string[]): string[] {
  return [
    "container",
    "inspect",
    "--format",
    "{{.Id}} {{.State.StartedAt}}",
    ...ids.map((id) => positional(id, "container id")),
  ];
}

export function dockerImageExistsArgs(image: string): string[] {
  return ["image", "inspect", "--format", "{{.Id}}", positional(image, "image")];
}

export function dockerPullArgs(image: string): string[] {
  // -q prints only the image reference: a failure's stderr is just the engine's error.
  return ["pull", "-q", positional(image, "image")];
}

export function dockerVersionArgs(): string[] {
  return ["version", "--format", "{{.Server.Version}}"];
}

// ---------------------------------------------------------------------------------------------
// parsers (docker 20.10 engine; 20.10 and 28.x clients print the same fields)

type Json = Record<string, unknown>;

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

/**
 * `docker ps` times look like "2026-11-21 05:24:46 +0000 UTC" (Go's time.String), which
 * Date.parse does not take; RFC 3339 (inspect) is passed on to parseTime.
 */
export function parseDockerTime(v: unknown): Date | null {
  const s = str(v).trim();
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)? ([+-])(\d\d)(\d\d)\b/.exec(s);
  if (!m) return parseTime(s);
  const frac = m[3] ? m[3].slice(0, 4) : "";
  const ms = Date.parse(`${m[1]}T${m[2]}${frac}${m[4]}${m[5]}:${m[6]}`);
  return Number.isNaN(ms) || ms <= 0 ? null : new Date(ms);
}

/** "Exited (137) 2 seconds ago" → 137; anything else → null. */
function exitCodeFromStatus(status: string): number | null {
  const m = /^Exited \((-?\d+)\)/.exec(status);
  return m ? Number(m[1]) : null;
}

/** Names is "a" or, for linked containers, "a,b/alias": the name is the entry without a slash. */
function primaryName(names: string): string {
  const all = names.split(",").map((n) => n.trim());
  return all.find((n) => n !== "" && !n.includes("/")) ?? all[0] ?? "";
}

/** One owner label value printed by {{json (.Label "…")}}: a JSON string ("" when unset). */
function parseLabelValue(field: string, line: string): string {
  let v: unknown;
  try {
    v = JSON.parse(field);
  } catch {
    v = undefined;
  }
  if (typeof v !== "string")
    throw new Error(`unexpected docker ps output: bad label field in: ${line.slice(0, 80)}`);
  return v;
}

/**
 * Parses `docker ps` as dockerPsArgs asks for it: per line one JSON object, then the owner
 * labels' values as JSON strings, tab-separated. A line with the object alone carries no owner:
 * the owner is never read from the object's ambiguous "k=v,k=v" Labels string. startedAt is
 * null here (ps does not report it); DockerRuntime.list() fills it in for running containers.
 */
export function parseDockerPs(stdout: string): ContainerInfo[] {
  const out: ContainerInfo[] = [];
  for (const line of stdout.split("\n")) {
    const t = line.trim();
    if (t === "") continue;
    const fields = t.split("\t");
    if (fields.length !== 1 && fields.length !== 3)
      throw new Error(
        `unexpected docker ps output: ${fields.length} tab-separated fields in: ${t.slice(0, 80)}`,
      );
    const labels: Record<string, string> = {};
    if (fields.length === 3) {
      labels[OWNER_LABELS.service] = parseLabelValue(fields[1]!, t);
      labels[OWNER_LABELS.component] = parseLabelValue(fields[2]!, t);
    }
    let raw: unknown;
    try {
      raw = JSON.parse(fields[0]!);
    } catch {
      throw new Error(`cannot parse docker ps output as JSON: ${t.slice(0, 80)}`);
    }
    if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
      throw new Error(`unexpected docker ps output: not a JSON object per line: ${t.slice(0, 80)}`);
    }
    const c = raw as Json;
    const rawState = str(c["State"]);
    const state = mapState(rawState);
    out.push({
      id: str(c["ID"]),
      name: primaryName(str(c["Names"])),
      image: str(c["Image"]),
      state,
      startedAt: null,
      createdAt: parseDockerTime(c["CreatedAt"]),
      exitCode: state === "exited" ? exitCodeFromStatus(str(c["Status"])) : null,
      ...ownerField(labels),
    });
  }
  return out;
}

/** Parses the "<id> <StartedAt>" lines of dockerStartTimesArgs into id → start time. */
export function parseStartTimes(stdout: string): Map<string, Date | null> {
  const times = new Map<string, Date | null>();
  for (const line of stdout.split("\n")) {
    const [id = "", when = ""] = line.trim().split(/\s+/, 2);
    if (id !== "") times.set(id, parseTime(when));
  }
  return times;
}

/**
 * Parses `docker container inspect` output. The shape is podman's (podman copied it), except that
 * a container started without --network reports NetworkMode "default": read back as "" so a
 * redeploy from the read-back spec passes no --network, as the original did.
 */
export function parseDockerInspect(json: unknown, image?: ImageDefaults): ContainerDetails {
  const d = parseInspect(json, image);
  if (d.spec.network === "default") d.spec.network = "";
  return d;
}

/**
 * Drops docker's CLI noise so stderrSummary() keeps the engine's own message: the "docker: "
 * prefix, "See 'docker run --help'." hints, and the "failed to start containers: x" echo that
 * follows the real reason; "Error response from daemon: X" becomes "Error: X" as podman words it.
 */
export function cleanDockerStderr(stderr: string): string {
  const lines = stderr
    .split("\n")
    .filter((l) => !/^See '.*--help'\.?\s*$/.test(l.trim()))
    .map((l) => l.replace(/^docker: /, "").replace(/^Error response from daemon: /, "Error: "));
  const echo = /^Error: failed to (start|stop|restart|remove) containers?:/;
  const reasons = lines.filter((l) => /^Error: /.test(l) && !echo.test(l));
  return (reasons.length > 0 ? lines.filter((l) => !echo.test(l)) : lines).join("\n");
}

// ---------------------------------------------------------------------------------------------
// the runtime

export class DockerRuntime extends PodmanRuntime {
  override readonly engine: Engine = "docker";

  protected override async call(
    sub: string[],
    target: string,
    timeoutMs = this.callTimeoutMs,
  ): Promise<RunResult> {
    const res = await run(this.argv(sub), { env: this.env, timeoutMs, label: this.label(sub, target) });
    return res.code === 0 ? res : { ...res, stderr: cleanDockerStderr(res.stderr) };
  }

  protected override async execOk(
    sub: string[],
    target: string,
    timeoutMs = this.callTimeoutMs,
  ): Promise<RunResult> {
    const res = await this.call(sub, target, timeoutMs);
    if (res.code !== 0) throw failure(this.argv(sub), res, this.label(sub, target));
    return res;
  }

  /** `docker events` prints Go templates, not podman's "json" word: `{{json .}}` is the message. */
  protected override eventsArgs(sinceMs: number): string[] {
    const a = eventsArgs(sinceMs);
    a[2] = "{{json .}}";
    return a;
  }

  protected override parseEvent(line: string): RuntimeEvent | null {
    return parseCompatEvent(line);
  }

  protected override parseList(stdout: string): ContainerInfo[] {
    return parseDockerPs(stdout);
  }

  protected override parseDetails(stdout: string, image?: ImageDefaults): ContainerDetails {
    return parseDockerInspect(stdout, image);
  }

  override async version(): Promise<string> {
    const { stdout } = await this.execOk(dockerVersionArgs(), "");
    const v = stdout.trim();
    if (!/^\d+\.\d+/.test(v)) throw new Error(`cannot read ${this.binary} engine version from: ${v}`);
    return v;
  }

  override async pull(image: string): Promise<void> {
    await this.execOk(dockerPullArgs(image), image, this.pullTimeoutMs);
  }

  override async imageExists(image: string): Promise<boolean> {
    const sub = dockerImageExistsArgs(image);
    const res = await this.call(sub, image);
    if (res.code === 0) return true;
    if (res.code === 1 && /no such image/i.test(res.stderr)) return false;
    throw failure(this.argv(sub), res, this.label(sub, image));
  }

  /** `docker rm -f` kills at once (no -t): stop with the grace period first, then remove. */
  override async stopAndRemove(name: string, timeoutSec = 10): Promise<boolean> {
    try {
      await this.stop(name, timeoutSec);
    } catch (e) {
      if (e instanceof RuntimeError && this.isNoSuchContainer(e.stderr)) return false;
      throw e;
    }
    await this.remove(name, true);
    return true;
  }

  override async list(): Promise<ContainerInfo[]> {
    const { stdout } = await this.execOk(dockerPsArgs(), "-a");
    const all = this.parseList(stdout);
    const running = all.filter((c) => c.state === "running" && c.id !== "");
    if (running.length === 0) return all;
    const sub = dockerStartTimesArgs(running.map((c) => c.id));
    const res = await this.call(sub, "");
    // A container removed between ps and inspect makes inspect exit 1 after printing the others:
    // keep what it printed; any other failure is a real error.
    if (res.code !== 0 && !this.isNoSuchContainer(res.stderr)) {
      throw failure(this.argv(sub), res, this.label(sub, ""));
    }
    const times = parseStartTimes(res.stdout);
    for (const c of running) c.startedAt = times.get(c.id) ?? null;
    return all;
  }
}
