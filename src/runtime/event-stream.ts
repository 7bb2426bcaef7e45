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

  /** The stream child's pid while one runs. */
  get pid(): number | undefined {
    const p = this.proc;
    return p && p.exitCode === null && p.signalCode === null ? p.pid : undefined;
  }

  start(): void {
    if (this.closed || this.proc !== null || this.timer !== null) return;
    const since = Date.now() - this.o.replayMs;
    let proc: Bun.Subprocess<"ignore", "pipe", "pipe">;
    try {
      proc = Bun.spawn(diesWithParent(this.source.argv(since)).argv, {
        ...(this.source.env ? { env: { ...process.env, ...this.source.env } } : {}),
        stdin: "ignore",
        stdout: "pipe",
        stderr: "pipe",
      });
    } catch (err) {
      this.handlers.onDown(`cannot start ${this.source.label}: ${(err as Error).message}`);
      this.retry();
      return;
    }
    proc.unref();
    this.proc = proc;
    const startedAt = Date.now();
    this.handlers.onUp(since);
    void this.read(proc, startedAt);
  }

  /** Ends the child; no restart after this. */
  close(): void {
    this.closed = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  }

  private async read(proc: Bun.Subprocess<"ignore", "pipe", "pipe">, startedAt: number): Promise<void> {
    const errText = new Response(proc.stderr).text().catch(() => "");
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of proc.stdout) {
        partial += decoder.decode(chunk, { stream: true });
        const lines = partial.split("\n");
        partial = lines.pop() ?? "";
        // An event line is a few hundred bytes; one without an end is not let grow the heap.
        if (partial.length > MAX_LINE) partial = "";
        for (const line of lines) {
          if (this.proc !== proc) return;
          const e = this.source.parse(line);
          if (e) this.handlers.onEvent(e);
        }
      }
    } catch {
      // a killed child closes its pipe abruptly
    }
    const code = await proc.exited;
    if (this.proc !== proc || this.closed) return;
    this.proc = null;
    const err = (await errText).trim().split("\n").pop() ?? "";
    this.handlers.onDown(
      `${this.source.label} ended (${proc.signalCode ?? `exit ${code}`})${err ? `: ${err.slice(0, 200)}` : ""}`,
    );
    if (Date.now() - startedAt >= this.o.stableMs) this.delay = this.o.retryMinMs;
    this.retry();
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
