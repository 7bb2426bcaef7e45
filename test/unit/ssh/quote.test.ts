// quoteArgv: argv → one command line that a POSIX shell (dash and bash, the shells sshd runs the
// command with) splits back into exactly the same words. Checked with the real local shells.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { quoteArg, quoteArgv, withSudo } from "../../../src/ssh/quote.ts";

/** What sshd does with the command string: `<login shell> -c <line>`; printf NUL-terminates each word. */
function roundTrip(shell: string, argv: string[]): string[] {
  const line = quoteArgv(["printf", "%s\\0", ...argv]);
  const r = Bun.spawnSync([shell, "-c", line], {
    stdout: "pipe",
    stderr: "pipe",
    env: { PATH: "/usr/bin:/bin" },
  });
  if (r.exitCode !== 0) throw new Error(`${shell} failed: ${r.stderr.toString()}`);
  const out = r.stdout.toString("utf8");
  expect(out.endsWith("\0")).toBe(true);
  return out.slice(0, -1).split("\0");
}

const nasty = [
  "'",
  '"',
  " ",
  "$",
  "`",
  "\n",
  "\\",
  "*",
  "?",
  "[",
  "!",
  ";",
  "&",
  "|",
  "<",
  ">",
  "~",
  "=",
  "#",
  "(",
  "{",
  "\t",
  "é",
  "🙂",
  "a",
  "-",
  "%",
];
const arg = fc.oneof(
  fc.string({ unit: fc.constantFrom(...nasty), maxLength: 12 }),
  // Any Unicode scalar value except NUL (which no argv can carry).
  fc.string({ unit: "binary", maxLength: 12 }).filter((s) => !s.includes("\0")),
);

describe("quoteArgv", () => {
  test("plain words stay readable, everything else is single-quoted", () => {
    expect(quoteArgv(["systemctl", "restart", "mcp-agent"])).toBe("systemctl restart mcp-agent");
    expect(quoteArgv(["/srv/mcp/mcp-agent.prev", "a=b", "user@host:22"])).toBe(
      "/srv/mcp/mcp-agent.prev a=b user@host:22",
    );
    expect(quoteArg("")).toBe("''");
    expect(quoteArg("it's")).toBe("'it'\\''s'");
    expect(quoteArg("$(reboot)")).toBe("'$(reboot)'");
    // zsh expands a leading =word to a command path.
    expect(quoteArg("=ls")).toBe("'=ls'");
    expect(quoteArg("~")).toBe("'~'");
  });

  test("refuses NUL bytes and an empty command", () => {
    expect(() => quoteArg("a\0b")).toThrow("NUL");
    expect(() => quoteArgv([])).toThrow("empty command");
  });

  test("fixed nasty arguments round-trip through dash and bash", () => {
    const argv = [
      "",
      " ",
      "it's",
      "'",
      "''",
      '"$HOME"',
      "`id`",
      "$(id)",
      "a\nb",
      "\\",
      "*",
      "-n",
      "--",
      "é🙂",
      "\t",
      "!x",
      "~root",
      "=cat",
      "%s",
    ];
    for (const shell of ["/bin/sh", "/bin/bash"]) expect(roundTrip(shell, argv)).toEqual(argv);
  });

  test("property: any argv round-trips exactly through /bin/sh and /bin/bash", () => {
    fc.assert(
      fc.property(fc.array(arg, { minLength: 1, maxLength: 6 }), (argv) => {
        expect(roundTrip("/bin/sh", argv)).toEqual(argv);
        expect(roundTrip("/bin/bash", argv)).toEqual(argv);
      }),
      { numRuns: 150 },
    );
  });
});

describe("withSudo", () => {
  test("prefixes sudo -n -- only when root is wanted and the login user is not root", () => {
    expect(withSudo(["systemctl", "restart", "x"], true, false)).toEqual([
      "sudo",
      "-n",
      "--",
      "systemctl",
      "restart",
      "x",
    ]);
    expect(withSudo(["systemctl", "restart", "x"], true, true)).toEqual(["systemctl", "restart", "x"]);
    expect(withSudo(["id"], false, false)).toEqual(["id"]);
  });
});
