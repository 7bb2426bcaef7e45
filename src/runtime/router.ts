// The runtime router: the one object the agent calls for every runtime operation. It holds every
// runtime the node has, one per component runtime kind (today "container": podman or docker; a
// later issue adds "unikernel"), and sends each call to the runtime of the component concerned,
// like Nomad's client picks a task's driver. Calls that carry a spec go by the spec's kind;
// name-only calls ask the lookup the agent gives it (the registry: which component has that
// container name) and go to the container runtime for names no component has (discovered and
// adopted containers). A kind the node does not have is refused with one line, never run by
// another runtime; a call a runtime declared it cannot do (capabilities) is refused the same way.
import {
  DEFAULT_RUNTIME_KIND,
  normalizeRuntimeKind,
  RUNTIME_KINDS,
  type RuntimeKind,
} from "../config/runtime-kind.ts";
import type {
  ContainerDetails,
  ContainerInfo,
  ContainerSpec,
  Engine,
  ExecResult,
  InspectOptions,
  LogOptions,
  Runtime,
  RuntimeCapabilities,
} from "./runtime.ts";

/** The calls a runtime answers per container; the router answers them by dispatch. */
export type RuntimeCalls = Omit<Runtime, "kind" | "engine" | "capabilities" | "version" | "imageId">;

/** A component's runtime kind is not one this node has. */
export class RuntimeUnavailableError extends Error {
  override name = "RuntimeUnavailableError";
}

/** The runtime asked lacks a capability the call needs (exec, logs -f). */
export class RuntimeCapabilityError extends Error {
  override name = "RuntimeCapabilityError";
}

export interface RouterOptions {
  /** Every runtime the node has; at most one per kind. */
  runtimes: readonly Runtime[];
  /**
   * The runtime kind of the component whose container is `name`; undefined when no component has
   * that name. Absent: every name goes to the container runtime.
   */
  kindOf?: (name: string) => string | undefined;
  /** How refusals name this node ("local" → `not available on node local`). */
  node?: string;
}

/** The capability words refusals use. */
const CAPABILITY_WORDS: Record<keyof RuntimeCapabilities, string> = {
  exec: "exec (run a command in it)",
  logsFollow: "follow logs",
  logsSince: "show logs since a time (its log lines carry no time)",
};

export class RuntimeRouter implements RuntimeCalls {
  private readonly byKind = new Map<string, Runtime>();
  private readonly kindOfName: (name: string) => string | undefined;
  private readonly node: string;

  constructor(opts: RouterOptions) {
    for (const r of opts.runtimes) {
      if (this.byKind.has(r.kind)) throw new Error(`two runtimes of kind "${r.kind}" given to the router`);
      this.byKind.set(r.kind, r);
    }
    this.kindOfName = opts.kindOf ?? (() => undefined);
    this.node = opts.node ?? "";
  }

  /** The runtime kinds this node has, in a fixed order ("container" first). */
  kinds(): RuntimeKind[] {
    return [...this.byKind.keys()].sort((a, b) => kindOrder(a) - kindOrder(b)) as RuntimeKind[];
  }

  has(kind: string): boolean {
    return this.byKind.has(normalizeRuntimeKind(kind));
  }

  /** What the runtime of `kind` can do; undefined when the node has no such runtime. */
  capabilitiesOf(kind: string): RuntimeCapabilities | undefined {
    return this.byKind.get(normalizeRuntimeKind(kind))?.capabilities;
  }

  /** The engine behind the runtime of `kind` ("podman", "docker"); undefined when absent. */
  engineOf(kind: string = DEFAULT_RUNTIME_KIND): Engine | undefined {
    return this.byKind.get(normalizeRuntimeKind(kind))?.engine;
  }

  /** The runtime kind container `name` runs under: its component's, else "container". */
  kindOfContainer(name: string): string {
    const k = this.kindOfName(name);
    return k === undefined ? DEFAULT_RUNTIME_KIND : normalizeRuntimeKind(k);
  }

  /**
   * The one line a refusal says: `runtime "unikernel" is not available on node local (has:
   * container)`; null when the node has the kind. Callers prefix what they refuse.
   */
  unavailable(kind: string): string | null {
    const k = normalizeRuntimeKind(kind);
    if (this.byKind.has(k)) return null;
    const where = this.node ? ` on node ${this.node}` : " on this node";
    return `runtime ${JSON.stringify(k)} is not available${where} (has: ${this.kinds().join(", ") || "none"})`;
  }

  /**
   * The one line refusing `capability` to the runtime of `kind`, null when it has it (or when the
   * kind is absent: unavailable() says that).
   */
  lacks(kind: string, capability: keyof RuntimeCapabilities): string | null {
    const r = this.byKind.get(normalizeRuntimeKind(kind));
    if (!r || r.capabilities[capability]) return null;
    return `the ${r.kind} runtime (${r.engine}) cannot ${CAPABILITY_WORDS[capability]}`;
  }

  /** The runtime of `kind`; throws RuntimeUnavailableError when the node has none. */
  runtimeFor(kind: string = DEFAULT_RUNTIME_KIND): Runtime {
    const r = this.byKind.get(normalizeRuntimeKind(kind));
    if (!r) throw new RuntimeUnavailableError(this.unavailable(kind)!);
    return r;
  }

  private forSpec(spec: ContainerSpec): Runtime {
    return this.runtimeFor(spec.runtime ?? DEFAULT_RUNTIME_KIND);
  }

  private forName(name: string): Runtime {
    return this.runtimeFor(this.kindOfContainer(name));
  }

  private capable(name: string, capability: keyof RuntimeCapabilities): Runtime {
    const r = this.forName(name);
    const no = this.lacks(r.kind, capability);
    if (no) throw new RuntimeCapabilityError(`container ${name}: ${no}`);
    return r;
  }

  /** The engine version of the runtime of `kind` (default: the container runtime). */
  async version(kind: string = DEFAULT_RUNTIME_KIND): Promise<string> {
    return this.runtimeFor(kind).version();
  }

  // Every Promise-returning call is async so that a refusal is a rejection, like a runtime error.

  /** Images are per runtime kind (container images vs unikernel images): default "container". */
  async pull(image: string, kind: string = DEFAULT_RUNTIME_KIND): Promise<void> {
    return this.runtimeFor(kind).pull(image);
  }

  async imageExists(image: string, kind: string = DEFAULT_RUNTIME_KIND): Promise<boolean> {
    return this.runtimeFor(kind).imageExists(image);
  }

  /** The local image's id (see Runtime.imageId); undefined when the runtime of `kind` cannot say. */
  async imageId(image: string, kind: string = DEFAULT_RUNTIME_KIND): Promise<string | null | undefined> {
    const r = this.runtimeFor(kind);
    return r.imageId ? r.imageId(image) : undefined;
  }

  async run(spec: ContainerSpec): Promise<string> {
    return this.forSpec(spec).run(spec);
  }

  describeRun(spec: ContainerSpec): string[] {
    return this.forSpec(spec).describeRun(spec);
  }

  async start(name: string): Promise<void> {
    return this.forName(name).start(name);
  }

  async stop(name: string, timeoutSec?: number): Promise<void> {
    return this.forName(name).stop(name, timeoutSec);
  }

  async restart(name: string): Promise<void> {
    return this.forName(name).restart(name);
  }

  async remove(name: string, force?: boolean): Promise<void> {
    return this.forName(name).remove(name, force);
  }

  async stopAndRemove(name: string, timeoutSec?: number): Promise<boolean> {
    return this.forName(name).stopAndRemove(name, timeoutSec);
  }

  async inspect(name: string, opts?: InspectOptions): Promise<ContainerDetails | null> {
    return this.forName(name).inspect(name, opts);
  }

  /**
   * Every runtime's containers, one listing per runtime, concurrently; those of a kind other than
   * "container" carry it in `runtime` (discovery records the kind, not the engine).
   */
  async list(): Promise<ContainerInfo[]> {
    const lists = await Promise.all(
      this.kinds().map(async (k) => {
        const r = this.byKind.get(k)!;
        const l = await r.list();
        return r.kind === DEFAULT_RUNTIME_KIND ? l : l.map((c) => ({ ...c, runtime: r.kind }));
      }),
    );
    return lists.length === 1 ? lists[0]! : lists.flat();
  }

  async exec(name: string, argv: string[], timeoutMs: number): Promise<ExecResult> {
    return this.capable(name, "exec").exec(name, argv, timeoutMs);
  }

  logs(name: string, opts: LogOptions): { lines: AsyncIterable<string>; kill(): void } {
    const r = opts.follow ? this.capable(name, "logsFollow") : this.forName(name);
    if (opts.since) this.capable(name, "logsSince");
    return r.logs(name, opts);
  }

  close(): void {
    for (const r of this.byKind.values()) r.close?.();
  }
}

function kindOrder(k: string): number {
  const i = (RUNTIME_KINDS as readonly string[]).indexOf(k);
  return i < 0 ? RUNTIME_KINDS.length : i;
}
