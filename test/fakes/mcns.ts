// Contract-faithful fake MCNS (spec §8, issue 5) for tests: a real HTTPS
// server on 127.0.0.1 holding one zone's records in memory.
// Public: POST /v1/zones/{zone}/records {name, type, value, ttl} → 201 record;
// GET /v1/zones/{zone}/records lists; errors {"error": "..."}.
// Inferred (see src/integrations/mcns.ts): list answer {"records": [...]},
// `?name=` filter, DELETE /v1/zones/{zone}/records/{id} (204; 404 if absent).
// Auth: Bearer token from `tokens` (401 otherwise); 400 for bad input; 404
// for an unknown zone; 409 for an exact duplicate record.

import { isIP } from "node:net";
import { bearer, fakeTls, jsonResponse as json, readJsonObject } from "./https.ts";

export interface FakeMcnsRecord {
  id: number;
  name: string;
  type: string;
  value: string;
  ttl: number;
}

export interface FakeMcns {
  url: string;
  zone: string;
  caCertPem: string;
  caCertPath: string;
  /** A copy of the zone's records. */
  records(): FakeMcnsRecord[];
  /** Mutating requests (POST/DELETE) accepted. */
  writeCalls(): number;
  stop(): Promise<void>;
}

const NAME_RE = /^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;
const TYPES = new Set(["A", "AAAA", "CNAME", "TXT"]);

export async function startFakeMcns(opts: { tokens: string[]; zone?: string }): Promise<FakeMcns> {
  const tokens = new Set(opts.tokens);
  const zone = opts.zone ?? "svc.mcp.metacircular.net";
  const tls = await fakeTls("mcns");
  const store: FakeMcnsRecord[] = [];
  let nextId = 1;
  let writes = 0;

  const create = async (req: Request): Promise<Response> => {
    const body = await readJsonObject(req);
    if (!body) return json(400, { error: "invalid JSON body" });
    const { name, type, value } = body;
    const ttl = body.ttl ?? 300;
    if (typeof name !== "string" || !NAME_RE.test(name)) return json(400, { error: "invalid record name" });
    if (typeof type !== "string" || !TYPES.has(type)) return json(400, { error: "invalid record type" });
    if (typeof value !== "string" || value === "") return json(400, { error: "value is required" });
    if (type === "A" && isIP(value) !== 4)
      return json(400, { error: "A record value must be an IPv4 address" });
    if (typeof ttl !== "number" || !Number.isInteger(ttl) || ttl < 1)
      return json(400, { error: "invalid ttl" });
    if (store.some((r) => r.name === name && r.type === type && r.value === value)) {
      return json(409, { error: "record already exists" });
    }
    const rec = { id: nextId++, name, type, value, ttl };
    store.push(rec);
    writes++;
    return json(201, rec);
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: tls.tls,
    async fetch(req) {
      const url = new URL(req.url);
      if (url.pathname === "/v1/health" && req.method === "GET") return json(200, { status: "ok" });
      const m = /^\/v1\/zones\/([^/]+)\/records(?:\/([^/]+))?$/.exec(url.pathname);
      if (!m) return json(404, { error: "not found" });
      const token = bearer(req);
      if (!token) return json(401, { error: "missing bearer token" });
      if (!tokens.has(token)) return json(401, { error: "invalid token" });
      if (decodeURIComponent(m[1] ?? "") !== zone) return json(404, { error: "zone not found" });
      const id = m[2];
      if (id === undefined) {
        if (req.method === "GET") {
          const name = url.searchParams.get("name");
          return json(200, { records: store.filter((r) => name === null || r.name === name) });
        }
        if (req.method === "POST") return create(req);
        return json(405, { error: "method not allowed" });
      }
      if (req.method !== "DELETE") return json(405, { error: "method not allowed" });
      if (!/^\d+$/.test(id)) return json(400, { error: "invalid record id" });
      const i = store.findIndex((r) => r.id === Number(id));
      if (i < 0) return json(404, { error: "record not found" });
      store.splice(i, 1);
      writes++;
      return new Response(null, { status: 204 });
    },
  });

  return {
    url: `https://127.0.0.1:${server.port}`,
    zone,
    caCertPem: tls.caCertPem,
    caCertPath: tls.caCertPath,
    records: () => store.map((r) => ({ ...r })),
    writeCalls: () => writes,
    async stop() {
      await server.stop(true);
      await tls.cleanup();
    },
  };
}
