// SshSession: one authenticated, host-key-verified SSH connection to a node (ssh2), with the few
// operations agent upgrade and node provisioning need: exec of an argv (quoted per argument, sudo
// when asked and the login user is not root), SFTP upload with progress, atomic rename, chmod,
// stat, and uploadAsRoot for paths only root can write. Every failure is a one-line SshError that
// names the host.

import { open as openLocal } from "node:fs/promises";
import { homedir, constants as osConstants } from "node:os";
import { basename, dirname, join } from "node:path";
import { Client, type ClientChannel, type SFTPWrapper, type Stats } from "ssh2";
import { planAuth } from "./auth.ts";
import { SshError } from "./errors.ts";
import {
  appendKnownHost,
  checkHostKey,
  fingerprintSha256,
  hostKeyProblem,
  knownHostsName,
  preferredHostKeyAlgorithms,
  readKnownHosts,
} from "./known-hosts.ts";
import { quoteArgv, withSudo } from "./quote.ts";
import type { SshTarget } from "./target.ts";

export interface ConnectOptions {
  target: SshTarget;
  /** Default `<home>/.ssh/known_hosts`. */
  knownHostsPath?: string;
  /** Trust and record a host key that known_hosts has no entry for (never a changed one). */
  acceptNewHostKey?: boolean;
  /** Overrides target.identityFiles; empty/undefined with none in the target = default keys. */
  identityFiles?: string[];
  /** undefined = $SSH_AUTH_SOCK; null = do not use an agent. */
  agentSocket?: string | null;
  /** TCP connect + handshake + authentication (default 15 s). */
  timeoutMs?: number;
  /** Home directory for default key and known_hosts paths (default os.homedir()). */
  home?: string;
}

export interface ExecOptions {
  /** Run as root: prefixed with `sudo -n --` when the login user is not root. */
  sudo?: boolean;
  /** Written to the command's stdin, which is then closed (otherwise closed at once). */
  input?: string | Uint8Array;
  /**
   * Fail with code -1 after this long; the remote command is killed (signal request, and
   * `timeout -s KILL` on the node, which needs coreutils or busybox `timeout` there).
   */
  timeoutMs?: number;
}

export interface ExecResult {
  /** Exit status; 128+N when killed by signal N. */
  code: number;
  stdout: string;
  stderr: string;
}

export interface UploadOptions {
  /** Permission bits set on the remote file (exactly, whatever the server's umask). */
  mode?: number;
  /** Called after each acknowledged chunk with the bytes the server has written so far. */
  onProgress?: (sent: number, total: number) => void;
}

export interface RemoteStat {
  size: number;
  /** Permission bits (mode & 0o7777). */
  mode: number;
  uid: number;
  gid: number;
  mtime: number;
  isFile: boolean;
  isDirectory: boolean;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;
// Server host key algorithms ssh2 1.x implements.
const SSH2_HOST_KEY_ALGOS = new Set([
  "ssh-ed25519",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "rsa-sha2-512",
  "rsa-sha2-256",
  "ssh-rsa",
  "ssh-dss",
]);
// 64 writes of 32 KiB in flight: enough to fill a WAN pipe, well under OpenSSH's buffers.
const CHUNK = 32 * 1024;
const IN_FLIGHT = 64;
// SFTP status code for a missing path (SSH_FX_NO_SUCH_FILE).
const FX_NO_SUCH_FILE = 2;

function signalExitCode(name: string | undefined): number {
  const n = name ? (osConstants.signals as Record<string, number>)[`SIG${name}`] : undefined;
  return n ? 128 + n : -1;
}

/**
 * Sends a KILL signal request for the channel's command. Closing the channel alone leaves the
 * remote process running (no pty, so no SIGHUP). ssh2's Channel.signal() sends nothing once stdin
 * has been ended (it checks `writable`), and every exec ends stdin, so this goes to the protocol
 * object directly: same request, no writability check. OpenSSH (>= 7.9) kills the process group.
 */
function killRemote(ch: ClientChannel): void {
  const internal = ch as unknown as {
    _client?: { _protocol?: { signal?(id: number, name: string): void } };
    outgoing?: { id?: number; state?: string };
  };
  const proto = internal._client?._protocol;
  const id = internal.outgoing?.id;
  if (
    proto?.signal &&
    id !== undefined &&
    (internal.outgoing?.state === "open" || internal.outgoing?.state === "eof")
  ) {
    proto.signal(id, "KILL");
  } else {
    ch.signal("KILL");
  }
}

/**
 * Exits non-zero with one line when $1 (resolved) or any directory above it is not owned by root
 * or is writable by group or others ($2: the file root was asked to write, for the message). Above
 * $1, a sticky directory such as /tmp is fine: nobody else may rename the root-owned one below it.
 */
const ROOT_ONLY_DIR =
  'd=$(realpath -e -- "$1") || exit 3; sticky=; while :; do ' +
  'if [ "$(stat -c %u -- "$d")" != 0 ] || [ -n "$(find "$d" -maxdepth 0 -perm /022 $sticky)" ]; then ' +
  'echo "refusing to write $2 as root: $d is not a directory only root can change" >&2; exit 3; fi; ' +
  '[ "$d" = / ] && exit 0; d=$(dirname -- "$d"); sticky="! -perm -1000"; done';

function randomSuffix(): string {
  return `${process.pid}-${Math.random().toString(36).slice(2, 10)}`;
}

function label(t: SshTarget): string {
  return `${t.user}@${t.port === 22 ? t.host : `${t.host}:${t.port}`}`;
}

/** Maps ssh2/socket errors to one line; host key problems come from the verifier itself. */
function connectError(
  err: Error & { code?: string; level?: string },
  where: string,
  offered: string[],
  notes: string[],
  timeoutMs: number,
): SshError {
  const code = err.code;
  if (code === "ECONNREFUSED") return new SshError(`ssh ${where}: connection refused`);
  if (code === "ENOTFOUND" || code === "EAI_AGAIN") return new SshError(`ssh ${where}: host not found`);
  if (code === "EHOSTUNREACH" || code === "ENETUNREACH")
    return new SshError(`ssh ${where}: host unreachable`);
  if (code === "ECONNRESET") return new SshError(`ssh ${where}: connection reset by the server`);
  if (err.level === "client-timeout" || /timed out/i.test(err.message)) {
    return new SshError(`ssh ${where}: no answer within ${timeoutMs} ms`);
  }
  if (err.level === "client-authentication") {
    const extra = notes.length > 0 ? `; ${notes.join("; ")}` : "";
    return new SshError(`ssh ${where}: authentication failed (offered: ${offered.join(", ")})${extra}`);
  }
  return new SshError(`ssh ${where}: ${err.message}`);
}

/** Connects, verifies the host key against known_hosts and authenticates. */
export async function connectSsh(opts: ConnectOptions): Promise<SshSession> {
  const t = opts.target;
  const where = label(t);
  const home = opts.home ?? homedir();
  const knownHostsPath = opts.knownHostsPath ?? join(home, ".ssh", "known_hosts");
  const timeoutMs = opts.timeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS;
  const name = knownHostsName(t.host, t.port);
  const entries = readKnownHosts(knownHostsPath);
  const identityFiles = opts.identityFiles?.length ? opts.identityFiles : t.identityFiles;
  const plan = planAuth({ user: t.user, home, identityFiles, agentSocket: opts.agentSocket });
  if (plan.methods.length === 0) {
    const why = plan.notes.length > 0 ? plan.notes.join("; ") : "no ssh-agent and no ~/.ssh/id_* key";
    throw new SshError(`ssh ${where}: no key to authenticate with (${why})`);
  }

  const started = performance.now();
  const client = new Client();
  let hostProblem: string | undefined;
  let hostKeyAdded: string | undefined;
  // ssh2 throws on algorithms it does not implement (sk-*, certificates): offer only its own.
  const preferred = preferredHostKeyAlgorithms(entries, name).filter((a) => SSH2_HOST_KEY_ALGOS.has(a));

  await new Promise<void>((resolve, reject) => {
    let settled = false;
    const fail = (e: SshError) => {
      if (settled) return;
      settled = true;
      client.destroy();
      reject(e);
    };
    client.on("ready", () => {
      settled = true;
      resolve();
    });
    client.on("error", (err: Error & { code?: string; level?: string }) => {
      fail(
        hostProblem
          ? new SshError(hostProblem)
          : connectError(err, where, plan.offered, plan.notes, timeoutMs),
      );
    });
    client.on("close", () =>
      fail(new SshError(hostProblem ?? `ssh ${where}: connection closed during setup`)),
    );
    try {
      client.connect({
        host: t.host,
        port: t.port,
        username: t.user,
        authHandler: plan.methods,
        readyTimeout: timeoutMs,
        // Detects a dead peer during long uploads instead of hanging on it.
        keepaliveInterval: 15_000,
        keepaliveCountMax: 3,
        ...(preferred.length > 0
          ? { algorithms: { serverHostKey: { remove: preferred, prepend: preferred } } }
          : {}),
        hostVerifier: (key, verify) => {
          const check = checkHostKey(entries, name, key);
          if (check.status === "known") return true;
          if (check.status === "unknown" && opts.acceptNewHostKey) {
            appendKnownHost(knownHostsPath, name, key).then(
              () => {
                hostKeyAdded = fingerprintSha256(key);
                verify(true);
              },
              (e: Error) => {
                hostProblem = e.message;
                verify(false);
              },
            );
            return undefined;
          }
          const display = knownHostsPath.startsWith(`${home}/`)
            ? `~/${knownHostsPath.slice(home.length + 1)}`
            : knownHostsPath;
          hostProblem = hostKeyProblem(check, name, key, display);
          return false;
        },
      });
      // ssh2 leaves Nagle on; every exec and SFTP call is a small request waiting for an answer.
      client.setNoDelay(true);
    } catch (e) {
      fail(new SshError(`ssh ${where}: ${(e as Error).message}`));
    }
  });
  const connectMs = performance.now() - started;
  const notes = [...plan.notes];
  if (hostKeyAdded) notes.push(`added host key ${hostKeyAdded} for ${name} to ${knownHostsPath}`);
  return new SshSession(client, t, notes, connectMs);
}

export class SshSession {
  readonly target: SshTarget;
  /** Skipped keys, an added host key: things worth one log line each. */
  readonly notes: readonly string[];
  /** Wall time of connect + handshake + authentication. */
  readonly connectMs: number;
  private readonly client: Client;
  private readonly where: string;
  private sftpPromise: Promise<SFTPWrapper> | undefined;
  private rootPromise: Promise<boolean> | undefined;
  private closed = false;
  /** Pending SFTP calls to fail when the connection drops (a Set: 64 writes are in flight). */
  private readonly onLost = new Set<() => void>();

  constructor(client: Client, target: SshTarget, notes: string[], connectMs: number) {
    this.client = client;
    this.target = target;
    this.notes = notes;
    this.connectMs = connectMs;
    this.where = label(target);
    client.on("close", () => {
      this.closed = true;
      for (const f of this.onLost) f();
      this.onLost.clear();
    });
    // After setup, connection errors surface through the pending operation; never crash on them.
    client.on("error", () => {});
  }

  /** Whether the login user is uid 0 (asked once: a user named otherwise can still be root). */
  isRoot(): Promise<boolean> {
    if (this.target.user === "root") return Promise.resolve(true);
    this.rootPromise ??= this.exec(["id", "-u"]).then((r) => r.code === 0 && r.stdout.trim() === "0");
    return this.rootPromise;
  }

  /** Runs argv on the node; a non-zero exit is a result, not an error (see execOk). */
  async exec(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    // The signal request below is refused by OpenSSH for root sessions ("session signalling
    // requires privilege separation"), so the node enforces the limit too: coreutils `timeout`
    // KILLs the command's whole process group a little after the client has given up on it.
    const limited =
      opts.timeoutMs === undefined
        ? argv
        : ["timeout", "-s", "KILL", String(Math.ceil((opts.timeoutMs + 500) / 1000)), ...argv];
    const full = opts.sudo ? withSudo(limited, true, await this.isRoot()) : [...limited];
    const cmd = quoteArgv(full);
    const what = argv.join(" ").slice(0, 80);
    if (this.closed) throw new SshError(`ssh ${this.where}: connection is closed (running ${what})`);
    return new Promise<ExecResult>((resolve, reject) => {
      this.client.exec(cmd, (err, ch: ClientChannel) => {
        if (err) {
          reject(new SshError(`ssh ${this.where}: cannot run ${what}: ${err.message}`));
          return;
        }
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let code: number | undefined;
        let done = false;
        let timer: ReturnType<typeof setTimeout> | undefined;
        ch.on("data", (d: Buffer) => out.push(d));
        ch.stderr.on("data", (d: Buffer) => errOut.push(d));
        ch.on("exit", (c: number | null, signal?: string) => {
          code = c ?? signalExitCode(signal);
        });
        ch.on("close", () => {
          if (timer) clearTimeout(timer);
          if (done) return;
          done = true;
          const stdout = Buffer.concat(out).toString("utf8");
          const stderr = Buffer.concat(errOut).toString("utf8");
          // OpenSSH always reports exit-status or exit-signal; a channel closed without either
          // means the connection went away (its 'close' can come before the client's).
          if (code === undefined) {
            reject(
              new SshError(`ssh ${this.where}: connection lost while running ${what}`, { code: -1, stderr }),
            );
            return;
          }
          resolve({ code, stdout, stderr });
        });
        if (opts.timeoutMs !== undefined) {
          timer = setTimeout(() => {
            if (done) return;
            done = true;
            killRemote(ch);
            ch.close();
            reject(
              new SshError(`ssh ${this.where}: ${what} timed out after ${opts.timeoutMs} ms`, { code: -1 }),
            );
          }, opts.timeoutMs);
        }
        if (opts.input !== undefined) ch.end(Buffer.from(opts.input));
        else ch.end();
      });
    });
  }

  /** exec, but a non-zero exit becomes an SshError carrying the command's stderr. */
  async execOk(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(argv, opts);
    if (r.code !== 0) {
      const detail = r.stderr.trim().split("\n").pop() ?? "";
      throw new SshError(
        `ssh ${this.where}: ${argv.join(" ").slice(0, 80)} exited with ${r.code}${detail ? `: ${detail}` : ""}`,
        {
          code: r.code,
          stderr: r.stderr,
        },
      );
    }
    return r;
  }

  private sftp(): Promise<SFTPWrapper> {
    this.sftpPromise ??= new Promise<SFTPWrapper>((resolve, reject) => {
      this.client.sftp((err, sftp) => {
        if (err) reject(new SshError(`ssh ${this.where}: cannot start SFTP: ${err.message}`));
        else resolve(sftp);
      });
    });
    // A failed start is not cached: the next call tries again.
    this.sftpPromise.catch(() => {
      this.sftpPromise = undefined;
    });
    return this.sftpPromise;
  }

  private sftpError(op: string, err: Error): SshError {
    return new SshError(`ssh ${this.where}: sftp ${op}: ${err.message}`);
  }

  /** Runs one callback-style SFTP call as a promise with a one-line error. */
  /**
   * Runs one callback-style SFTP call as a promise with a one-line error. It also fails when the
   * connection drops: ssh2 answers requests pending at that moment, but one issued afterwards (the
   * close() of a handle after a failed write) would wait forever.
   */
  private async sftpCall<T>(
    op: string,
    fn: (sftp: SFTPWrapper, cb: (err: Error | null | undefined, v?: T) => void) => void,
  ): Promise<T> {
    const sftp = await this.sftp();
    const lost = () => new SshError(`ssh ${this.where}: connection lost during sftp ${op}`);
    if (this.closed) throw lost();
    return new Promise<T>((resolve, reject) => {
      const onClose = () => reject(lost());
      this.onLost.add(onClose);
      const done = (err: Error | null | undefined, v?: T) => {
        this.onLost.delete(onClose);
        if (err) reject(this.sftpError(op, err));
        else resolve(v as T);
      };
      try {
        fn(sftp, done);
      } catch (e) {
        done(e as Error);
      }
    });
  }

  /**
   * Writes a local file or a buffer to remotePath (created or truncated) over SFTP, 64 chunks in
   * flight. A failed upload can leave a partial file: upload to a temp name and rename().
   */
  async upload(src: string | Uint8Array, remotePath: string, opts: UploadOptions = {}): Promise<void> {
    let total: number;
    let readChunk: (pos: number, len: number) => Promise<Buffer>;
    let closeLocal = async () => {};
    if (typeof src === "string") {
      let fh: Awaited<ReturnType<typeof openLocal>>;
      try {
        fh = await openLocal(src, "r");
        total = (await fh.stat()).size;
      } catch (e) {
        throw new SshError(
          `upload to ${this.where}: cannot read ${src}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
        );
      }
      readChunk = async (pos, len) => {
        const buf = Buffer.allocUnsafe(len);
        const { bytesRead } = await fh.read(buf, 0, len, pos);
        if (bytesRead !== len) throw new SshError(`upload to ${this.where}: ${src} changed while uploading`);
        return buf;
      };
      closeLocal = () => fh.close();
    } else {
      const data = Buffer.from(src.buffer, src.byteOffset, src.byteLength);
      total = data.length;
      readChunk = async (pos, len) => data.subarray(pos, pos + len);
    }
    try {
      const attrs = opts.mode === undefined ? {} : { mode: opts.mode };
      const handle = await this.sftpCall<Buffer>(`open ${remotePath}`, (s, cb) =>
        s.open(remotePath, "w", attrs, cb),
      );
      let next = 0;
      let sent = 0;
      let failed = false;
      const worker = async () => {
        while (next < total && !failed && !this.closed) {
          const pos = next;
          const len = Math.min(CHUNK, total - pos);
          next += len;
          const buf = await readChunk(pos, len);
          await this.sftpCall<void>(`write ${remotePath}`, (s, cb) => s.write(handle, buf, 0, len, pos, cb));
          sent += len;
          opts.onProgress?.(sent, total);
        }
      };
      try {
        const workers = Math.max(1, Math.min(IN_FLIGHT, Math.ceil(total / CHUNK)));
        await Promise.all(
          Array.from({ length: workers }, () =>
            worker().catch((e) => {
              failed = true;
              throw e;
            }),
          ),
        );
        if (sent !== total)
          throw new SshError(
            `ssh ${this.where}: connection lost while uploading ${remotePath} (${sent} of ${total} bytes)`,
          );
        if (total === 0) opts.onProgress?.(0, 0);
        // open()'s mode is subject to the server's umask; fchmod makes it exact.
        if (opts.mode !== undefined) {
          const mode = opts.mode;
          await this.sftpCall(`chmod ${remotePath}`, (s, cb) => s.fchmod(handle, mode, cb));
        }
      } finally {
        // Closing after a dead connection cannot succeed; the write error is the one to report.
        await this.sftpCall(`close ${remotePath}`, (s, cb) => s.close(handle, cb)).catch(() => {});
      }
    } finally {
      await closeLocal();
    }
  }

  /** Atomic replace (posix-rename@openssh.com): plain SFTP rename refuses an existing target. */
  rename(from: string, to: string): Promise<void> {
    return this.sftpCall(`rename ${from} -> ${to}`, (s, cb) => s.ext_openssh_rename(from, to, cb));
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.sftpCall(`chmod ${path}`, (s, cb) => s.chmod(path, mode, cb));
  }

  unlink(path: string): Promise<void> {
    return this.sftpCall(`remove ${path}`, (s, cb) => s.unlink(path, cb));
  }

  /** File attributes, or undefined when the path does not exist. */
  async stat(path: string): Promise<RemoteStat | undefined> {
    const st = await this.sftpCall<Stats | undefined>(`stat ${path}`, (s, cb) =>
      s.stat(path, (err, st) => (err?.code === FX_NO_SUCH_FILE ? cb(undefined, undefined) : cb(err, st))),
    );
    if (!st) return undefined;
    return {
      size: st.size,
      mode: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      isFile: st.isFile(),
      isDirectory: st.isDirectory(),
    };
  }

  /**
   * Installs a file at a path only root may write, atomically (a complete file or the old one,
   * never half). As root: upload next to the target and rename over it. Otherwise: upload into the
   * login user's home, then one `sudo -n` shell copies it beside the target with mode (and owner),
   * and renames it into place; temp files are removed on every path.
   *
   * Only for directories nobody but root can change: the target's directory and every one above
   * it must be owned by root and not writable by group or others, checked first (otherwise another
   * user could swap a name on the way for a link and have root write, chown or chmod through it).
   * Files in a directory another account controls are written as that account instead.
   */
  async uploadAsRoot(
    src: string | Uint8Array,
    remotePath: string,
    opts: UploadOptions & { owner?: string } = {},
  ): Promise<void> {
    const mode = opts.mode ?? 0o644;
    const safe = await this.exec(["sh", "-c", ROOT_ONLY_DIR, "sh", dirname(remotePath), remotePath], {
      sudo: true,
      timeoutMs: 30_000,
    });
    if (safe.code !== 0) {
      const line = safe.stderr.trim().split("\n").pop() || `cannot check ${dirname(remotePath)}`;
      throw new SshError(`ssh ${this.where}: ${line}`, { code: safe.code, stderr: safe.stderr });
    }
    const stage = join(dirname(remotePath), `.${basename(remotePath)}.upload-${randomSuffix()}`);
    if (await this.isRoot()) {
      try {
        await this.upload(src, stage, { mode, onProgress: opts.onProgress });
        if (opts.owner) await this.execOk(["chown", "--", opts.owner, stage]);
        await this.rename(stage, remotePath);
      } catch (e) {
        await this.unlink(stage).catch(() => {});
        throw e;
      }
      return;
    }
    const home = await this.sftpCall<string>("realpath .", (s, cb) => s.realpath(".", cb));
    const tmp = join(home, `.mcp-upload-${randomSuffix()}`);
    try {
      await this.upload(src, tmp, { mode: 0o600, onProgress: opts.onProgress });
      // Arguments arrive as "$1".."$5": nothing from them is ever parsed as shell text.
      const script =
        'set -e; trap \'rm -f -- "$1" "$2"\' EXIT; install -m "$4" -- "$1" "$2"; ' +
        'if [ -n "$5" ]; then chown -- "$5" "$2"; fi; mv -f -- "$2" "$3"';
      await this.execOk(
        ["sh", "-c", script, "sh", tmp, stage, remotePath, mode.toString(8), opts.owner ?? ""],
        { sudo: true },
      );
    } finally {
      await this.unlink(tmp).catch(() => {});
    }
  }

  /** Ends the connection (waits up to 2 s for a clean close, then drops it). */
  async close(): Promise<void> {
    if (this.closed) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        this.client.destroy();
        resolve();
      }, 2000);
      this.client.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
      this.client.end();
    });
    this.closed = true;
  }
}
