// The lifecycle both daemons (agent, master) share: signal handlers installed BEFORE the port
// opens (a SIGTERM during startup must still shut down cleanly), start, then close on the
// first SIGTERM/SIGINT and resolve the exit code.
import type { Logger } from "pino";
import type { TokenValidator } from "../auth/identity.ts";

/** What both daemons start from: where they listen, their TLS identity, database, callers, log. */
export interface DaemonSettings {
  grpcAddr: string;
  allowAnyAddr: boolean;
  tlsCertPem: string;
  tlsKeyPem: string;
  dbPath: string;
  validator: TokenValidator;
  /** [auth] operators: system accounts that may operate (SPEC §5.2); humans need user/admin. */
  operators?: readonly string[];
  logger: Logger;
  version: string;
}

export interface Closable {
  close(): Promise<void>;
}

/** Runs `start()` and serves until a signal; a failed start is one line and exit 1. */
export async function runUntilSignal(
  label: string,
  logger: Logger,
  start: () => Promise<Closable>,
): Promise<number> {
  let signalled: string | null = null;
  let onSignal: (sig: string) => void = (sig) => {
    signalled = sig;
  };
  process.on("SIGTERM", () => onSignal("SIGTERM"));
  process.on("SIGINT", () => onSignal("SIGINT"));
  let running: Closable;
  try {
    running = await start();
  } catch (err) {
    process.stderr.write(`mcp ${label}: ${((err as Error)?.message ?? String(err)).split("\n")[0]}\n`);
    return 1;
  }
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    onSignal = (sig: string) => {
      if (stopping) return;
      stopping = true;
      logger.info({ signal: sig }, `${label} stopping`);
      void running.close().then(() => resolveExit(0));
    };
    if (signalled) onSignal(signalled);
  });
}
