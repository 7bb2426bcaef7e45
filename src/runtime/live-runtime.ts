// A runtime whose listing is answered from a view kept current by the runtime's own event stream
// (live-view.ts, event-stream.ts): `mcp ps`, status and the monitor read memory, not podman. Every
// other call goes to the runtime it wraps.
//
// When the view may answer: the stream runs, a full listing has confirmed the view since the
// stream (re)started, and no change this agent made is still unconfirmed. Otherwise list() asks
// the runtime (one listing, which also confirms the view when the stream runs): never a stale
// answer. A call that changes containers (run, stop, remove…) makes the next list() ask the runtime
// once, since its events may still be on their way when the call returns.
//
// Every observed-state change the view sees (events, and transitions a listing finds after a gap)
// goes to the onChange listeners in order; the agent records them (roles/agent/live-events.ts).
import type { Logger } from "pino";
import { EventStream } from "./event-stream.ts";
import type { EventSource, RuntimeEvent } from "./events.ts";
import { LiveView, type ViewChange } from "./live-view.ts";
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
  RuntimeKind,
} from "./runtime.ts";

export type ChangeListener = (changes: ViewChange[]) => void;

/** What a live runtime says of itself (node status, tests). */
export interface LiveStatus {
  /** The event stream runs. */
  streaming: boolean;
  /** list() answers from the view now. */
  current: boolean;
  /** When the view was last confirmed by a full listing (ms since the epoch), if it is. */
  confirmedAt: number | null;
  /** Containers in the view. */
  containers: number;
  /** Events applied since start; listings taken since start. */
  events: number;
  listings: number;
  /** The stream child's pid, while one runs. */
  pid?: number;
  /** What the stream reads: the runtime's API ("api"), its own child ("child"), nothing (null). */
  via: "api" | "child" | null;
}

export interface LiveRuntimeOptions {
  logger?: Logger;
}

export class LiveRuntime implements Runtime {
  readonly kind: RuntimeKind;
  readonly engine: Engine;
  readonly capabilities: RuntimeCapabilities;
  readonly imageId?: (image: string) => Promise<string | null>;
  private readonly view = new LiveView();
  private readonly listeners: ChangeListener[] = [];
  private stream: EventStream | null = null;
  private streaming = false;
  private downSaid = false;
  /** Events read while a listing runs (applied again on top of it, in order). */
  private held: RuntimeEvent[] | null = null;
  /** Changes this agent made that no listing has confirmed yet. */
  private dirty = false;
  private mutating = 0;
  private listing: { seq: number; streaming: boolean; p: Promise<ContainerInfo[]> } | null = null;
  /** Counts calls that changed containers (ended or started): a listing is as new as its seq. */
  private seq = 0;
  private counters = { events: 0, listings: 0 };

  constructor(
    readonly inner: Runtime,
    private readonly source: EventSource | null,
    private readonly opts: LiveRuntimeOptions = {},
  ) {
    this.kind = inner.kind;
    this.engine = inner.engine;
    this.capabilities = inner.capabilities;
    // Present exactly when the wrapped runtime has it (absent = image ids unknown).
    if (inner.imageId) this.imageId = inner.imageId.bind(inner);
  }

  /** Starts the event stream and the first full listing (no-op without an event source). */
  open(): void {
    if (this.stream !== null || this.source === null) return;
    const log = this.opts.logger;
    this.stream = new EventStream(this.source, {
      onUp: () => {
        this.streaming = true;
        this.downSaid = false;
        this.view.invalidate();
        log?.info({ stream: this.source!.label }, "runtime event stream up; resynchronising");
        void this.resync().catch((err: Error) =>
          log?.warn({ err: err.message }, "resynchronising after the event stream started failed"),
        );
      },
      onEvent: (e) => this.onEvent(e),
      onDown: (why) => {
        const was = this.streaming;
        this.streaming = false;
        this.view.invalidate();
        // Said once per outage, not once per failed restart.
        if (was || !this.downSaid)
          log?.warn({ why }, "runtime event stream down; listings go to the runtime until it is back");
        this.downSaid = true;
      },
    });
    this.stream.start();
  }

  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  status(): LiveStatus {
    const pid = this.stream?.pid;
    return {
      streaming: this.streaming,
      current: this.current(),
      confirmedAt: this.view.confirmedAt,
      containers: this.view.size,
      ...this.counters,
      ...(pid !== undefined ? { pid } : {}),
      via: this.stream?.reading ?? null,
    };
  }

  /** A health check result the runtime reported for `name` (health events), if any. */
  healthOf(name: string): string | undefined {
    return this.view.healthOf(name);
  }

  private current(): boolean {
    return this.streaming && this.view.confirmedAt !== null && !this.dirty && this.mutating === 0;
  }

  private onEvent(e: RuntimeEvent): void {
    this.counters.events++;
    // A listing in flight gets it too, to apply again on top of what it read.
    this.held?.push(e);
    if (e.action === "rename") {
      // The view is keyed by name: take the runtime's word for both names.
      this.dirty = true;
      return;
    }
    const c = this.view.apply(e);
    if (c) this.emit([c]);
  }

  private emit(changes: ViewChange[]): void {
    if (changes.length === 0) return;
    for (const l of this.listeners) {
      try {
        l(changes);
      } catch (err) {
        this.opts.logger?.error({ err: (err as Error).message }, "runtime change listener failed");
      }
    }
  }

  /**
   * The safety net's listing when the view is current but was last confirmed `maxAgeMs` ago or
   * more; a view that is not current lists on its next read anyway. True when it listed.
   */
  async resyncIfOlder(maxAgeMs: number, now = Date.now()): Promise<boolean> {
    const at = this.view.confirmedAt;
    if (!this.current() || at === null || now - at < maxAgeMs) return false;
    await this.resync();
    return true;
  }

  /**
   * One full listing now (shared with a listing already running): confirms the view while the
   * stream runs and reports the transitions it finds to the listeners. The monitor's safety net.
   */
  async resync(): Promise<ContainerInfo[]> {
    // A listing in flight answers for us unless a change of ours ended after it started, or it
    // started while the stream was down and the stream is up now (it would not confirm the view).
    while (this.listing) {
      const l = this.listing;
      if (l.seq === this.seq && (l.streaming || !this.streaming)) return l.p;
      await l.p.catch(() => undefined);
      if (this.listing === l) this.listing = null;
    }
    const l = { seq: this.seq, streaming: this.streaming, p: this.takeListing() };
    this.listing = l;
    void l.p
      .finally(() => {
        if (this.listing === l) this.listing = null;
      })
      .catch(() => undefined);
    return l.p;
  }

  private async takeListing(): Promise<ContainerInfo[]> {
    const seqAtStart = this.seq;
    const idle = this.mutating === 0;
    const startedAt = Date.now();
    const streaming = this.streaming;
    const during: RuntimeEvent[] = [];
    if (streaming) this.held = during;
    let list: ContainerInfo[];
    try {
      list = await this.inner.list();
    } finally {
      if (this.held === during) this.held = null;
    }
    this.counters.listings++;
    // No change of ours ran during it: the listing has seen all of them.
    if (idle && this.seq === seqAtStart) this.dirty = false;
    // Only a listing taken while the stream ran (from before the listing on) confirms the view.
    if (streaming && this.streaming) this.emit(this.view.resync(list, startedAt, during));
    return list;
  }

  async list(): Promise<ContainerInfo[]> {
    if (this.current()) return this.view.snapshot();
    const list = await this.resync();
    return list.map((c) => ({ ...c }));
  }

  /** Runs a call that changes containers: the view is not trusted until a listing after it. */
  private async mutate<T>(fn: () => Promise<T>): Promise<T> {
    this.mutating++;
    this.seq++;
    this.dirty = true;
    try {
      return await fn();
    } finally {
      this.mutating--;
      this.seq++;
      this.dirty = true;
    }
  }

  /** Ends the event stream (the wrapped runtime is its owner's to close). */
  close(): void {
    this.stream?.close();
    this.stream = null;
    this.streaming = false;
    this.view.invalidate();
  }

  // --- delegated calls ---------------------------------------------------------------------

  version(): Promise<string> {
    return this.inner.version();
  }
  pull(image: string): Promise<void> {
    return this.inner.pull(image);
  }
  imageExists(image: string): Promise<boolean> {
    return this.inner.imageExists(image);
  }
  run(spec: ContainerSpec): Promise<string> {
    return this.mutate(() => this.inner.run(spec));
  }
  describeRun(spec: ContainerSpec): string[] {
    return this.inner.describeRun(spec);
  }
  start(name: string): Promise<void> {
    return this.mutate(() => this.inner.start(name));
  }
  stop(name: string, timeoutSec?: number): Promise<void> {
    return this.mutate(() => this.inner.stop(name, timeoutSec));
  }
  restart(name: string): Promise<void> {
    return this.mutate(() => this.inner.restart(name));
  }
  remove(name: string, force?: boolean): Promise<void> {
    return this.mutate(() => this.inner.remove(name, force));
  }
  stopAndRemove(name: string, timeoutSec?: number): Promise<boolean> {
    return this.mutate(() => this.inner.stopAndRemove(name, timeoutSec));
  }
  inspect(name: string, opts?: InspectOptions): Promise<ContainerDetails | null> {
    return this.inner.inspect(name, opts);
  }
  exec(name: string, argv: string[], timeoutMs: number): Promise<ExecResult> {
    return this.inner.exec(name, argv, timeoutMs);
  }
  logs(name: string, opts: LogOptions): { lines: AsyncIterable<string>; kill(): void } {
    return this.inner.logs(name, opts);
  }
  async checkImage(spec: ContainerSpec): Promise<void> {
    await this.inner.checkImage?.(spec);
  }
}
