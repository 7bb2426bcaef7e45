// Human output helpers: aligned tables (ANSI colour does not count towards width), compact ages,
// and display quoting of argv (deploy --dry-run).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { shellQuote } from "../../../src/roles/cli/deploy.ts";
import { formatAge, table } from "../../../src/roles/cli/output.ts";

describe("table", () => {
  test("aligns columns, upper-cases headers, no trailing spaces", () => {
    const out = table(
      ["name", "state", "image"],
      [
        ["web", "running", "img:v1"],
        ["database", "stopped", "postgres:16"],
      ],
    );
    expect(out).toBe(
      ["NAME      STATE    IMAGE", "web       running  img:v1", "database  stopped  postgres:16", ""].join(
        "\n",
      ),
    );
  });

  test("colour codes do not shift columns", () => {
    const red = (s: string) => `\x1b[31m${s}\x1b[0m`;
    const out = table(
      ["a", "b"],
      [
        [red("xx"), "1"],
        ["yyyy", "2"],
      ],
    );
    const lines = out.split("\n");
    // biome-ignore lint/suspicious/noControlCharactersInRegex: stripping ANSI to compare layout.
    const plain = (s: string) => s.replace(/\x1b\[[0-9;]*m/g, "");
    expect(plain(lines[1]!)).toBe("xx    1");
    expect(lines[2]).toBe("yyyy  2");
    expect(lines[0]).toBe("A     B");
  });

  test("missing cells and empty last columns", () => {
    expect(table(["a", "b"], [["x"], ["long", ""]])).toBe("A     B\nx\nlong\n");
    expect(table(["only"], [])).toBe("ONLY\n");
  });
});

describe("formatAge", () => {
  const now = Date.UTC(2026, 0, 10, 12, 0, 0);
  const ago = (s: number) => new Date(now - s * 1000);

  test("absent start is a dash", () => {
    expect(formatAge(null, now)).toBe("-");
    expect(formatAge(undefined, now)).toBe("-");
  });

  test("picks the two largest units", () => {
    const cases: [number, string][] = [
      [0, "0s"],
      [59, "59s"],
      [60, "1m0s"],
      [61, "1m1s"],
      [3599, "59m59s"],
      [3600, "1h0m"],
      [3 * 3600 + 25 * 60 + 7, "3h25m"],
      [86_399, "23h59m"],
      [86_400, "1d0h"],
      [3 * 86_400 + 4 * 3600 + 59, "3d4h"],
      [400 * 86_400, "400d0h"],
    ];
    for (const [s, want] of cases) expect(formatAge(ago(s), now)).toBe(want);
  });

  test("sub-second and future starts clamp to 0s", () => {
    expect(formatAge(new Date(now - 999), now)).toBe("0s");
    expect(formatAge(new Date(now + 60_000), now)).toBe("0s");
  });
});

/** POSIX sh reading of one word made only of bare characters, '...' and \' (what shellQuote emits). */
function shUnquote(word: string): string {
  let out = "";
  let i = 0;
  while (i < word.length) {
    const c = word[i]!;
    if (c === "'") {
      const end = word.indexOf("'", i + 1);
      if (end < 0) throw new Error(`unterminated quote in ${word}`);
      out += word.slice(i + 1, end);
      i = end + 1;
    } else if (c === "\\") {
      out += word[i + 1] ?? "";
      i += 2;
    } else {
      if (!/[A-Za-z0-9_@%+=:,./-]/.test(c))
        throw new Error(`unquoted special ${JSON.stringify(c)} in ${word}`);
      out += c;
      i++;
    }
  }
  return out;
}

describe("shellQuote", () => {
  test("safe words stay bare", () => {
    for (const w of [
      "podman",
      "--runtime",
      "127.0.0.1:8080:80",
      "/srv/web/data:/data",
      "img@sha256:ab",
      "a=b,c",
    ]) {
      expect(shellQuote(w)).toBe(w);
    }
  });

  test("everything else is single-quoted", () => {
    expect(shellQuote("")).toBe("''");
    expect(shellQuote("hello world")).toBe("'hello world'");
    expect(shellQuote("$HOME")).toBe("'$HOME'");
    expect(shellQuote("a;rm -rf /")).toBe("'a;rm -rf /'");
    expect(shellQuote("it's")).toBe(`'it'\\''s'`);
    expect(shellQuote("x\ny")).toBe("'x\ny'");
  });

  test("any string reads back unchanged under sh quoting rules", () => {
    fc.assert(
      fc.property(fc.string({ unit: "binary", maxLength: 40 }), (s) => shUnquote(shellQuote(s)) === s),
      { numRuns: 500 },
    );
  });
});
