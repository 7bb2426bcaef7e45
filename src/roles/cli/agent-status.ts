// `mcp agent status [node…]`: every node's agent asked in parallel (NodeStatus over TLS):
// reachability, agent version, arch, agent uptime, runtime, services/components, disk and memory.
// An agent on another version than this CLI is marked (after a partial `mcp agent upgrade`, or a
// CLI that was updated first), as is an agent whose arch differs from the node's `arch` in the
// config (that arch picks the binary `agent upgrade` ships).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import type { NodeStatusResponse } from "../../gen/mcp/v1/mcp_pb.ts";
import { CLI_VERSION } from "./agent-binary.ts";
import { fanOut, loadCtx, type NodeResult } from "./context.ts";
import { formatAge, formatBytes, green, printJson, printTable, red, yellow } from "./output.ts";
import { describeFailure, failures, hintFor } from "./reach.ts";

export interface AgentStatusRow {
  name: string;
  address: string;
  reachable: boolean;
  /** The whole one-line error of a node that did not answer. */
  error?: string;
  /** Its short form for the table: "connection refused", "timeout", "TLS: …" (reach.ts). */
  reason?: string;
  agentVersion?: string;
  /** The agent's version differs from this CLI's. */
  skew: boolean;
  arch?: string;
  configArch: string;
  agentStarted?: string;
  agentUptimeSeconds?: number;
  runtime?: string;
  /** Component runtime kinds the node runs (container, unikernel). */
  runtimes?: string[];
  /** The unikernel runtime's accelerator (kvm, tcg) and why; only for a node with that runtime. */
  unikernelAccel?: string;
  unikernelAccelReason?: string;
  runtimeVersion?: string;
  runtimeError?: string;
  services?: number;
  components?: number;
  runningContainers?: number;
  disk?: { totalBytes: number; freeBytes: number };
  memory?: { totalBytes: number; freeBytes: number };
  /** The agent's live view (runtime events): absent when its runtime has no event stream. */
  liveView?: {
    streaming: boolean;
    current: boolean;
    confirmedAt?: string;
    containers: number;
    events: number;
    listings: number;
    /** "api" (podman's REST service), "child" (an events process), "" (down). */
    via: string;
  };
}

export function statusRow(r: NodeResult<NodeStatusResponse>, now = Date.now()): AgentStatusRow {
  const base = { name: r.node.name, address: r.node.address, configArch: r.node.arch };
  if (r.error || !r.value) {
    const error = r.error ?? "no answer";
    return { ...base, reachable: false, error, reason: describeFailure(error).reason, skew: false };
  }
  const v = r.value;
  const started = v.agentStarted ? timestampDate(v.agentStarted) : undefined;
  return {
    ...base,
    reachable: true,
    agentVersion: v.agentVersion,
    skew: v.agentVersion !== CLI_VERSION,
    arch: v.arch,
    ...(started
      ? {
          agentStarted: started.toISOString(),
          agentUptimeSeconds: Math.max(0, Math.floor((now - started.getTime()) / 1000)),
        }
      : {}),
    runtime: v.runtime,
    runtimes: [...v.runtimes],
    ...(v.unikernelAccel ? { unikernelAccel: v.unikernelAccel } : {}),
    ...(v.unikernelAccelReason ? { unikernelAccelReason: v.unikernelAccelReason } : {}),
    runtimeVersion: v.runtimeVersion,
    ...(v.runtimeError ? { runtimeError: v.runtimeError } : {}),
    services: v.serviceCount,
    components: v.componentCount,
    runningContainers: v.runningContainers,
    disk: { totalBytes: Number(v.diskTotalBytes), freeBytes: Number(v.diskFreeBytes) },
    memory: { totalBytes: Number(v.memoryTotalBytes), freeBytes: Number(v.memoryFreeBytes) },
    ...(v.liveView
      ? {
          liveView: {
            streaming: v.liveView.streaming,
            current: v.liveView.current,
            ...(v.liveView.confirmedAt
              ? { confirmedAt: timestampDate(v.liveView.confirmedAt).toISOString() }
              : {}),
            containers: v.liveView.containers,
            events: Number(v.liveView.events),
            listings: Number(v.liveView.listings),
            via: v.liveView.via,
          },
        }
      : {}),
  };
}

/** " · events" when reads answer from the live view; a warning when its event stream is down. */
export function liveNote(r: Pick<AgentStatusRow, "liveView">): string {
  const l = r.liveView;
  if (!l) return "";
  if (l.current) return " · events";
  return l.streaming ? " · events (resynchronising)" : yellow(" · event stream down: reads list");
}

/**
 * The kinds beyond plain containers, e.g. " +unikernel (tcg: /dev/kvm missing)" (the unikernel
 * runtime with its accelerator and why); nothing for a container-only node.
 */
export function kindsNote(
  r: Pick<AgentStatusRow, "runtimes" | "unikernelAccel" | "unikernelAccelReason">,
): string {
  const extra = (r.runtimes ?? []).filter((k) => k !== "container");
  if (extra.length === 0) return "";
  // An agent's words are not written to the terminal as they are: control characters become "?".
  const clean = (t: string) => t.replace(/\p{Cc}/gu, "?");
  const accel = r.unikernelAccel
    ? ` (${clean(r.unikernelAccel)}${r.unikernelAccelReason ? `: ${clean(r.unikernelAccelReason)}` : ""})`
    : "";
  return ` +${extra.map((k) => (k === "unikernel" ? `${k}${accel}` : k)).join(" +")}`;
}

function freeOf(x: { totalBytes: number; freeBytes: number } | undefined): string {
  if (!x || x.totalBytes === 0) return "-";
  return `${formatBytes(x.freeBytes)} free / ${formatBytes(x.totalBytes)}`;
}

export async function agentStatusCommand(args: string[], opts: Record<string, unknown>): Promise<number> {
  const ctx = loadCtx(opts);
  const only = args.length > 0 ? [...new Set(args)] : undefined;
  const results = await fanOut(ctx, (c) => c.nodeStatus({}, { timeoutMs: 10_000 }), only);
  for (const r of results) (await ctx.agent(r.node).catch(() => undefined))?.close();
  const rows = results.map((r) => statusRow(r));
  const differ = rows.filter((r) => r.reachable && r.skew).length;
  const unreachable = rows.filter((r) => !r.reachable).length;
  if (ctx.json) {
    printJson({ cliVersion: CLI_VERSION, differ, unreachable, nodes: rows });
    return unreachable > 0 ? 1 : 0;
  }
  printTable(
    ["node", "status", "agent", "arch", "uptime", "runtime", "services", "disk", "memory"],
    rows.map((r) => {
      if (!r.reachable) {
        const status = describeFailure(r.error ?? "").unreachable ? "UNREACHABLE" : "ERROR";
        return [r.name, red(status), r.reason ?? "", r.configArch, "", "", "", "", ""];
      }
      const arch =
        r.arch && r.arch !== r.configArch ? yellow(`${r.arch} (config: ${r.configArch})`) : (r.arch ?? "-");
      return [
        r.name,
        green("ok"),
        r.skew ? yellow(`${r.agentVersion} (CLI ${CLI_VERSION})`) : (r.agentVersion ?? "-"),
        arch,
        formatAge(r.agentStarted ? new Date(r.agentStarted) : null),
        r.runtimeError
          ? red(`${r.runtime} error: ${r.runtimeError}`)
          : `${r.runtime} ${r.runtimeVersion}${kindsNote(r)}${liveNote(r)}`,
        `${r.services} svc, ${r.components} comp, ${r.runningContainers} running`,
        freeOf(r.disk),
        freeOf(r.memory),
      ];
    }),
  );
  const reachable = rows.length - unreachable;
  const parts: string[] = [];
  if (differ > 0)
    parts.push(
      yellow(
        `${differ} node${differ === 1 ? "" : "s"} differ${differ === 1 ? "s" : ""} from this CLI (${CLI_VERSION}): mcp agent upgrade`,
      ),
    );
  else if (reachable > 0) parts.push(`every reachable node runs ${CLI_VERSION}, like this CLI`);
  if (unreachable > 0) parts.push(red(`${unreachable} unreachable`));
  process.stdout.write(`${parts.join("; ")}\n`);
  const hint = hintFor(ctx.configPath, failures(results));
  if (hint) process.stdout.write(`${hint}\n`);
  return unreachable > 0 ? 1 : 0;
}
