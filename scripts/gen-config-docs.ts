// Generates docs/reference/{agent,cli,master,service}-config.md from the zod schemas in
// src/config/, so the reference cannot drift from what the loaders accept: every key path, its
// type, default, allowed values and `.describe()` text. `npm run docs` writes the files;
// test/unit/docs/config-reference.test.ts renders them in memory and fails when the committed
// ones are stale. Run: bun scripts/gen-config-docs.ts [--check]
import { readFileSync, writeFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import { z } from "zod";
import { agentSchema } from "../src/config/agent.ts";
import { cliSchema } from "../src/config/cli-schema.ts";
import { duration, hostPortString, urlString } from "../src/config/load.ts";
import { masterSchema } from "../src/config/master.ts";
import { serviceDefSchema } from "../src/config/service.ts";
import { COMMANDS } from "../src/roles/cli/index.ts";
import { EXIT_CODES_HELP } from "../src/roles/cli/output.ts";

export const REFERENCE_DIR = join(import.meta.dir, "..", "docs", "reference");
export const README = join(import.meta.dir, "..", "README.md");
const BEGIN = "<!-- commands:begin (generated from src/roles/cli/index.ts COMMANDS by npm run docs) -->";
const END = "<!-- commands:end -->";
const EXIT_BEGIN =
  "<!-- exit-codes:begin (generated from src/roles/cli/output.ts EXIT_CODES_HELP by npm run docs) -->";
const EXIT_END = "<!-- exit-codes:end -->";

interface Row {
  key: string;
  type: string;
  required: boolean;
  dflt: string;
  desc: string;
}

// zod v4 internals read here: `_zod.def` (type + wrapped schemas) and the global registry (describe()).
type Def = {
  type: string;
  innerType?: z.ZodType;
  in?: z.ZodType;
  out?: z.ZodType;
  element?: z.ZodType;
  items?: z.ZodType[];
  options?: z.ZodType[];
  shape?: Record<string, z.ZodType>;
  entries?: Record<string, string | number>;
  values?: unknown[];
  keyType?: z.ZodType;
  valueType?: z.ZodType;
  defaultValue?: unknown;
};
const defOf = (s: z.ZodType): Def => (s as unknown as { _zod: { def: Def } })._zod.def;
const describeOf = (s: z.ZodType): string | undefined => z.globalRegistry.get(s)?.description;

const SHORT_HOST = hostname().split(".")[0] || "localhost";

/** A default as it is written in TOML; a function default (the hostname) is named, not evaluated. */
function fmtDefault(v: unknown): string {
  if (v === SHORT_HOST) return "the short hostname";
  if (typeof v === "string") return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(fmtDefault).join(", ")}]`;
  if (v !== null && typeof v === "object") return Object.keys(v).length === 0 ? "{}" : JSON.stringify(v);
  return String(v);
}

/** Peels wrappers off a field schema: what the file holds, its default, optionality, description. */
function unwrap(s: z.ZodType): { core: z.ZodType; dflt?: unknown; optional: boolean; desc?: string } {
  let cur = s;
  let dflt: unknown;
  let hasDefault = false;
  let optional = false;
  let desc = describeOf(cur);
  for (let i = 0; i < 20; i++) {
    const d = defOf(cur);
    if (d.type === "default" || d.type === "prefault") {
      if (!hasDefault) dflt = d.defaultValue;
      hasDefault = true;
      cur = d.innerType!;
    } else if (d.type === "optional" || d.type === "nullable") {
      optional = true;
      cur = d.innerType!;
    } else if (d.type === "pipe" && defOf(d.in!).type === "transform") {
      cur = d.out!; // preprocess: the file holds what the output schema checks
    } else if (d.type === "pipe" && !isDuration(cur)) {
      cur = d.in!; // transform: the file holds the input
    } else break;
    desc ??= describeOf(cur);
  }
  return { core: cur, dflt: hasDefault ? dflt : undefined, optional: optional || hasDefault, desc };
}

// describe() clones a schema but keeps its def object: compare defs, not instances.
const same = (s: z.ZodType, t: z.ZodType) => defOf(s) === defOf(t);
const isDuration = (s: z.ZodType): boolean => same(s, duration);

/** A one-line type for the table; objects and arrays of objects are expanded as their own rows. */
function typeName(s: z.ZodType): string {
  if (same(s, hostPortString)) return '"host:port"';
  if (same(s, urlString)) return "URL";
  if (isDuration(s)) return 'duration ("500ms", "60s", "15m", "1h30m", "30d")';
  const d = defOf(s);
  switch (d.type) {
    case "enum":
      return Object.values(d.entries ?? {})
        .map((v) => JSON.stringify(v))
        .join(" | ");
    case "literal":
      return (d.values ?? []).map((v) => JSON.stringify(v)).join(" | ");
    case "array":
      return `array of ${typeName(unwrap(d.element!).core)}`;
    case "tuple":
      return `[${(d.items ?? []).map((x) => typeName(unwrap(x).core)).join(", ")}]`;
    case "record":
      return `table of ${typeName(unwrap(d.valueType!).core)}`;
    case "union":
      return (d.options ?? []).map((x) => typeName(unwrap(x).core)).join(" | ");
    case "object":
      return "table";
    case "pipe":
      return typeName(d.in!);
    default:
      return d.type;
  }
}

function walk(s: z.ZodType, prefix: string, rows: Row[]): void {
  const shape = defOf(s).shape ?? {};
  for (const [key, field] of Object.entries(shape)) {
    const path = prefix ? `${prefix}.${key}` : key;
    const u = unwrap(field);
    const d = defOf(u.core);
    const row: Row = {
      key: path,
      type: typeName(u.core),
      required: !u.optional,
      dflt: u.dflt === undefined ? "" : fmtDefault(u.dflt),
      desc: u.desc ?? "",
    };
    if (d.type === "object") {
      row.type = "table";
      // An all-defaults table ({} prefault) is not worth a default column entry.
      if (row.dflt === "{}") row.dflt = "";
      rows.push(row);
      walk(u.core, path, rows);
    } else if (d.type === "array" && defOf(unwrap(d.element!).core).type === "object") {
      row.type = "array of tables";
      rows.push(row);
      walk(unwrap(d.element!).core, `${path}[]`, rows);
    } else rows.push(row);
  }
}

const cell = (s: string) => s.replace(/\|/g, "\\|").replace(/\n/g, " ");

/** Markdown for one config file: header, then one table row per key path. */
export function renderReference(title: string, file: string, intro: string, schema: z.ZodType): string {
  const rows: Row[] = [];
  let root = schema;
  // The top-level .check()/.transform() wrap the object in pipes: find the object itself.
  for (let i = 0; i < 5 && defOf(root).type !== "object"; i++) root = unwrap(root).core;
  walk(root, "", rows);
  const lines = [
    "<!-- generated by scripts/gen-config-docs.ts from the zod schemas in src/config/ — do not edit; run `npm run docs` -->",
    `# ${title}`,
    "",
    `File: \`${file}\`. ${intro}`,
    "",
    "Keys use TOML dotted paths; `[]` marks an array of tables (`[[…]]`). A key is required when it has",
    "no default and is not marked optional; a table is only required when one of its keys is.",
    "",
    "| Key | Type | Required | Default | Description |",
    "| --- | --- | --- | --- | --- |",
    ...rows.map(
      (r) =>
        `| \`${r.key}\` | ${cell(r.type)} | ${r.required ? "yes" : "no"} | ${r.dflt ? `\`${cell(r.dflt)}\`` : ""} | ${cell(r.desc)} |`,
    ),
    "",
  ];
  return lines.join("\n");
}

/** File name → content of every generated reference page. */
export function renderAll(): Record<string, string> {
  return {
    "agent-config.md": renderReference(
      "Agent configuration reference",
      "/srv/mcp/mcp-agent.toml",
      "Read by the node agent (`mcp-agent server --config …`). Unknown keys are errors. Relative paths are resolved from the file's directory. Example: `deploy/examples/mcp-agent.toml`.",
      agentSchema,
    ),
    "master-config.md": renderReference(
      "Master configuration reference",
      "/srv/mcp-master/mcp-master.toml",
      "Read by the fleet master (`mcp-master server --config …`). Unknown keys are warnings. Example: `deploy/examples/mcp-master.toml`.",
      masterSchema,
    ),
    "cli-config.md": renderReference(
      "CLI configuration reference",
      "~/.config/mcp/mcp.toml (or $MCP_CONFIG, or --config)",
      "Read by every `mcp` command; `mcp init`, `mcp node add` and `mcp node provision` write it. Example: `deploy/examples/mcp.toml`.",
      cliSchema,
    ),
    "service-config.md": renderReference(
      "Service definition reference",
      "<services.dir>/<service>.toml",
      "One file per service, read by `mcp deploy`, `mcp sync` and `mcp build`; `mcp service export` writes it back from the agent registry.",
      serviceDefSchema,
    ),
  };
}

/** README's command table: one row per COMMANDS entry (usage with option flags, help text). */
export function renderCommandTable(): string {
  const esc = (t: string) => t.replace(/\|/g, "\\|");
  const rows = COMMANDS.map((c) => {
    const opts = (c.options ?? []).map(([f]) => `[${f.replace(/^-[a-z], /, "")}]`).join(" ");
    const usage = ["mcp", c.name, c.args, opts].filter((x) => x !== "").join(" ");
    return `| \`${esc(usage)}\` | ${esc(c.help)} |`;
  });
  return [BEGIN, "| command | does |", "|---|---|", ...rows, END].join("\n");
}

/** README's exit-code table: the policy `mcp --help` ends with. */
function renderExitCodes(): string {
  const rows = EXIT_CODES_HELP.map(([code, meaning]) => `| ${code} | ${meaning} |`);
  return [EXIT_BEGIN, "| exit code | meaning |", "|---|---|", ...rows, EXIT_END].join("\n");
}

/** `text` with the block between `begin` and `end` replaced by `block`. */
function replaceBlock(text: string, begin: string, end: string, block: string): string {
  const i = text.indexOf(begin);
  const j = text.indexOf(end);
  if (i < 0 || j < i) throw new Error(`README.md has no ${begin.slice(5, begin.indexOf(" ", 5))} markers`);
  return text.slice(0, i) + block + text.slice(j + end.length);
}

/** README.md with the generated blocks between their markers replaced (text unchanged elsewhere). */
export function renderReadme(current: string): string {
  const commands = replaceBlock(current, BEGIN, END, renderCommandTable());
  return replaceBlock(commands, EXIT_BEGIN, EXIT_END, renderExitCodes());
}

if (import.meta.main) {
  const check = process.argv.includes("--check");
  let stale = 0;
  for (const [name, text] of Object.entries(renderAll())) {
    const path = join(REFERENCE_DIR, name);
    if (check) {
      let cur = "";
      try {
        cur = readFileSync(path, "utf8");
      } catch {}
      if (cur !== text) {
        process.stderr.write(`stale: docs/reference/${name} (run npm run docs)\n`);
        stale++;
      }
    } else {
      writeFileSync(path, text);
      process.stdout.write(`wrote docs/reference/${name}\n`);
    }
  }
  const readme = readFileSync(README, "utf8");
  const next = renderReadme(readme);
  if (check && next !== readme) {
    process.stderr.write("stale: README.md command table or exit codes (run npm run docs)\n");
    stale++;
  } else if (!check && next !== readme) {
    writeFileSync(README, next);
    process.stdout.write("wrote README.md command table and exit codes\n");
  }
  process.exitCode = stale ? 1 : 0;
}
