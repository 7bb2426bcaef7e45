// The Nanos manifest writer (src/runtime/nanos/manifest.ts): exact text for a small tree, the quoting of
// names and values holding the characters the tuple syntax gives a meaning to, refusals, and a round
// trip through a small parser written here from the syntax rules in shared/unikernel/README.md §1
// (example-based and fast-check). The real mkfs + QEMU boot of a written manifest is in
// test/integration/nanos-manifest.test.ts.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  type GuestDir,
  type GuestNode,
  type Manifest,
  ManifestError,
  quote,
  writeManifest,
} from "../../../src/runtime/nanos/manifest.ts";

const dir = (entries: [string, GuestNode][] = []): GuestDir => ({ kind: "dir", children: new Map(entries) });
const file = (host: string): GuestNode => ({ kind: "file", host });
const link = (target: string): GuestNode => ({ kind: "symlink", target });

// ---- a reader of the tuple syntax, per the README rules (not the Nanos parser itself) ----
type Value = string | Value[] | Map<string, Value>;

function parse(text: string): Value {
  let i = 0;
  const ws = (): void => {
    for (;;) {
      while (i < text.length && /\s/.test(text[i]!)) i++;
      if (text[i] !== "#") return;
      while (i < text.length && text[i] !== "\n") i++;
    }
  };
  const quoted = (): string => {
    i++; // opening quote
    let s = "";
    while (text[i] !== '"') {
      if (i >= text.length) throw new Error("unterminated string");
      if (text[i] === "\\") i++;
      s += text[i++];
    }
    i++;
    return s;
  };
  const bare = (stop: RegExp): string => {
    const start = i;
    while (i < text.length && !stop.test(text[i]!)) i++;
    if (i === start) throw new Error(`empty word at ${i}: ${JSON.stringify(text.slice(i, i + 20))}`);
    return text.slice(start, i);
  };
  const value = (): Value => {
    ws();
    const c = text[i];
    if (c === "(") {
      i++;
      const m = new Map<string, Value>();
      for (;;) {
        ws();
        if (text[i] === ")") {
          i++;
          return m;
        }
        const name = text[i] === '"' ? quoted() : bare(/[\s()[\]:|/]/);
        if (text[i] !== ":") throw new Error(`expected ':' after ${name}`);
        i++;
        if (m.has(name)) throw new Error(`duplicate name ${name}`);
        m.set(name, value());
      }
    }
    if (c === "[") {
      i++;
      const v: Value[] = [];
      for (;;) {
        // Whitespace before "]" is an (empty) element in Nanos; the writer must never produce it.
        if (/\s/.test(text[i]!) && text.slice(i).trimStart().startsWith("]"))
          throw new Error("space before ]");
        ws();
        if (text[i] === "]") {
          i++;
          return v;
        }
        v.push(value());
      }
    }
    if (c === '"') return quoted();
    return bare(/[\s()[\]]/);
  };
  const v = value();
  ws();
  if (i !== text.length) throw new Error(`trailing text at ${i}`);
  return v;
}

/** The Manifest a parsed text describes, for comparison with the writer's input. */
function asManifest(v: Value): Manifest {
  if (!(v instanceof Map)) throw new Error("root is not a tuple");
  const node = (x: Value): GuestNode => {
    if (!(x instanceof Map)) throw new Error("node is not a tuple");
    if (x.has("children")) return dirOf(x.get("children")!);
    if (x.has("linktarget")) return link(x.get("linktarget") as string);
    const contents = x.get("contents") as Map<string, Value>;
    return file(contents.get("host") as string);
  };
  const dirOf = (c: Value): GuestDir => {
    if (!(c instanceof Map)) throw new Error("children is not a tuple");
    return dir([...c].map(([k, x]) => [k, node(x)]));
  };
  const m: Manifest = {
    root: dirOf(v.get("children")!),
    program: v.get("program") as string,
    args: v.get("arguments") as string[],
    environment: Object.fromEntries(v.get("environment") as Map<string, string>),
  };
  const boot = v.get("boot");
  if (boot) {
    expect(v.get("klibs")).toBe("bootfs");
    const klib = ((boot as Map<string, Value>).get("children") as Map<string, Value>).get("klib")!;
    const libs = dirOf((klib as Map<string, Value>).get("children")!);
    m.klibs = Object.fromEntries(
      [...libs.children].map(([k, n]) => [k, (n as { kind: "file"; host: string }).host]),
    );
  }
  return m;
}

/** Compare trees by content (Map order is not part of the meaning). */
function norm(n: GuestNode): unknown {
  if (n.kind !== "dir") return n;
  return Object.fromEntries(
    [...n.children].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, c]) => [k, norm(c)]),
  );
}
function expectRoundTrip(m: Manifest): string {
  const text = writeManifest(m);
  const back = asManifest(parse(text));
  expect(norm(back.root)).toEqual(norm(m.root));
  expect(back.program).toBe(m.program);
  expect(back.args).toEqual(m.args);
  expect(back.environment).toEqual(m.environment);
  expect(back.klibs).toEqual(m.klibs && Object.keys(m.klibs).length > 0 ? m.klibs : undefined);
  return text;
}

describe("quote", () => {
  test("wraps in double quotes and escapes only backslash and double quote", () => {
    expect(quote("")).toBe('""');
    expect(quote("a b")).toBe('"a b"');
    expect(quote('f"q')).toBe('"f\\"q"');
    expect(quote("c:\\x")).toBe('"c:\\\\x"');
    expect(quote('\\"')).toBe('"\\\\\\""');
    expect(quote("#(x)[y]|/:")).toBe('"#(x)[y]|/:"');
  });
});

describe("writeManifest", () => {
  test("exact text of a small manifest", () => {
    const text = writeManifest({
      root: dir([
        ["app", dir([["server", file("/st/app/server")]])],
        ["empty", dir()],
        ["current", link("/app/server")],
      ]),
      program: "/app/server",
      args: ["server", "--port", "8080"],
      environment: { PORT: "8080", GREETING: "hi there" },
    });
    expect(text).toBe(
      [
        "(",
        "  children:(",
        '    "app":(children:(',
        '      "server":(contents:(host:"/st/app/server"))',
        "    ))",
        '    "current":(linktarget:"/app/server")',
        '    "empty":(children:())',
        "  )",
        '  program:"/app/server"',
        '  arguments:["server" "--port" "8080"]',
        '  environment:("GREETING":"hi there" "PORT":"8080")',
        ")",
        "",
      ].join("\n"),
    );
  });

  test("an empty root, an empty environment and a lone argv[0]", () => {
    const text = expectRoundTrip({ root: dir(), program: "/p", args: ["p"], environment: {} });
    expect(text).toContain("children:()");
    expect(text).toContain('arguments:["p"]');
    expect(text).toContain("environment:()");
  });

  test("names and values with spaces, quotes, backslashes, #, :, parentheses, |, / and empty strings", () => {
    const odd = [
      "a b",
      'f"q.txt',
      "back\\slash",
      "#hash",
      "a#b",
      "c:d",
      "(p)",
      "[v]",
      "x|y",
      " lead",
      "trail ",
    ];
    const m: Manifest = {
      root: dir([
        ["dir with space", dir([['f"q.txt', file('/host dir/with "quote"/f"q.txt')]])],
        ...odd.map((n, i): [string, GuestNode] => [n, i % 2 ? file(`/h/${n}`) : link(`/t/${n}`)]),
        ["e", dir([["deeper empty", dir()]])],
        ["__proto__", file("/h/proto")],
        ["constructor", dir()],
      ]),
      program: '/dir with space/f"q.txt',
      args: ['f"q.txt', "", "a b", "\\", '"', "#c", "k:v", "(x)", "a|b", "/p/q", "", "new\nline", "tab\tx"],
      environment: {
        EMPTY: "",
        SPACE: "hi there",
        QUOTE: 'say "hi"',
        BACK: "C:\\dir\\",
        HASH: "#not a comment",
        URL: "http://h:1/p?q=(1)&r=[2]|3",
        "odd name": "v",
        'q"k': "\\",
      },
      klibs: { tmpfs: "/nanos/klibs/tmpfs", "sp ace": "/nanos dir/klibs/x" },
    };
    const text = expectRoundTrip(m);
    // Nothing before "]" but the closing quote of the last argument.
    expect(text).not.toMatch(/\s\]/);
    expect(text).toContain('"dir with space":(children:(');
    expect(text).toContain('"f\\"q.txt":(contents:(host:"/host dir/with \\"quote\\"/f\\"q.txt"))');
    expect(text).toContain('"HASH":"#not a comment"');
    expect(text).toContain('"BACK":"C:\\\\dir\\\\"');
    expect(text).toContain("klibs:bootfs");
  });

  test("klibs: none gives no boot tree and no klibs key", () => {
    for (const klibs of [undefined, {}]) {
      const text = writeManifest({ root: dir(), program: "/p", args: ["p"], environment: {}, klibs });
      expect(text).not.toContain("boot:");
      expect(text).not.toContain("klibs:");
    }
  });

  test("the same input in another order gives the same bytes", () => {
    const a = writeManifest({
      root: dir([
        ["b", file("/b")],
        [
          "a",
          dir([
            ["y", file("/y")],
            ["x", file("/x")],
          ]),
        ],
      ]),
      program: "/b",
      args: ["b"],
      environment: { Z: "1", A: "2" },
    });
    const b = writeManifest({
      root: dir([
        [
          "a",
          dir([
            ["x", file("/x")],
            ["y", file("/y")],
          ]),
        ],
        ["b", file("/b")],
      ]),
      program: "/b",
      args: ["b"],
      environment: { A: "2", Z: "1" },
    });
    expect(a).toBe(b);
  });

  test("refusals name what is wrong", () => {
    const base: Manifest = { root: dir(), program: "/p", args: ["p"], environment: {} };
    const cases: [Partial<Manifest>, RegExp][] = [
      [{ root: dir([["", file("/x")]]) }, /invalid entry name ""/],
      [{ root: dir([[".", file("/x")]]) }, /invalid entry name "\."/],
      [{ root: dir([["a", dir([["..", dir()]])]]) }, /guest path \/a\/\.\.: invalid entry name/],
      [{ root: dir([["a/b", file("/x")]]) }, /invalid entry name "a\/b"/],
      [{ root: dir([["n\0ul", file("/x")]]) }, /NUL/],
      [
        { root: dir([["a", dir([["f", file("rel/path")]])]]) },
        /host path of guest file \/a\/f is not an absolute/,
      ],
      [{ root: dir([["l", link("")]]) }, /guest symlink \/l has an empty target/],
      [{ program: "p" }, /program is not an absolute path/],
      [{ args: [] }, /argv is empty/],
      [{ args: ["p", "a\0b"] }, /argument 1 holds a NUL/],
      [{ environment: { "A=B": "1" } }, /environment: invalid name "A=B"/],
      [{ environment: { "": "1" } }, /environment: invalid name ""/],
      [{ environment: { A: "x\0" } }, /environment value of A holds a NUL/],
      [{ klibs: { tmpfs: "klibs/tmpfs" } }, /host path of klib tmpfs is not an absolute/],
    ];
    for (const [patch, re] of cases) {
      const e = (() => {
        try {
          writeManifest({ ...base, ...patch });
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(ManifestError);
      expect((e as Error).message).toMatch(re);
    }
  });

  test("property: any tree, argv and environment round-trips through the syntax", () => {
    // Characters the syntax cares about, plus letters, spaces and a non-ASCII one.
    const ch = fc.constantFrom(...'ab Z09 "\\#:()[]|/.-_\t\né'.split(""));
    const text = fc.string({ unit: ch, maxLength: 8 });
    const name = text.filter((s) => s !== "" && s !== "." && s !== ".." && !s.includes("/"));
    const absPath = text.map((s) => `/${s}`);
    const node: fc.Arbitrary<GuestNode> = fc.letrec<{ node: GuestNode }>((tie) => ({
      node: fc.oneof(
        { depthSize: "small", withCrossShrink: true },
        absPath.map((host): GuestNode => file(host)),
        text.filter((s) => s !== "").map((t): GuestNode => link(t)),
        fc
          .uniqueArray(fc.tuple(name, tie("node")), { selector: ([n]) => n, maxLength: 4 })
          .map((es): GuestNode => dir(es)),
      ),
    })).node;
    const root = fc
      .uniqueArray(fc.tuple(name, node), { selector: ([n]) => n, maxLength: 5 })
      .map((es) => dir(es));
    const envName = text.filter((s) => s !== "" && !s.includes("="));
    fc.assert(
      fc.property(
        root,
        absPath,
        fc.array(text, { minLength: 1, maxLength: 5 }),
        fc.uniqueArray(fc.tuple(envName, text), { selector: ([k]) => k, maxLength: 4 }),
        (r, program, args, env) => {
          expectRoundTrip({ root: r, program, args, environment: Object.fromEntries(env) });
        },
      ),
      { numRuns: 300 },
    );
  });
});
