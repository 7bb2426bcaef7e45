// Podman implementation of Runtime. Split in two on purpose: pure argv builders and JSON parsers
// (exported, unit- and property-tested, no I/O) and a thin class that runs them through the one
// executor. Docker has the same CLI shape: a DockerRuntime can extend PodmanRuntime, change the
// binary and override the few builders/parsers that differ (psArgs/parseList, rmArgs...).

import { formatMemorySize, parseMemorySize } from "../config/specs.ts";
import { type EventSource, parseCompatEvent, parsePodmanEvent, type RuntimeEvent } from "./events.ts";
import { failure, type RunResult, RuntimeError, run, runOk, streamLines } from "./exec.ts";
import type { EngineCli } from "./nanos/oci.ts";
import { PodmanService, type ServiceLogger } from "./podman-service.ts";
import {
  type ContainerDetails,
  type ContainerInfo,
  type ContainerOwner,
  type ContainerSpec,
  type Engine,
  type ExecResult,
  type InspectOptions,
  type LogOptions,
  mapState,
  normalizeImageId,
  OWNER_LABELS,
  ownerFromLabels,
  type Runtime,
  type RuntimeCapabilities,
  type RuntimeKind,
  SPEC_LABEL,
} from "./runtime.ts";

// ---------------------------------------------------------------------------------------------
// argv builders (subcommand and its arguments; the class prepends binary + global args)

/** Positional values that start with "-" would be parsed as flags by podman: refuse them. */
function positional(value: string, what: string): string {
  if (value === "" || value.startsWith("-")) {
    throw new Error(`invalid ${what} ${JSON.stringify(value)}: must be non-empty and not start with "-"`);
  }
  return value;
}

export function runArgs(spec: ContainerSpec): string[] {
  const argv = ["run", "-d", "--name", positional(spec.name, "container name")];
  if (spec.owner) {
    argv.push("--label", `${OWNER_LABELS.service}=${positional(spec.owner.service, "owner service")}`);
    argv.push("--label", `${OWNER_LABELS.component}=${positional(spec.owner.component, "owner component")}`);
  }
  if (spec.specKey) argv.push("--label", `${SPEC_LABEL}=${positional(spec.specKey, "spec key")}`);
  if (spec.network !== "") argv.push("--network", spec.network);
  if (spec.user !== "") argv.push("--user", spec.user);
  if (spec.restart !== "") argv.push("--restart", spec.restart);
  if (spec.memory !== "") argv.push("--memory", spec.memory);
  if (spec.vcpus !== 0) argv.push("--cpus", String(spec.vcpus));
  for (const p of spec.ports) argv.push("-p", p);
  for (const v of spec.volumes) argv.push("-v", v);
  for (const e of spec.env) argv.push("-e", e);
  argv.push(positional(spec.image, "image"), ...spec.cmd);
  return argv;
}

export function pullArgs(image: string): string[] {
  // --quiet drops progress output, so a failure's stderr is just podman's error.
  return ["pull", "--quiet", positional(image, "image")];
}

export function imageExistsArgs(image: string): string[] {
  return ["image", "exists", positional(image, "image")];
}

export function imageInspectArgs(image: string): string[] {
  return ["image", "inspect", positional(image, "image")];
}

/** `image inspect --format {{.Id}}`: the local image's id alone (podman and docker alike). */
export function imageIdArgs(image: string): string[] {
  return ["image", "inspect", "--format", "{{.Id}}", positional(image, "image")];
}

export function startArgs(name: string): string[] {
  return ["start", positional(name, "container name")];
}

export function stopArgs(name: string, timeoutSec = 10): string[] {
  return ["stop", "-t", String(Math.max(0, Math.floor(timeoutSec))), positional(name, "container name")];
}

export function restartArgs(name: string): string[] {
  return ["restart", positional(name, "container name")];
}

/** `rm -f -t <sec> --ignore`: stop (SIGTERM, then SIGKILL after <sec>) and remove in one call. */
export function stopRmArgs(name: string, timeoutSec = 10): string[] {
  const t = String(Math.max(0, Math.floor(timeoutSec)));
  return ["rm", "-f", "-t", t, "--ignore", positional(name, "container name")];
}

export function rmArgs(name: string, force = false): string[] {
  return force
    ? ["rm", "-f", positional(name, "container name")]
    : ["rm", positional(name, "container name")];
}

/** `container inspect`, not `inspect`: a bare inspect would also match an image of that name. */
export function inspectArgs(name: string): string[] {
  return ["container", "inspect", positional(name, "container name")];
}

export function psArgs(): string[] {
  return ["ps", "-a", "--format", "json"];
}

/** The REST twin of psArgs(): same containers, same fields (see parsePs). */
export const LIST_API_PATH = "/v4.0.0/libpod/containers/json?all=true";

/** The REST twins of inspectArgs()/imageInspectArgs(): one object, the CLI array's element. */
export function inspectApiPath(name: string): string {
  return `/v4.0.0/libpod/containers/${encodeURIComponent(positional(name, "container name"))}/json`;
}
export function imageInspectApiPath(image: string): string {
  return `/v4.0.0/libpod/images/${encodeURIComponent(positional(image, "image"))}/json`;
}

export function logsArgs(name: string, opts: LogOptions): string[] {
  const argv = ["logs"];
  if (opts.follow) argv.push("--follow");
  if (opts.tail !== undefined) argv.push("--tail", String(Math.max(0, Math.floor(opts.tail))));
  if (opts.since !== undefined && opts.since !== "") argv.push("--since", opts.since);
  argv.push(positional(name, "container name"));
  return argv;
}

/** `exec <name> <argv...>`: runs a command inside a running container (health checks). */
export function execArgs(name: string, argv: readonly string[]): string[] {
  if (argv.length === 0) throw new Error("exec needs a command");
  return ["exec", positional(name, "container name"), positional(argv[0]!, "command"), ...argv.slice(1)];
}

/**
 * `events`: every container event as one JSON line, replaying from `sinceMs` (ms since the epoch,
 * given as unix seconds with a fraction, which both podman and docker accept) and then following.
 */
export function eventsArgs(sinceMs: number): string[] {
  return ["events", "--format", "json", "--filter", "type=container", "--since", unixSeconds(sinceMs)];
}

/** The REST twin of eventsArgs(): the service's event stream, same filter, same replay point. */
export function eventsApiPath(sinceMs: number): string {
  const filters = encodeURIComponent(JSON.stringify({ type: ["container"] }));
  return `/v4.0.0/libpod/events?stream=true&since=${unixSeconds(sinceMs)}&filters=${filters}`;
}

function unixSeconds(ms: number): string {
  return (Math.max(0, ms) / 1000).toFixed(3);
}

export function versionArgs(): string[] {
  return ["--version"];
}

// ---------------------------------------------------------------------------------------------
// parsers (podman 4.3 JSON)

type Json = Record<string, unknown>;

function asObj(v: unknown): Json {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? (v as Json) : {};
}
function asStr(v: unknown): string {
  return typeof v === "string" ? v : "";
}
function asStrs(v: unknown): string[] {
  return Array.isArray(v) ? v.filter((x): x is string => typeof x === "string") : [];
}
function asLabels(v: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, x] of Object.entries(asObj(v))) if (typeof x === "string") out[k] = x;
  return out;
}
/** `{ owner }` when the labels name one, else nothing (absent stays absent in read-backs). */
export function ownerField(labels: Record<string, string>): { owner?: ContainerOwner } {
  const owner = ownerFromLabels(labels);
  return owner ? { owner } : {};
}
/** `{ specKey }` when the spec label is set, else nothing (a container created before it, or not by MCP). */
function specKeyField(labels: Record<string, string>): { specKey?: string } {
  const key = labels[SPEC_LABEL];
  return key ? { specKey: key } : {};
}
function asNum(v: unknown): number | null {
  return typeof v === "number" && Number.isFinite(v) ? v : null;
}

function parseJson(input: unknown, what: string): unknown {
  if (typeof input !== "string") return input;
  if (input.trim() === "") return [];
  try {
    return JSON.parse(input);
  } catch {
    throw new Error(`cannot parse ${what} output as JSON: ${input.slice(0, 80)}`);
  }
}

/** Unix seconds (ps) or RFC 3339 (inspect) → Date; Go's zero time and negatives → null. */
export function parseTime(v: unknown): Date | null {
  const n = asNum(v);
  if (n !== null) return n > 0 ? new Date(n * 1000) : null;
  const s = asStr(v);
  if (s === "" || s.startsWith("0001-01-01")) return null;
  const ms = Date.parse(s);
  return Number.isNaN(ms) || ms <= 0 ? null : new Date(ms);
}

function exitCodeFor(rawState: string, code: unknown): number | null {
  const s = rawState.toLowerCase();
  return s === "exited" || s === "stopped" ? (asNum(code) ?? null) : null;
}

/** Whole seconds, as `podman ps` reports Created; the REST API's RFC 3339 has nanoseconds. */
function wholeSeconds(d: Date | null): Date | null {
  return d === null ? null : new Date(Math.floor(d.getTime() / 1000) * 1000);
}

/**
 * Parses `podman ps -a --format json` and the REST API's `libpod/containers/json` (the same
 * objects, except that the API's Created is RFC 3339 instead of unix seconds and it leaves the
 * human-readable Status/CreatedAt empty, which are not read).
 */
export function parsePs(json: unknown): ContainerInfo[] {
  const data = parseJson(json, "ps");
  if (!Array.isArray(data)) throw new Error("unexpected ps output: not a JSON array");
  return data.map((raw) => {
    const c = asObj(raw);
    const rawState = asStr(c["State"]);
    return {
      id: asStr(c["Id"]),
      name: asStrs(c["Names"])[0] ?? "",
      image: asStr(c["Image"]),
      state: mapState(rawState),
      startedAt: parseTime(c["StartedAt"]),
      createdAt: wholeSeconds(parseTime(c["Created"])),
      exitCode: exitCodeFor(rawState, c["ExitCode"]),
      ...ownerField(asLabels(c["Labels"])),
    };
  });
}

/** The image's own env and cmd, used to tell what the operator set from what the image brought. */
export interface ImageDefaults {
  env: string[];
  cmd: string[];
}

/** Parses `podman image inspect` output into the image's default env and cmd. */
export function parseImageDefaults(json: unknown): ImageDefaults {
  const data = parseJson(json, "image inspect");
  const img = asObj(Array.isArray(data) ? data[0] : data);
  const cfg = asObj(img["Config"]);
  return { env: asStrs(cfg["Env"]), cmd: asStrs(cfg["Cmd"]) };
}

/** PATH podman (and docker) put into a container whose image sets none. */
export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const INJECTED_ENV = new Set([DEFAULT_PATH, "TERM=xterm", "container=podman", "HOME=/root"]);
// Mount options the runtime adds by itself; dropping them lets "/a:/b" read back as "/a:/b".
const DEFAULT_MOUNT_OPTS = new Set(["rw", "rbind", "rprivate"]);
const DEFAULT_VOLUME_OPTS = new Set(["nosuid", "nodev"]);

function portSpecs(bindings: unknown): string[] {
  const out: string[] = [];
  for (const [key, list] of Object.entries(asObj(bindings))) {
    const [cport = "", proto = "tcp"] = key.split("/");
    const suffix = proto === "tcp" ? "" : `/${proto}`;
    const binds = Array.isArray(list) ? list : [];
    for (const b of binds) {
      const ip = asStr(asObj(b)["HostIp"]);
      const hostPort = asStr(asObj(b)["HostPort"]);
      const host = ip.includes(":") ? `[${ip}]` : ip;
      if (ip !== "" && ip !== "0.0.0.0") out.push(`${host}:${hostPort}:${cport}${suffix}`);
      else if (hostPort !== "") out.push(`${hostPort}:${cport}${suffix}`);
      else out.push(`${cport}${suffix}`);
    }
  }
  return out;
}

function normalizeBind(bind: string): string {
  const parts = bind.split(":");
  if (parts.length < 3) return bind;
  const [src = "", dst = ""] = parts;
  const named = !src.startsWith("/");
  const kept = parts
    .slice(2)
    .join(":")
    .split(",")
    .filter((o) => o !== "" && !DEFAULT_MOUNT_OPTS.has(o) && !(named && DEFAULT_VOLUME_OPTS.has(o)));
  return kept.length > 0 ? `${src}:${dst}:${kept.join(",")}` : `${src}:${dst}`;
}

function volumeSpecs(hostConfig: Json, mounts: unknown): string[] {
  const binds = asStrs(hostConfig["Binds"]);
  if (binds.length > 0) return binds.map(normalizeBind);
  // Older/other formats: rebuild from Mounts.
  const out: string[] = [];
  for (const raw of Array.isArray(mounts) ? mounts : []) {
    const m = asObj(raw);
    const type = asStr(m["Type"]);
    if (type !== "bind" && type !== "volume") continue;
    const src = type === "volume" ? asStr(m["Name"]) : asStr(m["Source"]);
    out.push(`${src}:${asStr(m["Destination"])}${m["RW"] === false ? ":ro" : ""}`);
  }
  return out;
}

function operatorEnv(env: string[], hostname: string, image: ImageDefaults | undefined): string[] {
  const fromImage = new Set(image?.env ?? []);
  return env.filter((e) => {
    if (fromImage.has(e) || INJECTED_ENV.has(e)) return false;
    if (e.startsWith("HOSTNAME=")) return hostname !== "" && e !== `HOSTNAME=${hostname}`;
    return true;
  });
}

/**
 * podman 4 reports NetworkMode "bridge" for every bridge network, its default ("podman") and the
 * ones `--network` named: those are the keys of NetworkSettings.Networks (docker names a
 * user-defined network in NetworkMode itself).
 */
function networkOf(mode: string, networks: unknown): string {
  const names = Object.keys(asObj(networks)).sort();
  if (mode !== "bridge" || names.length === 0 || (names.length === 1 && names[0] === "podman")) return mode;
  return names.join(",");
}

function sameList(a: string[], b: string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/**
 * Parses `podman container inspect` output (the first element). `image`, when known, holds the
 * image's own env/cmd so that only what the operator set is reported (see ContainerDetails).
 */
export function parseInspect(json: unknown, image?: ImageDefaults): ContainerDetails {
  const data = parseJson(json, "inspect");
  const c = asObj(Array.isArray(data) ? data[0] : data);
  if (Object.keys(c).length === 0) throw new Error("unexpected inspect output: no container object");
  const cfg = asObj(c["Config"]);
  const host = asObj(c["HostConfig"]);
  const state = asObj(c["State"]);
  const rawState = asStr(state["Status"]);
  const name = asStr(c["Name"]).replace(/^\//, ""); // docker prefixes names with "/"
  const imageRef = asStr(cfg["Image"]) || asStr(c["ImageName"]);
  const cmd = asStrs(cfg["Cmd"]);
  const restartPolicy = asObj(host["RestartPolicy"]);
  const retries = asNum(restartPolicy["MaximumRetryCount"]) ?? 0;
  const restart = asStr(restartPolicy["Name"]) + (retries > 0 ? `:${retries}` : "");
  const memory = asNum(host["Memory"]) ?? 0;
  const nanoCpus = asNum(host["NanoCpus"]) ?? 0;
  const labels = asLabels(cfg["Labels"]);
  const owned = ownerField(labels);
  const imageId = normalizeImageId(asStr(c["Image"]));
  return {
    id: asStr(c["Id"]),
    name,
    image: imageRef,
    ...(imageId ? { imageId } : {}),
    state: mapState(rawState),
    startedAt: parseTime(state["StartedAt"]),
    createdAt: parseTime(c["Created"]),
    exitCode: exitCodeFor(rawState, state["ExitCode"]),
    ...owned,
    spec: {
      name,
      image: imageRef,
      network: networkOf(asStr(host["NetworkMode"]), asObj(c["NetworkSettings"])["Networks"]),
      user: asStr(cfg["User"]),
      restart: restart === "no" ? "" : restart,
      // Sorted: podman keeps these in Go maps, so its order varies from call to call.
      ports: portSpecs(host["PortBindings"]).sort(),
      volumes: volumeSpecs(host, c["Mounts"]).sort(),
      env: operatorEnv(asStrs(cfg["Env"]), asStr(cfg["Hostname"]), image).sort(),
      cmd: image && image.cmd.length > 0 && sameList(cmd, image.cmd) ? [] : cmd,
      memory: memory > 0 ? formatMemorySize(memory) : "",
      vcpus: nanoCpus > 0 ? nanoCpus / 1e9 : 0,
      // A container runtime (podman or docker, which shares this parser) runs containers.
      runtime: "container",
      ...owned,
      ...specKeyField(labels),
    },
  };
}

/**
 * The resource limits of `spec` that the container did not get, as one line each (empty: all
 * applied). Podman drops them with only a warning where it cannot set them (rootless on cgroup v1,
 * or a kernel without the memory controller): a limit asked for must never silently go missing.
 */
export function unappliedLimits(spec: ContainerSpec, got: ContainerSpec): string[] {
  const out: string[] = [];
  const bytes = (m: string) => (m === "" ? 0 : parseMemorySize(m));
  if (bytes(spec.memory) !== bytes(got.memory))
    out.push(`--memory ${spec.memory} (the container has ${got.memory || "no limit"})`);
  if (Math.round(got.vcpus * 1e9) !== Math.round(spec.vcpus * 1e9))
    out.push(`--cpus ${spec.vcpus} (the container has ${got.vcpus || "no limit"})`);
  return out;
}

/** The image id a container was created from (for looking up the image's defaults). */
function imageIdOf(json: unknown): string {
  const data = parseJson(json, "inspect");
  return asStr(asObj(Array.isArray(data) ? data[0] : data)["Image"]);
}

// ---------------------------------------------------------------------------------------------
// the runtime

export interface PodmanOptions {
  /** Client binary; default "podman". */
  binary?: string;
  /** Global flags placed right after the binary, e.g. ["--runtime", "runc"]. */
  globalArgs: string[];
  /** Extra environment for every call, e.g. CONTAINERS_CONF. */
  env?: Record<string, string>;
  /** Limit for ordinary calls (default 60 s); a hung runtime must not hang the agent. */
  callTimeoutMs?: number;
  /** Limit for pulls (default 10 min). */
  pullTimeoutMs?: number;
  /**
   * Serve list() from an agent-owned `podman system service` over a unix socket (no podman
   * process per call), falling back to the CLI whenever it is unavailable. Off by default: only
   * long-lived daemons gain from it; one-shot CLI uses keep the plain CLI. Podman only.
   */
  api?: boolean;
  /** Where the API service logs its state changes. */
  logger?: ServiceLogger;
}

export class PodmanRuntime implements Runtime {
  readonly kind: RuntimeKind = "container";
  readonly engine: Engine = "podman";
  readonly capabilities: RuntimeCapabilities = { logsFollow: true, logsSince: true, exec: true };
  protected readonly binary: string;
  protected readonly globalArgs: string[];
  protected readonly env: Record<string, string> | undefined;
  protected readonly callTimeoutMs: number;
  protected readonly pullTimeoutMs: number;
  /** The REST service list() prefers; null = CLI only. */
  protected readonly service: PodmanService | null;

  constructor(opts: PodmanOptions) {
    this.binary = opts.binary ?? "podman";
    this.globalArgs = [...opts.globalArgs];
    this.env = opts.env;
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
    this.pullTimeoutMs = opts.pullTimeoutMs ?? 600_000;
    this.service = opts.api
      ? new PodmanService({
          binary: this.binary,
          globalArgs: this.globalArgs,
          ...(opts.env ? { env: opts.env } : {}),
          ...(opts.logger ? { logger: opts.logger } : {}),
        })
      : null;
  }

  /** Stops the API service child, if one runs; the CLI paths keep working. */
  close(): void {
    this.service?.close();
  }

  /** How to run this engine's CLI, for callers with subcommands of their own (the unikernel image export). */
  cli(): EngineCli {
    return {
      engine: this.engine,
      binary: this.binary,
      globalArgs: [...this.globalArgs],
      ...(this.env ? { env: this.env } : {}),
      callTimeoutMs: this.callTimeoutMs,
    };
  }

  /**
   * This engine's container event stream (LiveRuntime reads it): through the REST service when
   * it runs (no process of its own), else a `podman events` child.
   */
  eventSource(): EventSource {
    const service = this.service;
    return {
      label: `${this.binary.split("/").pop() ?? this.binary} events`,
      argv: (since) => this.argv(this.eventsArgs(since)),
      ...(this.env ? { env: this.env } : {}),
      parse: (line) => this.parseEvent(line),
      ...(service
        ? {
            api: {
              label: "podman API events",
              open: (since: number, signal: AbortSignal) => service.openStream(eventsApiPath(since), signal),
              parse: parseCompatEvent,
            },
          }
        : {}),
    };
  }

  /** The REST service child's pid while one runs (tests, diagnostics). */
  get apiPid(): number | undefined {
    return this.service?.pid;
  }

  protected eventsArgs(sinceMs: number): string[] {
    return eventsArgs(sinceMs);
  }

  protected parseEvent(line: string): RuntimeEvent | null {
    return parsePodmanEvent(line);
  }

  /** Full argv for a subcommand. */
  argv(sub: string[]): string[] {
    return [this.binary, ...this.globalArgs, ...sub];
  }

  // Error messages name the subcommand and its target ("podman stop web-api"), not the global flags.
  protected label(sub: string[], target: string): string {
    const bin = this.binary.split("/").pop() ?? this.binary;
    const verb = sub[0] === "container" || sub[0] === "image" ? sub.slice(0, 2) : sub.slice(0, 1);
    return [bin, ...verb, target].filter((w) => w !== "").join(" ");
  }

  protected call(sub: string[], target: string, timeoutMs = this.callTimeoutMs): Promise<RunResult> {
    return run(this.argv(sub), { env: this.env, timeoutMs, label: this.label(sub, target) });
  }

  protected execOk(sub: string[], target: string, timeoutMs = this.callTimeoutMs): Promise<RunResult> {
    return runOk(this.argv(sub), { env: this.env, timeoutMs, label: this.label(sub, target) });
  }

  /** Whether a failed call failed only because the container does not exist. */
  protected isNoSuchContainer(stderr: string): boolean {
    return /no such container|no such object|no container with name or id/i.test(stderr);
  }

  protected parseList(stdout: string): ContainerInfo[] {
    return parsePs(stdout);
  }

  protected parseDetails(stdout: string, image?: ImageDefaults): ContainerDetails {
    return parseInspect(stdout, image);
  }

  async version(): Promise<string> {
    const { stdout } = await this.execOk(versionArgs(), "");
    const m = /(\d+\.\d+\.\d+[^\s,]*)/.exec(stdout);
    if (!m?.[1]) throw new Error(`cannot read ${this.binary} version from: ${stdout.trim()}`);
    return m[1];
  }

  async pull(image: string): Promise<void> {
    await this.execOk(pullArgs(image), image, this.pullTimeoutMs);
  }

  /**
   * The engine's inspect object of `image` through the REST service (one request, no podman
   * process); undefined when the service did not answer it (the caller uses the CLI), null when the
   * image is not in the store.
   */
  async imageInspectViaApi(image: string): Promise<unknown | null | undefined> {
    if (!this.service) return undefined;
    const a = await this.service.request(imageInspectApiPath(image));
    if (a === null) return undefined;
    if (a.status === 200) return a.json;
    if (a.status === 404 && /image not known|no such image/i.test(asStr(asObj(a.json)["message"])))
      return null;
    return undefined;
  }

  async imageExists(image: string): Promise<boolean> {
    const viaApi = await this.imageInspectViaApi(image);
    if (viaApi !== undefined) return viaApi !== null;
    const res = await this.call(imageExistsArgs(image), image);
    if (res.code === 0) return true;
    if (res.code === 1) return false;
    throw failure(this.argv(imageExistsArgs(image)), res, this.label(imageExistsArgs(image), image));
  }

  async imageId(image: string): Promise<string | null> {
    const viaApi = await this.imageInspectViaApi(image);
    if (viaApi === null) return null;
    if (viaApi !== undefined) {
      const id = normalizeImageId(asStr(asObj(viaApi)["Id"]));
      if (id !== "") return id;
    }
    const sub = imageIdArgs(image);
    const res = await this.call(sub, image);
    if (res.code === 0) return normalizeImageId(res.stdout) || null;
    if (/image not known|no such image/i.test(res.stderr)) return null;
    throw failure(this.argv(sub), res, this.label(sub, image));
  }

  async run(spec: ContainerSpec): Promise<string> {
    // A run may pull a missing image first, so it gets the pull budget.
    const { stdout } = await this.execOk(runArgs(spec), spec.name, this.pullTimeoutMs);
    const lines = stdout.trim().split("\n");
    const id = (lines[lines.length - 1] ?? "").trim();
    if (spec.memory !== "" || spec.vcpus !== 0) await this.checkLimits(spec);
    return id;
  }

  /** Fails the run (and removes its container) when a resource limit was not applied. */
  private async checkLimits(spec: ContainerSpec): Promise<void> {
    const details = await this.inspect(spec.name, { imageDefaults: false });
    const missing = details ? unappliedLimits(spec, details.spec) : [];
    if (missing.length === 0) return;
    await this.remove(spec.name, true);
    const bin = this.binary.split("/").pop() ?? this.binary;
    throw new Error(
      `${bin} did not apply ${missing.join(", ")} to ${spec.name}; rootless ${bin} needs cgroup v2 with the memory and cpu controllers delegated (container removed)`,
    );
  }

  describeRun(spec: ContainerSpec): string[] {
    return this.argv(runArgs(spec));
  }

  async start(name: string): Promise<void> {
    await this.execOk(startArgs(name), name);
  }

  async stop(name: string, timeoutSec = 10): Promise<void> {
    await this.execOk(stopArgs(name, timeoutSec), name, this.callTimeoutMs + timeoutSec * 1000);
  }

  async restart(name: string): Promise<void> {
    await this.execOk(restartArgs(name), name);
  }

  async remove(name: string, force = false): Promise<void> {
    try {
      await this.execOk(rmArgs(name, force), name);
    } catch (e) {
      if (e instanceof RuntimeError && this.isNoSuchContainer(e.stderr)) return;
      throw e;
    }
  }

  async stopAndRemove(name: string, timeoutSec = 10): Promise<boolean> {
    // --ignore: a missing container prints nothing and exits 0; a removed one prints its name.
    const sub = stopRmArgs(name, timeoutSec);
    const { stdout } = await this.execOk(sub, name, this.callTimeoutMs + timeoutSec * 1000);
    return stdout.trim() !== "";
  }

  async inspect(name: string, opts: InspectOptions = {}): Promise<ContainerDetails | null> {
    const viaApi = await this.inspectViaApi(name, opts);
    if (viaApi !== undefined) return viaApi;
    const res = await this.call(inspectArgs(name), name);
    if (res.code !== 0) {
      if (this.isNoSuchContainer(res.stderr)) return null;
      throw failure(this.argv(inspectArgs(name)), res, this.label(inspectArgs(name), name));
    }
    // The image's own env/cmd let us report only what the operator set. Best effort: if the
    // image is gone, fall back to dropping the well-known injected env.
    let image: ImageDefaults | undefined;
    const imageId = opts.imageDefaults === false ? "" : imageIdOf(res.stdout);
    if (imageId !== "") {
      const img = await this.call(imageInspectArgs(imageId), imageId);
      if (img.code === 0) image = parseImageDefaults(img.stdout);
    }
    return this.parseDetails(res.stdout, image);
  }

  /** inspect() through the REST service; undefined = not answered there (use the CLI). */
  private async inspectViaApi(
    name: string,
    opts: InspectOptions,
  ): Promise<ContainerDetails | null | undefined> {
    if (!this.service) return undefined;
    const a = await this.service.request(inspectApiPath(name));
    if (a === null) return undefined;
    if (a.status === 404 && this.isNoSuchContainer(asStr(asObj(a.json)["message"]))) return null;
    if (a.status !== 200) return undefined;
    let image: ImageDefaults | undefined;
    const imageId = opts.imageDefaults === false ? "" : imageIdOf(a.json);
    if (imageId !== "") {
      const img = await this.service.getJson(imageInspectApiPath(imageId));
      if (img === null) return undefined; // the CLI path decides (image gone, service down)
      image = parseImageDefaults(img);
    }
    try {
      return parseInspect(a.json, image);
    } catch {
      return undefined;
    }
  }

  async list(): Promise<ContainerInfo[]> {
    const viaApi = await this.service?.getJson(LIST_API_PATH);
    if (viaApi !== undefined && viaApi !== null) {
      try {
        return parsePs(viaApi);
      } catch {
        // An unexpected body: the CLI's answer is authoritative.
      }
    }
    const { stdout } = await this.execOk(psArgs(), "-a");
    return this.parseList(stdout);
  }

  async exec(name: string, argv: string[], timeoutMs: number): Promise<ExecResult> {
    const sub = execArgs(name, argv);
    const { code, stdout, stderr } = await this.call(sub, name, timeoutMs);
    return { code, stdout, stderr };
  }

  logs(name: string, opts: LogOptions): { lines: AsyncIterable<string>; kill(): void } {
    const s = streamLines(this.argv(logsArgs(name, opts)), { env: this.env });
    return { lines: s.lines, kill: s.kill };
  }
}

// ---------------------------------------------------------------------------------------------
// image build and push (run by the CLI on the operator's machine, not by the agent)

export interface BuildSpec {
  /** Dockerfile/Containerfile path. */
  dockerfile: string;
  /** Image references to tag the result with (at least one). */
  tags: string[];
  /** Build context directory. */
  context: string;
}

/** `build -f <dockerfile> -t <tag>... <context>`; paths must not look like flags. */
export function buildArgs(spec: BuildSpec): string[] {
  if (spec.tags.length === 0) throw new Error("build needs at least one image tag");
  const argv = ["build", "-f", positional(spec.dockerfile, "Dockerfile path")];
  for (const t of spec.tags) argv.push("-t", positional(t, "image tag"));
  argv.push(positional(spec.context, "build context"));
  return argv;
}

/** `push <ref>`: TLS and credentials come from registries.conf and auth.json, as for pull. */
export function pushArgs(image: string): string[] {
  return ["push", "--quiet", positional(image, "image")];
}
