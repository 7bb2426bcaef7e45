// POSIX shell quoting for remote commands. SSH carries one command string that the remote login
// shell parses, so every argv element is single-quoted on its own: nothing inside single quotes is
// special to sh except the closing quote, which becomes '\'' (close, escaped quote, reopen). No
// caller ever concatenates untrusted parts into a shell string; they pass argv and this joins it.

/**
 * Quotes one argument for a POSIX shell. Plain words stay readable in logs; `=` only after the
 * first character because zsh expands a leading `=word` to a command path.
 */
export function quoteArg(arg: string): string {
  if (arg.includes("\0")) throw new Error("a command argument cannot contain a NUL byte");
  if (/^[A-Za-z0-9_./:@%+,-][A-Za-z0-9_./:=@%+,-]*$/.test(arg)) return arg;
  return `'${arg.replaceAll("'", "'\\''")}'`;
}

/** Joins argv into one command line the remote shell splits back into exactly these words. */
export function quoteArgv(argv: readonly string[]): string {
  if (argv.length === 0) throw new Error("empty command");
  return argv.map(quoteArg).join(" ");
}

/** The argv actually run: `sudo -n --` in front when asked for root and the login user is not root. */
export function withSudo(argv: readonly string[], sudo: boolean, loginIsRoot: boolean): string[] {
  // -n: never prompt for a password (there is no terminal; a prompt would hang until the timeout).
  return sudo && !loginIsRoot ? ["sudo", "-n", "--", ...argv] : [...argv];
}
