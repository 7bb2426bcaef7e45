import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import fc from "fast-check";
import { z } from "zod";
import { ConfigError } from "../../../src/config/errors.ts";
import { duration, formatKeyPath, loadToml, parseDuration, parseWith } from "../../../src/config/load.ts";
import { tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

describe("ConfigError", () => {
  test("message is <file>: <key>: <expected> on one line", () => {
    const e = new ConfigError("a.toml", "components[1].ports[0]", "expected x\nsecond line");
    expect(e.message).toBe("a.toml: components[1].ports[0]: expected x second line");
    expect(e.file).toBe("a.toml");
    expect(e.key).toBe("components[1].ports[0]");
    expect(e).toBeInstanceOf(Error);
  });
  test("empty parts are dropped; at() re-anchors", () => {
    const e = new ConfigError("", "", "bad thing");
    expect(e.message).toBe("bad thing");
    expect(e.at("f.toml", "k").message).toBe("f.toml: k: bad thing");
  });
});

describe("loadToml", () => {
  test("parses a file", () => {
    const f = writeTemp(dir, 'name = "x"\n[a]\nb = [1, 2]\n');
    expect(loadToml(f)).toEqual({ name: "x", a: { b: [1, 2] } });
  });
  test("missing file", () => {
    const f = `${dir}/nope.toml`;
    const e = thrown(() => loadToml(f));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toBe(`${f}: file not found`);
  });
  test("malformed TOML names the line, in one line", () => {
    const f = writeTemp(dir, 'name = "x"\n\n[[components]]\nimage = "a\n');
    const e = thrown(() => loadToml(f)) as ConfigError;
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toMatch(new RegExp(`^${f.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}: line 4: \\S`));
    expect(e.message).not.toContain("\n");
    expect(e.line).toBe(4);
  });
  test("invalid UTF-8 is an error naming its line, not a silent U+FFFD", () => {
    const f = writeTemp(dir, "");
    writeFileSync(
      f,
      Buffer.concat([Buffer.from('a = "ok"\n# fine\nuser = "caf'), Buffer.from([0xe9]), Buffer.from('"\n')]),
    );
    const e = thrown(() => loadToml(f)) as ConfigError;
    expect(e.message).toBe(`${f}: line 3: invalid UTF-8 (TOML files must be UTF-8)`);
    expect(e.line).toBe(3);
    // in a comment too: the file as a whole must be UTF-8
    writeFileSync(f, Buffer.concat([Buffer.from("# "), Buffer.from([0xff, 0xfe])]));
    expect(thrown(() => loadToml(f)).message).toBe(`${f}: line 1: invalid UTF-8 (TOML files must be UTF-8)`);
    writeFileSync(f, 'name = "café ✓"\n');
    expect(loadToml(f)).toEqual({ name: "café ✓" });
  });
  test("duplicate key is a syntax error with its line", () => {
    const f = writeTemp(dir, "a = 1\nb = 2\na = 3\n");
    expect(thrown(() => loadToml(f)).message).toContain(": line 3: ");
  });
});

describe("parseWith", () => {
  const schema = z.strictObject({
    name: z.string(),
    sub: z
      .strictObject({ n: z.number().int().default(1), list: z.array(z.string()).default([]) })
      .prefault({}),
  });
  test("a TOML datetime where a table belongs is an error, not an empty table of defaults", () => {
    const data = { name: "x", sub: new Date("2024-01-01T00:00:00Z") };
    expect(thrown(() => parseWith(schema, data, "f.toml", { unknownKeys: "error" })).message).toBe(
      "f.toml: sub: expected table, got date",
    );
    const asString = { name: new Date(0), sub: {} };
    expect(thrown(() => parseWith(schema, asString, "f.toml", { unknownKeys: "error" })).message).toBe(
      "f.toml: name: expected string, got date",
    );
  });
  test("wrong type: expected X, got Y with the key path", () => {
    const e = thrown(() => parseWith(schema, { name: 5 }, "f.toml", { unknownKeys: "error" }));
    expect(e.message).toBe("f.toml: name: expected string, got integer");
  });
  test("nested array element path", () => {
    const e = thrown(() =>
      parseWith(schema, { name: "a", sub: { list: ["x", true] } }, "f.toml", { unknownKeys: "error" }),
    );
    expect(e.message).toBe("f.toml: sub.list[1]: expected string, got boolean");
  });
  test("missing key", () => {
    expect(thrown(() => parseWith(schema, {}, "f.toml", { unknownKeys: "error" })).message).toBe(
      "f.toml: name: required key is missing (expected string)",
    );
  });
  test("unknown keys: error mode reports them before other problems", () => {
    const e = thrown(() => parseWith(schema, { sub: { nn: 1 } }, "f.toml", { unknownKeys: "error" }));
    expect(e.message).toBe('f.toml: sub.nn: unknown key "nn"');
  });
  test("unknown keys come with the likeliest key their table allows", () => {
    const e = thrown(() =>
      parseWith(schema, { name: "a", sub: { lsit: [] } }, "f.toml", { unknownKeys: "error" }),
    );
    expect(e.message).toBe('f.toml: sub.lsit: unknown key "lsit" (did you mean "list"?)');
    const warnings: string[] = [];
    parseWith(schema, { name: "a", sub: { lsit: [] } }, "f.toml", {
      unknownKeys: "warn",
      onWarn: (w) => warnings.push(w),
    });
    expect(warnings).toEqual(['f.toml: sub.lsit: unknown key "lsit" (ignored; did you mean "list"?)']);
  });
  test("warn mode: a missing key's error names the unknown keys of its table (the likely typo)", () => {
    const data = { nmae: "a", extra: 1, sub: { nn: 2 } };
    const e = thrown(() => parseWith(schema, data, "f.toml", { unknownKeys: "warn" }));
    expect(e.message).toBe(
      'f.toml: name: required key is missing (expected string); nmae: unknown key "nmae" (did you mean "name"?); extra: unknown key "extra"',
    );
    // Other problems are not about a typo: no unknown keys next to them.
    const wrong = thrown(() => parseWith(schema, { name: 5, nmae: "a" }, "f.toml", { unknownKeys: "warn" }));
    expect(wrong.message).toBe("f.toml: name: expected string, got integer");
  });
  test("unknown keys: warn mode warns, ignores and does not mutate the input", () => {
    const warnings: string[] = [];
    const data = { name: "a", extra: 1, sub: { nn: 2, n: 3 } };
    const out = parseWith(schema, data, "f.toml", { unknownKeys: "warn", onWarn: (w) => warnings.push(w) });
    expect(out).toEqual({ name: "a", sub: { n: 3, list: [] } });
    expect(warnings.sort()).toEqual([
      'f.toml: extra: unknown key "extra" (ignored)',
      'f.toml: sub.nn: unknown key "nn" (ignored)',
    ]);
    expect(data.extra).toBe(1);
    expect(data.sub.nn).toBe(2);
  });
  test("formatKeyPath quotes odd keys", () => {
    expect(formatKeyPath(["components", 1, "ports", 0])).toBe("components[1].ports[0]");
    expect(formatKeyPath(["build", "images", "a.b"])).toBe('build.images["a.b"]');
    expect(formatKeyPath([])).toBe("");
  });
});

describe("durations", () => {
  test("units and combinations", () => {
    expect(parseDuration("60s")).toBe(60_000);
    expect(parseDuration("15m")).toBe(900_000);
    expect(parseDuration("30d")).toBe(30 * 86_400_000);
    expect(parseDuration("1h30m")).toBe(5_400_000);
    expect(parseDuration("500ms")).toBe(500);
    expect(parseDuration("1.5s")).toBe(1500);
    expect(parseDuration("0")).toBe(0);
  });
  test("bad durations are ConfigErrors", () => {
    for (const bad of ["", "60", "s", "-1s", "1 h", "1y", "1h-", "ms5"]) {
      const e = thrown(() => parseDuration(bad));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message).toContain("expected a duration");
    }
  });
  test("zod schema yields milliseconds and names the key on error", () => {
    const s = z.strictObject({ interval: duration.prefault("60s") });
    expect(parseWith(s, {}, "a.toml", { unknownKeys: "error" })).toEqual({ interval: 60_000 });
    expect(thrown(() => parseWith(s, { interval: "soon" }, "a.toml", { unknownKeys: "error" })).message).toBe(
      'a.toml: interval: expected a duration like "500ms", "60s", "15m", "1h30m" or "30d", got "soon"',
    );
  });
  test("property: sums of unit terms parse to the sum", () => {
    const unit = fc.constantFrom(["ms", 1], ["s", 1000], ["m", 60_000], ["h", 3_600_000], ["d", 86_400_000]);
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 0, max: 10_000 }), unit), { minLength: 1, maxLength: 5 }),
        (terms) => {
          const text = terms.map(([n, [u]]) => `${n}${u}`).join("");
          const ms = terms.reduce((acc, [n, [, f]]) => acc + n * (f as number), 0);
          expect(parseDuration(text)).toBe(ms);
        },
      ),
    );
  });
});
