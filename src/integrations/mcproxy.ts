// mc-proxy adapter: ProxyAdmin over mc-proxy's gRPC admin API on its unix socket
// ([mcproxy] socket, e.g. /srv/mc-proxy/mc-proxy.sock, mode 0660). The wire contract is this
// project's inferred rendering (proto/mcproxy/v1). No token: the socket's file permissions
// are the auth, so the agent's user must be in the socket's group. Every failure becomes one
// IntegrationError("mc-proxy", ...) line carrying the gRPC code in `status`.
import { statSync } from "node:fs";
import { ProxyAdminService, type Route } from "../gen/mcproxy/v1/mcproxy_pb.ts";
// rpc/client.ts loads on the first call: an agent without mc-proxy never pays for it.
import type { TypedClient } from "../rpc/client.ts";
import { CallError, Code as grpcStatus } from "../rpc/wire.ts";
import { IntegrationError, type ProxyAdmin, type ProxyRoute } from "./types.ts";

export interface McProxyStatus {
  version: string;
  routes: number;
  /** Listener ports with at least one route. */
  listeners: { port: number; routes: number }[];
}

export class McProxyClient implements ProxyAdmin {
  private client: TypedClient<typeof ProxyAdminService> | null = null;

  constructor(
    readonly socketPath: string,
    private readonly opts: { timeoutMs?: number } = {},
  ) {}

  async addRoute(route: ProxyRoute): Promise<void> {
    await this.call(`AddRoute ${route.listener}/${route.hostname}`, (c) =>
      c.addRoute({ route: { ...route } }, this.callOpts()),
    );
  }

  async removeRoute(listener: number, hostname: string): Promise<void> {
    // mc-proxy answers removed=false for a route it does not have: not an error (stop is idempotent).
    await this.call(`RemoveRoute ${listener}/${hostname}`, (c) =>
      c.removeRoute({ listener, hostname }, this.callOpts()),
    );
  }

  /** Every route, or those of one listener. */
  async listRoutes(listener = 0): Promise<ProxyRoute[]> {
    const res = await this.call("ListRoutes", (c) => c.listRoutes({ listener }, this.callOpts()));
    return res.routes.map(fromWire);
  }

  async status(): Promise<McProxyStatus> {
    const res = await this.call("GetStatus", (c) => c.getStatus({}, this.callOpts()));
    return {
      version: res.version,
      routes: res.routeCount,
      listeners: res.listeners.map((l) => ({ port: l.port, routes: l.routes })),
    };
  }

  close(): void {
    this.client?.close();
    this.client = null;
  }

  private callOpts() {
    return { timeoutMs: this.opts.timeoutMs ?? 10_000 };
  }

  private async call<T>(
    what: string,
    fn: (c: TypedClient<typeof ProxyAdminService>) => Promise<T>,
  ): Promise<T> {
    this.checkSocket();
    if (!this.client) {
      const { connectUnix } = await import("../rpc/client.ts");
      this.client = connectUnix(ProxyAdminService, this.socketPath);
    }
    try {
      return await fn(this.client);
    } catch (err) {
      const code = err instanceof CallError ? err.code : grpcStatus.UNKNOWN;
      const msg = ((err as Error)?.message ?? String(err)).split("\n")[0];
      throw new IntegrationError("mc-proxy", `${what}: ${msg}`, code);
    }
  }

  // Checked before every call: the client would only say "UNAVAILABLE: … connect ENOENT", and mc-proxy
  // may be (re)started after the agent, so the socket can appear later.
  private checkSocket(): void {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(this.socketPath);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR")
        throw new IntegrationError("mc-proxy", `socket ${this.socketPath} not found`, grpcStatus.UNAVAILABLE);
      throw new IntegrationError(
        "mc-proxy",
        `socket ${this.socketPath}: ${(err as Error).message}`,
        grpcStatus.UNAVAILABLE,
      );
    }
    if (!st.isSocket())
      throw new IntegrationError(
        "mc-proxy",
        `${this.socketPath} is not a unix socket ([mcproxy] socket)`,
        grpcStatus.FAILED_PRECONDITION,
      );
  }
}

function fromWire(r: Route): ProxyRoute {
  return {
    listener: r.listener,
    hostname: r.hostname,
    backend: r.backend,
    // Shown as mc-proxy reports it, even an unexpected mode.
    mode: r.mode as ProxyRoute["mode"],
    tlsCert: r.tlsCert,
    tlsKey: r.tlsKey,
    backendTls: r.backendTls,
  };
}
