// `mcp list` (registries), `mcp ps` (live runtime check) and `mcp status [svc]` (live state,
// drift, recent events) across all nodes in parallel. A node not seen is one row whose state is
// "unknown" with a short reason (reach.ts); ps and status end with a line per node and exit
// EXIT_DRIFT when something drifts or a node was not reached.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ComponentInfo, ServiceInfo, ServiceStatusResponse } from "../../gen/mcp/v1/mcp_pb.ts";
import { type DesiredState, isDrift, type ObservedState } from "../../registry/types.ts";
import { type Ctx, fanOut, loadCtx, type NodeResult } from "./context.ts";
import { formatAge, green, printJson, printTable, red, yellow } from "./output.ts";
import {
  countsLine,
  failedLine,
  failedNodeJson,
  failures,
  fleetExitCode,
  hintFor,
  type NodeCounts,
  nodeJson,
} from "./reach.ts";
import { componentJson, formatRoutes, runtimeNote } from "./views.ts";

/** The drift rule of the agent's registry (registry/types.ts isDrift) for what ps sees live. */
function drifts(c: Pick<ComponentInfo, "desiredState" | "observedState">): boolean {
  return isDrift(c.desiredState as DesiredState, c.observedState as ObservedState);
}

function stateColor(c: Pick<ComponentInfo, "desiredState" | "observedState">): string {
  if (drifts(c)) return red(c.observedState);
  return c.observedState === "running" && c.desiredState !== "ignore"
    ? green(c.observedState)
    : c.observedState;
}

type Failed = ReturnType<typeof failures>;

/**
 * One row per node that was not seen: "-" where nothing is known, "unknown" in the state column,
 * the short reason in the last (unpadded) column so it never widens the table.
 */
function unknownRows(failed: Failed, width: number, nodeCol: number, stateCol: number): string[][] {
  return failed.map((f) => {
    const row: string[] = Array(width).fill("-");
    row[nodeCol] = f.node.name;
    row[stateCol] = yellow("unknown");
    row[width - 1] = red(f.failure.cell);
    return row;
  });
}

function jsonErrors(failed: Failed) {
  return failed.map((f) => ({ node: f.node.name, error: f.error, reason: f.failure.reason }));
}

/** The per-node part of status/ps --json: every node's state, the errors and the hint. */
function fleetJson(ctx: Ctx, perNode: { node: string; counts: NodeCounts }[], failed: Failed) {
  const hint = hintFor(ctx.configPath, failed);
  return {
    nodes: [
      ...perNode.map((p) => nodeJson(p.node, p.counts)),
      ...failed.map((f) => failedNodeJson(f.node.name, f.failure, f.error)),
    ],
    errors: jsonErrors(failed),
    ...(hint ? { hint } : {}),
  };
}

/** Per-node lines after a table (seen nodes in config order, then the failed ones) and the hint. */
function printSummary(ctx: Ctx, lines: string[], failed: Failed, afterTable = true): void {
  const all = [...lines, ...failed.map((f) => failedLine(f.node.name, f.failure))];
  const hint = hintFor(ctx.configPath, failed);
  if (hint) all.push(hint);
  if (all.length > 0) process.stdout.write(`${afterTable ? "\n" : ""}${all.join("\n")}\n`);
}

function counts(services: readonly ServiceInfo[], drift: number): NodeCounts {
  const components = services.flatMap((s) => s.components);
  return {
    services: services.length,
    components: components.length,
    running: components.filter((c) => c.observedState === "running").length,
    drift,
  };
}

export async function listCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).components(ctx, false);
  const rows = await fanOut(ctx, async (c) => (await c.listServices({})).services);
  const failed = failures(rows);
  if (ctx.json) {
    printJson({
      services: rows.flatMap((r) =>
        (r.value ?? []).flatMap((s) =>
          s.components.map((c) => ({ ...componentJson(r.node.name, s.name, c), active: s.active })),
        ),
      ),
      errors: jsonErrors(failed),
    });
  } else {
    const table: string[][] = [];
    for (const r of rows) {
      for (const s of r.value ?? []) {
        for (const c of s.components) {
          table.push([r.node.name, s.name, c.name, c.desiredState, c.observedState, c.version || "-"]);
        }
      }
    }
    printTable(
      ["node", "service", "component", "desired", "observed", "version"],
      [...table, ...unknownRows(failed, 6, 0, 4)],
    );
    const hint = hintFor(ctx.configPath, failed);
    if (hint) process.stdout.write(`\n${hint}\n`);
  }
  return failed.length > 0 ? 1 : 0;
}

/**
 * `mcp ps`: every node's containers, live. Ends with a line per node (counts, or why its state is
 * unknown); nothing deployed anywhere is one line. Exit EXIT_DRIFT on drift or a node not reached.
 */
export async function psCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).components(ctx, true);
  const rows = await fanOut(ctx, async (c) => (await c.liveCheck({})).services);
  const failed = failures(rows);
  const seen = rows.filter((r): r is NodeResult<ServiceInfo[]> & { value: ServiceInfo[] } => !!r.value);
  const perNode = seen.map((r) => ({
    node: r.node.name,
    counts: counts(r.value, r.value.flatMap((s) => s.components).filter(drifts).length),
  }));
  const drift = perNode.reduce((n, p) => n + p.counts.drift, 0);
  const code = fleetExitCode(failed, drift);
  if (ctx.json) {
    printJson({
      containers: seen.flatMap((r) =>
        r.value.flatMap((s) => s.components.map((c) => componentJson(r.node.name, s.name, c))),
      ),
      ...fleetJson(ctx, perNode, failed),
    });
    return code;
  }
  const table: string[][] = [];
  for (const r of seen) {
    for (const s of r.value) {
      for (const c of s.components) {
        const name = c.name === s.name ? s.name : `${s.name}-${c.name}`;
        const started = c.started ? timestampDate(c.started) : null;
        table.push([
          name,
          r.node.name,
          stateColor(c),
          c.version || "-",
          formatAge(started),
          [
            runtimeNote(c),
            c.desiredState === "ignore" ? "unmanaged" : "",
            drifts(c) ? yellow(`drift: desired ${c.desiredState}`) : "",
          ]
            .filter((x) => x)
            .join(", "),
        ]);
      }
    }
  }
  if (table.length === 0 && failed.length === 0) {
    const nodes = seen.map((r) => r.node.name).join(", ");
    process.stdout.write(`no services deployed on ${nodes} (mcp deploy <service> to start one)\n`);
    return code;
  }
  printTable(["name", "node", "state", "version", "uptime", ""], [...table, ...unknownRows(failed, 6, 1, 2)]);
  printSummary(
    ctx,
    perNode.map((p) => countsLine(p.node, p.counts)),
    failed,
  );
  return code;
}

/**
 * `mcp status [svc]`: live state, drift and recent events of every node (or the nodes running
 * svc), then a line per node and, when an agent refused the connection, a hint. A node not seen
 * never reads as "no drift": its state is unknown, and the exit is EXIT_DRIFT as for drift.
 */
export async function statusCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const name = args[0] ?? "";
  if (ctx.viaMaster) return (await import("./via-master.ts")).status(ctx, name);
  const rows = await fanOut(ctx, async (c) => {
    try {
      return await c.getServiceStatus({ name });
    } catch (err) {
      // With a service name, nodes that do not run it are not errors.
      if (name && (err as { code?: number }).code === 5) return null;
      throw err;
    }
  });
  const failed = failures(rows);
  const found = rows.filter(
    (r): r is NodeResult<ServiceStatusResponse> & { value: ServiceStatusResponse } => !!r.value,
  );
  if (name && found.length === 0 && failed.length === 0) {
    process.stderr.write(`mcp: unknown service "${name}" on every node\n`);
    return 1;
  }
  const perNode = found.map((r) => ({
    node: r.node.name,
    counts: counts(r.value.services, r.value.drift.length),
  }));
  const drift = found.flatMap((r) => r.value.drift.map((d) => ({ node: r.node.name, d })));
  const code = fleetExitCode(failed, drift.length);
  if (ctx.json) {
    printJson({
      services: found.flatMap((r) =>
        r.value.services.flatMap((s) => s.components.map((c) => componentJson(r.node.name, s.name, c))),
      ),
      drift: drift.map(({ node, d }) => ({
        node,
        service: d.service,
        component: d.component,
        desired: d.desiredState,
        observed: d.observedState,
      })),
      events: found.flatMap((r) =>
        r.value.recentEvents.map((e) => ({
          node: r.node.name,
          service: e.service,
          component: e.component,
          prev: e.prevState,
          next: e.newState,
          time: e.timestamp ? timestampDate(e.timestamp).toISOString() : null,
        })),
      ),
      ...fleetJson(ctx, perNode, failed),
    });
    return code;
  }
  const table: string[][] = [];
  for (const r of found) {
    const drifting = new Set(r.value.drift.map((d) => `${d.service}/${d.component}`));
    for (const s of r.value.services) {
      for (const c of s.components) {
        const started = c.started ? timestampDate(c.started) : null;
        table.push([
          r.node.name,
          s.name,
          runtimeNote(c) ? `${c.name} (${runtimeNote(c)})` : c.name,
          c.desiredState,
          stateColor(c),
          c.version || "-",
          formatAge(started),
          formatRoutes(c.routes),
          drifting.has(`${s.name}/${c.name}`) ? yellow("DRIFT") : "",
        ]);
      }
    }
  }
  // Nothing deployed anywhere: the per-node lines below say so, without a bare header.
  if (table.length > 0 || failed.length > 0)
    printTable(
      ["node", "service", "component", "desired", "observed", "version", "uptime", "routes", "drift"],
      [...table, ...unknownRows(failed, 9, 0, 4)],
    );
  if (drift.length > 0) {
    process.stdout.write("\ndrift:\n");
    for (const { node, d } of drift) {
      process.stdout.write(
        `  ${node}/${d.service}/${d.component}: desired ${d.desiredState}, observed ${d.observedState}\n`,
      );
    }
  }
  const events = found.flatMap((r) => r.value.recentEvents.map((e) => ({ node: r.node.name, e })));
  if (events.length > 0) {
    process.stdout.write("\nrecent events:\n");
    for (const { node, e } of events.slice(0, 20)) {
      const t = e.timestamp ? timestampDate(e.timestamp).toISOString().replace("T", " ").slice(0, 19) : "";
      process.stdout.write(`  ${t}  ${node}/${e.service}/${e.component}: ${e.prevState} -> ${e.newState}\n`);
    }
  }
  printSummary(
    ctx,
    perNode.map((p) => countsLine(p.node, p.counts)),
    failed,
    table.length > 0 || failed.length > 0 || events.length > 0,
  );
  return code;
}
