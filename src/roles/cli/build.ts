// `mcp build <svc>` and the `--build` step of `mcp sync`: builds every `[build.images]` entry of a
// definition with podman on the operator's machine, tags it with the component image reference
// whose repository name equals the entry's key, and pushes it to the registry. No agent involved.
//
// Where the sources are: context = <workspace>/<path or service name>. `[build] workspace` may be
// absolute, `~/…`, or relative to the definition file's directory; without it the definition
// file's directory is the workspace. The Dockerfile path is relative to the context directory.
//
// Runtime flags: `--runtime-arg` (repeatable) and $MCP_RUNTIME_ARGS (whitespace-separated), e.g.
// "--runtime runc"; $MCP_BUILD_RUNTIME picks another client binary (default "podman").

import { existsSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { type ImageRef, parseImageRef } from "../../config/image.ts";
import { loadServiceDef, type ServiceDef } from "../../config/service.ts";
import { failure, run } from "../../runtime/exec.ts";
import { buildArgs, pushArgs } from "../../runtime/podman.ts";
import { type Ctx, loadCtx } from "./context.ts";
import { definitionPath } from "./definition.ts";
import { CliError, green, printJson, red, warn } from "./output.ts";

const BUILD_TIMEOUT_MS = 30 * 60_000;
const PUSH_TIMEOUT_MS = 10 * 60_000;
const CHECK_TIMEOUT_MS = 10_000;

/** A definition and the file it came from (relative workspaces resolve against its directory). */
export interface DefSource {
  def: ServiceDef;
  file: string | null;
}

/** One image to build: a `[build.images]` entry resolved against the definition. */
export interface ImagePlan {
  service: string;
  /** The `[build.images]` key (= repository name). */
  key: string;
  /** Every component image reference with that repository name (usually one). */
  refs: string[];
  dockerfile: string;
  context: string;
}

export interface ImageResult {
  service: string;
  key: string;
  refs: string[];
  /** built: built (and pushed unless --no-push); present: already in the registry (sync --build). */
  status: "built" | "present" | "failed";
  pushed: boolean;
  buildMs: number;
  pushMs: number;
  /** Why a present-check could not decide (the image was built anyway). */
  note?: string;
  error?: string;
}

export interface BuildSettings {
  binary: string;
  /** Global flags before the subcommand, e.g. ["--runtime", "runc"]. */
  runtimeArgs: string[];
  push: boolean;
  /** Extra environment for the runtime client (e.g. CONTAINERS_CONF); merged over process.env. */
  env?: Record<string, string>;
}

// ---------------------------------------------------------------------------------------------
// pure parts

/** The repository's last path segment: `mcr…:8443/team/myservice:v1` → `myservice`. */
export function repoName(image: string): string {
  const { repository } = parseImageRef(image);
  return repository.slice(repository.lastIndexOf("/") + 1);
}

function expandHome(p: string): string {
  if (p === "~") return homedir();
  return p.startsWith("~/") ? join(homedir(), p.slice(2)) : p;
}

/** Where a definition's sources are: `<workspace>/<path or name>`. */
export function contextDir(def: ServiceDef, file: string | null, cwd = process.cwd()): string {
  const base = file ? dirname(resolve(cwd, file)) : cwd;
  const ws = def.build?.workspace ? resolve(base, expandHome(def.build.workspace)) : base;
  return resolve(ws, expandHome(def.build?.path || def.name));
}

/**
 * Resolves every `[build.images]` entry to the references it is tagged with and the paths it is
 * built from. Throws a one-line CliError for a definition without images or a key that no
 * component's image repository matches.
 */
export function planBuild(def: ServiceDef, file: string | null, cwd = process.cwd()): ImagePlan[] {
  const where = file ?? `service ${def.name}`;
  const images = Object.entries(def.build?.images ?? {});
  if (images.length === 0)
    throw new CliError(`${where}: service ${def.name} has no [build.images] entries: nothing to build`, 2);
  const context = contextDir(def, file, cwd);
  return images.map(([key, dockerfile]) => {
    const refs = [...new Set(def.components.map((c) => c.image).filter((img) => repoName(img) === key))];
    if (refs.length === 0) {
      const known = [...new Set(def.components.map((c) => repoName(c.image)))].join(", ") || "none";
      throw new CliError(
        `${where}: [build.images] ${key}: no component image has the repository name "${key}" (component images: ${known})`,
        2,
      );
    }
    return { service: def.name, key, refs, dockerfile: resolve(context, expandHome(dockerfile)), context };
  });
}

/** Global runtime flags from $MCP_RUNTIME_ARGS then `--runtime-arg` options. */
export function buildSettings(opts: Record<string, unknown>, env = process.env): BuildSettings {
  const fromEnv = (env["MCP_RUNTIME_ARGS"] ?? "").split(/\s+/).filter((a) => a !== "");
  const fromOpts = ([] as unknown[]).concat(opts.runtimeArg ?? []).map(String);
  return {
    binary: env["MCP_BUILD_RUNTIME"] || "podman",
    runtimeArgs: [...fromEnv, ...fromOpts],
    push: opts.push !== false,
  };
}

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?$/;

/** The Registry HTTP API v2 manifest URL; loopback registries are plain HTTP (as podman's tests use them). */
export function manifestUrl(ref: ImageRef): string {
  const host = ref.registry === "docker.io" ? "registry-1.docker.io" : ref.registry;
  const scheme = LOOPBACK.test(host) ? "http" : "https";
  return `${scheme}://${host}/v2/${ref.repository}/manifests/${ref.digest || ref.tag || "latest"}`;
}

// ---------------------------------------------------------------------------------------------
// I/O

export type Presence = { state: "present" } | { state: "missing" } | { state: "unknown"; why: string };

/**
 * Whether the registry has the image: a HEAD of its manifest (200 present, 404 missing). A
 * registry that asks for credentials or cannot be reached gives "unknown" — the caller builds
 * then, because a missing image breaks the deploy while a rebuild only costs time.
 */
export async function imagePresence(image: string): Promise<Presence> {
  const url = manifestUrl(parseImageRef(image));
  try {
    const res = await fetch(url, {
      method: "HEAD",
      headers: { Accept: MANIFEST_TYPES },
      signal: AbortSignal.timeout(CHECK_TIMEOUT_MS),
    });
    if (res.status === 200) return { state: "present" };
    if (res.status === 404) return { state: "missing" };
    return { state: "unknown", why: `HEAD ${url}: HTTP ${res.status}` };
  } catch (err) {
    return { state: "unknown", why: `HEAD ${url}: ${(err as Error).message}` };
  }
}

/** Builds one image (all its tags) and pushes each tag; never throws, failures are in the result. */
export async function buildImage(plan: ImagePlan, s: BuildSettings): Promise<ImageResult> {
  const result: ImageResult = {
    service: plan.service,
    key: plan.key,
    refs: plan.refs,
    status: "failed",
    pushed: false,
    buildMs: 0,
    pushMs: 0,
  };
  if (!existsSync(plan.context) || !statSync(plan.context).isDirectory()) {
    result.error = `build context ${plan.context} is not a directory (set [build] workspace/path)`;
    return result;
  }
  if (!existsSync(plan.dockerfile)) {
    result.error = `Dockerfile ${plan.dockerfile} not found`;
    return result;
  }
  const bin = s.binary;
  const exec = async (sub: string[], timeoutMs: number, label: string) => {
    const argv = [bin, ...s.runtimeArgs, ...sub];
    try {
      const res = await run(argv, { env: s.env, timeoutMs, label });
      // podman build prints its steps on stdout and the error on stderr; keep both for the tail.
      if (res.code !== 0) return failure(argv, { ...res, stderr: `${res.stdout}\n${res.stderr}` }, label);
      return null;
    } catch (err) {
      return err as Error;
    }
  };
  let t = performance.now();
  const buildErr = await exec(
    buildArgs({ dockerfile: plan.dockerfile, tags: plan.refs, context: plan.context }),
    BUILD_TIMEOUT_MS,
    `${bin} build ${plan.key}`,
  );
  result.buildMs = Math.round(performance.now() - t);
  if (buildErr) {
    result.error = buildErr.message.split("\n")[0];
    return result;
  }
  if (s.push) {
    t = performance.now();
    for (const ref of plan.refs) {
      const pushErr = await exec(pushArgs(ref), PUSH_TIMEOUT_MS, `${bin} push ${ref}`);
      if (pushErr) {
        result.pushMs = Math.round(performance.now() - t);
        result.error = pushErr.message.split("\n")[0];
        return result;
      }
    }
    result.pushMs = Math.round(performance.now() - t);
    result.pushed = true;
  }
  result.status = "built";
  return result;
}

function printResult(r: ImageResult): void {
  const refs = r.refs.join(", ");
  if (r.status === "present") {
    process.stdout.write(`${green("ok")}   ${r.service}: ${r.key} ${refs}  present in the registry\n`);
  } else if (r.status === "built") {
    const timing = `build ${r.buildMs}ms${r.pushed ? `, push ${r.pushMs}ms` : ", not pushed"}`;
    const note = r.note ? `  (${r.note})` : "";
    process.stdout.write(`${green("ok")}   ${r.service}: ${r.key} ${refs}  ${timing}${note}\n`);
  } else {
    process.stdout.write(`${red("FAIL")} ${r.service}: ${r.key} ${refs}: ${r.error}\n`);
  }
}

export function imageResultJson(r: ImageResult) {
  return {
    service: r.service,
    image: r.key,
    refs: r.refs,
    status: r.status,
    pushed: r.pushed,
    build_ms: r.buildMs,
    push_ms: r.pushMs,
    note: r.note,
    error: r.error,
  };
}

/**
 * The `mcp sync --build` step: for every definition with `[build.images]`, builds and pushes the
 * images whose references are not all in the registry. Definitions without images are skipped;
 * a definition whose images cannot be planned is a failed result. Prints one line per image
 * unless ctx.json (the caller then includes the results in its own JSON).
 */
export async function buildMissingImages(
  ctx: Pick<Ctx, "json">,
  defs: DefSource[],
  settings: BuildSettings = buildSettings({}),
): Promise<ImageResult[]> {
  const results: ImageResult[] = [];
  for (const { def, file } of defs) {
    if (Object.keys(def.build?.images ?? {}).length === 0) continue;
    let plans: ImagePlan[];
    try {
      plans = planBuild(def, file);
    } catch (err) {
      const r: ImageResult = {
        service: def.name,
        key: "",
        refs: [],
        status: "failed",
        pushed: false,
        buildMs: 0,
        pushMs: 0,
        error: (err as Error).message,
      };
      results.push(r);
      if (!ctx.json) printResult(r);
      continue;
    }
    for (const plan of plans) {
      const presence = await Promise.all(plan.refs.map(imagePresence));
      let r: ImageResult;
      if (presence.every((p) => p.state === "present")) {
        r = {
          service: def.name,
          key: plan.key,
          refs: plan.refs,
          status: "present",
          pushed: false,
          buildMs: 0,
          pushMs: 0,
        };
      } else {
        r = await buildImage(plan, { ...settings, push: true });
        const unknown = presence.find((p) => p.state === "unknown");
        if (unknown?.state === "unknown") r.note = `registry check inconclusive: ${unknown.why}`;
      }
      results.push(r);
      if (!ctx.json) printResult(r);
    }
  }
  return results;
}

function loadForBuild(service: string, opts: Record<string, unknown>): DefSource {
  const file = opts.file as string | undefined;
  // With -f no CLI config is needed: building happens on this machine only.
  const path = file ?? definitionPath(loadCtx(opts), service);
  if (!existsSync(path)) {
    throw new CliError(
      file ? `${file}: file not found` : `no definition for service "${service}": ${path} not found`,
      2,
    );
  }
  const { def, warnings } = loadServiceDef(path);
  for (const w of warnings) warn(w);
  if (def.name !== service)
    throw new CliError(
      `${path}: name: expected "${service}" (the service being built), got "${def.name}"`,
      2,
    );
  return { def, file: path };
}

export async function buildCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = args[0]!;
  const { def, file } = loadForBuild(service, opts);
  const plans = planBuild(def, file);
  const settings = buildSettings(opts);
  const results: ImageResult[] = [];
  for (const plan of plans) {
    const r = await buildImage(plan, settings);
    results.push(r);
    if (opts.json !== true) printResult(r);
  }
  if (opts.json === true) printJson({ service, images: results.map(imageResultJson) });
  const failed = results.filter((r) => r.status === "failed");
  if (failed.length > 0) {
    if (opts.json !== true)
      process.stderr.write(`mcp: build of ${service} failed for ${failed.map((f) => f.key).join(", ")}\n`);
    return 1;
  }
  return 0;
}
