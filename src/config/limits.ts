// Limits the CLI and the agent both enforce on a file transfer (PushFile/PullFile), and the one-line
// message either side gives when a file is over them: the CLI refuses before sending, the agent
// refuses what arrives, and the operator reads the same words from both.

/** Largest file PushFile/PullFile moves in one message (the gRPC message limit is 16 MiB). */
export const MAX_FILE_BYTES = 8 * 1024 * 1024;

/** "8 MiB" for the limit in error messages. */
function formatLimit(bytes: number): string {
  return bytes % (1024 * 1024) === 0 ? `${bytes / (1024 * 1024)} MiB` : `${bytes} bytes`;
}

/** The one-line size error both sides use. */
export function tooLargeMessage(what: string, size: number, limit = MAX_FILE_BYTES): string {
  return `${what} is ${size} bytes; the limit is ${formatLimit(limit)}`;
}
