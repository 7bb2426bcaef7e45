// `mcp history <svc>` and `mcp rollback <svc> [--to K]`: the spec history the node's agent keeps
// (newest first; K = 1 is the current entry, 2 the one before…) and redeploying one of them
// through the agent's health-gated deploy path (default: the previous spec that differs).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { CliNode } from "../../config/cli.ts";
import type { HistoryEntry } from "../../gen/mcp/v1/mcp_pb.ts";
import { type Ctx, loadCtx, locateService, onNode } from "./context.ts";
import { loadDefinition, nodeForService } from "./definition.ts";
import { printResults } from "./deploy.ts";
import { CliError, formatAge, printJson, printTable } from "./output.ts";

async function serviceNode(ctx: Ctx, service: string, opts: Record<string, unknown>): Promise<CliNode> {
  if (opts.node) return ctx.node(String(opts.node));
  const loaded = loadDefinition(ctx, service);
  if (loaded?.def.node) return nodeForService(ctx, service, undefined, loaded.def);
  return locateService(ctx, service);
}

function entryJson(e: HistoryEntry, k: number) {
  return {
    k,
    id: Number(e.id),
    deployedAt: e.deployedAt ? timestampDate(e.deployedAt).toISOString() : null,
    caller: e.caller,
    images: e.images,
    kind: e.kind,
    rolledBack: e.rolledBack,
    detail: e.detail || undefined,
  };
}

export async function historyCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = args[0]!;
  const ctx = loadCtx(opts);
  const node = await serviceNode(ctx, service, opts);
  const client = await ctx.agent(node);
  const res = await onNode(node, client.listHistory({ service }));
  if (ctx.json) {
    printJson({ service, node: node.name, entries: res.entries.map((e, i) => entryJson(e, i + 1)) });
    return 0;
  }
  if (res.entries.length === 0) {
    process.stdout.write(`${service} on ${node.name}: no deploy history yet\n`);
    return 0;
  }
  printTable(
    ["k", "deployed", "age", "caller", "kind", "images", "detail"],
    res.entries.map((e, i) => {
      const at = e.deployedAt ? timestampDate(e.deployedAt) : null;
      return [
        String(i + 1) + (i === 0 ? "*" : ""),
        at ? at.toISOString().replace(/\.\d+Z$/, "Z") : "-",
        formatAge(at),
        e.caller || "-",
        e.kind,
        e.images,
        e.detail,
      ];
    }),
  );
  return 0;
}

export async function rollbackCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = args[0]!;
  let k: number | undefined;
  if (opts.to !== undefined) {
    k = Number(opts.to);
    if (!Number.isInteger(k) || k < 1)
      throw new CliError(
        `--to: expected an entry number from mcp history (1 = current), got "${opts.to}"`,
        2,
      );
  }
  const ctx = loadCtx(opts);
  const node = await serviceNode(ctx, service, opts);
  const client = await ctx.agent(node);
  // Checked before anything is printed: the node has the service, and the entry to go back to.
  const list = await onNode(node, client.listHistory({ service }));
  let toId = 0n;
  let what = "the previous spec";
  if (k !== undefined) {
    const entry = list.entries[k - 1];
    if (!entry)
      throw new CliError(
        `${service} has ${list.entries.length} history entries on ${node.name}; --to ${k} is not one`,
        2,
      );
    toId = entry.id;
    what = `entry ${k} (${entry.images})`;
  } else if (list.entries.length < 2) {
    throw new CliError(
      `${service} on ${node.name}: nothing to roll back to (${list.entries.length} history entr${list.entries.length === 1 ? "y" : "ies"}; see mcp history ${service})`,
    );
  }
  if (!ctx.json) process.stdout.write(`rolling back ${service} on ${node.name} to ${what}\n`);
  const res = await onNode(
    node,
    client.rollback({ service, toId, noRollback: opts.rollback === false }, { timeoutMs: 10 * 60_000 }),
  );
  return printResults(ctx, service, node.name, res.results);
}
