// The runtime seam: what the agent may ask of podman (or docker, later a unikernel runtime) and
// the plain data it gets back. Roles never build runtime flags themselves; they hand a
// ContainerSpec to a Runtime. The agent holds one RuntimeRouter (router.ts) over every runtime
// the node has; each runtime serves one component runtime kind.
import type { ObservedState } from "../component/state.ts";
import type { RuntimeKind } from "../config/runtime-kind.ts";
import type { EventSource } from "./events.ts";

export type { RuntimeKind } from "../config/runtime-kind.ts";

/**
 * The program behind a runtime: the node's container engine ([agent] container_runtime), or QEMU
 * for the unikernel runtime.
 */
export type Engine = "podman" | "docker" | "qemu";

/**
 * The service component a container belongs to. MCP writes it on every container it creates as
 * two labels (OWNER_LABELS) and reads it back from inspect and list: the container itself says
 * whose it is, even when the registry does not know it (lost, restored, another agent's).
 */
export interface ContainerOwner {
  service: string;
  component: string;
}

/** The label keys of ContainerOwner. */
export const OWNER_LABELS = { service: "mcp.service", component: "mcp.component" } as const;

/** The label that carries ContainerSpec.specKey. */
export const SPEC_LABEL = "mcp.spec";

/**
 * An image id as one form for every engine: "sha256:<hex>" (podman reports the bare hex, docker
 * the prefixed form); "" stays "".
 */
export function normalizeImageId(id: string): string {
  const s = id.trim();
  if (s === "" || s.includes(":")) return s;
  return /^[0-9a-f]{64}$/.test(s) ? `sha256:${s}` : s;
}

/** The owner recorded in a container's labels, or undefined when it carries none (not MCP's, or older). */
export function ownerFromLabels(labels: Record<string, string>): ContainerOwner | undefined {
  const service = labels[OWNER_LABELS.service];
  if (service === undefined || service === "") return undefined;
  return { service, component: labels[OWNER_LABELS.component] ?? "" };
}

/** What the agent wants run. Empty network/user/restart mean "runtime default". */
export interface ContainerSpec {
  name: string;
  image: string;
  network: string;
  user: string;
  restart: string;
  /** "hostPort:containerPort" or "ip:hostPort:containerPort" (optionally "/udp"). */
  ports: string[];
  /** "src:dst[:opts]" */
  volumes: string[];
  /** "KEY=VALUE" */
  env: string[];
  cmd: string[];
  /**
   * The component's runtime kind (a RuntimeKind; registry rows carry it as text): the router sends
   * the spec to the runtime of that kind, or refuses it. Absent = "container".
   */
  runtime?: string;
  /** Memory limit as the operator writes it ("64m", "1g"); "" = none. Read back in canonical form. */
  memory: string;
  /** CPUs (`--cpus`); 0 = no limit. */
  vcpus: number;
  /** Who the container belongs to, written as labels; absent = no labels (bare runtime use). */
  owner?: ContainerOwner;
  /**
   * A digest of the definition the agent created the container from (roles/agent/deploy-plan.ts),
   * written as the SPEC_LABEL label and read back by inspect: a deploy whose key and image are
   * those of the running container leaves it alone. Absent = no label.
   */
  specKey?: string;
}

export type { ObservedState };

export interface ContainerInfo {
  id: string;
  name: string;
  image: string;
  state: ObservedState;
  startedAt: Date | null;
  createdAt: Date | null;
  /** Set only for containers that have exited or were stopped. */
  exitCode: number | null;
  /** The runtime kind that listed it, set by the router for kinds other than "container". */
  runtime?: string;
  /** Its owner labels, when it carries them (containers MCP created; see ContainerOwner). */
  owner?: ContainerOwner;
}

/**
 * A container as the runtime reports it, including the spec read back from inspect. The
 * read-back is normalized, not verbatim: ports, volumes and env come back sorted (the runtime
 * does not keep their order; compare them as sets),
 * default mount options (rw, rbind, rprivate) are dropped, env the runtime or image injected is
 * dropped, a cmd equal to the image's own CMD reads back as [], "no" restart reads back as "", and
 * the memory limit reads back in its shortest exact form (67108864 bytes → "64m").
 */
export interface ContainerDetails extends ContainerInfo {
  spec: ContainerSpec;
  /**
   * The id of the image the container was created from, normalized ("sha256:<hex>"); absent or ""
   * when the runtime does not say.
   */
  imageId?: string;
}

/** What a runtime can do, declared up front so callers never probe. */
export interface RuntimeCapabilities {
  logsFollow: boolean;
  /** Logs from a point in time (`mcp logs --since`): the runtime keeps timestamps per line. */
  logsSince: boolean;
  exec: boolean;
}

export type PullPolicy = "always" | "missing" | "never";

export interface InspectOptions {
  /** Look up the image's own env/cmd so spec reports only what the operator set (default true). */
  imageDefaults?: boolean;
}

export interface LogOptions {
  follow: boolean;
  tail?: number;
  since?: string;
}

/** What a command run inside a container answered; a non-zero exit is a result, not an error. */
export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface Runtime {
  /** The component runtime kind this runtime runs (podman and docker: "container"). */
  readonly kind: RuntimeKind;
  /** The engine behind it ("podman", "docker"): what node status reports as the node's runtime. */
  readonly engine: Engine;
  readonly capabilities: RuntimeCapabilities;
  /** The engine client's version, e.g. "4.3.1". */
  version(): Promise<string>;
  pull(image: string): Promise<void>;
  imageExists(image: string): Promise<boolean>;
  /**
   * The id of the local image `image` names (normalized, "sha256:<hex>"), null when it is not in
   * the local store. Absent: this runtime cannot say (a deploy then always recreates).
   */
  imageId?(image: string): Promise<string | null>;
  /** Creates and starts a detached container; returns its id. */
  run(spec: ContainerSpec): Promise<string>;
  /** The exact argv run(spec) would execute (for dry runs and logs); no process is started. */
  describeRun(spec: ContainerSpec): string[];
  start(name: string): Promise<void>;
  /** No error if already stopped; an error if there is no such container. */
  stop(name: string, timeoutSec?: number): Promise<void>;
  restart(name: string): Promise<void>;
  /** No error if the container does not exist. */
  remove(name: string, force?: boolean): Promise<void>;
  /**
   * stop(name, timeoutSec) then remove(name) in as few runtime calls as the runtime allows (podman:
   * one `rm -f -t`): SIGTERM, up to timeoutSec for a graceful exit, then SIGKILL. Resolves false
   * when there was no such container (not an error).
   */
  stopAndRemove(name: string, timeoutSec?: number): Promise<boolean>;
  /**
   * null if the container does not exist. `imageDefaults: false` skips the image lookup (one
   * runtime call instead of two) for callers that read only id/state/times: spec.env and spec.cmd
   * may then include what the image itself sets.
   */
  inspect(name: string, opts?: InspectOptions): Promise<ContainerDetails | null>;
  /** All containers, running or not, in one runtime call. */
  list(): Promise<ContainerInfo[]>;
  /**
   * Runs argv inside the running container `name` (exec health checks). Throws a RuntimeError
   * when the client is killed at `timeoutMs` (code -1).
   */
  exec(name: string, argv: string[], timeoutMs: number): Promise<ExecResult>;
  /** Streams stdout+stderr lines of the container's log; kill() ends the stream. */
  logs(name: string, opts: LogOptions): { lines: AsyncIterable<string>; kill(): void };
  /**
   * Refuses, in one line naming the component, a spec whose image this runtime cannot run (the
   * unikernel runtime: not x86-64, no entrypoint, not an ELF), with the image already on the node.
   * Called by a deploy before anything is recorded or created; absent = every image is runnable.
   */
  checkImage?(spec: ContainerSpec): Promise<void>;
  /**
   * The runtime's container event stream (podman/docker events), read by LiveRuntime to keep a
   * live view; absent = no events (listings only).
   */
  eventSource?(): EventSource;
  /** Releases what the runtime keeps running (podman: its API service child); optional. */
  close?(): void;
}

/** Maps a runtime's state word onto the agent's observed states. */
export function mapState(raw: string | undefined | null): ObservedState {
  switch ((raw ?? "").toLowerCase()) {
    case "running":
      return "running";
    case "exited":
    // podman's "stopped": the process has ended and conmon has not finished its cleanup yet — a
    // moment later the same container reads "exited". Both are one state to the operator (the
    // exit code is already there); mapping them apart made a kill observed mid-cleanup read
    // "stopped" and then a second transition "stopped -> exited".
    case "stopped":
      return "exited";
    case "created":
    case "configured":
    case "initialized": // podman: set up but never started, like "created"
    case "paused":
      return "stopped";
    default:
      return "unknown";
  }
}
