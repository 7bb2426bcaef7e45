// `mcp node list|add|remove`: the node registry in the CLI config; list also asks every agent
// for its status in parallel (reachability, agent version, runtime, the runtime kinds it runs).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { writeCliConfig } from "../../config/cli.ts";
import { NAME_RE } from "../../config/service.ts";
import { parseHostPort } from "../../config/specs.ts";
import { fanOut, loadCtx } from "./context.ts";
import { CliError, formatAge, green, printJson, printTable, red } from "./output.ts";
import { describeFailure, failures, hintFor } from "./reach.ts";
import { runtimesCell } from "./views.ts";

export async function nodeListCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  if (ctx.viaMaster) return (await import("./via-master.ts")).nodeList(ctx);
  if (ctx.config.nodes.length === 0) {
    if (ctx.json) printJson({ nodes: [] });
    else process.stdout.write(`no nodes in ${ctx.configPath}\n`);
    return 0;
  }
  const rows = await fanOut(ctx, (c) => c.nodeStatus({}, { timeoutMs: 10_000 }));
  if (ctx.json) {
    printJson({
      nodes: rows.map((r) => ({
        name: r.node.name,
        address: r.node.address,
        arch: r.node.arch,
        reachable: !r.error,
        error: r.error,
        reason: r.error ? describeFailure(r.error).reason : undefined,
        agentVersion: r.value?.agentVersion,
        runtime: r.value?.runtime,
        runtimeVersion: r.value?.runtimeVersion,
        runtimes: r.value ? [...r.value.runtimes] : undefined,
        unikernelAccel: r.value?.unikernelAccel || undefined,
        unikernelAccelReason: r.value?.unikernelAccelReason || undefined,
        services: r.value?.serviceCount,
        agentStarted: r.value?.agentStarted ? timestampDate(r.value.agentStarted).toISOString() : undefined,
      })),
    });
  } else {
    printTable(
      ["name", "address", "arch", "status", "agent", "runtime", "runtimes", "services", "uptime"],
      rows.map((r) => {
        if (r.error) {
          // The short reason only: the whole error (in --json) would widen every row.
          const f = describeFailure(r.error);
          const status = red(f.unreachable ? "UNREACHABLE" : "ERROR");
          return [r.node.name, r.node.address, r.node.arch, status, f.reason, "", "", "", ""];
        }
        return [
          r.node.name,
          r.node.address,
          r.node.arch,
          green("ok"),
          r.value!.agentVersion,
          `${r.value!.runtime} ${r.value!.runtimeVersion}`,
          runtimesCell(r.value!.runtimes),
          String(r.value!.serviceCount),
          formatAge(r.value!.agentStarted ? timestampDate(r.value!.agentStarted) : null),
        ];
      }),
    );
    const hint = hintFor(ctx.configPath, failures(rows));
    if (hint) process.stdout.write(`\n${hint}\n`);
  }
  return rows.some((r) => r.error) ? 1 : 0;
}

export async function nodeAddCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const [name, address] = args as [string, string];
  if (!NAME_RE.test(name)) throw new CliError(`node name "${name}": expected [a-z0-9][a-z0-9-]*`, 2);
  parseHostPort(address);
  const fallbacks = ([] as unknown[]).concat(opts.fallback ?? []).map(String);
  for (const f of fallbacks) parseHostPort(f);
  const arch = String(opts.arch ?? "amd64");
  if (arch !== "amd64" && arch !== "arm64")
    throw new CliError(`--arch: expected amd64 or arm64, got "${arch}"`, 2);
  const ctx = loadCtx(opts);
  if (ctx.config.nodes.some((n) => n.name === name))
    throw new CliError(`node "${name}" already exists in ${ctx.configPath}`, 2);
  ctx.config.nodes.push({
    name,
    address,
    addresses: fallbacks,
    arch,
    ...(opts.ssh ? { ssh: String(opts.ssh) } : {}),
  });
  writeCliConfig(ctx.configPath, ctx.config);
  if (ctx.json) printJson({ added: name, address });
  else process.stdout.write(`added node ${name} (${address})\n`);
  return 0;
}

export async function nodeRemoveCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const name = args[0]!;
  const ctx = loadCtx(opts);
  const before = ctx.config.nodes.length;
  ctx.config.nodes = ctx.config.nodes.filter((n) => n.name !== name);
  if (ctx.config.nodes.length === before)
    throw new CliError(`unknown node "${name}" in ${ctx.configPath}`, 2);
  writeCliConfig(ctx.configPath, ctx.config);
  if (ctx.json) printJson({ removed: name });
  else process.stdout.write(`removed node ${name}\n`);
  return 0;
}
