// `mcp logs <svc>[/<comp>] [-f] [--tail N] [--since T]`: prints a service's container logs from
// its node's agent (server-streaming Logs RPC). Lines are prefixed `<comp> | ` when the service has
// several components. `-f` follows until Ctrl-C: SIGINT/SIGTERM cancel the call (which kills the
// agent's log process) and the command exits 0 without a message. --json prints one JSON object
// per line ({component, line}), so it works while following.

import { type Ctx, loadCtx, locateService, onNode, splitTarget } from "./context.ts";
import { loadDefinition, nodeForService } from "./definition.ts";
import { CliError } from "./output.ts";

function parseTail(v: unknown): number {
  if (v === undefined) return 0;
  const s = String(v);
  if (!/^\d+$/.test(s)) throw new CliError(`--tail: expected a number of lines (0 or more), got "${s}"`, 2);
  const n = Number(s);
  // LogsRequest.tail: 0 = all, negative = none; the operator's "--tail 0" means none.
  return n === 0 ? -1 : Math.min(n, 2_147_483_647);
}

export async function logsCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const { service, component } = splitTarget(args[0]!);
  const tail = parseTail(opts.tail);
  const since = opts.since === undefined ? "" : String(opts.since);
  const follow = opts.follow === true;
  const ctx: Ctx = loadCtx(opts);
  const loaded = opts.node ? null : loadDefinition(ctx, service);
  const node = opts.node
    ? ctx.node(String(opts.node))
    : loaded
      ? nodeForService(ctx, service, undefined, loaded.def)
      : await locateService(ctx, service);
  const client = await ctx.agent(node);

  // Prefix only when the lines can come from several components.
  let prefix = false;
  if (!component) {
    const list = await onNode(node, client.listServices({}));
    prefix = (list.services.find((s) => s.name === service)?.components.length ?? 0) > 1;
  }

  const ac = new AbortController();
  const stop = () => ac.abort();
  const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
  for (const s of signals) process.on(s, stop);
  try {
    const stream = client.logs(
      { service, component: component ?? "", follow, tail, since },
      { signal: ac.signal },
    );
    for await (const l of onNodeStream(node.name, stream)) {
      if (ctx.json) process.stdout.write(`${JSON.stringify({ component: l.component, line: l.line })}\n`);
      else process.stdout.write(prefix ? `${l.component} | ${l.line}\n` : `${l.line}\n`);
    }
    return 0;
  } finally {
    for (const s of signals) process.off(s, stop);
    client.close();
  }
}

/** Like onNode for a stream: an error while reading names the node, as every other command does. */
async function* onNodeStream<T>(node: string, stream: AsyncIterable<T>): AsyncGenerator<T> {
  try {
    yield* stream;
  } catch (err) {
    throw new CliError(`${node}: ${(err as Error).message.split("\n")[0]}`);
  }
}
