// The one process executor of the runtime layer: every external command (podman, docker, tar...)
// runs from an argv array through Bun.spawn, never through a shell, so no argument is ever
// re-interpreted. Failures become a RuntimeError that carries the command's own stderr.

export interface RunOptions {
  /** Extra environment, merged over the current process environment. */
  env?: Record<string, string>;
  /** Data written to the child's stdin (stdin is closed afterwards). */
  input?: string | Uint8Array;
  /** Kill the child after this many milliseconds; the call then throws a RuntimeError (code -1). */
  timeoutMs?: number;
  /** Words that name the command in error messages (default: argv[0] and argv[1..2]). */
  label?: string;
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** A failed command: a non-zero exit, a timeout (code -1) or a missing binary (code 127). */
export class RuntimeError extends Error {
  readonly argv: string[];
  readonly code: number;
  readonly stderr: string;

  constructor(argv: string[], code: number, stderr: string, message: string) {
    super(message);
    this.name = "RuntimeError";
    this.argv = argv;
    this.code = code;
    this.stderr = stderr;
  }
}

function labelOf(argv: string[], opts?: RunOptions): string {
  if (opts?.label) return opts.label;
  const bin = (argv[0] ?? "").split("/").pop() ?? "";
  return [bin, ...argv.slice(1, 3)].join(" ");
}

/**
 * The useful tail of stderr as one line. Podman prints progress and warnings before the real
 * error, so prefer its "Error: ..." lines; otherwise keep the last three lines.
 */
export function stderrSummary(stderr: string): string {
  const lines = stderr
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "");
  const errors = lines.filter((l) => /^error:/i.test(l));
  const picked = errors.length > 0 ? errors.slice(-2) : lines.slice(-3);
  return picked.join(" | ");
}

function mergedEnv(extra?: Record<string, string>): Record<string, string | undefined> | undefined {
  return extra ? { ...process.env, ...extra } : undefined;
}

function spawnOrThrow(argv: string[], opts: RunOptions | undefined, stdin: "ignore" | Blob) {
  try {
    return Bun.spawn(argv, {
      env: mergedEnv(opts?.env),
      stdin,
      stdout: "pipe",
      stderr: "pipe",
    });
  } catch (e) {
    // Bun throws synchronously when the binary cannot be executed (ENOENT, EACCES).
    const why = e instanceof Error ? e.message : String(e);
    throw new RuntimeError(argv, 127, "", `${labelOf(argv, opts)}: cannot execute ${argv[0]}: ${why}`);
  }
}

/** Whether process `pid` exists (EPERM: it does, another user's). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/**
 * argv prefixed so that the kernel sends the child SIGTERM when this process dies (`setpriv
 * --pdeathsig TERM`, util-linux), for long-lived children that must not outlive a SIGKILLed
 * agent; argv unchanged when setpriv is not on PATH (`bound` false: the caller bounds the
 * orphan another way).
 */
export function diesWithParent(argv: readonly string[]): { argv: string[]; bound: boolean } {
  const setpriv = Bun.which("setpriv");
  return setpriv
    ? { argv: [setpriv, "--pdeathsig", "TERM", "--", ...argv], bound: true }
    : { argv: [...argv], bound: false };
}

/** A SIGKILL to `proc` once `ms` have passed: `timedOut` says whether it was sent, `clear()` cancels it. */
export function killAfter(
  proc: { kill(signal?: NodeJS.Signals): void },
  ms: number,
): { readonly timedOut: boolean; clear(): void } {
  let fired = false;
  const timer = setTimeout(() => {
    fired = true;
    proc.kill("SIGKILL");
  }, ms);
  return {
    get timedOut() {
      return fired;
    },
    clear: () => clearTimeout(timer),
  };
}

/** Runs argv to completion and returns its exit code and output; a non-zero exit is not an error. */
export async function run(argv: string[], opts?: RunOptions): Promise<RunResult> {
  if (argv.length === 0) throw new RuntimeError(argv, 127, "", "empty command");
  const stdin = opts?.input === undefined ? "ignore" : new Blob([opts.input]);
  const proc = spawnOrThrow(argv, opts, stdin);
  const deadline = opts?.timeoutMs !== undefined ? killAfter(proc, opts.timeoutMs) : undefined;
  try {
    const [stdout, stderr, code] = await Promise.all([
      new Response(proc.stdout).text(),
      new Response(proc.stderr).text(),
      proc.exited,
    ]);
    if (deadline?.timedOut) {
      throw new RuntimeError(
        argv,
        -1,
        stderr,
        `${labelOf(argv, opts)} timed out after ${opts?.timeoutMs} ms`,
      );
    }
    return { code, stdout, stderr };
  } finally {
    deadline?.clear();
  }
}

/** The error for a finished command that failed, with the tail of its stderr in the message. */
export function failure(argv: string[], res: RunResult, label?: string): RuntimeError {
  const tail = stderrSummary(res.stderr) || "(no stderr)";
  const what = labelOf(argv, label ? { label } : undefined);
  return new RuntimeError(argv, res.code, res.stderr, `${what} failed (exit ${res.code}): ${tail}`);
}

/** Like run(), but a non-zero exit throws a RuntimeError carrying the command's stderr. */
export async function runOk(argv: string[], opts?: RunOptions): Promise<RunResult> {
  const res = await run(argv, opts);
  if (res.code !== 0) throw failure(argv, res, opts?.label);
  return res;
}

export interface LineStream {
  /** stdout and stderr lines of the child, interleaved as they arrive; ends when the child exits. */
  lines: AsyncIterable<string>;
  /** Kills the child; the line iterator then ends. Safe to call more than once. */
  kill(): void;
  /** The child's exit code. */
  exited: Promise<number>;
}

/**
 * Starts argv and streams its output line by line (for `logs --follow`). Breaking out of a
 * for-await loop over `lines` also kills the child, so a follower never outlives its reader.
 */
export function streamLines(argv: string[], opts?: Omit<RunOptions, "input" | "timeoutMs">): LineStream {
  const proc = spawnOrThrow(argv, opts, "ignore");
  const queue: string[] = [];
  let wake: (() => void) | null = null;
  let open = 2; // readers still running (stdout, stderr)
  const notify = () => {
    const w = wake;
    wake = null;
    w?.();
  };

  const pump = async (stream: ReadableStream<Uint8Array>) => {
    const decoder = new TextDecoder();
    let partial = "";
    try {
      for await (const chunk of stream) {
        partial += decoder.decode(chunk, { stream: true });
        const parts = partial.split("\n");
        partial = parts.pop() ?? "";
        for (const p of parts) queue.push(p.endsWith("\r") ? p.slice(0, -1) : p);
        if (parts.length > 0) notify();
      }
    } catch {
      // A killed child closes its pipes abruptly; whatever was read is kept.
    }
    partial += decoder.decode();
    if (partial !== "") queue.push(partial);
    open--;
    notify();
  };
  void pump(proc.stdout);
  void pump(proc.stderr);

  const kill = () => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill();
  };

  async function* iterate(): AsyncGenerator<string> {
    try {
      while (true) {
        const next = queue.shift();
        if (next !== undefined) {
          yield next;
          continue;
        }
        if (open === 0) return;
        await new Promise<void>((resolve) => {
          wake = resolve;
        });
      }
    } finally {
      kill();
    }
  }

  return { lines: iterate(), kill, exited: proc.exited };
}
