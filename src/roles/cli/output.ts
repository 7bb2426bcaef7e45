// CLI output: one-line errors with exit codes, plain tables for humans, JSON for scripts.

// The exit codes of every command (mcp --help "Exit codes", README "Exit codes"). 2 is decided
// from the command line and the files alone, before anything is asked of a node; 1 is what went
// wrong while doing it; 3 is for the commands that report state (status, ps).
/** Success. */
export const EXIT_OK = 0;
/** The operation was tried and failed: a node, agent, runtime or registry said no, or did not finish. */
export const EXIT_FAILED = 1;
/** Usage or bad input: unknown command or option, missing argument, bad value, invalid config or definition. */
export const EXIT_USAGE = 2;
/** status/ps: drift between definitions and what runs, or a node could not be reached. */
export const EXIT_DRIFT = 3;

/** The policy as `mcp --help` and the README state it, one line per code. */
export const EXIT_CODES_HELP: readonly [number, string][] = [
  [EXIT_OK, "ok"],
  [EXIT_FAILED, "the operation failed (a node, agent or runtime refused it or did not finish)"],
  [
    EXIT_USAGE,
    "usage or bad input: unknown command or option, missing argument, bad value, invalid config or definition",
  ],
  [EXIT_DRIFT, "status, ps: drift, or a node could not be reached"],
];

/** An error meant for the operator: printed as one line, exits with `code`. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly code = EXIT_FAILED,
  ) {
    super(message);
    this.name = "CliError";
  }
}

/** Bad input (config, definition, usage) exits 2; operation failures exit 1. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.code;
  const name = (err as Error)?.name;
  // cac's own checks (CACError) are usage errors; runCli checks first, so this is a safety net.
  if (name === "ConfigError" || name === "CACError") return EXIT_USAGE;
  return EXIT_FAILED;
}

export function printError(err: unknown): void {
  const msg = (err as Error)?.message ?? String(err);
  process.stderr.write(`mcp: ${msg.split("\n")[0]}\n`);
}

export function warn(msg: string): void {
  process.stderr.write(`mcp: warning: ${msg}\n`);
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

const useColor = () => process.stdout.isTTY === true && !process.env.NO_COLOR;
export const red = (s: string) => (useColor() ? `\x1b[31m${s}\x1b[0m` : s);
export const green = (s: string) => (useColor() ? `\x1b[32m${s}\x1b[0m` : s);
export const yellow = (s: string) => (useColor() ? `\x1b[33m${s}\x1b[0m` : s);

// biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI colour codes to measure width.
const visibleLength = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "").length;

/** Renders rows as aligned columns with an upper-case header. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => visibleLength(r[i] ?? ""))));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c + " ".repeat(widths[i]! - visibleLength(c))))
      .join("  ")
      .trimEnd();
  return [line(headers.map((h) => h.toUpperCase())), ...rows.map(line)].join("\n") + "\n";
}

export function printTable(headers: string[], rows: string[][]): void {
  process.stdout.write(table(headers, rows));
}

/** "3d4h", "5m", "12s" — compact uptime for tables. */
export function formatAge(since: Date | null | undefined, now = Date.now()): string {
  if (!since) return "-";
  let s = Math.max(0, Math.floor((now - since.getTime()) / 1000));
  const d = Math.floor(s / 86400);
  s -= d * 86400;
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (d > 0) return `${d}d${h}h`;
  if (h > 0) return `${h}h${m}m`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

export function formatBytes(n: number | bigint): string {
  let v = Number(n);
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(u === 0 ? 0 : 1)}${units[u]}`;
}
