// The master's clients to agents: one typed McpAgent client per node, dialled at the node's
// registered address then its fallbacks (short connect timeout each), authenticated as the
// master's own identity: its client certificate (`mcp-master`, [master] client_cert/client_key). Cached per node; a changed address
// list (re-registration) replaces the client; close() at shutdown.
import { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import { type ClientCert, connect, type TypedClient } from "../../rpc/client.ts";
import type { NodeRecord } from "./store.ts";

export type AgentClient = TypedClient<typeof McpAgent>;

export interface AgentPoolOptions {
  caPem: string;
  /** The master's client certificate; null = none (agents refuse the master-only RPCs). */
  clientCert: ClientCert | null;
  /** Per-address connect timeout when a node has fallbacks. */
  connectTimeoutMs?: number;
}

interface Entry {
  key: string;
  client: Promise<AgentClient>;
}

export class AgentPool {
  private readonly clients = new Map<string, Entry>();
  private closed = false;

  constructor(private readonly opts: AgentPoolOptions) {}

  /** A client for `node`, connecting (address, then fallbacks) on first use. */
  get(node: Pick<NodeRecord, "name" | "address" | "addresses">): Promise<AgentClient> {
    if (this.closed) return Promise.reject(new Error("master is shutting down"));
    const addresses = [node.address, ...node.addresses.filter((a) => a !== node.address)];
    const key = addresses.join(",");
    const cached = this.clients.get(node.name);
    if (cached && cached.key === key) return cached.client;
    if (cached) this.drop(node.name);
    const client = connect(McpAgent, {
      addresses,
      caPem: this.opts.caPem,
      ...(this.opts.clientCert ? { clientCert: this.opts.clientCert } : {}),
      connectTimeoutMs: this.opts.connectTimeoutMs ?? 2000,
    });
    // A failed connect is not cached: the next call retries.
    client.catch(() => {
      if (this.clients.get(node.name)?.client === client) this.clients.delete(node.name);
    });
    this.clients.set(node.name, { key, client });
    return client;
  }

  /** Forgets the node's client (after its address changed or it was removed). */
  drop(name: string): void {
    const e = this.clients.get(name);
    if (!e) return;
    this.clients.delete(name);
    e.client.then((c) => c.close()).catch(() => {});
  }

  close(): void {
    this.closed = true;
    for (const name of [...this.clients.keys()]) this.drop(name);
  }
}
