// `mcp list` (registries), `mcp ps` (live runtime check) and `mcp status [svc]` (live state,
// drift, recent events) across all nodes in parallel; an unreachable node is one error row.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { ServiceStatusResponse } from "../../gen/mcp/v1/mcp_pb.ts";
import { fanOut, loadCtx, type NodeResult } from "./context.ts";
import { formatAge, green, printJson, printTable, red, yellow } from "./output.ts";
import { componentJson, formatRoutes, runtimeNote } from "./views.ts";

function stateColor(desired: string, observed: string): string {
  if (desired === "ignore") return observed;
  if (desired === observed || (desired === "stopped" && observed === "removed")) {
    return observed === "running" ? green(observed) : observed;
  }
  return red(observed);
}

/** One row per failed node; the error goes in the last (unpadded) column so it never widens the table. */
function errorRows<T>(rows: NodeResult<T>[], width: number, nodeCol = 0): string[][] {
  return rows
    .filter((r) => r.error)
    .map((r) => {
      const row: string[] = Array(width).fill("");
      if (nodeCol > 0) row[0] = "-";
      row[nodeCol] = r.node.name;
      row[nodeCol + 1] = red("UNREACHABLE");
      row[width - 1] = r.error ?? "";
      return row;
    });
}

function jsonErrors<T>(rows: NodeResult<T>[]) {
  return rows.filter((r) => r.error).map((r) => ({ node: r.node.name, error: r.error }));
}

export async function listCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).components(ctx, false);
  const rows = await fanOut(ctx, async (c) => (await c.listServices({})).services);
  if (ctx.json) {
    printJson({
      services: rows.flatMap((r) =>
        (r.value ?? []).flatMap((s) =>
          s.components.map((c) => ({ ...componentJson(r.node.name, s.name, c), active: s.active })),
        ),
      ),
      errors: jsonErrors(rows),
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
      [...table, ...errorRows(rows, 6)],
    );
  }
  return rows.some((r) => r.error) ? 1 : 0;
}

export async function psCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).components(ctx, true);
  const rows = await fanOut(ctx, async (c) => (await c.liveCheck({})).services);
  if (ctx.json) {
    printJson({
      containers: rows.flatMap((r) =>
        (r.value ?? []).flatMap((s) => s.components.map((c) => componentJson(r.node.name, s.name, c))),
      ),
      errors: jsonErrors(rows),
    });
  } else {
    const table: string[][] = [];
    for (const r of rows) {
      for (const s of r.value ?? []) {
        for (const c of s.components) {
          const name = c.name === s.name ? s.name : `${s.name}-${c.name}`;
          const started = c.started ? timestampDate(c.started) : null;
          table.push([
            name,
            r.node.name,
            stateColor(c.desiredState, c.observedState),
            c.version || "-",
            formatAge(started),
            [runtimeNote(c), c.desiredState === "ignore" ? "unmanaged" : ""].filter((x) => x).join(", "),
          ]);
        }
      }
    }
    printTable(["name", "node", "state", "version", "uptime", ""], [...table, ...errorRows(rows, 6, 1)]);
  }
  return rows.some((r) => r.error) ? 1 : 0;
}

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
  const found = rows.filter(
    (r): r is NodeResult<ServiceStatusResponse> & { value: ServiceStatusResponse } => !!r.value,
  );
  if (name && found.length === 0 && rows.every((r) => !r.error)) {
    process.stderr.write(`mcp: unknown service "${name}" on every node\n`);
    return 1;
  }
  if (ctx.json) {
    printJson({
      services: found.flatMap((r) =>
        r.value.services.flatMap((s) => s.components.map((c) => componentJson(r.node.name, s.name, c))),
      ),
      drift: found.flatMap((r) =>
        r.value.drift.map((d) => ({
          node: r.node.name,
          service: d.service,
          component: d.component,
          desired: d.desiredState,
          observed: d.observedState,
        })),
      ),
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
      errors: jsonErrors(rows),
    });
    return rows.some((r) => r.error) ? 1 : 0;
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
          stateColor(c.desiredState, c.observedState),
          c.version || "-",
          formatAge(started),
          formatRoutes(c.routes),
          drifting.has(`${s.name}/${c.name}`) ? yellow("DRIFT") : "",
        ]);
      }
    }
  }
  printTable(
    ["node", "service", "component", "desired", "observed", "version", "uptime", "routes", "drift"],
    [...table, ...errorRows(rows, 9)],
  );
  const drift = found.flatMap((r) => r.value.drift.map((d) => ({ node: r.node.name, d })));
  process.stdout.write(drift.length === 0 ? "\nno drift\n" : "\ndrift:\n");
  for (const { node, d } of drift) {
    process.stdout.write(
      `  ${node}/${d.service}/${d.component}: desired ${d.desiredState}, observed ${d.observedState}\n`,
    );
  }
  const events = found.flatMap((r) => r.value.recentEvents.map((e) => ({ node: r.node.name, e })));
  if (events.length > 0) {
    process.stdout.write("\nrecent events:\n");
    for (const { node, e } of events.slice(0, 20)) {
      const t = e.timestamp ? timestampDate(e.timestamp).toISOString().replace("T", " ").slice(0, 19) : "";
      process.stdout.write(`  ${t}  ${node}/${e.service}/${e.component}: ${e.prevState} -> ${e.newState}\n`);
    }
  }
  return rows.some((r) => r.error) ? 1 : 0;
}
