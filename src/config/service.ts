// Service definition files (`<services.dir>/<name>.toml`): the schema (v1
// fields plus v2 tier/routes/snapshot), loading with strict unknown-key
// checks and image-tag warnings, writing a tidy file back, and rewriting the
// `active` line in place for stop/start.
import { readFileSync } from "node:fs";
import { z } from "zod";
import { ConfigError } from "./errors.ts";
import { imagePin } from "./image.ts";
import { duration, formatKeyPath, fromParser, loadToml, parseTomlText, parseWith } from "./load.ts";
import { NAME_MAX, NAME_RE, nameSchema, serviceNameSchema } from "./names.ts";
import { DEFAULT_RUNTIME_KIND, type RuntimeKind } from "./runtime-kind.ts";
import { parseEnvEntry, parseMemorySize, parsePortSpec, parseVolumeSpec } from "./specs.ts";
import { unikernelProblems } from "./unikernel.ts";
import { tomlKey, tomlString, tomlStringArray, writeFileAtomic } from "./write.ts";

export type { PortSpec, VolumeSpec } from "./specs.ts";
export { formatPortSpec, formatVolumeSpec, parsePortSpec, parseVolumeSpec } from "./specs.ts";

// ---- domain types ---------------------------------------------------------

export type Tier = "core" | "worker";
export type RouteMode = "l4" | "l7";
/** A component's runtime kind ("container" | "unikernel"); see runtime-kind.ts. */
export type ComponentRuntime = RuntimeKind;

export interface RouteDef {
  /** Optional; a name gives the container `$PORT_<NAME>`. */
  name?: string;
  /** mc-proxy listener port (443, 8443, 9443), not a container port. */
  port: number;
  mode: RouteMode;
  /** Defaults (elsewhere) to `<service>.svc.mcp.metacircular.net`. */
  hostname?: string;
  public: boolean;
}

export type HealthType = "tcp" | "http" | "exec";

/**
 * `[components.health]`: how a deploy gate and the monitor decide a component is healthy.
 * tcp/http name exactly one of `port` (a container port; its published host port is checked when
 * it has one) or `route` (a route name of the component; its host port). Durations are ms.
 */
export interface HealthDef {
  type: HealthType;
  port?: number;
  route?: string;
  /** http only; "/" when not written. */
  path?: string;
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failed checks (after start_period) that make the component unhealthy. */
  retries: number;
  startPeriodMs: number;
  /** exec only: argv run inside the container; exit 0 = healthy. */
  cmd?: string[];
}

export interface ComponentDef {
  name: string;
  image: string;
  network: string;
  user: string;
  restart: string;
  /** Raw specs as written; each has been validated by parsePortSpec. */
  ports: string[];
  /** Raw specs as written; each has been validated by parseVolumeSpec. */
  volumes: string[];
  cmd: string[];
  /** `KEY=value` entries. */
  env: string[];
  runtime: ComponentRuntime;
  /** Memory limit as written ("64m", "1g"; binary units): podman/docker `--memory`. */
  memory?: string;
  /** Whole CPUs: podman/docker `--cpus`. */
  vcpus?: number;
  routes: RouteDef[];
  health?: HealthDef;
}

export interface ServiceDef {
  name: string;
  node?: string;
  tier: Tier;
  active: boolean;
  build?: { workspace?: string; path?: string; images: Record<string, string> };
  snapshot?: { method?: string; exclude: string[] };
  components: ComponentDef[];
}

// ---- schema ---------------------------------------------------------------

const ROUTE_NAME_RE = /^[a-z0-9_-]*$/;
const HOSTNAME_RE =
  /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

// Re-exported: callers of the definition schema keep importing the name rule from here.
export { NAME_MAX, NAME_RE, nameSchema };

const RESTART_RE = /^(no|always|unless-stopped|on-failure(:[0-9]+)?)$/;

/** Whether `s` is a restart policy a definition may name (no, always, unless-stopped, on-failure[:N]). */
export const isRestartPolicy = (s: string): boolean => RESTART_RE.test(s);
const SNAPSHOT_METHOD_RE = /^(grpc|cli|full|exec:\s*\S.*)$/;

const got = (v: unknown) => JSON.stringify(v);

export const portNumber = z
  .number()
  .int()
  .check((ctx) => {
    if (ctx.value < 1 || ctx.value > 65535) {
      ctx.issues.push({
        code: "custom",
        message: `expected a port number 1-65535, got ${ctx.value}`,
        input: ctx.value,
      });
    }
  });

const routeSchema = z.strictObject({
  name: z
    .string()
    .regex(ROUTE_NAME_RE, {
      error: (iss) => `expected a route name matching [a-z0-9_-]*, got ${got(iss.input)}`,
    })
    .optional(),
  port: portNumber,
  mode: z.enum(["l4", "l7"]).default("l4"),
  hostname: z
    .string()
    .check((ctx) => {
      if (ctx.value !== "" && !HOSTNAME_RE.test(ctx.value)) {
        ctx.issues.push({
          code: "custom",
          message: `expected a DNS hostname, got ${got(ctx.value)}`,
          input: ctx.value,
        });
      }
    })
    .optional(),
  public: z.boolean().default(false),
});

export const HEALTH_DEFAULTS = { intervalMs: 2000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 } as const;

const positiveDuration = (dflt: string) =>
  duration.prefault(dflt).check((ctx) => {
    if (ctx.value <= 0)
      ctx.issues.push({ code: "custom", message: "expected a duration above 0", input: ctx.value });
  });

const healthSchema = z
  .strictObject({
    type: z.enum(["tcp", "http", "exec"]),
    port: portNumber.optional(),
    route: z.string().min(1, { error: "expected a route name" }).optional(),
    path: z
      .string()
      .regex(/^\/\S*$/, { error: (iss) => `expected a path starting with "/", got ${got(iss.input)}` })
      .optional(),
    interval: positiveDuration("2s"),
    timeout: positiveDuration("2s"),
    retries: z.number().int().min(1, { error: "expected retries of at least 1" }).default(3),
    start_period: duration.prefault("0s"),
    cmd: z.array(z.string()).optional(),
  })
  .check((ctx) => {
    const h = ctx.value;
    const issue = (message: string, key: string) =>
      ctx.issues.push({ code: "custom", message, path: [key], input: h });
    if (h.type === "exec") {
      if (h.cmd === undefined || h.cmd.length === 0 || h.cmd[0] === "")
        issue('type = "exec" needs cmd = ["argv", ...]', "cmd");
      if (h.port !== undefined) issue('port is not used by type = "exec"', "port");
      if (h.route !== undefined) issue('route is not used by type = "exec"', "route");
    } else {
      if ((h.port === undefined) === (h.route === undefined))
        issue(
          `type = "${h.type}" needs exactly one of port or route`,
          h.port === undefined ? "port" : "route",
        );
      if (h.cmd !== undefined) issue('cmd is only for type = "exec"', "cmd");
    }
    if (h.type !== "http" && h.path !== undefined) issue('path is only for type = "http"', "path");
  })
  .transform((h): HealthDef => {
    const out: HealthDef = {
      type: h.type,
      intervalMs: h.interval,
      timeoutMs: h.timeout,
      retries: h.retries,
      startPeriodMs: h.start_period,
    };
    if (h.port !== undefined) out.port = h.port;
    if (h.route !== undefined) out.route = h.route;
    if (h.type === "http") out.path = h.path ?? "/";
    if (h.cmd !== undefined) out.cmd = h.cmd;
    return out;
  });

const componentSchema = z.strictObject({
  name: nameSchema,
  image: z
    .string()
    .min(1, { error: "expected a non-empty image reference" })
    .regex(/^\S+$/, { error: (iss) => `expected an image reference without spaces, got ${got(iss.input)}` }),
  network: z.string().default(""),
  user: z.string().default(""),
  restart: z
    .string()
    .regex(RESTART_RE, {
      error: (iss) =>
        `expected one of "no", "always", "on-failure[:N]", "unless-stopped", got ${got(iss.input)}`,
    })
    .default("unless-stopped"),
  ports: z.array(fromParser(parsePortSpec)).default([]),
  volumes: z.array(fromParser(parseVolumeSpec)).default([]),
  cmd: z.array(z.string()).default([]),
  env: z.array(fromParser(parseEnvEntry)).default([]),
  // "podman" is the word files used before the kind had its own name: read as "container".
  runtime: z
    .enum(["container", "unikernel", "podman"], {
      error: (iss) =>
        `expected one of "container", "unikernel", got ${got(iss.input)}${
          iss.input === "docker"
            ? " (docker is a container engine, chosen per node by [agent] container_runtime)"
            : ""
        }`,
    })
    .default(DEFAULT_RUNTIME_KIND)
    .transform((v): RuntimeKind => (v === "podman" ? "container" : v))
    .describe(
      'what runs the component: a container (on the node\'s engine, podman or docker) or a unikernel (refused by a node without that runtime); "podman" is the older word for "container"',
    ),
  memory: fromParser(parseMemorySize).optional(),
  vcpus: z.number().int().min(1).optional(),
  routes: z.array(routeSchema).default([]),
  health: healthSchema.optional(),
});

/** The service definition schema; agent.ts reuses it for `[[boot.sequence]] services`. */
export const serviceDefSchema = z
  .strictObject({
    name: serviceNameSchema,
    node: z.string().optional(),
    tier: z.enum(["core", "worker"]).default("worker"),
    active: z.boolean().default(true),
    build: z
      .strictObject({
        workspace: z.string().optional(),
        path: z.string().optional(),
        images: z.record(z.string().min(1), z.string().min(1)).default({}),
      })
      .optional(),
    snapshot: z
      .strictObject({
        method: z
          .string()
          .regex(SNAPSHOT_METHOD_RE, {
            error: (iss) => `expected "grpc", "cli", "full" or "exec: <command>", got ${got(iss.input)}`,
          })
          .optional(),
        exclude: z.array(z.string()).default([]),
      })
      .optional(),
    components: z.array(componentSchema).min(1, { error: "expected at least one [[components]] entry" }),
  })
  .check((ctx) => {
    const seen = new Map<string, number>();
    ctx.value.components.forEach((c, i) => {
      const first = seen.get(c.name);
      if (first !== undefined) {
        ctx.issues.push({
          code: "custom",
          message: `duplicate component name ${got(c.name)} (also components[${first}])`,
          path: ["components", i, "name"],
          input: c.name,
        });
      } else seen.set(c.name, i);
      // The registry keeps ports and volumes as sets: a repeated entry would be merged silently.
      for (const key of ["ports", "volumes"] as const) {
        const at = new Map<string, number>();
        c[key].forEach((v, j) => {
          const other = at.get(v);
          if (other !== undefined)
            ctx.issues.push({
              code: "custom",
              message: `duplicate entry ${got(v)} (also components[${i}].${key}[${other}])`,
              path: ["components", i, key, j],
              input: v,
            });
          else at.set(v, j);
        });
      }
      const routeNames = new Map<string, number>();
      let unnamed: number | undefined;
      c.routes.forEach((r, j) => {
        if (r.name === undefined || r.name === "") {
          // One host port, one $PORT per route key: two unnamed routes would share them.
          if (unnamed !== undefined)
            ctx.issues.push({
              code: "custom",
              message: `a second unnamed route (also components[${i}].routes[${unnamed}]); give each a name`,
              path: ["components", i, "routes", j, "name"],
              input: r.name,
            });
          unnamed ??= j;
          return;
        }
        const other = routeNames.get(r.name);
        if (other !== undefined) {
          ctx.issues.push({
            code: "custom",
            message: `duplicate route name ${got(r.name)} (also components[${i}].routes[${other}])`,
            path: ["components", i, "routes", j, "name"],
            input: r.name,
          });
        } else routeNames.set(r.name, j);
      });
      if (c.runtime === "unikernel") {
        for (const p of unikernelProblems({ ...c, memory: c.memory ?? "", health: c.health?.type }))
          ctx.issues.push({
            code: "custom",
            message: `${p.message} (component ${got(c.name)} runs as a unikernel)`,
            path: ["components", i, p.key],
            input: c[p.key as keyof typeof c],
          });
      }
      const hr = c.health?.route;
      if (hr !== undefined && !routeNames.has(hr)) {
        ctx.issues.push({
          code: "custom",
          message: `health route ${got(hr)} is not a named route of component ${got(c.name)}`,
          path: ["components", i, "health", "route"],
          input: hr,
        });
      }
    });
  });

// Compile-time guarantee that the schema produces exactly the documented domain type.
type SchemaOut = z.output<typeof serviceDefSchema>;
const _schemaMatchesType: (x: SchemaOut) => ServiceDef = (x) => x;
const _typeMatchesSchema: (x: ServiceDef) => SchemaOut = (x) => x;
void _schemaMatchesType;
void _typeMatchesSchema;

// ---- loading --------------------------------------------------------------

export interface ServiceDefOptions {
  /** `--strict`: an image without a version tag is an error instead of a warning. */
  strict?: boolean;
}

export interface LoadedServiceDef {
  def: ServiceDef;
  warnings: string[];
}

export function loadServiceDef(file: string, opts: ServiceDefOptions = {}): LoadedServiceDef {
  return parseServiceDef(loadToml(file), file, opts);
}

/** Validates already-parsed TOML data; `keyPrefix` anchors keys when the def is nested (boot sequences). */
export function parseServiceDef(
  data: unknown,
  file: string,
  opts: ServiceDefOptions = {},
  keyPrefix: readonly PropertyKey[] = [],
): LoadedServiceDef {
  const def: ServiceDef = parseWith(serviceDefSchema, data, file, {
    unknownKeys: "error",
    pathPrefix: keyPrefix,
  });
  return { def, warnings: imageTagWarnings(def, file, opts.strict === true, keyPrefix) };
}

export function imageTagWarnings(
  def: ServiceDef,
  file: string,
  strict: boolean,
  keyPrefix: readonly PropertyKey[] = [],
): string[] {
  const warnings: string[] = [];
  def.components.forEach((c, i) => {
    const pin = imagePin(c.image);
    if (pin !== undefined && pin !== "latest") return;
    const problem =
      pin === undefined ? `image ${got(c.image)} has no tag` : `image ${got(c.image)} uses the :latest tag`;
    const key = formatKeyPath([...keyPrefix, "components", i, "image"]);
    if (strict) throw new ConfigError(file, key, `${problem}; pin a version tag (required by --strict)`);
    warnings.push(`${file}: ${key}: ${problem}; pin a version tag such as :v1.0.0`);
  });
  return warnings;
}

// ---- writing --------------------------------------------------------------

/** Writes a definition file; defaults are omitted so files stay tidy, and load(write(def)) equals def. */
export function serviceDefToToml(def: ServiceDef): string {
  const out: string[] = [];
  const kv = (k: string, v: string) => out.push(`${tomlKey(k)} = ${v}`);
  kv("name", tomlString(def.name));
  if (def.node !== undefined) kv("node", tomlString(def.node));
  if (def.tier !== "worker") kv("tier", tomlString(def.tier));
  // Always written: stop/start rewrite this line in place.
  kv("active", String(def.active));

  if (def.build !== undefined) {
    const b = def.build;
    const images = Object.entries(b.images);
    if (b.workspace !== undefined || b.path !== undefined || images.length === 0) {
      out.push("", "[build]");
      if (b.workspace !== undefined) kv("workspace", tomlString(b.workspace));
      if (b.path !== undefined) kv("path", tomlString(b.path));
    }
    if (images.length > 0) {
      out.push("", "[build.images]");
      for (const [k, v] of images) kv(k, tomlString(v));
    }
  }
  if (def.snapshot !== undefined) {
    out.push("", "[snapshot]");
    if (def.snapshot.method !== undefined) kv("method", tomlString(def.snapshot.method));
    if (def.snapshot.exclude.length > 0) kv("exclude", tomlStringArray(def.snapshot.exclude));
  }
  for (const c of def.components) {
    out.push("", "[[components]]");
    kv("name", tomlString(c.name));
    kv("image", tomlString(c.image));
    if (c.network !== "") kv("network", tomlString(c.network));
    if (c.user !== "") kv("user", tomlString(c.user));
    if (c.restart !== "unless-stopped") kv("restart", tomlString(c.restart));
    if (c.ports.length > 0) kv("ports", tomlStringArray(c.ports));
    if (c.volumes.length > 0) kv("volumes", tomlStringArray(c.volumes));
    if (c.cmd.length > 0) kv("cmd", tomlStringArray(c.cmd));
    if (c.env.length > 0) kv("env", tomlStringArray(c.env));
    if (c.runtime !== DEFAULT_RUNTIME_KIND) kv("runtime", tomlString(c.runtime));
    if (c.memory !== undefined) kv("memory", tomlString(c.memory));
    if (c.vcpus !== undefined) kv("vcpus", String(c.vcpus));
    for (const r of c.routes) {
      out.push("", "[[components.routes]]");
      if (r.name !== undefined) kv("name", tomlString(r.name));
      kv("port", String(r.port));
      if (r.mode !== "l4") kv("mode", tomlString(r.mode));
      if (r.hostname !== undefined) kv("hostname", tomlString(r.hostname));
      if (r.public) kv("public", "true");
    }
    if (c.health !== undefined) {
      const h = c.health;
      out.push("", "[components.health]");
      kv("type", tomlString(h.type));
      if (h.port !== undefined) kv("port", String(h.port));
      if (h.route !== undefined) kv("route", tomlString(h.route));
      if (h.path !== undefined && h.path !== "/") kv("path", tomlString(h.path));
      if (h.cmd !== undefined) kv("cmd", tomlStringArray(h.cmd));
      const d = HEALTH_DEFAULTS;
      if (h.intervalMs !== d.intervalMs) kv("interval", tomlString(formatDuration(h.intervalMs)));
      if (h.timeoutMs !== d.timeoutMs) kv("timeout", tomlString(formatDuration(h.timeoutMs)));
      if (h.retries !== d.retries) kv("retries", String(h.retries));
      if (h.startPeriodMs !== d.startPeriodMs)
        kv("start_period", tomlString(formatDuration(h.startPeriodMs)));
    }
  }
  return `${out.join("\n")}\n`;
}

/** Milliseconds as the duration syntax parseDuration reads back exactly ("1m30s", "500ms", "0s"). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return "0s";
  let rest = Math.round(ms);
  let out = "";
  for (const [unit, size] of [
    ["h", 3_600_000],
    ["m", 60_000],
    ["s", 1000],
    ["ms", 1],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) out += `${n}${unit}`;
    rest -= n * size;
  }
  return out;
}

// ---- in-place edits ---------------------------------------------------------

const ACTIVE_LINE_RE = /^(\s*active\s*=\s*)([^#\r]*?)(\s*(?:#.*)?)(\r?)$/;
const NAME_LINE_RE = /^\s*name\s*=/;
const TABLE_HEADER_RE = /^\s*\[/;

/**
 * Sets the top-level `active = …` line, leaving every other byte of the file
 * (comments, order, formatting) untouched; inserts it after `name = …` when
 * absent. The result is re-parsed before it replaces the file atomically.
 */
export function setActiveInFile(file: string, active: boolean): void {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new ConfigError(file, "", "file not found");
    throw new ConfigError(file, "", `cannot read file: ${(e as Error).message}`);
  }
  const updated = setActiveInText(text, active, file);
  if (updated !== text) writeFileAtomic(file, updated);
}

/** The pure part of setActiveInFile (exported for tests). */
export function setActiveInText(text: string, active: boolean, file = ""): string {
  const lines = text.split("\n");
  const value = String(active);
  let topEnd = lines.findIndex((l) => TABLE_HEADER_RE.test(l));
  if (topEnd < 0) topEnd = lines.length;
  let done = false;
  for (let i = 0; i < topEnd; i++) {
    const m = ACTIVE_LINE_RE.exec(lines[i]!);
    if (m) {
      lines[i] = `${m[1]}${value}${m[3]}${m[4]}`;
      done = true;
      break;
    }
  }
  if (!done) {
    const nameIdx = lines.slice(0, topEnd).findIndex((l) => NAME_LINE_RE.test(l));
    const cr = text.includes("\r\n") ? "\r" : "";
    lines.splice(nameIdx + 1, 0, `active = ${value}${cr}`);
  }
  const out = lines.join("\n");
  // Guard against layouts the line editor cannot see (e.g. multi-line strings).
  const parsed = parseTomlText(out, file);
  if (parsed["active"] !== active) {
    throw new ConfigError(
      file,
      "active",
      "could not rewrite the top-level active line; edit the file by hand",
    );
  }
  return out;
}
