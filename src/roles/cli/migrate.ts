// `mcp migrate <svc> --to <node> [--force]` and `mcp migrate --all --from <node> --to <node>`
// (architecture-v2 "Service Migration"): always through the master, which runs the whole flow
// (stop, final snapshot, restore, deploy, routes/DNS/edge, placement, cleanup) and answers one
// step result per step. Prints a line per step; exit 0 only when every step succeeded.
import type { StepResult } from "../../gen/mcp/v1/mcp_pb.ts";
import { loadCtx } from "./context.ts";
import { CliError, green, printJson, red } from "./output.ts";
import { requireServiceName } from "./service.ts";

const str = (v: unknown) => (typeof v === "string" ? v : "");

export async function migrateCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const all = opts.all === true;
  const to = str(opts.to);
  const from = str(opts.from);
  if (!to) throw new CliError("--to <node> is required", 2);
  if (all && args[0]) throw new CliError("--all migrates every service of a node: give no service name", 2);
  if (all && !from) throw new CliError("--all needs --from <node>", 2);
  if (!all && from) throw new CliError("--from is only used with --all", 2);
  const service = all ? "" : requireServiceName(args[0]);
  const ctx = loadCtx(opts);
  if (opts.direct === true || !ctx.config.master)
    throw new CliError("migrate runs through the master: configure [master] and do not pass --direct", 2);
  if (!ctx.json)
    process.stdout.write(
      all ? `migrating every service of ${from} to ${to}\n` : `migrating ${service} to ${to}\n`,
    );
  let results: StepResult[];
  try {
    const m = await ctx.master();
    results = (
      await m.migrate(
        { serviceName: service, targetNode: to, force: opts.force === true, all, sourceNode: from },
        // The master bounds every step; a large data stream may take a while.
        { timeoutMs: 2 * 60 * 60_000 },
      )
    ).results;
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`master ${ctx.config.master.address}: ${(err as Error).message.split("\n")[0]}`);
  }
  const success = results.length > 0 && results.every((r) => r.success);
  if (ctx.json) {
    printJson({
      service: service || null,
      from: from || null,
      to,
      success,
      steps: results.map((r) => ({ step: r.step, success: r.success, error: r.error || undefined })),
    });
  } else {
    for (const r of results)
      process.stdout.write(
        r.success ? `${green("ok")}   ${r.step}\n` : `${red("FAIL")} ${r.step}: ${r.error}\n`,
      );
  }
  if (!success) {
    const last = [...results].reverse().find((r) => !r.success);
    process.stderr.write(`mcp: migrate failed: ${last?.error || "see the steps above"}\n`);
    return 1;
  }
  return 0;
}
