// Logging: pino, JSON to stderr, synchronous (worker-thread transports fail in a compiled binary).
import pino, { type Logger } from "pino";

export type { Logger };

export function createLogger(level = "info", name?: string): Logger {
  return pino(
    { level, base: name ? { role: name } : {}, timestamp: pino.stdTimeFunctions.isoTime },
    pino.destination({ dest: 2, sync: true }),
  );
}
