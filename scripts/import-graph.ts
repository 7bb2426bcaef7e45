// The import graph of src/ and the rules the architecture sets on it (docs: ARCHITECTURE "Direction
// of dependencies"): the three roles never import one another, nothing below the roles imports a role,
// the adapters (runtime, registry, ssh, integrations, auth) do not import each other, rpc/ is transport
// only, and no import circle is larger than two files.
//
// Every import counts: static `import`/`export … from`, dynamic `import("…")` and type-only imports. A
// type-only import creates no runtime arrow, but it still couples the two files: a CLI command that
// names an agent type changes when the agent changes.
//
// Usage: bun scripts/import-graph.ts            violations and the largest circles; exit 1 on any
//        bun scripts/import-graph.ts --report   arrows between rooms and the largest circle, for notes
//        bun scripts/import-graph.ts --dead     exports no file under src/, test/ or scripts/ imports and
//                                               their own file does not use; exit 1 on any (--verbose:
//                                               also exports used only inside their own file)
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

export interface Edge {
  from: string; // repository-relative path, e.g. src/roles/cli/files.ts
  to: string; // "" for a circle: `from` lists its files
  typeOnly: boolean;
  dynamic: boolean;
}

export interface Graph {
  files: string[];
  edges: Edge[];
}

export interface Violation {
  rule: string;
  from: string;
  to: string; // "" for a circle: `from` lists its files
  typeOnly: boolean;
}

const ROOT = resolve(import.meta.dir, "..");

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (p.endsWith(".ts")) out.push(p);
  }
  return out;
}

const transpiler = new Bun.Transpiler({ loader: "ts" });

// Bun's scanner parses properly (comments, strings, regular expressions) but drops type-only
// imports, as the transpiled code does. So the type-only syntax of import/export statements
// (which start a line: Biome formats them so) is rewritten into value syntax and the text is
// scanned twice: once as written (runtime imports) and once rewritten (every import).
const STATEMENT = /^([ \t]*(?:import|export)\s+)([^;"'`]*?\bfrom\s*["'])/gm;

function withoutTypeModifiers(code: string): string {
  return code.replace(STATEMENT, (_m, head: string, clause: string) => {
    const c = clause.replace(/^type\s+(?=[{*\w$])/, "").replace(/([{,]\s*)type\s+(?!as\s)(?=[\w$])/g, "$1");
    return head + c;
  });
}

function resolveSpec(fromFile: string, spec: string): string | undefined {
  if (!spec.startsWith(".")) return undefined; // a package, or a builtin
  const base = resolve(dirname(fromFile), spec);
  for (const c of [base, base.replace(/\.js$/, ".ts"), `${base}.ts`, join(base, "index.ts")]) {
    if (c.endsWith(".ts") && existsSync(c) && statSync(c).isFile()) return c;
  }
  return undefined;
}

/** Imports of one source text: every specifier, and whether only types come through it. */
export function scanSource(code: string): { spec: string; typeOnly: boolean; dynamic: boolean }[] {
  const runtime = transpiler.scanImports(code);
  const out = new Map<string, { spec: string; typeOnly: boolean; dynamic: boolean }>();
  for (const i of runtime) {
    const seen = out.get(i.path);
    if (!seen) out.set(i.path, { spec: i.path, typeOnly: false, dynamic: i.kind === "dynamic-import" });
    else if (i.kind !== "dynamic-import") seen.dynamic = false;
  }
  for (const i of transpiler.scanImports(withoutTypeModifiers(code))) {
    if (!out.has(i.path)) out.set(i.path, { spec: i.path, typeOnly: true, dynamic: false });
  }
  return [...out.values()];
}

export function readGraph(root = ROOT): Graph {
  const abs = walk(join(root, "src")).sort();
  const files = abs.map((f) => relative(root, f));
  const edges: Edge[] = [];
  for (const f of abs) {
    for (const i of scanSource(readFileSync(f, "utf8"))) {
      const target = resolveSpec(f, i.spec);
      if (target) edges.push({ from: relative(root, f), to: relative(root, target), ...i });
    }
  }
  return { files, edges };
}

/** The room a file lives in: the role (src/roles/cli) or the top-level folder or file under src/. */
export function roomOf(file: string): string {
  const parts = file.split("/");
  if (parts[1] === "roles" && parts.length > 3) return parts.slice(1, 3).join("/");
  return parts.length > 2 ? (parts[1] as string) : (parts[1] as string).replace(/\.ts$/, "");
}

const ROLES = ["roles/cli", "roles/agent", "roles/master"];
const ADAPTERS = ["runtime", "registry", "ssh", "integrations", "auth"];
// rpc/ is transport: framing, TLS, limits, the auth+audit interceptor. The domain lives elsewhere.
const RPC_FORBIDDEN = ["registry", "runtime", ...ROLES];
// src/main.ts is the role dispatch: the one file below the roles that may start one.
const DISPATCH = "src/main.ts";

export function checkRules(g: Graph): Violation[] {
  const out: Violation[] = [];
  for (const e of g.edges) {
    const a = roomOf(e.from);
    const b = roomOf(e.to);
    const v = (rule: string) => out.push({ rule, from: e.from, to: e.to, typeOnly: e.typeOnly });
    if (a === b) continue;
    if (ROLES.includes(a) && ROLES.includes(b)) v("roles import one another");
    else if (!a.startsWith("roles/") && b.startsWith("roles/") && e.from !== DISPATCH) v("below the roles");
    if (ADAPTERS.includes(a) && ADAPTERS.includes(b)) v("adapters import one another");
    if (a === "rpc" && RPC_FORBIDDEN.includes(b)) v("rpc is transport only");
  }
  for (const c of sccs(g)) {
    if (c.length > 2)
      out.push({ rule: `import circle of ${c.length} files`, from: c.join(" "), to: "", typeOnly: false });
  }
  return out;
}

/** Strongly connected components with more than one file, largest first (Tarjan). */
export function sccs(g: Graph): string[][] {
  const adj = new Map<string, string[]>();
  for (const f of g.files) adj.set(f, []);
  for (const e of g.edges) adj.get(e.from)?.push(e.to);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out: string[][] = [];
  let next = 0;
  // Iterative, so a deep chain cannot overflow the call stack.
  for (const start of g.files) {
    if (index.has(start)) continue;
    const work: { v: string; i: number }[] = [{ v: start, i: 0 }];
    index.set(start, next);
    low.set(start, next++);
    stack.push(start);
    onStack.add(start);
    while (work.length > 0) {
      const top = work[work.length - 1]!;
      const succ = adj.get(top.v) ?? [];
      if (top.i < succ.length) {
        const w = succ[top.i++]!;
        if (!index.has(w)) {
          index.set(w, next);
          low.set(w, next++);
          stack.push(w);
          onStack.add(w);
          work.push({ v: w, i: 0 });
        } else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.v, Math.min(low.get(parent.v)!, low.get(top.v)!));
      if (low.get(top.v) === index.get(top.v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== top.v);
        if (comp.length > 1) out.push(comp.sort());
      }
    }
  }
  return out.sort((x, y) => y.length - x.length || x[0]!.localeCompare(y[0]!));
}

/** Arrows between rooms: "from -> to" with the number of file-level imports behind each. */
export function roomEdges(g: Graph): Map<string, number> {
  const out = new Map<string, number>();
  for (const e of g.edges) {
    const a = roomOf(e.from);
    const b = roomOf(e.to);
    if (a !== b) out.set(`${a} -> ${b}`, (out.get(`${a} -> ${b}`) ?? 0) + 1);
  }
  return new Map([...out].sort(([x], [y]) => x.localeCompare(y)));
}

// Exported names of a file: declarations and export lists (re-exports count as the re-exporter's).
const EXPORT_DECL =
  /^[ \t]*export\s+(?:declare\s+)?(?:default\s+)?(?:async\s+)?(?:function\*?|const|let|var|class|abstract\s+class|interface|type|enum)\s+([A-Za-z_$][\w$]*)/gm;
const EXPORT_LIST = /^[ \t]*export\s+(?:type\s+)?\{([^}]*)\}(?!\s*from)/gm;
const IMPORT_CLAUSE = /^[ \t]*(?:import|export)\s+(?:type\s+)?([^;"'`]*?)\s*\bfrom\s*["']([^"']+)["']/gm;

export function exportedNames(code: string): string[] {
  const names = new Set<string>();
  for (const m of code.matchAll(EXPORT_DECL)) names.add(m[1]!);
  for (const m of code.matchAll(EXPORT_LIST)) {
    for (const part of m[1]!.split(",")) {
      const name = part
        .trim()
        .replace(/^type\s+/, "")
        .split(/\s+as\s+/)
        .pop()
        ?.trim();
      if (name) names.add(name);
    }
  }
  return [...names];
}

/** Exports no other file (src/, test/, scripts/) imports by name. Namespace, star and dynamic
 * imports count a name as used when the importer mentions it at all. */
export function deadExports(root = ROOT): { file: string; name: string; usedInside: boolean }[] {
  // Generated code exports what protoc-gen-es writes; a .d.ts declares a package's types.
  const srcFiles = walk(join(root, "src")).filter((f) => !f.includes("/src/gen/") && !f.endsWith(".d.ts"));
  const all = [...walk(join(root, "src")), ...walk(join(root, "test")), ...walk(join(root, "scripts"))];
  const used = new Map<string, Set<string>>(); // target file -> names imported
  const loose = new Map<string, string[]>(); // target file -> importer texts (namespace/dynamic/star)
  const add = (m: Map<string, Set<string>>, k: string, v: string) => m.set(k, (m.get(k) ?? new Set()).add(v));
  for (const f of all) {
    const code = readFileSync(f, "utf8");
    for (const m of code.matchAll(IMPORT_CLAUSE)) {
      const target = resolveSpec(f, m[2]!);
      if (!target) continue;
      const clause = m[1]!;
      if (/\*/.test(clause)) loose.set(target, [...(loose.get(target) ?? []), code]);
      const braces = clause.match(/\{([^}]*)\}/);
      for (const part of braces ? braces[1]!.split(",") : []) {
        const name = part
          .trim()
          .replace(/^type\s+/, "")
          .split(/\s+as\s+/)[0]
          ?.trim();
        if (name) add(used, target, name);
      }
      if (/^[A-Za-z_$][\w$]*\s*(,|$)/.test(clause.trim()) && !clause.trim().startsWith("type ")) {
        add(used, target, "default");
      }
    }
    for (const i of transpiler.scanImports(code)) {
      if (i.kind !== "dynamic-import") continue;
      const target = resolveSpec(f, i.path);
      if (target) loose.set(target, [...(loose.get(target) ?? []), code]);
    }
  }
  const out: { file: string; name: string; usedInside: boolean }[] = [];
  for (const f of srcFiles) {
    const code = readFileSync(f, "utf8");
    for (const name of exportedNames(code)) {
      if (used.get(f)?.has(name)) continue;
      const word = new RegExp(`\\b${name.replace(/\$/g, "\\$")}\\b`);
      if ((loose.get(f) ?? []).some((c) => word.test(c))) continue;
      const usedInside =
        (code.match(new RegExp(`\\b${name.replace(/\$/g, "\\$")}\\b`, "g")) ?? []).length > 1;
      out.push({ file: relative(root, f), name, usedInside });
    }
  }
  return out;
}

export function formatViolation(v: Violation): string {
  if (v.to === "") return `${v.rule}: ${v.from}`;
  return `${v.rule}: ${v.from} -> ${v.to}${v.typeOnly ? " (type-only)" : ""}`;
}

function main(argv: string[]): number {
  if (argv.includes("--dead")) {
    // Dead: exported, imported by no file, and not used in its own file either. Exports used only
    // inside their own file are listed with --verbose (harmless: often types of exported signatures).
    const all = deadExports();
    const dead = all.filter((d) => !d.usedInside);
    for (const d of dead) console.log(`${d.file}: ${d.name}`);
    if (argv.includes("--verbose")) {
      for (const d of all.filter((d) => d.usedInside))
        console.log(`${d.file}: ${d.name} (used inside its file)`);
    } else
      console.log(
        `(${all.length - dead.length} more exports are used only inside their own file: --verbose)`,
      );
    return dead.length > 0 ? 1 : 0;
  }
  const g = readGraph();
  const violations = checkRules(g);
  const circles = sccs(g);
  if (argv.includes("--report")) {
    console.log(`files: ${g.files.length}, imports: ${g.edges.length}`);
    console.log("arrows between rooms (imports behind each):");
    for (const [k, n] of roomEdges(g)) console.log(`  ${k}  ${n}`);
    const roles = [...roomEdges(g).keys()].filter((k) => /^roles\/\w+ -> roles\//.test(k));
    console.log(`arrows between roles: ${roles.length === 0 ? "none" : roles.join(", ")}`);
    console.log(`largest import circle: ${circles[0]?.length ?? 0} files`);
    for (const c of circles) console.log(`  ${c.length}: ${c.join(" ")}`);
    console.log(`rule violations: ${violations.length}`);
    for (const v of violations) console.log(`  ${formatViolation(v)}`);
    return 0;
  }
  for (const v of violations) console.log(formatViolation(v));
  for (const c of circles.slice(0, 5)) console.log(`circle of ${c.length}: ${c.join(" ")}`);
  console.error(`import-graph: ${violations.length} violation(s)`);
  return violations.length > 0 ? 1 : 0;
}

if (import.meta.main) process.exit(main(process.argv.slice(2)));
