// The agent's own `podman system service`: a child process serving podman's REST API on a unix
// socket in a private directory, so that hot read paths (the container listing behind every
// `mcp ps` and monitor tick) cost one HTTP request (~2 ms) instead of one podman process start
// (~45 ms: Go runtime start plus storage and database init). The service reads the same libpod
// database on every request (it caches nothing), so its answers are as current as the CLI's.
//
// Owns: starting the child lazily (argv, never a shell; the CLI's global args and environment, so
// rootless setups behave the same), waiting for its socket, bounded requests, and failure
// handling. It never throws: request() answers null whenever the service is not usable and the
// caller falls back to the CLI for that call. A failed or exited service is restarted at most once
// per `restartBackoffMs`, and each state change is logged once (not per call).
//
// Lifetime: close() kills the child and removes the directory. If the agent is SIGKILLed,
// `setpriv --pdeathsig TERM` (util-linux, when on PATH) has the kernel send the service SIGTERM
// when the agent dies; it then exits and removes its socket. Without setpriv the service runs with
// an idle timeout instead (`--time=600`), so an orphan exits after 10 minutes without requests.
// Every agent process uses a fresh private directory, so an orphan never blocks a restarted agent,
// and a starting service removes the directories of owners that are gone.

import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { diesWithParent, processExists } from "./exec.ts";

export interface ServiceLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface PodmanServiceOptions {
  /** podman binary, e.g. "podman". */
  binary: string;
  /** Global flags placed before `system service` (the same as the CLI calls'). */
  globalArgs: string[];
  /** Extra environment merged over process.env (the same as the CLI calls'). */
  env?: Record<string, string>;
  logger?: ServiceLogger;
  /** How long a start may take until the socket answers (default 3 s). */
  startTimeoutMs?: number;
  /** Limit for one request (default 5 s). */
  requestTimeoutMs?: number;
  /** At most one (re)start per this many ms (default 10 s). */
  restartBackoffMs?: number;
  /** Parent of the private socket directory (default $XDG_RUNTIME_DIR, else the temp dir). */
  dir?: string;
}

/** Idle timeout used when setpriv is missing: bounds an orphan's life after an agent SIGKILL. */
const ORPHAN_IDLE_SEC = 600;
// Socket directories are <parent>/mcp-podman-<agent pid>-XXXXXX: the pid lets a later agent
// remove the directories of agents that died without close().
const DIR_PREFIX = "mcp-podman-";
// sun_path holds 108 bytes; leave room for the file name.
const MAX_DIR_LEN = 90;

type State = "idle" | "up" | "down" | "closed";

export interface ApiAnswer {
  status: number;
  json: unknown;
}

export class PodmanService {
  private readonly opts: PodmanServiceOptions;
  private state: State = "idle";
  private proc: Bun.Subprocess | null = null;
  private starting: Promise<boolean> | null = null;
  private lastStartAt = Number.NEGATIVE_INFINITY;
  private dir: string | null = null;

  constructor(opts: PodmanServiceOptions) {
    this.opts = opts;
  }

  /** The service child's pid while one runs (for tests and diagnostics). */
  get pid(): number | undefined {
    return this.proc && this.proc.exitCode === null && this.proc.signalCode === null
      ? this.proc.pid
      : undefined;
  }

  /** The socket path of the current (or next) child; null before the first start. */
  get socketPath(): string | null {
    return this.dir === null ? null : join(this.dir, "podman.sock");
  }

  /**
   * GET `path` (e.g. "/v4.0.0/libpod/containers/json?all=true"): the HTTP status and parsed JSON
   * body. null when the service is unavailable, the request fails or times out, or the body is
   * not JSON: the caller then uses the CLI. A 4xx/5xx is returned (e.g. 404 "no such container"):
   * it is an answer from a live service.
   */
  async request(path: string): Promise<ApiAnswer | null> {
    if (!(await this.ensureUp())) return null;
    const socket = this.socketPath!;
    let res: Response;
    let body: string;
    try {
      res = await fetch(`http://podman${path}`, {
        unix: socket,
        signal: AbortSignal.timeout(this.opts.requestTimeoutMs ?? 5_000),
      });
      body = await res.text();
    } catch (err) {
      this.markDown(`request failed: ${(err as Error).message}`);
      return null;
    }
    try {
      return { status: res.status, json: JSON.parse(body) };
    } catch {
      return null;
    }
  }

  /**
   * GET `path` as a long-lived stream (the events endpoint): the body of a 2xx answer, read until
   * the service ends it or `signal` aborts; null when the service is not usable now.
   */
  async openStream(path: string, signal: AbortSignal): Promise<ReadableStream<Uint8Array> | null> {
    if (!(await this.ensureUp())) return null;
    try {
      const res = await fetch(`http://podman${path}`, { unix: this.socketPath!, signal });
      if (res.status < 200 || res.status >= 300 || res.body === null) {
        await res.text().catch(() => "");
        return null;
      }
      return res.body;
    } catch {
      return null;
    }
  }

  /** request() narrowed to a 2xx answer's body; null otherwise (use the CLI). */
  async getJson(path: string): Promise<unknown | null> {
    const a = await this.request(path);
    return a !== null && a.status >= 200 && a.status < 300 ? a.json : null;
  }

  /** Kills the child and removes the socket directory; later calls answer null. */
  close(): void {
    this.state = "closed";
    this.stopChild();
    this.removeDir();
  }

  private async ensureUp(): Promise<boolean> {
    if (this.state === "up" && this.pid !== undefined) return true;
    if (this.state === "closed") return false;
    if (this.starting) return this.starting;
    if (this.state === "up") this.markDown("service exited");
    if (Date.now() - this.lastStartAt < (this.opts.restartBackoffMs ?? 10_000)) return false;
    this.starting = this.start().finally(() => {
      this.starting = null;
    });
    return this.starting;
  }

  private async start(): Promise<boolean> {
    this.lastStartAt = Date.now();
    this.stopChild();
    let socket: string;
    this.removeDir();
    this.dir = this.makeDir();
    if (this.dir === null) {
      this.markDown("cannot create a private socket directory");
      return false;
    }
    socket = this.socketPath!;
    const base = [this.opts.binary, ...this.opts.globalArgs, "system", "service"];
    const bound = diesWithParent([...base, "--time=0", `unix://${socket}`]);
    const argv = bound.bound ? bound.argv : [...base, `--time=${ORPHAN_IDLE_SEC}`, `unix://${socket}`];
    let proc: Bun.Subprocess;
    try {
      proc = Bun.spawn(argv, {
        env: this.opts.env ? { ...process.env, ...this.opts.env } : undefined,
        stdin: "ignore",
        stdout: "ignore",
        stderr: "ignore",
      });
    } catch (err) {
      this.markDown(`cannot start ${argv.join(" ")}: ${(err as Error).message}`);
      return false;
    }
    proc.unref(); // a CLI-side or test process must not stay alive for the service
    this.proc = proc;
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 3_000);
    while (Date.now() < deadline && this.state !== "closed") {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        this.markDown(`service exited at start (${proc.exitCode ?? proc.signalCode})`);
        return false;
      }
      if (await this.ping(socket)) {
        if (this.state !== "up") this.opts.logger?.info(`podman API service up on ${socket}`);
        this.state = "up";
        return true;
      }
      await Bun.sleep(10);
    }
    this.stopChild();
    if (this.state !== "closed") this.markDown("socket did not answer in time");
    return false;
  }

  private async ping(socket: string): Promise<boolean> {
    try {
      const res = await fetch("http://podman/_ping", { unix: socket, signal: AbortSignal.timeout(1_000) });
      await res.text();
      return res.ok;
    } catch {
      return false; // not listening yet
    }
  }

  private markDown(why: string): void {
    if (this.state === "closed") return;
    if (this.state !== "down") this.opts.logger?.warn(`podman API unavailable (${why}); using the CLI`);
    this.state = "down";
    this.stopChild();
  }

  private stopChild(): void {
    const p = this.proc;
    this.proc = null;
    if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGTERM");
  }

  private removeDir(): void {
    if (this.dir === null) return;
    rmSync(this.dir, { recursive: true, force: true });
    this.dir = null;
  }

  /** A fresh mode-0700 directory under the first usable parent (short enough for sun_path). */
  private makeDir(): string | null {
    for (const parent of [this.opts.dir, process.env.XDG_RUNTIME_DIR, tmpdir(), "/tmp"]) {
      if (!parent || parent.length > MAX_DIR_LEN) continue;
      try {
        const dir = mkdtempSync(join(parent, `${DIR_PREFIX}${process.pid}-`));
        sweepDeadOwners(parent);
        return dir;
      } catch {
        // missing or not writable for this user (e.g. another user's XDG_RUNTIME_DIR): next
      }
    }
    return null;
  }
}

/**
 * Removes socket directories whose owning process is gone (an agent that was SIGKILLed leaves its
 * empty directory behind; its service already exited). Directories of live processes, and of
 * other users (EPERM), are left alone.
 */
function sweepDeadOwners(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const e of entries) {
    const m = /^mcp-podman-(\d+)-/.exec(e);
    const pid = Number(m?.[1] ?? 0);
    if (pid <= 0 || pid === process.pid || processExists(pid)) continue;
    try {
      rmSync(join(parent, e), { recursive: true, force: true });
    } catch {
      // another user's, or already gone
    }
  }
}
