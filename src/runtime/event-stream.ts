// One runtime's event stream as a supervised child process (`podman events`, `docker events`):
// started with a replay point (`--since`), its stdout read line by line and parsed, and started
// again with a growing delay whenever it ends. What it reads goes to the handlers in order; when
// it ends, onDown says why once, and the next start says onUp again (the owner resynchronises
// then: the replay point covers the moment between the child's start and its first read).
//
// The child gets SIGTERM from the kernel when the agent dies (setpriv --pdeathsig, when on
// PATH); without setpriv an orphan ends at its next event, when writing to the closed pipe fails.

import type { EventSource, RuntimeEvent } from "./events.ts";
import { diesWithParent } from "./exec.ts";

export interface StreamHandlers {
  /** The child runs and reads from `sinceMs` on. */
  onUp(sinceMs: number): void;
  onEvent(e: RuntimeEvent): void;
  /** The child ended (or could not start): why, in one line. */
  onDown(why: string): void;
}

export interface EventStreamOptions {
  /** First restart delay (default 200 ms); doubles up to retryMaxMs (default 30 s). */
  retryMinMs?: number;
  retryMaxMs?: number;
  /** A child that ran this long resets the delay (default 10 s). */
  stableMs?: number;
  /** How far before the child's start its replay begins (default 2 s: clock and flush slack). */
  replayMs?: number;
}

/** Longest line kept (labels included); a longer one is dropped unread. */
const MAX_LINE = 1 << 20;

export class EventStream {
  private proc: Bun.Subprocess<"ignore", "pipe", "pipe"> | null = null;
  private abort: AbortController | null = null;
  private running = false;
  /** What the current life reads: the runtime's API, or the child. */
  private via: "api" | "child" | null = null;
  private closed = false;
  private delay: number;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly o: Required<EventStreamOptions>;

  constructor(
    private readonly source: EventSource,
    private readonly handlers: StreamHandlers,
    opts: EventStreamOptions = {},
  ) {
    this.o = {
      retryMinMs: opts.retryMinMs ?? 200,
      retryMaxMs: opts.retryMaxMs ?? 30_000,
      stableMs: opts.stableMs ?? 10_000,
      replayMs: opts.replayMs ?? 2_000,
    };
    this.delay = this.o.retryMinMs;
  }

  /** "api" while it reads the runtime's API, "child" while it reads the child, else null. */
  get reading(): "api" | "child" | null {
    return this.via;
  }

  /** The stream child's pid while one runs. */
  get pid(): number | undefined {
    const p = this.proc;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  start(): void {
    if (this.closed || this.running || this.timer !== null) return;
    this.running = true;
    void this.run();
  }

  /** Ends the stream; no restart after this. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.abort?.abort();
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  }

  /** One life of the stream: the runtime's API when it answers, else the child; then a retry. */
  private async run(): Promise<void> {
    const since = Date.now() - this.o.replayMs;
    const startedAt = Date.now();
    let why: string;
    const api = this.source.api;
    const abort = new AbortController();
    this.abort = abort;
    const body = api ? await api.open(since, abort.signal).catch(() => null) : null;
    if (this.closed) {
      abort.abort();
      return;
    }
    if (api && body) {
      this.via = "api";
      this.handlers.onUp(since);
      await this.pump(body, api.parse);
      why = `${api.label} ended`;
    } else {
      this.via = "child";
      why = await this.runChild(since);
    }
    this.running = false;
    this.via = null;
    this.abort = null;
    if (this.closed) return;
    this.handlers.onDown(why);
    if (Date.now() - startedAt >= this.o.stableMs) this.delay = this.o.retryMinMs;
    this.retry();
  }

  private async runChild(since: number): Promise<string> {
    let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
    try {
      proc = Bun.spawn(diesWithParent(this.source.argv(since)).argv, {
        ...(this.source.env ? { env: { ...process.env, ...this.source.env } } : {}),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
    } catch (err) {
      return `cannot start ${this.source.label}: ${(err as Error).message}`;
    }
    proc.unref();
    this.proc = proc;
    this.handlers.onUp(since);
    const errText = new Response(proc.stderr).text().catch(() => "");
    await this.pump(proc.stdout, this.source.parse);
    const code = await proc.exited;
    this.proc = null;
    const err = (await errText).trim().split("\n").pop() ?? "";
    return `${this.source.label} ended (${proc.signalCode ?? `exit ${code}`})${err ? `: ${err.slice(0, 200)}` : ""}`;
  }

  /** Reads JSON lines until the stream ends (or is aborted by close()). */
  private async pump(
    stream: ReadableStream<Uint8Array>,
    parse: (line: string) => RuntimeEvent | null,
  ): Promise<void> {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of stream) {
        if (this.closed) return;
        partial += decoder.decode(chunk, { stream: true });
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        // An event line is a few hundred bytes; one without an end is not let grow the heap.
        if (partial.length > MAX_LINE) partial = "";
        for (const line of lines) {
          const e = parse(line);
          if (e && !this.closed) this.handlers.onEvent(e);
        }
      }
    } catch {
      // a killed child or service closes its end abruptly
    }
  }

  private retry(): void {
    if (this.closed) return;
    const wait = this.delay;
    this.delay = Math.min(this.o.retryMaxMs, this.delay * 2);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.start();
    }, wait);
    this.timer.unref?.();
  }
}
