// `mcp sync [--dry-run]`: push every definition in services.dir to its node. Each agent records
// desired state without deploying, stops services marked inactive, discovers unknown containers
// as `ignore`, and reports per service; every node is called (in parallel), even with no
// definitions, so discovery runs everywhere. A bad file is one line naming it and is left out;
// the others are still synced and the exit code says something was wrong.
import { existsSync, readdirSync } from "node:fs";
import { basename, join } from "node:path";
import { defToSpec } from "../../component/proto.ts";
import { loadServiceDef, type ServiceDef } from "../../config/service.ts";
import { type Ctx, fanOut, loadCtx } from "./context.ts";
import { definitionNode } from "./definition.ts";
import { printJson, printTable, red, warn } from "./output.ts";
import { defAsSent, deployedSpec, makePlan, type Plan, planJson, planLines } from "./spec-plan.ts";

export interface SyncPlan {
  /** Definitions per node name (every configured node has an entry, possibly empty). */
  byNode: Map<string, { file: string; def: ServiceDef }[]>;
  /** One line per definition file that cannot be synced. */
  errors: string[];
}

/** Loads every `*.toml` in services.dir and assigns it to a node (def.node, or the only node). */
export function planSync(ctx: Ctx): SyncPlan {
  const dir = ctx.config.services.dir;
  const byNode = new Map(ctx.config.nodes.map((n) => [n.name, [] as { file: string; def: ServiceDef }[]]));
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
      let node: string;
      if (def.node) node = definitionNode(ctx, def.node, file).name;
      else if (ctx.config.nodes.length === 1) node = ctx.config.nodes[0]!.name;
      else
        throw new Error(
          `${file}: node: not set and several nodes are configured (${ctx.config.nodes.map((n) => n.name).join(", ")}): set node = "<name>"`,
        );
      byNode.get(node)?.push({ file, def });
    } catch (err) {
      const msg = (err as Error).message.split("\n")[0] ?? "invalid definition";
      errors.push(msg.startsWith(file) ? msg : `${file}: ${msg}`);
    }
  }
  return { byNode, errors };
}

interface Row {
  node: string;
  service: string;
  changed: boolean;
  summary: string;
  error?: string;
  /** Dry run: the definition against the spec the node holds. */
  plan?: Plan;
}

/**
 * After a dry run's table: per definition the node holds differently (or not at all), what
 * changes, field by field. Definitions the node holds as they are add nothing to the table.
 */
function syncPlanLines(rows: Row[]): string[] {
  const out: string[] = [];
  for (const r of rows) {
    const p = r.plan;
    if (!p || (p.deployed.state === "deployed" && p.changes.length === 0 && !p.reordered)) continue;
    const [first, ...rest] = planLines(p, r.node, "recorded");
    out.push(`${r.service}: ${first}`, ...rest);
  }
  return out.length > 0 ? ["", ...out] : [];
}

export async function syncCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).sync(ctx, opts);
  const dryRun = opts.dryRun === true;
  const plan = planSync(ctx);
  for (const e of plan.errors) process.stderr.write(`mcp: ${e}\n`);
  // --build: images of these definitions that are missing from the registry are built and pushed
  // (on this machine) before any agent records them. A failed build fails the command, not the sync.
  let builds: object[] = [];
  let buildFailed = false;
  if (opts.build === true && !dryRun) {
    const b = await import("./build.ts");
    const res = await b.buildMissingImages(ctx, [...plan.byNode.values()].flat(), b.buildSettings(opts));
    builds = res.map(b.imageResultJson);
    buildFailed = res.some((r) => r.status === "failed");
  }
  const replies = await fanOut(ctx, async (client, node) => {
    const defs = plan.byNode.get(node.name) ?? [];
    const res = await client.syncDesiredState(
      { services: defs.map((d) => defToSpec(d.def)), dryRun },
      { timeoutMs: 5 * 60_000 },
    );
    // A dry run also compares each definition with the spec the node holds for it, field by field.
    const plans = new Map<string, Plan>();
    if (dryRun)
      await Promise.all(
        defs.map(async (d) =>
          plans.set(d.def.name, makePlan(await deployedSpec(client, d.def.name), defAsSent(d.def))),
        ),
      );
    return { results: res.results, plans };
  });
  const rows: Row[] = [];
  for (const r of replies) {
    for (const s of r.value?.results ?? []) {
      const p = r.value?.plans.get(s.name);
      rows.push({
        node: r.node.name,
        service: s.name,
        changed: s.changed,
        summary: s.summary,
        ...(s.error ? { error: s.error } : {}),
        ...(p ? { plan: p } : {}),
      });
    }
  }
  const nodeErrors = replies.filter((r) => r.error).map((r) => ({ node: r.node.name, error: r.error! }));
  if (ctx.json) {
    printJson({
      dryRun,
      results: rows.map(({ plan: p, ...row }) => (p ? { ...row, ...planJson(p) } : row)),
      errors: [...plan.errors.map((e) => ({ error: e })), ...nodeErrors],
      ...(opts.build === true ? { builds } : {}),
    });
  } else {
    if (dryRun) process.stdout.write("dry run: nothing is recorded, stopped or discovered\n");
    printTable(
      ["node", "service", "changed", "summary"],
      rows.map((r) => [
        r.node,
        r.service,
        r.changed ? "yes" : "no",
        r.error ? red(`${r.summary}: ${r.error}`) : r.summary,
      ]),
    );
    for (const l of syncPlanLines(rows)) process.stdout.write(`${l}\n`);
    for (const e of nodeErrors) process.stderr.write(`mcp: ${e.node}: ${e.error}\n`);
  }
  if (plan.errors.length > 0) return 2;
  return nodeErrors.length > 0 || rows.some((r) => r.error) || buildFailed ? 1 : 0;
}
