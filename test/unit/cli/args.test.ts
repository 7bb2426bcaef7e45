// Reading the command line (src/roles/cli/index.ts): the command is found wherever its words are
// among the options, options may come before, between and after the positional words, the table
// decides which options take a value, usage mistakes are exit 2 with a suggestion; and
// `svc[/comp]` targets (splitTarget).
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { splitTarget } from "../../../src/roles/cli/context.ts";
import {
  COMMANDS,
  candidateCommands,
  GLOBAL_OPTIONS,
  parseCommandLine,
  scanArgv,
} from "../../../src/roles/cli/index.ts";
import { CliError } from "../../../src/roles/cli/output.ts";

/** The parse of argv (command, args, options), or the CliError it throws. */
function parse(argv: string[]) {
  const p = parseCommandLine(argv);
  if (!p) throw new Error(`no command matched ${JSON.stringify(argv)}`);
  return { command: p.command, args: p.args, options: p.options };
}

function usageError(argv: string[]): string {
  let err: unknown;
  try {
    parseCommandLine(argv);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CliError);
  expect((err as CliError).code).toBe(2);
  return (err as CliError).message;
}

describe("candidateCommands", () => {
  test("only the commands all of whose name words are among argv's words", () => {
    expect(candidateCommands(["ps", "--json"]).map((c) => c.name)).toEqual(["ps"]);
    expect(candidateCommands(["--config", "ps", "list"]).map((c) => c.name)).toEqual(["list", "ps"]);
    expect(candidateCommands(["node", "--json", "list"]).map((c) => c.name)).toEqual(["list", "node list"]);
  });

  test("none for argv without a command word", () => {
    expect(candidateCommands([])).toEqual([]);
    expect(candidateCommands(["--help"])).toEqual([]);
    expect(candidateCommands(["node", "bogus"])).toEqual([]);
  });
});

describe("options before, between and after the positional words", () => {
  test("the stumble of issue 19: deploy --dry-run <service>", () => {
    const want = parse(["deploy", "web", "--dry-run"]);
    expect(want.args).toEqual(["web"]);
    expect(want.options.dryRun).toBe(true);
    expect(parse(["deploy", "--dry-run", "web"])).toEqual(want);
    expect(parse(["--dry-run", "deploy", "web"])).toEqual(want);
  });

  test("global options before the command, value options before their positionals", () => {
    const p = parse(["--config", "F", "deploy", "-n", "node1", "x"]);
    expect(p).toEqual(parse(["deploy", "x", "--config", "F", "--node", "node1"]));
    expect(p.options.config).toBe("F");
    expect(p.options.node).toBe("node1");
    expect(p.options.n).toBe("node1");
  });

  test("multi-word commands with options before and between their words", () => {
    const want = parse(["agent", "status", "--json"]);
    expect(want.command).toBe("agent status");
    expect(parse(["--json", "agent", "status"])).toEqual(want);
    expect(parse(["agent", "--json", "status"])).toEqual(want);
    expect(parse(["--config", "node", "node", "list"]).options.config).toBe("node");
  });

  test("a value that is a command word stays a value", () => {
    expect(parse(["deploy", "-n", "deploy", "web"]).args).toEqual(["web"]);
    // -n is an option of logs, not of ps: "ps" is its value and logs the command.
    const p = parse(["-n", "ps", "logs", "web"]);
    expect(p.command).toBe("logs");
    expect(p.options.node).toBe("ps");
  });

  test("values are the words as typed (cac would make numbers of them)", () => {
    const p = parse(["push", "--mode", "0640", "f", "svc", "-n", "01"]);
    expect(p.options.mode).toBe("0640");
    expect(p.options.node).toBe("01");
    expect(parse(["rollback", "svc", "--to", "2"]).options.to).toBe("2");
  });

  test("short options: bundled, attached and with =", () => {
    const p = parse(["logs", "-fn", "local", "web"]);
    expect(p.options.follow).toBe(true);
    expect(p.options.node).toBe("local");
    expect(parse(["logs", "web", "-nlocal"]).options.node).toBe("local");
    expect(parse(["logs", "web", "-n=local"]).options.node).toBe("local");
  });

  test("repeatable options collect every value, in order", () => {
    const p = parse(["node", "add", "--fallback", "a:1", "n1", "h:1", "--fallback=b:2"]);
    expect(p.args).toEqual(["n1", "h:1"]);
    expect(p.options.fallback).toEqual(["a:1", "b:2"]);
    expect(
      parse(["build", "--runtime-arg=--runtime", "web", "--runtime-arg", "runc"]).options.runtimeArg,
    ).toEqual(["--runtime", "runc"]);
  });

  test("after -- every word is positional", () => {
    expect(parse(["push", "--", "-odd-name", "svc"]).args).toEqual(["-odd-name", "svc"]);
  });

  test("negated flags and defaults as the table gives them", () => {
    expect(parse(["deploy", "--no-rollback", "web"]).options.rollback).toBe(false);
    expect(parse(["deploy", "web"]).options.rollback).toBe(true);
    expect(parse(["deploy", "web"]).options.pull).toBe("always");
  });
});

describe("usage mistakes: one line, exit 2", () => {
  test("unknown options, with the likeliest one", () => {
    expect(usageError(["deploy", "--dryrun", "x"])).toBe(
      'unknown option "--dryrun" for mcp deploy: did you mean "--dry-run"?',
    );
    expect(usageError(["deploy", "-dry-run", "x"])).toBe(
      'unknown option "-dry-run" for mcp deploy: did you mean "--dry-run"?',
    );
    expect(usageError(["ps", "--bogus"])).toBe('unknown option "--bogus" for mcp ps (see mcp ps --help)');
    // A bundle with an unknown letter takes no value, even with -n among its letters.
    expect(usageError(["-dry-run", "deploy", "x"])).toBe(
      'unknown option "-dry-run" for mcp deploy: did you mean "--dry-run"?',
    );
    // --version belongs to mcp itself, not to a command
    expect(usageError(["deploy", "x", "--version"])).toStartWith('unknown option "--version" for mcp deploy');
  });

  test("an option without its value, a flag with one", () => {
    expect(usageError(["deploy", "x", "--node"])).toBe(
      "deploy: option --node needs a value (-n, --node <node>)",
    );
    expect(usageError(["deploy", "x", "-n", "--dry-run"])).toBe(
      "deploy: option -n needs a value (-n, --node <node>)",
    );
    expect(usageError(["deploy", "x", "--dry-run=yes"])).toBe(
      'deploy: option --dry-run takes no value, got "--dry-run=yes"',
    );
  });

  test("missing and extra arguments name the usage", () => {
    expect(usageError(["deploy", "--dry-run"])).toBe(
      "deploy: missing <service> (usage: mcp deploy <service>)",
    );
    expect(usageError(["push", "f"])).toBe(
      "push: missing <service> (usage: mcp push <file> <service> [path])",
    );
    expect(usageError(["ps", "extra"])).toBe('ps: unexpected argument "extra" (usage: mcp ps)');
    expect(parse(["agent", "status", "a", "b", "c"]).args).toEqual(["a", "b", "c"]);
  });

  test("--help skips the checks (the command's help is printed instead)", () => {
    const p = parseCommandLine(["deploy", "--help", "--bogus"]);
    expect(p?.help).toBe(true);
  });

  test("words that name no command are no match (runCli then says so)", () => {
    expect(parseCommandLine(["deplyo", "x"])).toBeNull();
    expect(parseCommandLine(["bogus", "ps"])).toBeNull();
  });
});

describe("scanArgv", () => {
  test("an option the table lacks takes no value and is kept for the error", () => {
    const s = scanArgv(["--bogus", "x"], new Map());
    expect(s.words).toEqual(["x"]);
    expect(s.options).toEqual([{ word: "--bogus", spelling: "--bogus", spec: undefined }]);
  });
});

// ---- the property: any order of a command line parses like the canonical order ---------------

interface Opt {
  spellings: string[];
  long: string;
  takesValue: boolean;
}

const optOf = (flag: string): Opt => {
  const spellings = flag
    .replace(/[<[].*$/, "")
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean);
  return { spellings, long: spellings.find((s) => s.startsWith("--"))!, takesValue: /[<[]/.test(flag) };
};

/** Every option a command takes (its own, then the global ones it does not redefine). */
function optionsOf(def: (typeof COMMANDS)[number]): Opt[] {
  const own = (def.options ?? []).map(([f]) => optOf(f));
  const longs = new Set(own.map((o) => o.long));
  return [...own, ...GLOBAL_OPTIONS.map(([f]) => optOf(f)).filter((o) => !longs.has(o.long))];
}

const nameWords = [...new Set(COMMANDS.flatMap((c) => c.name.split(" ")))];
// Values and arguments: plain words and, to try the matcher, command words (never starting with "-").
const word = fc.oneof(fc.stringMatching(/^[a-z0-9][a-z0-9._:/]{0,8}$/), fc.constantFrom(...nameWords));

interface Line {
  /** The command's words, then its arguments, in order. */
  fixed: string[];
  /** Each option as the words it takes, with where it goes among `fixed` (0 = first). */
  units: { words: string[]; at: number; canonical: string[] }[];
}

function lineArb(def: (typeof COMMANDS)[number]): fc.Arbitrary<Line> {
  const slots = def.args.match(/<[^>]+>|\[[^\]]+\]/g) ?? [];
  const required = slots.filter((s) => s.startsWith("<")).length;
  const max = slots.some((s) => s.includes("...")) ? 3 : slots.length;
  const name = def.name.split(" ");
  const opts = optionsOf(def);
  const unit = (o: Opt) =>
    fc.record({
      spelling: fc.constantFrom(...o.spellings),
      form: fc.constantFrom("separate", "equals", "attached"),
      value: o.takesValue ? fc.oneof(word, fc.constant("-x")) : fc.constant(""),
      at: fc.nat(),
    });
  return fc
    .tuple(
      fc.array(word, { minLength: required, maxLength: max }),
      fc.subarray(opts).chain((chosen) => fc.tuple(fc.constant(chosen), fc.tuple(...chosen.map(unit)))),
    )
    .map(([args, [chosen, picks]]) => {
      const fixed = [...name, ...args];
      const units = chosen.map((o, i) => {
        const p = picks[i]!;
        // A value starting with "-" can only be given with "=" (or attached to a short option).
        const form = p.value.startsWith("-") && p.form === "separate" ? "equals" : p.form;
        let words: string[];
        if (!o.takesValue) words = [p.spelling];
        else if (form === "equals") words = [`${p.spelling}=${p.value}`];
        else if (form === "attached" && !p.spelling.startsWith("--")) words = [`${p.spelling}${p.value}`];
        else words = p.value.startsWith("-") ? [`${p.spelling}=${p.value}`] : [p.spelling, p.value];
        const canonical = o.takesValue ? [`${o.long}=${p.value}`] : [o.long];
        return { words, at: p.at % (fixed.length + 1), canonical };
      });
      return { fixed, units };
    });
}

/** `fixed` with each unit inserted before fixed[at] (after the last when at = fixed.length). */
function interleave(line: Line): string[] {
  const out: string[] = [];
  for (let i = 0; i <= line.fixed.length; i++) {
    for (const u of line.units) if (u.at === i) out.push(...u.words);
    if (i < line.fixed.length) out.push(line.fixed[i]!);
  }
  return out;
}

describe("property: options anywhere parse to the same args and options as the canonical order", () => {
  for (const def of COMMANDS) {
    test(`mcp ${def.name}`, () => {
      const nameLength = def.name.split(" ").length;
      fc.assert(
        fc.property(lineArb(def), (line) => {
          const canonical = [...line.fixed, ...line.units.flatMap((u) => u.canonical)];
          const want = parse(canonical);
          const got = parse(interleave(line));
          expect(got).toEqual(want);
          expect(want.command).toBe(def.name);
          expect(want.args).toEqual(line.fixed.slice(nameLength));
          // Each option given is in the options object as typed: value, true, or false when negated.
          for (const u of line.units) {
            const [long, value] = u.canonical[0]!.split(/=(.*)/s) as [string, string | undefined];
            const key = long
              .replace(/^--(no-)?/, "")
              .replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase());
            expect(want.options[key]).toEqual(value ?? !long.startsWith("--no-"));
          }
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe("splitTarget", () => {
  test("service and service/component", () => {
    expect(splitTarget("web")).toEqual({ service: "web" });
    expect(splitTarget("web/api")).toEqual({ service: "web", component: "api" });
    expect(splitTarget("my-svc/my-comp")).toEqual({ service: "my-svc", component: "my-comp" });
  });

  test("bad targets are usage errors (exit 2) naming the target", () => {
    for (const bad of ["/api", "web/", "/", "web/api/x", "a//b"]) {
      let err: unknown;
      try {
        splitTarget(bad);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(CliError);
      expect((err as CliError).code).toBe(2);
      expect((err as CliError).message).toBe(
        `bad target "${bad}": expected <service> or <service>/<component>`,
      );
    }
  });
});
