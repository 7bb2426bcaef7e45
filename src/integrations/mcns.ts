// MCNS adapter (spec §8, issue 5): the A record `<service>.<zone> → node
// address`, created/updated on deploy and deleted on stop/undeploy.
//
// Public MCNS facts: `POST /v1/zones/{zone}/records` with
// {"name","type":"A","value","ttl":300}; `GET /v1/zones/{zone}/records` lists;
// errors are {"error": "..."}; callers authenticate with an MCIAS bearer token.
//
// NOT public — this project's INFERRED shapes, kept here only:
//   list answer  {"records": [{"id", "name", "type", "value", "ttl"}]} (a bare
//                array is accepted too); `?name=` narrows it (we filter again
//                client-side in case the server ignores it);
//   one record   `DELETE /v1/zones/{zone}/records/{id}` (404 = already gone).
// Record names are relative to the zone; an FQDN form ("x.zone." or "x.zone")
// in a listing is normalised to the relative name.
//
// Update strategy (chosen over PUT, whose body is not public): create the new
// record first, then delete stale A records of the name. DNS never has a gap;
// for a moment both addresses answer, which MCNS allows (multiple A records).

import { isIP } from "node:net";
import { isObject, ServiceHttp } from "./http.ts";
import type { TokenSource } from "./token.ts";
import { type DnsRecord, type DnsRegistrar, IntegrationError } from "./types.ts";

const NAME_RE =
  /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

export interface McnsOptions {
  serverUrl: string;
  /** PEM file to trust for MCNS's HTTPS; absent = system roots. */
  caCertPath?: string;
  zone?: string;
  /** The agent's bearer token: a string, or a provider (fileToken, refreshingToken). */
  token: TokenSource;
  /** TTL of records we create; default 300. */
  ttl?: number;
  timeoutMs?: number;
  /** Allow an http:// server_url (the section's `insecure_http = true`, for tests). */
  insecureHttp?: boolean;
}

interface StoredRecord extends DnsRecord {
  id: string;
}

export class McnsClient implements DnsRegistrar {
  readonly zone: string;
  private readonly http: ServiceHttp;
  private readonly ttl: number;

  constructor(opts: McnsOptions) {
    this.http = new ServiceHttp("mcns", opts);
    this.zone = (opts.zone ?? "svc.mcp.metacircular.net").replace(/\.$/, "").toLowerCase();
    if (!NAME_RE.test(this.zone))
      throw new IntegrationError("mcns", `invalid zone: ${JSON.stringify(this.zone)}`);
    this.ttl = opts.ttl ?? 300;
  }

  async upsertA(name: string, value: string): Promise<void> {
    const rel = this.relName(name);
    if (isIP(value) !== 4) {
      throw new IntegrationError(
        "mcns",
        `A record value must be an IPv4 address, got ${JSON.stringify(value)}`,
      );
    }
    const current = (await this.list(rel)).filter((r) => r.type === "A" && r.name === rel);
    if (!current.some((r) => r.value === value)) {
      const res = await this.http.request("POST", this.recordsPath(), {
        body: { name: rel, type: "A", value, ttl: this.ttl },
      });
      if (res.status < 200 || res.status > 299) throw this.http.fail(`create A ${rel}.${this.zone}`, res);
    }
    for (const r of current) if (r.value !== value) await this.remove(r);
  }

  /**
   * Deletes the name's A records; with `value`, only the one with that address, so a node
   * tearing a service down never removes the record another node has set since (migration).
   */
  async deleteA(name: string, value?: string): Promise<void> {
    const rel = this.relName(name);
    for (const r of await this.list(rel))
      if (r.type === "A" && r.name === rel && (value === undefined || r.value === value))
        await this.remove(r);
  }

  async listRecords(): Promise<DnsRecord[]> {
    return (await this.list()).map(({ name, type, value, ttl }) => ({ name, type, value, ttl }));
  }

  private recordsPath(): string {
    return `/v1/zones/${encodeURIComponent(this.zone)}/records`;
  }

  private async list(name?: string): Promise<StoredRecord[]> {
    const q = name === undefined ? "" : `?name=${encodeURIComponent(name)}`;
    const res = await this.http.request("GET", this.recordsPath() + q);
    if (res.status < 200 || res.status > 299) throw this.http.fail(`list records of ${this.zone}`, res);
    const raw = Array.isArray(res.body) ? res.body : isObject(res.body) ? res.body.records : undefined;
    if (!Array.isArray(raw))
      throw new IntegrationError("mcns", `list records of ${this.zone}: unexpected response shape`);
    const out: StoredRecord[] = [];
    for (const r of raw) {
      if (!isObject(r)) continue;
      const { id, name: n, type, value, ttl } = r;
      if ((typeof id !== "string" && typeof id !== "number") || typeof n !== "string") continue;
      out.push({
        id: String(id),
        name: this.normalise(n),
        type: typeof type === "string" ? type.toUpperCase() : "",
        value: typeof value === "string" ? value : "",
        ttl: typeof ttl === "number" ? ttl : 0,
      });
    }
    return out;
  }

  private async remove(r: StoredRecord): Promise<void> {
    const res = await this.http.request("DELETE", `${this.recordsPath()}/${encodeURIComponent(r.id)}`);
    if (res.status === 404) return; // already gone: deleting is idempotent
    if (res.status < 200 || res.status > 299) throw this.http.fail(`delete A ${r.name}.${this.zone}`, res);
  }

  /** A name as given by the agent ("svc" or "svc.<zone>") → the zone-relative name. */
  private relName(name: string): string {
    const rel = this.normalise(name);
    if (rel === "" || rel.length > 253 || !NAME_RE.test(rel)) {
      throw new IntegrationError("mcns", `invalid record name: ${JSON.stringify(name)}`);
    }
    return rel;
  }

  private normalise(name: string): string {
    const n = name.replace(/\.$/, "").toLowerCase();
    return n.endsWith(`.${this.zone}`) ? n.slice(0, -(this.zone.length + 1)) : n;
  }
}
