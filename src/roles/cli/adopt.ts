// `mcp adopt <svc> [-n node]`: claim the node's `<svc>` and `<svc>-*` containers into service
// <svc> (reference "Adopting Unmanaged Containers"); one line per container. The typical next
// step is `mcp service export <svc>`, which writes a definition that recreates them.
import type { CliNode } from "../../config/cli.ts";
import { type Ctx, loadCtx, onNode } from "./context.ts";
import { definedNode } from "./definition.ts";
import { CliError, green, printJson, red } from "./output.ts";
import { requireServiceName } from "./service.ts";

function adoptNode(ctx: Ctx, service: string, explicit: unknown): CliNode {
  if (typeof explicit === "string" && explicit) return ctx.node(explicit);
  const defined = definedNode(ctx, service); // a broken file does not stop this
  if (defined) return defined;
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  throw new CliError(
    `which node runs the ${service} containers? pass --node (nodes: ${ctx.config.nodes.map((n) => n.name).join(", ") || "none"})`,
    2,
  );
}

export async function adoptCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  const node = adoptNode(ctx, service, opts.node);
  const client = await ctx.agent(node);
  const res = await onNode(node, client.adoptContainer({ service }));
  const failed = res.results.filter((r) => !r.success);
  if (ctx.json) {
    printJson({
      service,
      node: node.name,
      results: res.results.map((r) => ({
        container: r.container,
        component: r.component,
        success: r.success,
        error: r.error || undefined,
      })),
    });
  } else {
    for (const r of res.results) {
      process.stdout.write(
        r.success
          ? `${green("ok")}   ${r.container} -> ${r.component}\n`
          : `${red("FAIL")} ${r.container} -> ${r.component}: ${r.error}\n`,
      );
    }
    const ok = res.results.length - failed.length;
    if (ok > 0)
      process.stdout.write(
        `adopted ${ok} container${ok === 1 ? "" : "s"} into ${service} on ${node.name}; write its definition with: mcp service export ${service}\n`,
      );
  }
  return failed.length > 0 ? 1 : 0;
}
