// Metacrypt adapter (spec §8, issue 5): TLS certificates for L7 routes,
// kept at <cert_dir>/<hostname>.pem (leaf + chain, 0644) and .key (0600),
// reused while more than `renewBeforeDays` (30) remain, else requested anew.
//
// Public Metacrypt facts: issuance is `POST /v1/engine/request` against mount
// `pki`, issuer `infra`; the CA is at `GET /v1/pki/{mount}/ca`; errors are
// {"error": "..."}; callers authenticate with an MCIAS bearer token.
//
// NOT public — this project's INFERRED request/response shape, kept here only:
//   request  {"mount": "pki", "operation": "issue",
//             "data": {"issuer": "infra", "common_name": h, "dns_names": [h], "ttl": "2160h"}}
//   response {"certificate": "<PEM leaf>", "chain": "<PEM intermediates>"
//             (or "ca_chain": ["<PEM>", ...]), "private_key": "<PEM>",
//             "serial": "<hex>", "expires_at": "<RFC 3339>"}
//   CA       PEM text, or JSON {"certificate": "<PEM>"} / {"ca": "<PEM>"}.
// Everything returned is checked before it is written (SAN, key match, chain
// signs the leaf, not expired): mc-proxy fails silently on a leaf-only or
// mismatched chain, so a bad answer must fail the deploy here instead.

import { createPrivateKey, X509Certificate } from "node:crypto";
import { readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import type { certInfo as CertInfoFn } from "../pki/ca.ts";
import { writeFileAtomic } from "../pki/files.ts";
import { isObject, ServiceHttp } from "./http.ts";
import type { TokenSource } from "./token.ts";
import { type CertIssuer, IntegrationError, type IssuedCertFiles } from "./types.ts";

const DAY_MS = 86_400_000;
// One DNS name, no wildcard (one cert per hostname, §8), safe as a file name.
const HOSTNAME_RE =
  /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const PEM_CERT_RE = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface MetacryptOptions {
  serverUrl: string;
  /** PEM file to trust for Metacrypt's HTTPS; absent = system roots. */
  caCertPath?: string;
  mount?: string;
  issuer?: string;
  /** The agent's bearer token: a string, or a provider (fileToken, refreshingToken). */
  token: TokenSource;
  /** Where <hostname>.pem|.key live (mc-proxy's cert dir). */
  certDir: string;
  /** Reuse a cert while more than this many days remain. Default 30. */
  renewBeforeDays?: number;
  /** Requested lifetime, Metacrypt duration syntax. Default "2160h" (90 days). */
  ttl?: string;
  now?: () => Date;
  timeoutMs?: number;
  /** Allow an http:// server_url (the section's `insecure_http = true`, for tests). */
  insecureHttp?: boolean;
}

export class MetacryptClient implements CertIssuer {
  private readonly http: ServiceHttp;
  private readonly mount: string;
  private readonly issuer: string;
  private readonly renewMs: number;
  private readonly ttl: string;
  private readonly now: () => Date;
  // Concurrent ensureCert calls for one hostname share one issuance.
  private readonly inflight = new Map<string, Promise<IssuedCertFiles>>();

  constructor(private readonly opts: MetacryptOptions) {
    this.http = new ServiceHttp("metacrypt", opts);
    this.mount = opts.mount ?? "pki";
    this.issuer = opts.issuer ?? "infra";
    this.renewMs = (opts.renewBeforeDays ?? 30) * DAY_MS;
    this.ttl = opts.ttl ?? "2160h";
    this.now = opts.now ?? (() => new Date());
    if (!/^[A-Za-z0-9_-]+$/.test(this.mount)) {
      throw new IntegrationError("metacrypt", `invalid mount name: ${JSON.stringify(this.mount)}`);
    }
  }

  /** <cert_dir>/<hostname>.pem and .key. */
  paths(hostname: string): { certPath: string; keyPath: string } {
    checkHostname(hostname);
    return {
      certPath: join(this.opts.certDir, `${hostname}.pem`),
      keyPath: join(this.opts.certDir, `${hostname}.key`),
    };
  }

  ensureCert(hostname: string): Promise<IssuedCertFiles> {
    const key = hostname.toLowerCase();
    const running = this.inflight.get(key);
    if (running) return running;
    const p = this.ensure(hostname).finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  async removeCert(hostname: string): Promise<void> {
    const { certPath, keyPath } = this.paths(hostname);
    await rm(certPath, { force: true });
    await rm(keyPath, { force: true });
  }

  /** The mount's CA certificate (PEM), from the public `GET /v1/pki/{mount}/ca`. */
  async fetchCa(): Promise<string> {
    const r = await this.http.request("GET", `/v1/pki/${this.mount}/ca`, { auth: false });
    if (r.status < 200 || r.status > 299) throw this.http.fail("fetch CA", r);
    let pem = r.text;
    if (isObject(r.body)) {
      const v = r.body.certificate ?? r.body.ca ?? r.body.ca_cert;
      pem = typeof v === "string" ? v : "";
    }
    const certs = splitCerts(pem);
    if (certs.length === 0)
      throw new IntegrationError("metacrypt", "fetch CA: response holds no PEM certificate");
    return `${certs.join("\n")}\n`;
  }

  private async ensure(hostname: string): Promise<IssuedCertFiles> {
    const { certPath, keyPath } = this.paths(hostname);
    const certInfo = await loadCertInfo();
    const existing = await this.reusable(certInfo, hostname, certPath, keyPath);
    if (existing) return { hostname, certPath, keyPath, ...existing, reused: true };

    const r = await this.http.request("POST", "/v1/engine/request", {
      body: {
        mount: this.mount,
        operation: "issue",
        data: { issuer: this.issuer, common_name: hostname, dns_names: [hostname], ttl: this.ttl },
      },
    });
    if (r.status < 200 || r.status > 299) throw this.http.fail(`issue certificate for ${hostname}`, r);
    const issued = this.checkIssued(certInfo, hostname, r.body);
    // Key first: a stale .pem beside a new .key fails the key check on the
    // next ensureCert and is reissued, never served.
    await writeFileAtomic(keyPath, issued.keyPem, 0o600);
    await writeFileAtomic(certPath, issued.chainPem, 0o644);
    return { hostname, certPath, keyPath, serial: issued.serial, notAfter: issued.notAfter, reused: false };
  }

  /** The existing cert's serial/expiry when it may be kept, else undefined. */
  private async reusable(
    certInfo: typeof CertInfoFn,
    hostname: string,
    certPath: string,
    keyPath: string,
  ): Promise<{ serial: string; notAfter: Date } | undefined> {
    let pem: string;
    let keyPem: string;
    try {
      [pem, keyPem] = await Promise.all([readFile(certPath, "utf8"), readFile(keyPath, "utf8")]);
    } catch {
      return undefined; // missing or unreadable: issue a new one
    }
    try {
      const info = certInfo(pem);
      if (info.notAfter.getTime() - this.now().getTime() <= this.renewMs) return undefined;
      if (!hasName(info.dnsNames, hostname)) return undefined;
      if (!keyMatches(pem, keyPem)) return undefined;
      if (splitCerts(pem).length < 2) return undefined; // leaf-only: mc-proxy needs the chain
      return { serial: info.serial, notAfter: info.notAfter };
    } catch {
      return undefined; // unparsable files are replaced
    }
  }

  private checkIssued(
    certInfo: typeof CertInfoFn,
    hostname: string,
    body: unknown,
  ): { chainPem: string; keyPem: string; serial: string; notAfter: Date } {
    const bad = (why: string) =>
      new IntegrationError("metacrypt", `issue certificate for ${hostname}: ${why}`);
    if (!isObject(body)) throw bad("response is not a JSON object");
    const { certificate, chain, ca_chain, private_key } = body;
    if (typeof certificate !== "string" || typeof private_key !== "string") {
      throw bad("response lacks certificate or private_key");
    }
    // Some CAs put the chain after the leaf in "certificate": accept that too.
    const [leaf, ...rest] = splitCerts(certificate);
    if (!leaf) throw bad("certificate is not PEM");
    const chainCerts = [...rest];
    if (typeof chain === "string") chainCerts.push(...splitCerts(chain));
    if (Array.isArray(ca_chain)) {
      for (const c of ca_chain) if (typeof c === "string") chainCerts.push(...splitCerts(c));
    }
    const seen = new Set<string>([norm(leaf)]);
    const uniqueChain = chainCerts.filter((c) => !seen.has(norm(c)) && seen.add(norm(c)));
    if (uniqueChain.length === 0) throw bad("response has no CA chain (mc-proxy needs the full chain)");

    let info: ReturnType<typeof CertInfoFn>;
    let leafX: X509Certificate;
    let issuerX: X509Certificate;
    try {
      info = certInfo(leaf);
      leafX = new X509Certificate(leaf);
      issuerX = new X509Certificate(uniqueChain[0] as string);
    } catch {
      throw bad("returned certificate could not be parsed");
    }
    if (!hasName(info.dnsNames, hostname)) {
      throw bad(
        `returned certificate does not name ${hostname} (SANs: ${info.dnsNames.join(", ") || "none"})`,
      );
    }
    if (info.notAfter.getTime() <= this.now().getTime()) throw bad("returned certificate is already expired");
    if (!keyMatches(leaf, private_key)) throw bad("returned private key does not match the certificate");
    if (!leafX.checkIssued(issuerX) || !leafX.verify(issuerX.publicKey)) {
      throw bad("returned chain does not sign the certificate");
    }
    return {
      chainPem: `${[leaf, ...uniqueChain].join("\n")}\n`,
      keyPem: private_key.endsWith("\n") ? private_key : `${private_key}\n`,
      serial: info.serial,
      notAfter: info.notAfter,
    };
  }
}

/**
 * @peculiar/x509 (and its asn1/tsyringe/reflect deps) costs the compiled agent ~16 MB RSS once
 * evaluated: it loads on the first certificate this client handles, never in an idle agent.
 */
function loadCertInfo(): Promise<typeof CertInfoFn> {
  return import("../pki/ca.ts").then((m) => m.certInfo);
}

function checkHostname(hostname: string): void {
  if (hostname.length > 253 || !HOSTNAME_RE.test(hostname)) {
    throw new IntegrationError(
      "metacrypt",
      `invalid hostname for a certificate: ${JSON.stringify(hostname)}`,
    );
  }
}

function splitCerts(pem: string): string[] {
  return pem.match(PEM_CERT_RE) ?? [];
}

function norm(pem: string): string {
  return pem.replace(/\s+/g, "");
}

function hasName(names: string[], hostname: string): boolean {
  const h = hostname.toLowerCase();
  return names.some((n) => n.toLowerCase() === h);
}

function keyMatches(certPem: string, keyPem: string): boolean {
  try {
    const first = splitCerts(certPem)[0];
    return first !== undefined && new X509Certificate(first).checkPrivateKey(createPrivateKey(keyPem));
  } catch {
    return false;
  }
}
