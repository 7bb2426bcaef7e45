// The contracts between the agent and the platform services it wires a deploy into:
// mc-proxy (routes), Metacrypt (TLS certificates) and MCNS (DNS). Each adapter in this folder
// implements one of these; the agent composes them (roles/agent/integrations.ts) and each is
// optional: an absent config section means that step is skipped (nil-safe).

/** One mc-proxy route: a listener port and hostname forwarded to a backend host:port. */
export interface ProxyRoute {
  listener: number;
  hostname: string;
  /** host:port the proxy forwards to (the node address and the route's host port). */
  backend: string;
  mode: "l4" | "l7";
  /** L7 only: paths of the full-chain certificate and key mc-proxy terminates TLS with. */
  tlsCert: string;
  tlsKey: string;
  backendTls: boolean;
}

/** mc-proxy's admin API (gRPC over its unix socket). AddRoute is an idempotent upsert. */
export interface ProxyAdmin {
  addRoute(route: ProxyRoute): Promise<void>;
  /** Removing a route that does not exist is not an error. */
  removeRoute(listener: number, hostname: string): Promise<void>;
  listRoutes(): Promise<ProxyRoute[]>;
  status(): Promise<{ version: string; routes: number }>;
  close(): void;
}

export interface IssuedCertFiles {
  hostname: string;
  /** <cert_dir>/<hostname>.pem: leaf + intermediates (full chain). */
  certPath: string;
  /** <cert_dir>/<hostname>.key, mode 0600. */
  keyPath: string;
  serial: string;
  notAfter: Date;
  /** true when an existing cert with more than the renewal window left was kept. */
  reused: boolean;
}

/** Metacrypt: certificates for L7 routes, reused while more than 30 days remain. */
export interface CertIssuer {
  ensureCert(hostname: string): Promise<IssuedCertFiles>;
  /** Deletes <cert_dir>/<hostname>.pem|.key; missing files are not an error. */
  removeCert(hostname: string): Promise<void>;
}

export interface DnsRecord {
  name: string;
  type: string;
  value: string;
  ttl: number;
}

/** MCNS: A records in the internal zone (e.g. svc.mcp.metacircular.net). */
export interface DnsRegistrar {
  readonly zone: string;
  /** Creates or updates `<name>.<zone> A value`. */
  upsertA(name: string, value: string): Promise<void>;
  /** Deleting a record that does not exist is not an error; `value`: only the record with that address. */
  deleteA(name: string, value?: string): Promise<void>;
  listRecords(): Promise<DnsRecord[]>;
}

/** The adapters configured on this agent; undefined = that integration is not configured. */
export interface Integrations {
  proxy?: ProxyAdmin;
  certs?: CertIssuer;
  dns?: DnsRegistrar;
}

/** One-line error type for every adapter: names the integration and what failed. */
export class IntegrationError extends Error {
  override name = "IntegrationError";
  constructor(
    readonly integration: "mc-proxy" | "metacrypt" | "mcns" | "mcias",
    message: string,
    readonly status?: number,
  ) {
    super(`${integration}: ${message}`);
  }
}
