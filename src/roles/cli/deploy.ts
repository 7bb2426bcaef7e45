// `mcp deploy <svc>[/<comp>]`: resolve the spec (file, else the agent's registry), push it to
// the node's agent, print one line per step with timings; --dry-run prints what changes against the
// spec deployed on the node, field by field (spec-plan.ts), then the runtime argv.
// Components with [components.health] are gated by the agent: the CLI says it waits for them and
// shows their health (and rollback) steps; a rolled-back component makes the exit non-zero.
// A component whose spec and image are unchanged is left alone and said so (exit 0); --force
// recreates it.

import { defToSpec } from "../../component/proto.ts";
import type { ComponentResult, ServiceSpec } from "../../gen/mcp/v1/mcp_pb.ts";
import { type Ctx, loadCtx, locateService, onNode, splitTarget } from "./context.ts";
import { definitionPath, loadDefinition, nodeForService } from "./definition.ts";
import { CliError, green, printJson, red, warn } from "./output.ts";
import { asSent, deployedSpec, makePlan, type Plan, planJson, planLines } from "./spec-plan.ts";
import { resultJson } from "./views.ts";

const PULL = new Set(["always", "missing", "never"]);

/** Quotes an argv element for display only (nothing is ever run through a shell). */
export function shellQuote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`;
}

function stepsLine(r: ComponentResult): string {
  return r.steps
    .map((s) => `${s.step} ${Number(s.durationMs)}ms${s.detail ? ` (${s.detail})` : ""}`)
    .join(", ");
}

/** "unchanged (same spec and image …)  " or "image digest changed: … -> …  " before the steps. */
function reasonPrefix(r: ComponentResult): string {
  if (r.unchanged) return `unchanged${r.reason ? ` (${r.reason})` : ""}  `;
  return r.reason ? `${r.reason}  ` : "";
}

/** One line per health-gated component before the (unary) deploy call: what it will wait for. */
export function healthWaitLines(spec: ServiceSpec, component?: string): string[] {
  return spec.components
    .filter((c) => c.health && (!component || c.name === component))
    .map((c) => {
      const h = c.health!;
      const what =
        h.type === "exec"
          ? `exec ${h.cmd.join(" ")}`
          : `${h.type} ${h.route ? `route ${h.route}` : `port ${h.port}`}${h.type === "http" ? ` ${h.path || "/"}` : ""}`;
      return `waiting for health: ${c.name} (${what}, every ${h.interval}, ${h.retries} retries${h.startPeriod && h.startPeriod !== "0s" ? `, start period ${h.startPeriod}` : ""})`;
    });
}

/** Prints deploy/rollback results (or JSON); returns the exit code. */
export function printResults(
  ctx: Ctx,
  what: string,
  node: string,
  results: ComponentResult[],
  dryRun = false,
  extraJson: object = {},
): number {
  const failed = results.filter((r) => !r.success);
  if (ctx.json) {
    printJson({ service: what, node, dryRun, ...extraJson, results: results.map(resultJson) });
  } else {
    for (const r of results) {
      for (const w of r.warnings) warn(`${r.name}: ${w}`);
      if (dryRun) {
        process.stdout.write(`${r.name}: ${r.argv.map(shellQuote).join(" ")}\n`);
      } else if (r.success) {
        process.stdout.write(
          `${green("ok")}   ${r.name} ${r.version || ""}  ${reasonPrefix(r)}${stepsLine(r)}\n`,
        );
      } else {
        process.stdout.write(
          `${red("FAIL")} ${r.name}: ${r.error}${r.steps.length ? `  (${stepsLine(r)})` : ""}\n`,
        );
      }
    }
  }
  if (!ctx.json && !dryRun && results.length > 0 && results.every((r) => r.unchanged && r.success))
    process.stdout.write(`${what}: unchanged, nothing redeployed (mcp deploy --force recreates)\n`);
  if (failed.length === 0) return 0;
  if (!ctx.json) {
    const names = failed.map((f) =>
      f.rolledBackTo ? `${f.name} (rolled back to ${f.rolledBackTo})` : f.name,
    );
    process.stderr.write(`mcp: deploy of ${what} failed for ${names.join(", ")}\n`);
  }
  return 1;
}

async function resolveSpec(ctx: Ctx, service: string, opts: Record<string, unknown>) {
  const loaded = loadDefinition(ctx, service, opts.file as string | undefined, opts.strict === true);
  if (loaded) {
    for (const w of loaded.warnings) warn(w);
    // v2: without the master nothing places services, so a direct deploy names its node.
    if (ctx.config.master && !opts.node && !loaded.def.node)
      throw new CliError(
        `${service}: a --direct deploy needs a node: pass --node or set node = "<name>" in ${loaded.file}`,
        2,
      );
    return {
      spec: defToSpec(loaded.def),
      node: nodeForService(ctx, service, opts.node as string, loaded.def),
      source: loaded.file!,
    };
  }
  // No file: fall back to the spec from the last successful deploy in the agent registry.
  const node = opts.node
    ? ctx.node(opts.node as string)
    : await locateService(ctx, service).catch(() => null);
  if (node) {
    const client = await ctx.agent(node);
    const res = await client.getServiceSpec({ name: service }).catch(() => null);
    if (res?.service) return { spec: res.service, node, source: `registry of ${node.name}` };
  }
  throw new CliError(
    `no definition for service "${service}": create ${definitionPath(ctx, service)} (no node has a deployed spec either)`,
    2,
  );
}

export async function deployCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const { service, component } = splitTarget(args[0]!);
  const pull = String(opts.pull ?? "always");
  if (!PULL.has(pull)) throw new CliError(`--pull: expected always, missing or never, got "${pull}"`, 2);
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).deploy(ctx, args, opts);
  const { spec, node, source } = await resolveSpec(ctx, service, opts);
  const client = await ctx.agent(node);
  const dryRun = opts.dryRun === true;
  if (!ctx.json)
    process.stdout.write(
      `${dryRun ? "dry run: " : ""}deploying ${service}${component ? `/${component}` : ""} to ${node.name} (from ${source})\n`,
    );
  if (!ctx.json && !dryRun) for (const l of healthWaitLines(spec, component)) process.stdout.write(`${l}\n`);
  // A dry run first compares with what the node has deployed (one field per line), then shows the
  // argv the node's agent would run. Without the node neither exists: one line, nothing else.
  let plan: Plan | undefined;
  if (dryRun) {
    plan = makePlan(await deployedSpec(client, service), asSent(spec), component);
    if (plan.deployed.state === "unreachable")
      throw new CliError(
        `${node.name}: unreachable, so no plan (the deployed spec and the runtime argv come from its agent): ${plan.deployed.error}`,
      );
    if (!ctx.json) for (const l of planLines(plan, node.name)) process.stdout.write(`${l}\n`);
  }
  const res = await onNode(
    node,
    client.deploy(
      {
        service: spec,
        component: component ?? "",
        pullPolicy: pull,
        dryRun,
        noRollback: opts.rollback === false,
        force: opts.force === true,
      },
      { timeoutMs: 10 * 60_000 },
    ),
  );
  return printResults(ctx, service, node.name, res.results, dryRun, plan && { plan: planJson(plan) });
}
