// `mcp stop|start|restart <svc>`: stop/start also rewrite `active` in the definition file,
// which stays the operator's source of truth.

import { setActiveInFile } from "../../config/service.ts";
import type { ComponentResult } from "../../gen/mcp/v1/mcp_pb.ts";
import { type Ctx, loadCtx, locateService, onNode, splitTarget } from "./context.ts";
import { loadDefinition, nodeForService } from "./definition.ts";
import { green, printJson, red } from "./output.ts";
import { resultJson } from "./views.ts";

type Verb = "stop" | "start" | "restart";

async function lifecycle(verb: Verb, args: string[], opts: Record<string, unknown>): Promise<number> {
  const { service, component } = splitTarget(args[0]!);
  const ctx: Ctx = loadCtx(opts);
  const loaded = loadDefinition(ctx, service);
  const node = loaded
    ? nodeForService(ctx, service, undefined, loaded.def)
    : await locateService(ctx, service);
  const client = await ctx.agent(node);
  const req = { name: service, component: component ?? "" };
  const call =
    verb === "stop"
      ? client.stopService(req)
      : verb === "start"
        ? client.startService(req)
        : client.restartService(req);
  const res = await onNode(node, call);
  // Rewrite the file only after the agent accepted the change, and only for whole-service changes.
  if (loaded?.file && !component && verb !== "restart") setActiveInFile(loaded.file, verb === "start");
  return report(ctx, verb, service, node.name, res.results);
}

function report(ctx: Ctx, verb: string, service: string, node: string, results: ComponentResult[]): number {
  const failed = results.filter((r) => !r.success);
  if (ctx.json) printJson({ service, node, action: verb, results: results.map(resultJson) });
  else {
    for (const r of results) {
      process.stdout.write(
        r.success
          ? `${green("ok")}   ${verb} ${service}/${r.name}\n`
          : `${red("FAIL")} ${verb} ${service}/${r.name}: ${r.error}\n`,
      );
    }
  }
  return failed.length > 0 ? 1 : 0;
}

export const stopCommand = (a: string[], o: Record<string, unknown>) => lifecycle("stop", a, o);
export const startCommand = (a: string[], o: Record<string, unknown>) => lifecycle("start", a, o);
export const restartCommand = (a: string[], o: Record<string, unknown>) => lifecycle("restart", a, o);
