// Shared loading machinery for every config file: reading TOML, turning zod
// issues into one-line ConfigErrors (file, key path, expectation), treating
// unknown keys as errors or warnings, and the duration syntax ("1h30m").
import { dirname, isAbsolute, resolve } from "node:path";
import { z } from "zod";
import { closest, didYouMean } from "../util/suggest.ts";
import { ConfigError } from "./errors.ts";
import { clearTextUrl, isHttpUrl, parseHostPort } from "./specs.ts";

/** A path written in a config file: absolute as written, or relative to the file's directory. */
export function resolveConfigPath(configFile: string, p: string): string {
  return isAbsolute(p) ? p : resolve(dirname(resolve(configFile)), p);
}

export { decodeUtf8, loadToml, parseTomlText } from "./toml.ts";

export type UnknownKeys = "error" | "warn";

export interface ParseOptions {
  /** Service definitions reject unknown keys (typos must not silently do nothing); daemon configs warn. */
  unknownKeys: UnknownKeys;
  onWarn?: (warning: string) => void;
  /** Prepended to every reported key path, for data nested inside a larger file. */
  pathPrefix?: readonly PropertyKey[];
}

/**
 * Validates `data` against `schema`. The first problem becomes a ConfigError;
 * unknown keys are reported first because a typo usually also explains the
 * "missing key" that follows from it: with unknown keys as errors the typo is
 * the error, with unknown keys as warnings a "missing key" error names the
 * unknown keys of its own table (the warnings are never printed when loading
 * fails). Each unknown key comes with the likeliest key its table allows.
 * Schemas must use strict objects so zod reports unknown keys at all.
 */
export function parseWith<T extends z.ZodType>(
  schema: T,
  data: unknown,
  file: string,
  opts: ParseOptions,
): z.output<T> {
  const pre = opts.pathPrefix ?? [];
  const unknownKey = (path: readonly PropertyKey[], key: string) =>
    `unknown key ${JSON.stringify(key)}${didYouMean(key, knownKeysAt(schema, path))}`;
  const ignored: { path: PropertyKey[]; key: string }[] = [];
  let input = markDates(data);
  // Bounded: each pass removes at least one unknown key, and a file has finitely many.
  for (let pass = 0; pass < 100; pass++) {
    const result = schema.safeParse(input, { error: issueMessage });
    if (result.success) return result.data;
    const issues = result.error.issues;
    const unknown = issues.filter((i) => i.code === "unrecognized_keys");
    if (unknown.length > 0 && opts.unknownKeys === "error") {
      const issue = unknown[0]!;
      const key = issue.keys[0] ?? "";
      throw new ConfigError(file, formatKeyPath([...pre, ...issue.path, key]), unknownKey(issue.path, key));
    }
    if (unknown.length > 0) {
      for (const issue of unknown) {
        for (const key of issue.keys) {
          ignored.push({ path: issue.path, key });
          const guess = closest(key, knownKeysAt(schema, issue.path));
          opts.onWarn?.(
            `${file}: ${formatKeyPath([...pre, ...issue.path, key])}: unknown key ${JSON.stringify(key)} (ignored${guess === undefined ? "" : `; did you mean ${JSON.stringify(guess)}?`})`,
          );
        }
      }
      input = withoutKeys(input, unknown);
      continue;
    }
    const first = issues[0]!;
    let message = first.message;
    if (message.startsWith(MISSING)) {
      // The ignored keys of the missing key's own table likely caused it (`addres` for `address`).
      const table = formatKeyPath(first.path.slice(0, -1));
      for (const u of ignored.filter((u) => formatKeyPath(u.path) === table))
        message += `; ${formatKeyPath([...pre, ...u.path, u.key])}: ${unknownKey(u.path, u.key)}`;
    }
    throw new ConfigError(file, formatKeyPath([...pre, ...first.path]), message);
  }
  throw new ConfigError(file, "", "too many unknown keys");
}

/**
 * The keys the schema allows in the table at `path` (data path: keys and array indexes), for
 * "did you mean"; empty when the schema does not say (a record, a custom type).
 */
function knownKeysAt(schema: z.ZodType, path: readonly PropertyKey[]): string[] {
  const keys = new Set<string>();
  // Bounded: each step either consumes a path segment or unwraps one wrapper of a finite schema.
  const visit = (s: unknown, rest: readonly PropertyKey[], depth: number): void => {
    const def = (s as { _zod?: { def?: Record<string, unknown> } } | undefined)?._zod?.def;
    if (!def || depth > 64) return;
    switch (def["type"]) {
      case "optional":
      case "nullable":
      case "default":
      case "prefault":
      case "catch":
      case "readonly":
      case "nonoptional":
        visit(def["innerType"], rest, depth + 1);
        return;
      case "pipe":
        visit(def["in"], rest, depth + 1);
        visit(def["out"], rest, depth + 1);
        return;
      case "lazy":
        visit((def["getter"] as () => unknown)(), rest, depth + 1);
        return;
      case "union":
        for (const o of def["options"] as unknown[]) visit(o, rest, depth + 1);
        return;
      case "intersection":
        visit(def["left"], rest, depth + 1);
        visit(def["right"], rest, depth + 1);
        return;
      case "object": {
        const shape = def["shape"] as Record<string, unknown>;
        if (rest.length === 0) for (const k of Object.keys(shape)) keys.add(k);
        else visit(shape[String(rest[0])], rest.slice(1), depth + 1);
        return;
      }
      case "array":
        if (rest.length > 0) visit(def["element"], rest.slice(1), depth + 1);
        return;
      case "record":
        if (rest.length > 0) visit(def["valueType"], rest.slice(1), depth + 1);
        return;
    }
  };
  visit(schema, path, 0);
  return [...keys];
}

// A TOML datetime as parseWith hands it to a schema. zod takes a Date for an object, so a datetime
// written where a table belongs (`log = 2024-01-01`) passed as an empty table and every default of
// that section applied silently. A symbol passes no table, string or number schema by accident;
// the keys that do take a datetime read it with tomlDateString().
const DATE_MARK = "toml-datetime:";

function markDates(v: unknown): unknown {
  if (v instanceof Date) return Symbol.for(`${DATE_MARK}${v.toISOString()}`);
  if (Array.isArray(v)) return v.map(markDates);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, markDates(x)]));
  }
  return v;
}

/** The ISO text of a TOML datetime (a Date, or as parseWith marks it); anything else unchanged. */
export function tomlDateString(v: unknown): unknown {
  if (v instanceof Date) return v.toISOString();
  const mark = typeof v === "symbol" ? Symbol.keyFor(v) : undefined;
  return mark?.startsWith(DATE_MARK) ? mark.slice(DATE_MARK.length) : v;
}

/** `["components", 1, "ports", 0]` → `components[1].ports[0]`; odd keys are quoted. */
export function formatKeyPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const seg of path) {
    if (typeof seg === "number") out += `[${seg}]`;
    else {
      const s = String(seg);
      if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(s)) out += out === "" ? s : `.${s}`;
      else out += `[${JSON.stringify(s)}]`;
    }
  }
  return out;
}

/** Human name of a TOML value's type, for "expected X, got Y". */
export function describeType(v: unknown): string {
  if (v === undefined) return "nothing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (v instanceof Date || typeof v === "symbol") return "date";
  if (typeof v === "object") return "table";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "float";
  if (typeof v === "bigint") return "integer";
  return typeof v;
}

function describeValue(v: unknown): string {
  if (typeof v === "string") {
    const s = v.length > 60 ? `${v.slice(0, 57)}...` : v;
    return JSON.stringify(s);
  }
  if (typeof v === "number" || typeof v === "boolean" || typeof v === "bigint") return String(v);
  return describeType(v);
}

const TYPE_NAMES: Record<string, string> = { object: "table", record: "table", int: "integer", map: "table" };

/** How every "missing key" message starts (issueMessage), so parseWith can tell them apart. */
const MISSING = "required key is missing";

// Per-parse zod error map: schema-specific messages still win over these.
// The raw issue (with its input) is only visible here, not in the final error.
function issueMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const input = iss.input;
  switch (iss.code) {
    case "invalid_type": {
      const expected = TYPE_NAMES[iss.expected] ?? iss.expected;
      if (input === undefined) return `${MISSING} (expected ${expected})`;
      return `expected ${expected}, got ${describeType(input)}`;
    }
    case "invalid_value": {
      const values = iss.values.map((v) => JSON.stringify(v));
      const want = values.length === 1 ? values[0] : `one of ${values.join(", ")}`;
      if (input === undefined) return `${MISSING} (expected ${want})`;
      return `expected ${want}, got ${describeValue(input)}`;
    }
    case "too_small": {
      const min = String(iss.minimum);
      if (iss.origin === "string") return "expected a non-empty string";
      if (iss.origin === "array") return `expected at least ${min} item(s)`;
      return `expected a value ${iss.inclusive ? ">=" : ">"} ${min}, got ${describeValue(input)}`;
    }
    case "too_big": {
      const max = String(iss.maximum);
      if (iss.origin === "array") return `expected at most ${max} item(s)`;
      if (iss.origin === "string") return `expected at most ${max} characters`;
      return `expected a value ${iss.inclusive ? "<=" : "<"} ${max}, got ${describeValue(input)}`;
    }
    case "invalid_format":
      if (iss.format === "regex" && iss.pattern)
        return `expected to match ${iss.pattern}, got ${describeValue(input)}`;
      return `expected a valid ${iss.format}, got ${describeValue(input)}`;
    default:
      return undefined;
  }
}

type UnknownIssue = { path: PropertyKey[]; keys: string[] };

/** Copy of `data` without the unknown keys (the caller's data is never mutated). */
function withoutKeys(data: unknown, issues: readonly UnknownIssue[]): unknown {
  const root = deepCopy(data);
  for (const issue of issues) {
    let node: unknown = root;
    for (const seg of issue.path) {
      if (node === null || typeof node !== "object") break;
      node = (node as Record<PropertyKey, unknown>)[seg];
    }
    if (node === null || typeof node !== "object") continue;
    for (const k of issue.keys) delete (node as Record<string, unknown>)[k];
  }
  return root;
}

function deepCopy(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(deepCopy);
  if (v !== null && typeof v === "object" && !(v instanceof Date)) {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, deepCopy(x)]));
  }
  return v;
}

/** A string schema checked by a pure parser; the parser's ConfigError reason becomes the issue message. */
export function fromParser(parse: (s: string) => unknown) {
  return z.string().check((ctx) => {
    try {
      parse(ctx.value);
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      ctx.issues.push({ code: "custom", message: e.expected, input: ctx.value });
    }
  });
}

/** `host:port` (IPv6 as `[addr]:port`). */
export const hostPortString = fromParser(parseHostPort);

/** An http(s) URL such as `https://mcias.example.net:8443`. */
/**
 * The rule every section with a bearer-token `server_url` (MCIAS, Metacrypt, MCNS) applies:
 * http:// would send the token in clear, so it is refused unless the section says
 * `insecure_http = true` (meant for tests on 127.0.0.1).
 */
export function checkHttpsUnlessInsecure(ctx: {
  value: { server_url: string; insecure_http?: boolean | undefined };
  issues: { push(issue: { code: "custom"; message: string; path: PropertyKey[]; input: unknown }): void };
}): void {
  const v = ctx.value;
  if (clearTextUrl(v.server_url, v.insecure_http)) {
    ctx.issues.push({
      code: "custom",
      message: `expected an https:// URL (http:// sends the bearer token in clear; insecure_http = true allows it, for tests), got ${JSON.stringify(v.server_url)}`,
      path: ["server_url"],
      input: v.server_url,
    });
  }
}

/** The rule of every config with `[[nodes]]` (the CLI's, the master's): node names are unique. */
export function checkUniqueNodeNames(ctx: {
  value: { nodes: readonly { name: string }[] };
  issues: { push(issue: { code: "custom"; message: string; path: PropertyKey[]; input: unknown }): void };
}): void {
  const seen = new Set<string>();
  ctx.value.nodes.forEach((n, i) => {
    if (seen.has(n.name)) {
      ctx.issues.push({
        code: "custom",
        message: `duplicate node name "${n.name}"`,
        path: ["nodes", i, "name"],
        input: n.name,
      });
    }
    seen.add(n.name);
  });
}

/** `insecure_http` of a section with a bearer-token server_url (checkHttpsUnlessInsecure). */
export const insecureHttp = z
  .boolean()
  .optional()
  .describe("true allows an http:// server_url (bearer tokens in clear), for tests only; absent = false");

export const urlString = z.string().check((ctx) => {
  if (!isHttpUrl(ctx.value))
    ctx.issues.push({
      code: "custom",
      message: `expected an https:// URL, got ${describeValue(ctx.value)}`,
      input: ctx.value,
    });
});

// ---- durations ------------------------------------------------------------

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION_RE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const DURATION_EXPECTED = 'expected a duration like "500ms", "60s", "15m", "1h30m" or "30d"';

/** `"1h30m"` → 5_400_000. Go-style units plus `d`; "0" alone is zero. Throws ConfigError. */
export function parseDuration(s: string): number {
  if (s === "0") return 0;
  if (!DURATION_RE.test(s)) throw new ConfigError("", "", `${DURATION_EXPECTED}, got ${describeValue(s)}`);
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  if (!Number.isFinite(ms) || ms > Number.MAX_SAFE_INTEGER) {
    throw new ConfigError("", "", `duration ${describeValue(s)} is too large`);
  }
  return Math.round(ms);
}

/** zod schema: a duration string in the file, milliseconds in the parsed config. */
export const duration = z.string().transform((s, ctx) => {
  try {
    return parseDuration(s);
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as ConfigError).expected });
    return z.NEVER;
  }
});
