// `mcp snapshot create <svc>` and `mcp snapshot list <svc>` (architecture-v2 "Snapshots"): always
// through the master, which asks the service's node for its data archive and stores it under
// its snapshots dir. Not to be confused with `mcp agent snapshot` (the agent's own registry).
import { loadCtx } from "./context.ts";
import { CliError, formatAge, formatBytes, printJson, printTable } from "./output.ts";
import { requireServiceName } from "./service.ts";

function masterCtx(opts: Record<string, unknown>) {
  const ctx = loadCtx(opts);
  if (!ctx.config.master || opts.direct === true)
    throw new CliError(
      "snapshots need a master: configure [master] in the CLI config (and do not pass --direct)",
      2,
    );
  return ctx;
}

async function onMaster<T>(address: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(`master ${address}: ${(err as Error).message.split("\n")[0]}`);
  }
}

export async function snapshotCreateCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = masterCtx(opts);
  const res = await onMaster(ctx.config.master!.address, async () =>
    // The master bounds the export with its [timeouts] snapshot; this only guards a lost master.
    (await ctx.master()).createSnapshot({ serviceName: service }, { timeoutMs: 60 * 60_000 }),
  );
  if (ctx.json) printJson({ service, filename: res.filename, sizeBytes: Number(res.sizeBytes) });
  else process.stdout.write(`snapshot of ${service}: ${res.filename} (${formatBytes(res.sizeBytes)})\n`);
  return 0;
}

export async function snapshotListCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const service = requireServiceName(args[0]);
  const ctx = masterCtx(opts);
  const res = await onMaster(ctx.config.master!.address, async () =>
    (await ctx.master()).listSnapshots({ serviceName: service }),
  );
  if (ctx.json) {
    printJson({
      service,
      snapshots: res.snapshots.map((s) => ({
        filename: s.filename,
        node: s.node,
        sizeBytes: Number(s.sizeBytes),
        createdAt: s.createdAt,
      })),
    });
    return 0;
  }
  if (res.snapshots.length === 0) {
    process.stdout.write(`no snapshots of ${service}\n`);
    return 0;
  }
  printTable(
    ["SNAPSHOT", "NODE", "SIZE", "AGE"],
    res.snapshots.map((s) => [
      s.filename,
      s.node,
      formatBytes(s.sizeBytes),
      formatAge(new Date(s.createdAt)),
    ]),
  );
  return 0;
}
