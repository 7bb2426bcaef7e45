// Contract-faithful fake Metacrypt (spec §8, issue 5) for tests: a real
// HTTPS server on 127.0.0.1 that issues REAL X.509 certificates from a test
// root → intermediate CA chain, with the requested SANs and lifetime.
// Request/response shape is this project's inferred one (see
// src/integrations/metacrypt.ts): POST /v1/engine/request
// {mount, operation: "issue", data: {issuer, common_name, dns_names, ttl}}
// → {certificate, chain | ca_chain, private_key, serial, expires_at}.
// GET /v1/pki/{mount}/ca (public) returns the root as PEM text.
// Auth: Bearer token from `tokens` (401 otherwise); 403 {"error":"permission
// denied"} for denied hostnames; 400 for bad JSON / missing fields.

import { randomBytes } from "node:crypto";
import type * as X509 from "@peculiar/x509";
import { issueCert } from "../../src/pki/ca.ts";
import { x509 } from "../../src/pki/x509-lib.ts";
import { bearer, fakeTls, jsonResponse as json, readJsonObject } from "./https.ts";

export interface CaPair {
  certPem: string;
  keyPem: string;
}

/** Ways to make the fake answer wrongly, to test the adapter's checks. */
export type Misbehaviour = "wrong-san" | "wrong-key" | "no-chain" | "wrong-chain";

export interface FakeMetacrypt {
  url: string;
  /** CA of the fake's own HTTPS server (not the issuing CA). */
  caCertPem: string;
  caCertPath: string;
  /** The issuing root; what GET /v1/pki/{mount}/ca returns. */
  rootPem: string;
  /** The intermediate that signs leaves (equal to rootPem with intermediate: false). */
  intermediatePem: string;
  /** Successful issuances. */
  issueCalls(): number;
  /** Every POST /v1/engine/request, accepted or not. */
  requestCalls(): number;
  /** Body of the last authenticated engine request. */
  lastRequest(): Record<string, unknown> | undefined;
  setDenyAll(deny: boolean): void;
  setMisbehave(m: Misbehaviour | undefined): void;
  stop(): Promise<void>;
}

const DAY_MS = 86_400_000;
const KEY_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;

export async function startFakeMetacrypt(opts: {
  tokens: string[];
  /** Issuing root; default: a fresh one (path length 1, so it may sign the intermediate). */
  issuerCa?: CaPair;
  denyHostnames?: RegExp;
  /** Default true: leaves are signed by an intermediate under the root. */
  intermediate?: boolean;
  mount?: string;
  issuer?: string;
  /** Answer with "ca_chain": [...] instead of "chain": "..." (both are accepted by the adapter). */
  chainAs?: "chain" | "ca_chain";
}): Promise<FakeMetacrypt> {
  const tokens = new Set(opts.tokens);
  const mount = opts.mount ?? "pki";
  const issuerName = opts.issuer ?? "infra";
  const root = opts.issuerCa ?? (await makeCa("fake Metacrypt root CA", 1));
  const signer = opts.intermediate === false ? root : await makeCa("fake Metacrypt intermediate CA", 0, root);
  const other = await makeCa("fake Metacrypt unrelated CA", 0);
  const tls = await fakeTls("metacrypt");
  let issued = 0;
  let requests = 0;
  let last: Record<string, unknown> | undefined;
  let denyAll = false;
  let misbehave: Misbehaviour | undefined;

  const engine = async (req: Request): Promise<Response> => {
    requests++;
    const token = bearer(req);
    if (!token) return json(401, { error: "missing bearer token" });
    if (!tokens.has(token)) return json(401, { error: "invalid token" });
    const body = await readJsonObject(req);
    if (!body) return json(400, { error: "invalid JSON body" });
    last = body;
    if (body.mount !== mount) return json(404, { error: `mount ${JSON.stringify(body.mount)} not found` });
    if (body.operation !== "issue") return json(400, { error: "unsupported operation" });
    const data = body.data;
    if (data === null || typeof data !== "object" || Array.isArray(data)) {
      return json(400, { error: "data is required" });
    }
    const d = data as Record<string, unknown>;
    if (d.issuer !== issuerName) return json(400, { error: `unknown issuer ${JSON.stringify(d.issuer)}` });
    const cn = d.common_name;
    if (typeof cn !== "string" || cn === "") return json(400, { error: "common_name is required" });
    const dnsNames = d.dns_names === undefined ? [cn] : d.dns_names;
    if (!Array.isArray(dnsNames) || !dnsNames.every((n) => typeof n === "string" && n !== "")) {
      return json(400, { error: "dns_names must be a list of names" });
    }
    const days = ttlDays(d.ttl);
    if (days === undefined) return json(400, { error: "invalid ttl" });
    if (denyAll || [cn, ...dnsNames].some((n) => opts.denyHostnames?.test(n))) {
      return json(403, { error: "permission denied" });
    }
    let leaf: Awaited<ReturnType<typeof issueCert>>;
    try {
      leaf = await issueCert({
        caCertPem: misbehave === "wrong-chain" ? other.certPem : signer.certPem,
        caKeyPem: misbehave === "wrong-chain" ? other.keyPem : signer.keyPem,
        commonName: cn,
        dnsNames: misbehave === "wrong-san" ? ["someone-else.example"] : (dnsNames as string[]),
        ipAddresses: [],
        days,
      });
    } catch (e) {
      return json(400, { error: e instanceof Error ? e.message : String(e) });
    }
    let keyPem = leaf.keyPem;
    if (misbehave === "wrong-key") {
      keyPem = (
        await issueCert({
          caCertPem: signer.certPem,
          caKeyPem: signer.keyPem,
          commonName: cn,
          dnsNames: ["x.example"],
          ipAddresses: [],
          days: 1,
        })
      ).keyPem;
    }
    issued++;
    const chainCerts = misbehave === "no-chain" ? [] : [signer.certPem];
    const chainField =
      opts.chainAs === "ca_chain" ? { ca_chain: chainCerts } : { chain: chainCerts.join("\n") };
    return json(200, {
      certificate: leaf.certPem,
      ...chainField,
      private_key: keyPem,
      serial: leaf.serial,
      expires_at: leaf.notAfter.toISOString(),
    });
  };

  const server = Bun.serve({
    hostname: "127.0.0.1",
    port: 0,
    tls: tls.tls,
    async fetch(req) {
      const path = new URL(req.url).pathname;
      if (path === "/v1/engine/request" && req.method === "POST") return engine(req);
      if (path === `/v1/pki/${mount}/ca` && req.method === "GET") {
        return new Response(root.certPem, { headers: { "content-type": "application/x-pem-file" } });
      }
      if (path === "/v1/health" && req.method === "GET") return json(200, { status: "ok" });
      return json(404, { error: "not found" });
    },
  });

  return {
    url: `https://127.0.0.1:${server.port}`,
    caCertPem: tls.caCertPem,
    caCertPath: tls.caCertPath,
    rootPem: root.certPem,
    intermediatePem: signer.certPem,
    issueCalls: () => issued,
    requestCalls: () => requests,
    lastRequest: () => last,
    setDenyAll: (v) => {
      denyAll = v;
    },
    setMisbehave: (m) => {
      misbehave = m;
    },
    async stop() {
      await server.stop(true);
      await tls.cleanup();
    },
  };
}

/** Go-style duration ("2160h", "90m", "3600s", "2160h0m0s") rounded up to whole days; undefined if bad. */
function ttlDays(ttl: unknown): number | undefined {
  if (ttl === undefined) return 90;
  if (typeof ttl !== "string") return undefined;
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$/.exec(ttl);
  if (!m || ttl === "") return undefined;
  const secs = Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0);
  if (secs <= 0) return undefined;
  return Math.max(1, Math.ceil(secs / 86_400));
}

/** A CA cert: self-signed when `parent` is absent, else signed by it. pathLength bounds CAs below it. */
async function makeCa(commonName: string, pathLength: number, parent?: CaPair): Promise<CaPair> {
  const keys = (await crypto.subtle.generateKey(KEY_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
  const notBefore = new Date(Date.now() - 5 * 60_000);
  const notAfter = new Date(notBefore.getTime() + 3 * DAY_MS + 400 * DAY_MS);
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x40;
  const extensions: X509.Extension[] = [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  let cert: X509.X509Certificate;
  if (!parent) {
    cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: b.toString("hex"),
      name: [{ CN: [commonName] }],
      notBefore,
      notAfter,
      keys,
      signingAlgorithm: SIGN_ALG,
      extensions,
    });
  } else {
    const parentCert = new x509.X509Certificate(parent.certPem);
    const parentKey = await crypto.subtle.importKey(
      "pkcs8",
      x509.PemConverter.decode(parent.keyPem)[0] as ArrayBuffer,
      KEY_ALG,
      false,
      ["sign"],
    );
    const ski = parentCert.getExtension(x509.SubjectKeyIdentifierExtension);
    if (ski) extensions.push(new x509.AuthorityKeyIdentifierExtension(ski.keyId));
    cert = await x509.X509CertificateGenerator.create({
      serialNumber: b.toString("hex"),
      subject: [{ CN: [commonName] }],
      issuer: parentCert.subjectName,
      notBefore,
      notAfter,
      publicKey: keys.publicKey,
      signingKey: parentKey,
      signingAlgorithm: SIGN_ALG,
      extensions,
    });
  }
  const der = await crypto.subtle.exportKey("pkcs8", keys.privateKey);
  return { certPem: cert.toString("pem"), keyPem: x509.PemConverter.encode(der, "PRIVATE KEY") };
}
