// SshError: the one error type of the SSH layer. Messages are one line and name the host, so the
// CLI can print `err.message` as is (a per-node progress line, never a stack trace).

export class SshError extends Error {
  /** Remote exit code for a failed command; -1 for a timeout; undefined for connection-level errors. */
  readonly code: number | undefined;
  /** The remote command's stderr when the error is a failed command. */
  readonly stderr: string;

  constructor(message: string, opts?: { code?: number; stderr?: string }) {
    super(message.replace(/[\r\n]+/g, " ").trim());
    this.name = "SshError";
    this.code = opts?.code;
    this.stderr = opts?.stderr ?? "";
  }
}
