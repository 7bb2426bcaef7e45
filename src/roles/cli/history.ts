// `mcp history <svc> [--diff K[..J]]` and `mcp rollback <svc> [--to K]`: the spec history the
// node's agent keeps (newest first; K = 1 is the current entry, 2 the one before…), what changed
// between two entries (field by field, as deploy --dry-run shows it), and redeploying one of them
// through the agent's health-gated deploy path (default: the previous spec that differs). Both
// speak in the K of the list as it is when shown, rollback rows included.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { specToDef } from "../../component/proto.ts";
import { changeJson, diffSpecs, renderChanges } from "../../component/spec-diff.ts";
import type { CliNode } from "../../config/cli.ts";
import type { ServiceDef } from "../../config/service.ts";
import type { HistoryEntry } from "../../gen/mcp/v1/mcp_pb.ts";
import { type AgentClient, type Ctx, loadCtx, locateService, onNode } from "./context.ts";
import { loadDefinition, nodeForService } from "./definition.ts";
import { printResults } from "./deploy.ts";
import { CliError, formatAge, printJson, printTable } from "./output.ts";

async function serviceNode(ctx: Ctx, service: string, opts: Record<string, unknown>): Promise<CliNode> {
  if (opts.node) return ctx.node(String(opts.node));
  const loaded = loadDefinition(ctx, service);
  if (loaded?.def.node) return nodeForService(ctx, service, undefined, loaded.def);
  return locateService(ctx, service);
}

/** The table's time: to the second, UTC. */
const shownTime = (e: HistoryEntry) =>
  e.deployedAt
    ? timestampDate(e.deployedAt)
        .toISOString()
        .replace(/\.\d+Z$/, "Z")
    : "-";

const VERB: Record<string, string> = { deploy: "deployed", rollback: "restored", failed: "attempted" };

/**
 * The K of the entry a `mcp rollback` row restored, in this list (newest first, 1 = current), or
 * null: not such a row, or that entry is no longer kept.
 */
function rollbackK(e: HistoryEntry, entries: readonly HistoryEntry[]): number | null {
  if (e.rollbackToId === 0n) return null;
  const i = entries.findIndex((x) => x.id === e.rollbackToId);
  return i < 0 ? null : i + 1;
}

/**
 * A row's detail in the terms of the list it is shown in. A rollback names the entry it restored
 * by its K here and now (K moves down as entries arrive, so the K of the day it ran would point at
 * another row today) and by the time and images that entry shows; one no longer kept is named by
 * its time alone, as the agent stored it.
 */
function shownDetail(e: HistoryEntry, entries: readonly HistoryEntry[]): string {
  const k = rollbackK(e, entries);
  if (k === null) return e.detail;
  const t = entries[k - 1]!;
  return `rollback to k=${k} (the spec ${VERB[t.kind] ?? t.kind} at ${shownTime(t)}, ${t.images})`;
}

function entryJson(e: HistoryEntry, k: number, entries: readonly HistoryEntry[]) {
  const to = rollbackK(e, entries);
  return {
    k,
    id: Number(e.id),
    deployedAt: e.deployedAt ? timestampDate(e.deployedAt).toISOString() : null,
    caller: e.caller,
    images: e.images,
    kind: e.kind,
    rolledBack: e.rolledBack,
    detail: shownDetail(e, entries) || undefined,
    ...(to !== null ? { rollbackTo: { k: to, id: Number(e.rollbackToId) } } : {}),
  };
}

/** `--diff K` (K against the entry before it, K+1) or `--diff K..J` (the older against the newer). */
export function parseDiffRange(v: unknown): { newer: number; older: number } {
  const s = String(v).trim();
  const one = /^(\d+)$/.exec(s);
  const two = /^(\d+)\.\.(\d+)$/.exec(s);
  const nums = one ? [Number(one[1])] : two ? [Number(two[1]), Number(two[2])] : [];
  if (nums.length === 0 || nums.some((n) => n < 1) || (nums.length === 2 && nums[0] === nums[1]))
    throw new CliError(
      `--diff: expected an entry number K from mcp history (K against the one before it) or K..J (two different entries), got "${s}"`,
      2,
    );
  const [a, b] = nums as [number, number?];
  return b === undefined ? { newer: a, older: a + 1 } : { newer: Math.min(a, b), older: Math.max(a, b) };
}

function entryLabel(e: HistoryEntry, k: number): string {
  return `k=${k} (${e.kind} ${shownTime(e)}${e.caller ? ` by ${e.caller}` : ""})`;
}

function entryDef(e: HistoryEntry, k: number, node: string): ServiceDef {
  if (!e.spec)
    throw new CliError(
      `${node}: history entry k=${k} came without its spec: the agent is older than this CLI (mcp agent upgrade ${node}) or the stored spec is unreadable`,
    );
  try {
    return specToDef(e.spec, `history entry k=${k}`);
  } catch (err) {
    throw new CliError(
      `history entry k=${k}: its stored spec no longer validates: ${(err as Error).message.split("\n")[0]}`,
    );
  }
}

/** `mcp history <svc> --diff K[..J]`: what changed from the older entry to the newer one. */
async function historyDiff(
  ctx: Ctx,
  service: string,
  node: CliNode,
  client: AgentClient,
  range: { newer: number; older: number },
): Promise<number> {
  const { entries } = await onNode(node, client.listHistory({ service, specs: true }));
  const newer = entries[range.newer - 1];
  if (!newer)
    throw new CliError(
      `${service} has ${entries.length} history entries on ${node.name}; --diff ${range.newer} is not one`,
      2,
    );
  const older = entries[range.older - 1];
  if (!older) {
    // K is the oldest entry kept: there is nothing before it (the first deploy, or pruned).
    if (range.older !== range.newer + 1)
      throw new CliError(
        `${service} has ${entries.length} history entries on ${node.name}; ${range.older} is not one`,
        2,
      );
    if (ctx.json)
      printJson({
        service,
        node: node.name,
        from: null,
        to: entryJson(newer, range.newer, entries),
        changes: [],
      });
    else
      process.stdout.write(
        `${service} on ${node.name}: ${entryLabel(newer, range.newer)} is the oldest entry kept: nothing before it to compare with\n`,
      );
    return 0;
  }
  const changes = diffSpecs(entryDef(older, range.older, node.name), entryDef(newer, range.newer, node.name));
  if (ctx.json) {
    printJson({
      service,
      node: node.name,
      from: entryJson(older, range.older, entries),
      to: entryJson(newer, range.newer, entries),
      changes: changes.map(changeJson),
    });
    return 0;
  }
  process.stdout.write(
    `${service} on ${node.name}: from ${entryLabel(older, range.older)} to ${entryLabel(newer, range.newer)}:\n`,
  );
  const lines = renderChanges(changes);
  process.stdout.write(`${(lines.length > 0 ? lines : ["  no changes"]).join("\n")}\n`);
  return 0;
}

export async function historyCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = args[0]!;
  const range = opts.diff === undefined ? null : parseDiffRange(opts.diff);
  const ctx = loadCtx(opts);
  const node = await serviceNode(ctx, service, opts);
  const client = await ctx.agent(node);
  if (range) return historyDiff(ctx, service, node, client, range);
  const res = await onNode(node, client.listHistory({ service }));
  if (ctx.json) {
    printJson({
      service,
      node: node.name,
      entries: res.entries.map((e, i) => entryJson(e, i + 1, res.entries)),
    });
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
        shownTime(e),
        formatAge(at),
        e.caller || "-",
        e.kind,
        e.images,
        shownDetail(e, res.entries),
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
