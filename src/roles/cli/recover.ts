// `mcp agent recover [node] [--service svc]`: asks agents to recreate the containers their
// registries say should run (all nodes in parallel without a node) and prints one line per
// component: what was done, or why it failed. Exit 0 only when every component and node succeeded.
import type { RecoverResult } from "../../gen/mcp/v1/mcp_pb.ts";
import { fanOut, loadCtx, locateService } from "./context.ts";
import { printJson, red } from "./output.ts";

export async function recoverCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const service = typeof opts.service === "string" && opts.service ? opts.service : "";
  let only: string[] | undefined;
  if (args[0]) only = [ctx.node(args[0]).name];
  else if (service) only = [(await locateService(ctx, service)).name];
  const rows = await fanOut(ctx, async (c) => (await c.recover({ service })).results, only);

  const results = rows.flatMap((r) => (r.value ?? []).map((x) => ({ node: r.node.name, r: x })));
  const errors = rows.filter((r) => r.error).map((r) => ({ node: r.node.name, error: r.error ?? "" }));
  const failed = errors.length > 0 || results.some(({ r }) => !r.success);

  if (ctx.json) {
    printJson({
      results: results.map(({ node, r }) => ({
        node,
        service: r.service,
        component: r.component,
        action: r.action,
        success: r.success,
        error: r.error,
      })),
      errors,
    });
    return failed ? 1 : 0;
  }
  const out: string[] = [];
  for (const row of rows) {
    if (row.error) {
      out.push(`${row.node.name}: ${red("error")}: ${row.error}`);
      continue;
    }
    const mine = row.value ?? [];
    if (mine.length === 0) out.push(`${row.node.name}: nothing to recover (no managed components)`);
    for (const r of mine) out.push(line(row.node.name, r));
  }
  process.stdout.write(`${out.join("\n")}\n`);
  return failed ? 1 : 0;
}

function line(node: string, r: RecoverResult): string {
  const target = `${node}/${r.service}/${r.component}`;
  return r.success ? `${target} ${r.action}` : `${target} ${red(r.action || "failed")}: ${r.error}`;
}
