// `mcp route list|add|remove`: the operator's view of each node's mc-proxy routes (all nodes in
// parallel, grouped by listener) and manual fixes, through the node's agent. Deploys manage
// routes themselves; these commands exist to inspect and repair.
import { isAbsolute } from "node:path";
import type { CliNode } from "../../config/cli.ts";
import type { ProxyRoute } from "../../gen/mcp/v1/mcp_pb.ts";
import { CallError } from "../../rpc/client.ts";
import { Code as status } from "../../rpc/wire.ts";
import { type Ctx, fanOut, loadCtx, onNode } from "./context.ts";
import { CliError, printJson, printTable, red, yellow } from "./output.ts";

const NOT_CONFIGURED = "mc-proxy is not configured";

function routeJson(node: string, r: ProxyRoute) {
  return {
    node,
    listener: r.listener,
    hostname: r.hostname,
    backend: r.backend,
    mode: r.mode,
    tlsCert: r.tlsCert,
    tlsKey: r.tlsKey,
    backendTls: r.backendTls,
  };
}

function tlsCell(r: ProxyRoute): string {
  if (r.mode !== "l7") return r.backendTls ? "passthrough, backend tls" : "passthrough";
  const cert = r.tlsCert || "(no cert)";
  return r.backendTls ? `${cert}, backend tls` : cert;
}

/** null = the node runs no mc-proxy (a note, not a failure). */
async function nodeRoutes(ctx: Ctx, node: CliNode): Promise<ProxyRoute[] | null> {
  const c = await ctx.agent(node);
  try {
    const res = await c.listProxyRoutes({});
    return [...res.routes].sort((a, b) => a.listener - b.listener || a.hostname.localeCompare(b.hostname));
  } catch (err) {
    if (
      err instanceof CallError &&
      err.code === status.FAILED_PRECONDITION &&
      err.details.includes(NOT_CONFIGURED)
    )
      return null;
    throw err;
  }
}

export async function routeListCommand(_args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const only = typeof opts.node === "string" && opts.node ? [ctx.node(opts.node).name] : undefined;
  const rows = await fanOut(ctx, (_c, node) => nodeRoutes(ctx, node), only);
  const failed = rows.some((r) => r.error);
  if (ctx.json) {
    printJson({
      routes: rows.flatMap((r) => (r.value ?? []).map((x) => routeJson(r.node.name, x))),
      notes: rows
        .filter((r) => !r.error && r.value === null)
        .map((r) => ({ node: r.node.name, note: `${NOT_CONFIGURED} ([mcproxy] socket)` })),
      errors: rows.filter((r) => r.error).map((r) => ({ node: r.node.name, error: r.error })),
    });
    return failed ? 1 : 0;
  }
  const table: string[][] = [];
  for (const r of rows) {
    const n = r.node.name;
    if (r.error) table.push([n, "-", "-", "-", red("UNREACHABLE"), r.error]);
    else if (r.value === null)
      table.push([n, "-", "-", "-", "-", yellow(`${NOT_CONFIGURED} ([mcproxy] socket)`)]);
    else if (r.value && r.value.length === 0) table.push([n, "-", "-", "-", "-", "no routes"]);
    else
      for (const x of r.value ?? [])
        table.push([n, String(x.listener), x.hostname, x.backend, x.mode, tlsCell(x)]);
  }
  printTable(["node", "listener", "hostname", "backend", "mode", "tls"], table);
  return failed ? 1 : 0;
}

/** --node, else the only configured node. */
function targetNode(ctx: Ctx, opts: Record<string, unknown>): CliNode {
  if (typeof opts.node === "string" && opts.node) return ctx.node(opts.node);
  if (ctx.config.nodes.length === 1) return ctx.config.nodes[0]!;
  throw new CliError(
    `which node's mc-proxy? pass --node (nodes: ${ctx.config.nodes.map((n) => n.name).join(", ") || "none"})`,
    2,
  );
}

function listenerOpt(v: unknown): number {
  const n = Number(v ?? 443);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new CliError(`--listener ${String(v)}: expected a port 1-65535 (443, 8443, 9443)`, 2);
  return n;
}

function hostnameArg(v: string | undefined): string {
  if (!v) throw new CliError("a hostname is required (e.g. mcp route add app.example.net 10.0.0.5:10001)", 2);
  if (!/^[A-Za-z0-9.-]+$/.test(v) || v.startsWith(".") || v.endsWith("."))
    throw new CliError(`hostname "${v}": expected a DNS name`, 2);
  return v;
}

function pathOpt(flag: string, v: unknown): string {
  if (v === undefined || v === "" || v === true) return "";
  const s = String(v);
  if (!isAbsolute(s)) throw new CliError(`${flag} ${s}: expected an absolute path on the node`, 2);
  return s;
}

export async function routeAddCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const hostname = hostnameArg(args[0]);
  const backend = args[1] ?? "";
  if (!/^(\[[^\]]+\]|[^:[\]]+):\d{1,5}$/.test(backend))
    throw new CliError(
      `backend "${backend}": expected host:port (the node address and the route's host port)`,
      2,
    );
  const listener = listenerOpt(opts.listener);
  const mode = String(opts.mode ?? "l4");
  if (mode !== "l4" && mode !== "l7") throw new CliError(`--mode ${mode}: expected "l4" or "l7"`, 2);
  const tlsCert = pathOpt("--tls-cert", opts.tlsCert);
  const tlsKey = pathOpt("--tls-key", opts.tlsKey);
  if (mode === "l4" && (tlsCert || tlsKey))
    throw new CliError("--tls-cert/--tls-key are for l7 routes (l4 passes TLS through to the backend)", 2);
  const ctx = loadCtx(opts);
  const node = targetNode(ctx, opts);
  const route = { listener, hostname, backend, mode, tlsCert, tlsKey, backendTls: opts.backendTls === true };
  const client = await ctx.agent(node);
  await onNode(node, client.addProxyRoute({ route }));
  if (ctx.json) printJson({ node: node.name, added: { ...route } });
  else process.stdout.write(`${node.name}: route ${listener}/${hostname} → ${backend} (${mode}) added\n`);
  return 0;
}

export async function routeRemoveCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const hostname = hostnameArg(args[0]);
  const listener = listenerOpt(opts.listener);
  const ctx = loadCtx(opts);
  const node = targetNode(ctx, opts);
  const client = await ctx.agent(node);
  await onNode(node, client.removeProxyRoute({ listener, hostname }));
  if (ctx.json) printJson({ node: node.name, removed: { listener, hostname } });
  // mc-proxy treats removing a missing route as done, so this line is true either way.
  else process.stdout.write(`${node.name}: route ${listener}/${hostname} removed (gone from mc-proxy)\n`);
  return 0;
}
