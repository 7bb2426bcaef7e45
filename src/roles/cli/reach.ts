// How the CLI words a node it could not see, for every fleet-wide table (ps, status, list, node
// list, agent status): one short cell ("unreachable: connection refused", "unreachable: timeout",
// "unreachable: TLS: certificate…", "error: UNAUTHENTICATED: …"), a per-node summary line, and one
// hint line when an agent refused the connection. --json keeps the full error next to the reason.
// The exit policy of status and ps is here too: drift or a node not seen exits EXIT_DRIFT.
import { readFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { CliNode } from "../../config/cli.ts";
import type { NodeResult } from "./context.ts";
import { EXIT_DRIFT } from "./output.ts";

/** refused…network: the node did not answer (or not in time); error: it answered with an error, or a local step failed. */
export type FailureKind = "refused" | "timeout" | "tls" | "dns" | "network" | "error";

export interface NodeFailure {
  kind: FailureKind;
  /** The node did not answer at all: every kind but "error". */
  unreachable: boolean;
  /** Short: "connection refused", "timeout", "TLS: certificate has expired", "UNAUTHENTICATED: bad token". */
  reason: string;
  /** The table cell: "unreachable: connection refused", "error: UNAUTHENTICATED: bad token". */
  cell: string;
}

/** Reasons longer than this are cut (with "…"): a cell never widens a table by a whole error. */
const REASON_MAX = 40;

function clip(s: string, max = REASON_MAX): string {
  const one = s.replace(/\s+/g, " ").trim();
  return one.length <= max ? one : `${one.slice(0, max - 1).trimEnd()}…`;
}

/** What a connect error (node's or Bun's words) says, most specific first; null reason = its own text. */
const CONNECT_ERRORS: [FailureKind, RegExp, string | null][] = [
  ["refused", /ECONNREFUSED|connection refused/i, "connection refused"],
  ["timeout", /Failed to connect before the deadline|ETIMEDOUT|timed out/i, "timeout"],
  ["dns", /ENOTFOUND|EAI_AGAIN|EAI_NONAME|EAI_FAIL|getaddrinfo/, "unknown host"],
  ["network", /EHOSTUNREACH|ENETUNREACH|EHOSTDOWN|ENETDOWN/, "no route to host"],
  [
    "tls",
    /certificate|CERT_|altnames|\bTLS\b|\bSSL\b|handshake|alert|self[- ]signed|wrong version number|issuer/i,
    null,
  ],
  ["network", /ECONNRESET|EPIPE|socket hang up|Connection dropped|closed/i, "connection dropped"],
];

function classifyConnect(raw: string): { kind: FailureKind; reason: string } {
  for (const [kind, re, reason] of CONNECT_ERRORS) {
    if (re.test(raw))
      return { kind, reason: reason ?? (kind === "tls" ? `TLS: ${clip(raw, 35)}` : clip(raw)) };
  }
  return { kind: "network", reason: clip(raw) };
}

const SINGLE = "UNAVAILABLE: No connection established. Last error: ";
const SEVERAL = "UNAVAILABLE: no address answered (";

/**
 * The short words for one node's failure (the one-line error fanOut keeps). Only the client's own
 * connect errors and deadlines count as unreachable: an agent that answered UNAVAILABLE (say, its
 * MCIAS was down) was reached, and says so as an error.
 */
export function describeFailure(error: string): NodeFailure {
  let kind: FailureKind;
  let reason: string;
  if (error.startsWith(SINGLE)) {
    ({ kind, reason } = classifyConnect(error.slice(SINGLE.length)));
  } else if (error.startsWith(SEVERAL)) {
    // "a: connect ECONNREFUSED a; b: Failed to connect before the deadline)": one reason per address.
    const parts = error
      .slice(SEVERAL.length, error.endsWith(")") ? -1 : undefined)
      .split("; ")
      .map((p) => classifyConnect(p.slice(p.indexOf(": ") + 2)));
    kind = parts.every((p) => p.kind === parts[0]!.kind)
      ? parts[0]!.kind
      : parts.some((p) => p.kind === "refused")
        ? "refused"
        : parts[0]!.kind;
    reason = clip([...new Set(parts.map((p) => p.reason))].join(", "), 60);
  } else if (error.startsWith("UNAVAILABLE: Connection dropped")) {
    kind = "network";
    reason = "connection dropped";
  } else if (error.startsWith("DEADLINE_EXCEEDED")) {
    kind = "timeout";
    reason = "timeout";
  } else {
    return { kind: "error", unreachable: false, reason: clip(error), cell: `error: ${clip(error)}` };
  }
  return { kind, unreachable: true, reason, cell: `unreachable: ${reason}` };
}

/** A failed node's summary line: "node2: unreachable (connection refused), state unknown". */
export function failedLine(node: string, f: NodeFailure): string {
  return `${node}: ${f.unreachable ? "unreachable" : "error"} (${f.reason}), state unknown`;
}

export interface NodeCounts {
  services: number;
  components: number;
  running: number;
  drift: number;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? "" : "s"}`;

/** A seen node's summary line: "local: 3 services, 4 components, 3 running, 1 drift". */
export function countsLine(node: string, c: NodeCounts): string {
  if (c.services === 0) return `${node}: no services deployed (mcp deploy <service> to start one)`;
  return `${node}: ${plural(c.services, "service")}, ${plural(c.components, "component")}, ${c.running} running, ${c.drift === 0 ? "no drift" : `${c.drift} drift`}`;
}

/** One node in --json: what was counted, or why its state is unknown (with the full error). */
export type NodeJson =
  | ({ node: string; reachable: true; state: "ok" | "drift" } & NodeCounts)
  | { node: string; reachable: boolean; state: "unknown"; reason: string; error: string };

export function nodeJson(node: string, c: NodeCounts): NodeJson {
  return { node, reachable: true, state: c.drift > 0 ? "drift" : "ok", ...c };
}

export function failedNodeJson(node: string, f: NodeFailure, error: string): NodeJson {
  return { node, reachable: !f.unreachable, state: "unknown", reason: f.reason, error };
}

/** The failed rows of a fan-out, each with its short words. */
export function failures<T>(rows: NodeResult<T>[]): { node: CliNode; error: string; failure: NodeFailure }[] {
  return rows
    .filter((r) => r.error !== undefined)
    .map((r) => ({ node: r.node, error: r.error!, failure: describeFailure(r.error!) }));
}

/**
 * One line for when an agent refused the connection: the command that starts it, with the agent
 * config `mcp init --local` wrote next to this CLI config when that agent listens at a refused
 * address, else the packaged default. Null when no connection was refused.
 */
export function agentHint(configPath: string, refused: CliNode[]): string | null {
  if (refused.length === 0) return null;
  const local = localAgentConfig(configPath, refused);
  return `is the agent running? systemctl status mcp-agent, or: mcp agent --config ${local ?? "/srv/mcp/mcp-agent.toml"}`;
}

function localAgentConfig(configPath: string, nodes: CliNode[]): string | null {
  const path = resolve(dirname(configPath), "mcp-agent.toml");
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch {
    return null;
  }
  const listen = /^\s*grpc_addr\s*=\s*"([^"]*)"/m.exec(text)?.[1];
  if (!listen) return null;
  return nodes.some((n) => n.address === listen || n.addresses.includes(listen)) ? path : null;
}

/** The hint for a fan-out's failures (refused connections only). */
export function hintFor(configPath: string, failed: ReturnType<typeof failures>): string | null {
  return agentHint(
    configPath,
    failed.filter((f) => f.failure.kind === "refused").map((f) => f.node),
  );
}

/**
 * status/ps: 1 when a node answered with an error (the command itself did not work: a refused
 * token…), EXIT_DRIFT when a node was not reached or something drifts, else 0.
 */
export function fleetExitCode(failed: { failure: NodeFailure }[], drift: number): number {
  if (failed.some((f) => !f.failure.unreachable)) return 1;
  return failed.length > 0 || drift > 0 ? EXIT_DRIFT : 0;
}
