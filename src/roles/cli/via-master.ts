// The CLI commands that go through the master (architecture v2) when the CLI config has [master]
// and --direct is not given: deploy (placement by the master), undeploy, sync, list/ps/status
// (MasterStatus: one fleet view incl. edge routes, orphans and stale placements) and node list
// (ListNodes). The direct-to-agent implementations stay in their own modules untouched.
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { defToSpec } from "../../component/proto.ts";
import { renderChanges } from "../../component/spec-diff.ts";
import { loadServiceDef, type ServiceDef } from "../../config/service.ts";
import type {
  MasterStatusResponse,
  MasterSyncPlanEntry,
  ServiceStatus,
  StepResult,
} from "../../gen/mcp/v1/mcp_pb.ts";
import { type Ctx, type MasterClient, splitTarget } from "./context.ts";
import { definitionPath, loadDefinition } from "./definition.ts";
import { CliError, formatAge, green, printJson, printTable, red, warn, yellow } from "./output.ts";
import { asSent, type Deployed, defAsSent, makePlan, type Plan, planJson } from "./spec-plan.ts";
import { componentJson, formatRoutes, resultJson, runtimeNote, runtimesCell } from "./views.ts";

/** Runs one master call; a failure is one line naming the master. */
async function onMaster<T>(ctx: Ctx, call: (m: MasterClient) => Promise<T>): Promise<T> {
  try {
    return await call(await ctx.master());
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`master ${ctx.config.master?.address}: ${(err as Error).message.split("\n")[0]}`);
  }
}

const stepJson = (s: StepResult | undefined) =>
  s ? { step: s.step, success: s.success, error: s.error || undefined } : null;

function stepLine(label: string, s: StepResult | undefined): string {
  if (!s) return `-    ${label}: not needed\n`;
  return s.success ? `${green("ok")}   ${label}\n` : `${red("FAIL")} ${label}: ${s.error}\n`;
}

export async function deploy(ctx: Ctx, args: string[], opts: Record<string, unknown>): Promise<number> {
  const { service, component } = splitTarget(args[0]!);
  if (opts.dryRun === true)
    throw new CliError("--dry-run runs on an agent: use --direct --node <node> --dry-run", 2);
  const loaded = loadDefinition(ctx, service, opts.file as string | undefined, opts.strict === true);
  if (!loaded)
    throw new CliError(
      `no definition for service "${service}": create ${definitionPath(ctx, service)} (the master deploys definitions)`,
      2,
    );
  for (const w of loaded.warnings) warn(w);
  const spec = defToSpec(loaded.def);
  // --node pins like `node = ...` in the definition; the master honours the pin.
  if (typeof opts.node === "string" && opts.node) spec.node = opts.node;
  if (!ctx.json)
    process.stdout.write(
      `deploying ${service}${component ? `/${component}` : ""} through the master (from ${loaded.file})\n`,
    );
  const res = await onMaster(ctx, (m) =>
    m.deploy(
      { service: spec, component: component ?? "", force: opts.force === true },
      { timeoutMs: 10 * 60_000 },
    ),
  );
  if (ctx.json) {
    printJson({
      service,
      node: res.node || null,
      success: res.success,
      error: res.error || undefined,
      steps: {
        deploy: stepJson(res.deployResult),
        edgeRoute: stepJson(res.edgeRouteResult),
        dns: stepJson(res.dnsResult),
      },
      results: res.components.map(resultJson),
    });
  } else {
    if (res.node) process.stdout.write(`placed on ${res.node}\n`);
    for (const r of res.components) {
      for (const w of r.warnings) warn(`${r.name}: ${w}`);
      process.stdout.write(
        r.success
          ? `${green("ok")}   ${r.name} ${r.version || ""}${r.unchanged ? "  unchanged" : ""}${r.reason ? ` (${r.reason})` : ""}\n`
          : `${red("FAIL")} ${r.name}: ${r.error}\n`,
      );
    }
    process.stdout.write(stepLine("deploy", res.deployResult));
    process.stdout.write(stepLine("edge route", res.edgeRouteResult));
    process.stdout.write(stepLine("dns", res.dnsResult));
  }
  if (!res.success) {
    if (!ctx.json)
      process.stderr.write(`mcp: deploy of ${service} failed: ${res.error || "see the steps above"}\n`);
    return 1;
  }
  return 0;
}

export async function undeploy(ctx: Ctx, service: string): Promise<number> {
  const res = await onMaster(ctx, (m) => m.undeploy({ serviceName: service }, { timeoutMs: 5 * 60_000 }));
  if (ctx.json) printJson({ service, undeployed: res.success, error: res.error || undefined });
  else if (res.success) process.stdout.write(`${service} undeployed (through the master)\n`);
  if (!res.success) {
    if (!ctx.json) process.stderr.write(`mcp: undeploy of ${service} failed: ${res.error}\n`);
    return 1;
  }
  return 0;
}

/** Every definition in services.dir; placement is the master's job, so `node` is optional here. */
function loadAllDefinitions(ctx: Ctx): { defs: ServiceDef[]; errors: string[] } {
  const dir = ctx.config.services.dir;
  const defs: ServiceDef[] = [];
  const errors: string[] = [];
  const files = existsSync(dir)
    ? readdirSync(dir)
        .filter((f) => f.endsWith(".toml") && !f.startsWith("."))
        .sort()
    : [];
  for (const f of files) {
    const file = join(dir, f);
    try {
      const { def, warnings } = loadServiceDef(file);
      for (const w of warnings) warn(w);
      const expected = basename(f, ".toml");
      if (def.name !== expected)
        throw new Error(`${file}: name: expected "${expected}" (the file name), got "${def.name}"`);
      defs.push(def);
    } catch (err) {
      const msg = (err as Error).message.split("\n")[0] ?? "invalid definition";
      errors.push(msg.startsWith(file) ? msg : `${file}: ${msg}`);
    }
  }
  return { defs, errors };
}

interface MasterPlan {
  service: string;
  action: string;
  node: string;
  plan: Plan;
}

/** A dry run's entries with each definition compared to the spec its placement recorded. */
function masterSyncPlans(entries: readonly MasterSyncPlanEntry[], defs: readonly ServiceDef[]): MasterPlan[] {
  const byName = new Map(defs.map((d) => [d.name, d]));
  return entries.map((e) => {
    let deployed: Deployed = { state: "absent" };
    if (e.placed) {
      try {
        deployed = { state: "deployed", def: asSent(e.placed) };
      } catch (err) {
        deployed = { state: "unknown", error: (err as Error).message.split("\n")[0] ?? "" };
      }
    }
    const def = byName.get(e.service);
    // An undeploy has no definition to compare with: its plan is the action alone.
    const plan: Plan = def ? makePlan(deployed, defAsSent(def)) : { deployed, changes: [], reordered: false };
    return { service: e.service, action: e.action, node: e.node, plan };
  });
}

/** Per service that would change: the action, then what changes field by field. */
function masterPlanLines(p: MasterPlan): string[] {
  switch (p.action) {
    case "deploy":
      return [`${p.service}: would deploy (not placed yet: everything is new)`];
    case "undeploy":
      return [`${p.service}: would undeploy from ${p.node}`];
    case "redeploy": {
      const head = `${p.service}: would redeploy on ${p.node}`;
      const d = p.plan.deployed;
      if (d.state === "unknown" || d.state === "unreachable")
        return [`${head} (cannot compare with its placed spec: ${d.error})`];
      if (d.state === "absent") return [`${head} (its placement recorded no spec to compare with)`];
      if (p.plan.changes.length === 0)
        return [`${head} (no field changes: only the order of entries differs)`];
      return [`${head}, changes against its placed spec:`, ...renderChanges(p.plan.changes)];
    }
    default:
      return [];
  }
}

export async function sync(ctx: Ctx, opts: Record<string, unknown>): Promise<number> {
  const dryRun = opts.dryRun === true;
  const { defs, errors } = loadAllDefinitions(ctx);
  for (const e of errors) process.stderr.write(`mcp: ${e}\n`);
  // A partial declaration would make the master undeploy what the broken files describe.
  if (errors.length > 0 && !dryRun) {
    process.stderr.write(
      "mcp: sync not sent: fix the definitions above first (the master converges to them)\n",
    );
    return 2;
  }
  let builds: object[] = [];
  let buildFailed = false;
  if (opts.build === true && !dryRun) {
    const b = await import("./build.ts");
    const files = defs.map((def) => ({ file: definitionPath(ctx, def.name), def }));
    const res = await b.buildMissingImages(ctx, files, b.buildSettings(opts));
    builds = res.map(b.imageResultJson);
    buildFailed = res.some((r) => r.status === "failed");
  }
  const res = await onMaster(ctx, (m) =>
    m.sync({ services: defs.map((d) => defToSpec(d)), dryRun }, { timeoutMs: 10 * 60_000 }),
  );
  const rows = res.results.map((r) => ({ step: r.step, success: r.success, error: r.error || undefined }));
  const plans = dryRun ? masterSyncPlans(res.plan, defs) : [];
  if (ctx.json) {
    printJson({
      dryRun,
      results: rows,
      ...(dryRun
        ? {
            plan: plans.map((p) => ({
              service: p.service,
              action: p.action,
              node: p.node,
              ...planJson(p.plan),
            })),
          }
        : {}),
      errors: errors.map((e) => ({ error: e })),
      ...(opts.build === true ? { builds } : {}),
    });
  } else {
    if (dryRun) process.stdout.write("dry run: the master reports what it would do, nothing changes\n");
    printTable(
      ["step", "result"],
      rows.map((r) => [r.step, r.success ? green("ok") : red(`FAIL: ${r.error ?? ""}`)]),
    );
    const lines = plans.flatMap(masterPlanLines);
    if (lines.length > 0) process.stdout.write(["", ...lines, ""].join("\n"));
  }
  if (errors.length > 0) return 2;
  return rows.some((r) => !r.success) || buildFailed ? 1 : 0;
}

async function masterStatus(ctx: Ctx, service = ""): Promise<MasterStatusResponse> {
  return onMaster(ctx, (m) => m.status({ serviceName: service }, { timeoutMs: 60_000 }));
}

function serviceJson(s: ServiceStatus) {
  return {
    service: s.name,
    node: s.node,
    tier: s.tier,
    status: s.status,
    components: s.components.map((c) => componentJson(s.node, s.name, c)),
    edgeRoutes: s.edgeRoutes.map((e) => ({
      hostname: e.hostname,
      edgeNode: e.edgeNode,
      certExpires: e.certExpires || null,
    })),
  };
}

function statusColor(status: string): string {
  if (status === "running" || status === "healthy") return green(status);
  if (status === "unknown" || status === "stopped") return yellow(status);
  return red(status);
}

function printFindings(res: MasterStatusResponse): void {
  if (res.orphans.length > 0) {
    process.stdout.write("\norphans (running without a placement):\n");
    for (const o of res.orphans) process.stdout.write(`  ${o}\n`);
  }
  if (res.stalePlacements.length > 0) {
    process.stdout.write("\nstale placements (placed, not found on the node):\n");
    for (const p of res.stalePlacements) process.stdout.write(`  ${p}\n`);
  }
  if (res.staleSnapshots.length > 0) {
    process.stdout.write("\nstale snapshots (none newer than twice the snapshot interval):\n");
    for (const s of res.staleSnapshots) process.stdout.write(`  ${s}\n`);
  }
}

const findingsJson = (res: MasterStatusResponse) => ({
  orphans: res.orphans,
  stalePlacements: res.stalePlacements,
  staleSnapshots: res.staleSnapshots,
});

/** `mcp list` / `mcp ps`: one row per component, with the node the master placed it on. */
export async function components(ctx: Ctx, live: boolean): Promise<number> {
  const res = await masterStatus(ctx);
  if (ctx.json) {
    const rows = res.services.flatMap((s) =>
      s.components.map((c) => ({ ...componentJson(s.node, s.name, c), tier: s.tier, status: s.status })),
    );
    printJson({ [live ? "containers" : "services"]: rows, ...findingsJson(res) });
    return 0;
  }
  const table: string[][] = [];
  for (const s of res.services) {
    if (s.components.length === 0) {
      table.push(
        live
          ? [s.name, s.node, statusColor(s.status), "-", "-", s.tier]
          : [s.node, s.name, "-", "-", statusColor(s.status), "-"],
      );
      continue;
    }
    for (const c of s.components) {
      if (live) {
        const name = c.name === s.name ? s.name : `${s.name}-${c.name}`;
        table.push([
          name,
          s.node,
          c.observedState === "running" ? green("running") : red(c.observedState || s.status),
          c.version || "-",
          formatAge(c.started ? timestampDate(c.started) : null),
          [s.tier, runtimeNote(c)].filter((x) => x).join(", "),
        ]);
      } else {
        const note = runtimeNote(c);
        table.push([
          s.node,
          s.name,
          note ? `${c.name} (${note})` : c.name,
          c.desiredState,
          c.observedState,
          c.version || "-",
        ]);
      }
    }
  }
  if (live && table.length === 0)
    process.stdout.write("no services deployed (mcp deploy <service> to start one)\n");
  else if (live) printTable(["name", "node", "state", "version", "uptime", "tier"], table);
  else printTable(["node", "service", "component", "desired", "observed", "version"], table);
  printFindings(res);
  return 0;
}

/** `mcp status [svc]`: services with placement, tier, health, components and edge routes. */
export async function status(ctx: Ctx, service: string): Promise<number> {
  const res = await masterStatus(ctx, service);
  if (service && res.services.length === 0) {
    process.stderr.write(`mcp: unknown service "${service}": the master has no placement for it\n`);
    return 1;
  }
  if (ctx.json) {
    printJson({ services: res.services.map(serviceJson), ...findingsJson(res) });
    return 0;
  }
  printTable(
    ["service", "node", "tier", "status", "components", "routes", "edge"],
    res.services.map((s) => [
      s.name,
      s.node,
      s.tier,
      statusColor(s.status),
      s.components.map((c) => `${c.name}:${c.observedState}`).join(", ") || "-",
      formatRoutes(s.components.flatMap((c) => c.routes)),
      s.edgeRoutes
        .map(
          (e) =>
            `${e.hostname}@${e.edgeNode}${e.certExpires ? ` (cert until ${e.certExpires.slice(0, 10)})` : ""}`,
        )
        .join(", ") || "-",
    ]),
  );
  printFindings(res);
  return 0;
}

/** `mcp node list`: the master's node table (registration, heartbeat, health). */
export async function nodeList(ctx: Ctx): Promise<number> {
  const res = await onMaster(ctx, (m) => m.listNodes({}, { timeoutMs: 30_000 }));
  if (ctx.json) {
    printJson({
      nodes: res.nodes.map((n) => ({
        name: n.name,
        role: n.role,
        address: n.address,
        arch: n.arch,
        status: n.status,
        containers: n.containers,
        lastHeartbeat: n.lastHeartbeat || null,
        version: n.version,
        // null: the node has not reported its runtimes yet.
        runtimes: n.runtimes.length > 0 ? [...n.runtimes] : null,
        unikernelAccel: n.unikernelAccel || null,
        unikernelAccelReason: n.unikernelAccelReason || null,
      })),
    });
    return 0;
  }
  const now = Date.now();
  printTable(
    ["name", "role", "address", "arch", "status", "containers", "runtimes", "heartbeat", "version"],
    res.nodes.map((n) => {
      const t = n.lastHeartbeat ? Date.parse(n.lastHeartbeat) : Number.NaN;
      return [
        n.name,
        n.role,
        n.address,
        n.arch,
        statusColor(n.status),
        String(n.containers),
        runtimesCell(n.runtimes),
        Number.isNaN(t) ? "-" : `${formatAge(new Date(t), now)} ago`,
        n.version || "-",
      ];
    }),
  );
  return 0;
}
