// Field-by-field differences between two service definitions, for the plans the CLI shows before
// changing anything (`deploy --dry-run`, `sync --dry-run`) and for `history --diff`.
//
// Generic over the definition: each side becomes a plain view of itself (components, routes and
// env entries keyed by their names, durations in file syntax) and the two views are compared key
// by key. A field added to ServiceDef is compared and shown without a list here to keep in step.
// Lists of plain values are compared as sets (ports, volumes), except the ordered ones (`cmd`),
// which change as a whole.
import { formatDuration, type ServiceDef } from "../config/service.ts";

export interface SpecChange {
  /** Keys from the view's root, e.g. ["components", "web", "env", "FOO"]. */
  path: string[];
  kind: "added" | "removed" | "changed";
  from?: unknown;
  to?: unknown;
  /** An element of a list compared as a set (not a keyed entry): `ports: + "1:2"`. */
  item?: boolean;
}

/** Lists whose order means something: compared (and shown) as a whole. */
const ORDERED = new Set(["cmd"]);

type Plain = Record<string, unknown>;

const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);
const isScalar = (v: unknown) => v === null || (typeof v !== "object" && typeof v !== "function");
/** An object without a prototype: an env variable or route named `__proto__` is a key like any other. */
const dict = (): Plain => Object.create(null) as Plain;

/**
 * Durations as files write them: a `…Ms` number becomes its snake_case stem with a duration
 * (`startPeriodMs: 5000` → `start_period: "5s"`). Other keys are left alone (env variables and
 * component names are keys too); undefined keys are dropped.
 */
function fileForm(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(fileForm);
  if (!isPlain(v)) return v;
  const out = dict();
  for (const [k, x] of Object.entries(v)) {
    if (x === undefined) continue;
    if (/^[a-z][A-Za-z]*Ms$/.test(k) && typeof x === "number")
      out[k.slice(0, -2).replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)] = formatDuration(x);
    else out[k] = fileForm(x);
  }
  return out;
}

/** A list as an object keyed by `keyOf`, when every key is unique; else the list as written. */
function keyed<T>(items: readonly T[], keyOf: (x: T) => string, value: (x: T) => unknown): unknown {
  const out = dict();
  for (const x of items) {
    const k = keyOf(x);
    if (Object.hasOwn(out, k)) return items;
    out[k] = value(x);
  }
  return out;
}

function without<T extends object>(o: T, key: string): Plain {
  return Object.fromEntries(Object.entries(o).filter(([k]) => k !== key));
}

/** `KEY=value` → [KEY, value] (the schema guarantees the `=`). */
function envPair(e: string): [string, string] {
  const i = e.indexOf("=");
  return i < 0 ? [e, ""] : [e.slice(0, i), e.slice(i + 1)];
}

/**
 * The definition as the diff sees it: every field of ServiceDef and ComponentDef (spread, so new
 * ones come along), components keyed by name, routes by name (an unnamed one by its port), env
 * by variable (a variable set twice keeps the list as written), durations as files write them.
 */
export function specView(def: ServiceDef): Plain {
  const components = keyed(
    def.components,
    (c) => c.name,
    (c) => ({
      ...without(c, "name"),
      env: keyed(
        c.env,
        (e) => envPair(e)[0],
        (e) => envPair(e)[1],
      ),
      routes: keyed(
        c.routes,
        (r) => r.name || String(r.port),
        (r) => without(r, "name"),
      ),
    }),
  );
  return fileForm({ ...without(def, "components"), components }) as Plain;
}

/** Structural equality of views (object key order does not matter, list order does). */
function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => same(x, b[i]));
  if (isPlain(a) && isPlain(b)) {
    const ka = Object.keys(a);
    return ka.length === Object.keys(b).length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
  }
  return false;
}

/** Elements of `a` not matched one-for-one in `b` (a multiset difference, in `a`'s order). */
function minus(a: readonly unknown[], b: readonly unknown[]): unknown[] {
  const left = [...b];
  return a.filter((x) => {
    const i = left.findIndex((y) => same(x, y));
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

/** The changes that turn view value `a` into `b`: keys in `a`'s order, then the new ones. */
function diffValues(a: unknown, b: unknown, path: string[] = []): SpecChange[] {
  if (same(a, b)) return [];
  if (a === undefined) return [{ path, kind: "added", to: b }];
  if (b === undefined) return [{ path, kind: "removed", from: a }];
  if (isPlain(a) && isPlain(b)) {
    const keys = [...Object.keys(a), ...Object.keys(b).filter((k) => !Object.hasOwn(a, k))];
    return keys.flatMap((k) => diffValues(a[k], b[k], [...path, k]));
  }
  if (
    Array.isArray(a) &&
    Array.isArray(b) &&
    !ORDERED.has(path.at(-1) ?? "") &&
    a.every(isScalar) &&
    b.every(isScalar)
  ) {
    const removed = minus(a, b);
    const added = minus(b, a);
    // When only the order differs, that is the change: shown whole, below.
    if (removed.length + added.length > 0)
      return [
        ...removed.map((from): SpecChange => ({ path, kind: "removed", from, item: true })),
        ...added.map((to): SpecChange => ({ path, kind: "added", to, item: true })),
      ];
  }
  return [{ path, kind: "changed", from: a, to: b }];
}

/** What turns `before` into `after`, field by field (empty: the same definition). */
export function diffSpecs(before: ServiceDef, after: ServiceDef): SpecChange[] {
  return diffValues(specView(before), specView(after));
}

const SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** A value on one line: strings quoted (JSON, so "" and newlines show), lists and objects inline. */
function quoted(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(quoted).join(", ")}]`;
  if (isPlain(v))
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${quoted(x)}`)
      .join(", ")}}`;
  return typeof v === "string" ? JSON.stringify(v) : String(v);
}

/** As `quoted`, but a plain word (image, port spec, duration) is shown bare either side of "->". */
const bare = (v: unknown) => (typeof v === "string" && SAFE.test(v) ? v : quoted(v));

/** `web.env.FOO`: the components level is left out, an odd key is bracketed (`env["a b"]`). */
export function changePath(path: readonly string[]): string {
  const p = path[0] === "components" && path.length > 1 ? path.slice(1) : path;
  return p
    .map((k, i) => (/^[A-Za-z0-9_-]+$/.test(k) ? `${i === 0 ? "" : "."}${k}` : `[${JSON.stringify(k)}]`))
    .join("");
}

/** The non-empty leaves of an added object, each with its path (what a new entry brings). */
function leaves(v: unknown, path: string[]): [string[], unknown][] {
  if (isPlain(v)) return Object.entries(v).flatMap(([k, x]) => leaves(x, [...path, k]));
  if (v === "" || (Array.isArray(v) && v.length === 0)) return [];
  return [[path, v]];
}

/**
 * The lines of one change: `web.image: a:v1 -> a:v2`, `web.env.FOO: + "bar"`, `web.ports: - "1:2"`,
 * `web.env.OLD: - removed (was "x")`; a new entry (component, route, health…) is `api: + added`
 * followed by what it brings, one line per non-empty field.
 */
export function renderChange(c: SpecChange): string[] {
  const at = changePath(c.path) || "(spec)";
  if (c.kind === "changed") return [`${at}: ${bare(c.from)} -> ${bare(c.to)}`];
  if (c.kind === "added") {
    if (!isPlain(c.to)) return [`${at}: + ${quoted(c.to)}`];
    return [`${at}: + added`, ...leaves(c.to, c.path).map(([p, v]) => `${changePath(p)}: + ${quoted(v)}`)];
  }
  if (c.item) return [`${at}: - ${quoted(c.from)}`];
  return [isScalar(c.from) ? `${at}: - removed (was ${quoted(c.from)})` : `${at}: - removed`];
}

/** Every change's lines, each prefixed with `indent`. */
export function renderChanges(changes: readonly SpecChange[], indent = "  "): string[] {
  return changes.flatMap(renderChange).map((l) => indent + l);
}

/** For `--json`: the change with its path as shown and its values as they are. */
export function changeJson(c: SpecChange) {
  return {
    path: changePath(c.path),
    kind: c.kind,
    ...(c.item ? { item: true } : {}),
    ...(c.kind !== "added" ? { from: c.from } : {}),
    ...(c.kind !== "removed" ? { to: c.to } : {}),
  };
}
