// Fake mc-proxy for tests: a real grpc-js server speaking this project's rendering of the
// admin API (proto/mcproxy/v1, inferred from public docs) on a unix socket in a temp dir,
// mode 0660 like /srv/mc-proxy/mc-proxy.sock. There is NO token auth, as in mc-proxy: the
// socket's file permissions are the access control, so the fake only checks input.
// Routes live in memory keyed by listener+hostname (AddRoute upserts). Bad input answers
// INVALID_ARGUMENT with one line; an l7 route needs cert and key files that exist and a cert
// carrying the full chain (≥ 2 PEM certificates): leaf-only certs made the real mc-proxy
// fail TLS handshakes silently (reference architecture-v2, "Cert chain issues").
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { isIP } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { create } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import {
  type AddRouteRequest,
  type ListRoutesRequest,
  ProxyAdminService,
  type RemoveRouteRequest,
  type Route,
  RouteSchema,
} from "../../src/gen/mcproxy/v1/mcproxy_pb.ts";
import type { ProxyRoute } from "../../src/integrations/types.ts";
import { grpcServiceDefinition } from "../support/grpc-js.ts";

export interface FakeMcProxyCall {
  method: "AddRoute" | "RemoveRoute" | "ListRoutes" | "GetStatus";
  /** The request as plain data (listener/hostname/route...). */
  request: Record<string, unknown>;
  /** "OK" or the gRPC status name it answered with. */
  result: string;
}

export interface FakeMcProxy {
  /** Absolute path of the socket (the agent's `[mcproxy] socket`). */
  socket: string;
  dir: string;
  version: string;
  /** Current routes, sorted by listener then hostname. */
  routes(): ProxyRoute[];
  calls(): FakeMcProxyCall[];
  stop(): Promise<void>;
}

const DNS_LABEL = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i;

export function isDnsName(s: string): boolean {
  if (s.length === 0 || s.length > 253) return false;
  return s.split(".").every((l) => DNS_LABEL.test(l));
}

function badPort(n: number): boolean {
  return !Number.isInteger(n) || n < 1 || n > 65535;
}

/** host:port with host a DNS name, IPv4 or [IPv6]; null when fine, else the reason. */
function backendProblem(b: string): string | null {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(b);
  if (!m) return `backend "${b}": expected host:port`;
  const host = m[1] ?? m[2] ?? "";
  if (m[1] !== undefined ? isIP(host) !== 6 : isIP(host) !== 4 && !isDnsName(host))
    return `backend "${b}": bad host "${host}"`;
  if (badPort(Number(m[3]))) return `backend "${b}": port must be 1-65535`;
  return null;
}

function pemCount(text: string): number {
  return text.match(/-----BEGIN CERTIFICATE-----/g)?.length ?? 0;
}

/** Why mc-proxy would refuse this route, or null. One line. */
export function routeProblem(r: Route | undefined): string | null {
  if (!r) return "route is required";
  if (badPort(r.listener)) return `listener ${r.listener}: must be 1-65535`;
  if (!r.hostname) return "hostname is required";
  if (!isDnsName(r.hostname)) return `hostname "${r.hostname}": not a DNS name`;
  const b = backendProblem(r.backend);
  if (b) return b;
  if (r.mode !== "l4" && r.mode !== "l7") return `mode "${r.mode}": expected "l4" or "l7"`;
  if (r.mode === "l7") {
    if (!r.tlsCert || !r.tlsKey) return `l7 route needs tls_cert and tls_key`;
    if (!existsSync(r.tlsCert)) return `tls_cert ${r.tlsCert}: no such file`;
    if (!existsSync(r.tlsKey)) return `tls_key ${r.tlsKey}: no such file`;
    const n = pemCount(readFileSync(r.tlsCert, "utf8"));
    if (n === 0) return `tls_cert ${r.tlsCert}: no PEM certificate`;
    if (n < 2)
      return `tls_cert ${r.tlsCert}: leaf-only certificate, the full chain (leaf + intermediates) is required`;
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(readFileSync(r.tlsKey, "utf8")))
      return `tls_key ${r.tlsKey}: no PEM private key`;
  }
  return null;
}

function plain(r: Route): ProxyRoute {
  return {
    listener: r.listener,
    hostname: r.hostname,
    backend: r.backend,
    mode: r.mode as "l4" | "l7",
    tlsCert: r.tlsCert,
    tlsKey: r.tlsKey,
    backendTls: r.backendTls,
  };
}

type Unary<Req> = (
  call: grpc.ServerUnaryCall<Req, unknown>,
  cb: (err: grpc.ServiceError | null, res?: unknown) => void,
) => void;

export async function startFakeMcProxy(opts: { version?: string } = {}): Promise<FakeMcProxy> {
  const version = opts.version ?? "mc-proxy-fake 1.0.0";
  const dir = mkdtempSync(join(tmpdir(), "fake-mcproxy-"));
  const socket = join(dir, "mc-proxy.sock");
  const table = new Map<string, Route>();
  const log: FakeMcProxyCall[] = [];
  const key = (listener: number, hostname: string) => `${listener}\u0000${hostname.toLowerCase()}`;
  const sorted = () =>
    [...table.values()].sort((a, b) => a.listener - b.listener || a.hostname.localeCompare(b.hostname));

  // Every handler records its call and answers OK or one INVALID_ARGUMENT line.
  const handle =
    <Req>(
      method: FakeMcProxyCall["method"],
      describe: (req: Req) => Record<string, unknown>,
      run: (req: Req) => unknown,
    ): Unary<Req> =>
    (call, cb) => {
      const entry: FakeMcProxyCall = { method, request: describe(call.request), result: "OK" };
      log.push(entry);
      try {
        cb(null, run(call.request));
      } catch (err) {
        entry.result = "INVALID_ARGUMENT";
        cb({
          code: grpc.status.INVALID_ARGUMENT,
          details: (err as Error).message,
          name: "Error",
          message: (err as Error).message,
          metadata: new grpc.Metadata(),
        });
      }
    };

  const impl = {
    AddRoute: handle<AddRouteRequest>(
      "AddRoute",
      (req) => ({ route: req.route ? plain(req.route) : null }),
      (req) => {
        const problem = routeProblem(req.route);
        if (problem) throw new Error(problem);
        const r = create(RouteSchema, req.route!);
        const k = key(r.listener, r.hostname);
        const created = !table.has(k);
        table.set(k, r);
        return { created };
      },
    ),
    RemoveRoute: handle<RemoveRouteRequest>(
      "RemoveRoute",
      (req) => ({ listener: req.listener, hostname: req.hostname }),
      (req) => {
        if (badPort(req.listener)) throw new Error(`listener ${req.listener}: must be 1-65535`);
        if (!req.hostname) throw new Error("hostname is required");
        return { removed: table.delete(key(req.listener, req.hostname)) };
      },
    ),
    ListRoutes: handle<ListRoutesRequest>(
      "ListRoutes",
      (req) => ({ listener: req.listener }),
      (req) => {
        if (req.listener !== 0 && badPort(req.listener))
          throw new Error(`listener ${req.listener}: must be 0 (all) or 1-65535`);
        return { routes: sorted().filter((r) => req.listener === 0 || r.listener === req.listener) };
      },
    ),
    GetStatus: handle<unknown>(
      "GetStatus",
      () => ({}),
      () => {
        const per = new Map<number, number>();
        for (const r of table.values()) per.set(r.listener, (per.get(r.listener) ?? 0) + 1);
        return {
          version,
          routeCount: table.size,
          listeners: [...per].sort((a, b) => a[0] - b[0]).map(([port, routes]) => ({ port, routes })),
        };
      },
    ),
  };

  const server = new grpc.Server();
  server.addService(grpcServiceDefinition(ProxyAdminService), impl as grpc.UntypedServiceImplementation);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socket}`, grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  chmodSync(socket, 0o660);

  return {
    socket,
    dir,
    version,
    routes: () => sorted().map(plain),
    calls: () => log.map((c) => ({ ...c })),
    async stop() {
      // Graceful first; a client still holding a call open must not hang the test's afterAll.
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, 2000);
        server.tryShutdown(() => {
          clearTimeout(t);
          resolve();
        });
      });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
