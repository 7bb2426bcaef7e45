// ConfigError: the one error type of the configuration boundary. It names the
// file, the key path and what was expected, in a single line, so the CLI can
// print `err.message` and nothing else (no stack trace for bad input).

export class ConfigError extends Error {
  /** Path of the file the problem is in ("" when the input did not come from a file). */
  readonly file: string;
  /** Dotted key path such as `components[1].ports[0]`, or `line N` for TOML syntax errors. */
  readonly key: string;
  /** What was expected / what is wrong. */
  readonly expected: string;
  /** 1-based line of a TOML syntax error. */
  readonly line: number | undefined;

  constructor(file: string, key: string, expected: string, line?: number) {
    // Empty parts are dropped so pure parsers (no file, no key) still yield a clean line.
    super(oneLine([file, key, expected].filter((p) => p !== "").join(": ")));
    this.name = "ConfigError";
    this.file = file;
    this.key = key;
    this.expected = expected;
    this.line = line;
  }

  /** The same problem, re-anchored to a file and key (used when a pure parser's error surfaces in a file). */
  at(file: string, key: string): ConfigError {
    return new ConfigError(file, key, this.expected, this.line);
  }
}

/** Config errors must print as one line whatever the offending input contained. */
function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, " ");
}
