// `mcp undeploy <svc>`: full teardown on the service's node (containers, integration routes/DNS/
// certs, registry entry; events and /srv/<svc>/ data stay). Idempotent: a service no node knows
// is "not deployed", exit 0. The definition file is left alone: it is the operator's.

import { existsSync } from "node:fs";
import type { CliNode } from "../../config/cli.ts";
import type { ComponentResult } from "../../gen/mcp/v1/mcp_pb.ts";
import { type Ctx, fanOut, loadCtx, onNode } from "./context.ts";
import { definedNode, definitionPath } from "./definition.ts";
import { CliError, green, printJson, red } from "./output.ts";
import { requireServiceName } from "./service.ts";
import { resultJson } from "./views.ts";

/** The node to undeploy from, or null when no node has the service (nothing to do). */
async function undeployNode(ctx: Ctx, service: string, explicit: unknown): Promise<CliNode | null> {
  if (typeof explicit === "string" && explicit) return ctx.node(explicit);
  const defined = definedNode(ctx, service); // a broken file does not stop this
  if (defined) return defined;
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  const rows = await fanOut(ctx, async (c) =>
    (await c.listServices({})).services.some((s) => s.name === service),
  );
  const hits = rows.filter((r) => r.value === true).map((r) => r.node);
  if (hits.length === 1) return hits[0]!;
  if (hits.length > 1)
    throw new CliError(
      `service "${service}" is on several nodes (${hits.map((n) => n.name).join(", ")}): pass --node`,
    );
  const down = rows.filter((r) => r.error);
  if (down.length > 0)
    throw new CliError(
      `cannot tell where ${service} runs: ${down.map((r) => `${r.node.name}: ${r.error}`).join("; ")}`,
    );
  return null;
}

function stepsLine(r: ComponentResult): string {
  return r.steps
    .map((s) => `${s.step} ${Number(s.durationMs)}ms${s.detail ? ` (${s.detail})` : ""}`)
    .join(", ");
}

export async function undeployCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).undeploy(ctx, service);
  const node = await undeployNode(ctx, service, opts.node);
  if (!node) {
    if (ctx.json) printJson({ service, node: null, undeployed: false, results: [] });
    else process.stdout.write(`${service} is not deployed on any node: nothing to do\n`);
    return 0;
  }
  const client = await ctx.agent(node);
  const res = await onNode(node, client.undeployService({ name: service }, { timeoutMs: 5 * 60_000 }));
  const failed = res.results.filter((r) => !r.success);
  if (ctx.json) {
    printJson({
      service,
      node: node.name,
      undeployed: res.results.length > 0 && failed.length === 0,
      results: res.results.map((r) => ({ ...resultJson(r), component: r.name || null })),
    });
  } else if (res.results.length === 0) {
    process.stdout.write(`${service} is not deployed on ${node.name}: nothing to do\n`);
  } else {
    for (const r of res.results) {
      // An empty name is the service-level integration teardown (routes, DNS, certs).
      const what = r.name ? `${service}/${r.name}` : `${service} integrations`;
      process.stdout.write(
        r.success
          ? `${green("ok")}   undeploy ${what}  ${stepsLine(r)}\n`
          : `${red("FAIL")} undeploy ${what}: ${r.error}\n`,
      );
    }
    if (failed.length === 0) {
      process.stdout.write(
        `${service} undeployed from ${node.name}: containers removed, registry entry deleted (events kept); /srv/${service}/ left in place\n`,
      );
      const file = definitionPath(ctx, service);
      // The file is the operator's: kept, but sync would record the service again from it.
      if (existsSync(file))
        process.stdout.write(
          `${file} is kept: mcp deploy brings ${service} back; delete it to retire the service\n`,
        );
    }
  }
  if (failed.length > 0) {
    if (!ctx.json)
      process.stderr.write(`mcp: undeploy of ${service} on ${node.name} is incomplete; run it again\n`);
    return 1;
  }
  return 0;
}
