// Local certificate authority (spec §3.5 local mode): create a CA, issue
// TLS leaf certificates signed by it, inspect certificates, write key pairs.
// ECDSA P-256 / SHA-256 through WebCrypto; private keys are PKCS#8 PEM
// ("BEGIN PRIVATE KEY"), which node:tls, gRPC libraries and Bun.serve all accept.
// Nothing here touches the disk except writeKeyPair.

import { createPrivateKey, randomBytes, X509Certificate } from "node:crypto";
import { isIP } from "node:net";
import { join } from "node:path";
import type * as X509 from "@peculiar/x509";
import { writeFileAtomic } from "./files.ts";
import { x509 } from "./x509-lib.ts"; // never import "@peculiar/x509" directly (see there)

const KEY_ALG = { name: "ECDSA", namedCurve: "P-256" } as const;
const SIGN_ALG = { name: "ECDSA", hash: "SHA-256" } as const;
const DAY_MS = 86_400_000;
// Backdate notBefore so a peer whose clock is a little behind accepts the cert.
const BACKDATE_MS = 5 * 60_000;

export interface KeyPairPem {
  certPem: string;
  keyPem: string;
}

export interface IssuedCert extends KeyPairPem {
  /** Leaf followed by the CA certificate (what L7 proxies and gRPC peers want). */
  chainPem: string;
  /** Lower-case hex, as certInfo reports it. */
  serial: string;
  notAfter: Date;
}

export interface IssueCertOptions {
  caCertPem: string;
  caKeyPem: string;
  commonName: string;
  dnsNames: string[];
  ipAddresses: string[];
  days: number;
  /** Default true. */
  serverAuth?: boolean;
  /** Default false. */
  clientAuth?: boolean;
  /** Default: now minus a few minutes of clock-skew allowance. */
  notBefore?: Date;
}

export interface CertInfo {
  serial: string;
  notBefore: Date;
  notAfter: Date;
  dnsNames: string[];
  ipAddresses: string[];
  subject: string;
  issuer: string;
}

export class PkiError extends Error {
  override name = "PkiError";
}

export async function createCA(opts: { commonName: string; days: number }): Promise<KeyPairPem> {
  checkCommonName(opts.commonName);
  checkDays(opts.days);
  const keys = await generateKeys();
  const notBefore = new Date(Date.now() - BACKDATE_MS);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: nameOf(opts.commonName),
    notBefore,
    notAfter: new Date(notBefore.getTime() + opts.days * DAY_MS),
    keys,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      // pathLength 0: this CA signs leaves only, never another CA.
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { certPem: cert.toString("pem"), keyPem: await exportKeyPem(keys.privateKey) };
}

export async function issueCert(opts: IssueCertOptions): Promise<IssuedCert> {
  checkCommonName(opts.commonName);
  checkDays(opts.days);
  for (const d of opts.dnsNames) {
    if (
      !/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/.test(d)
    ) {
      throw new PkiError(`invalid DNS name for certificate: ${JSON.stringify(d)}`);
    }
  }
  for (const ip of opts.ipAddresses) {
    if (isIP(ip) === 0) throw new PkiError(`invalid IP address for certificate: ${JSON.stringify(ip)}`);
  }
  const serverAuth = opts.serverAuth ?? true;
  // A server is reached by a name; a client certificate (the master's) names no host.
  if (serverAuth && opts.dnsNames.length + opts.ipAddresses.length === 0) {
    throw new PkiError("certificate needs at least one DNS name or IP address");
  }
  const clientAuth = opts.clientAuth ?? false;
  if (!serverAuth && !clientAuth) throw new PkiError("certificate needs serverAuth or clientAuth");

  const caCert = parseCert(opts.caCertPem, "CA certificate");
  const bc = caCert.getExtension(x509.BasicConstraintsExtension);
  if (!bc?.ca) throw new PkiError("CA certificate is not a CA (basicConstraints CA:FALSE or missing)");
  const caKey = await importKeyPem(opts.caKeyPem);

  const keys = await generateKeys();
  const notBefore = opts.notBefore ?? new Date(Date.now() - BACKDATE_MS);
  const eku: string[] = [];
  if (serverAuth) eku.push(x509.ExtendedKeyUsage.serverAuth);
  if (clientAuth) eku.push(x509.ExtendedKeyUsage.clientAuth);
  const ski = caCert.getExtension(x509.SubjectKeyIdentifierExtension);
  const aki = ski
    ? new x509.AuthorityKeyIdentifierExtension(ski.keyId)
    : await x509.AuthorityKeyIdentifierExtension.create(caCert.publicKey);

  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: nameOf(opts.commonName),
    issuer: caCert.subjectName,
    notBefore,
    notAfter: new Date(notBefore.getTime() + opts.days * DAY_MS),
    publicKey: keys.publicKey,
    signingKey: caKey,
    signingAlgorithm: SIGN_ALG,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // ECDSA keys in TLS 1.3 only ever sign.
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension(eku),
      new x509.SubjectAlternativeNameExtension([
        ...opts.dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...opts.ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      aki,
    ],
  });
  // A CA key that does not belong to the CA cert would yield a leaf nobody
  // can verify; catch that here rather than at the first TLS handshake.
  if (!(await cert.verify({ publicKey: caCert, signatureOnly: true }))) {
    throw new PkiError("CA key does not match the CA certificate");
  }
  const certPem = cert.toString("pem");
  return {
    certPem,
    keyPem: await exportKeyPem(keys.privateKey),
    chainPem: `${certPem}\n${caCert.toString("pem")}\n`,
    serial: cert.serialNumber.toLowerCase(),
    notAfter: cert.notAfter,
  };
}

/** Reads the first certificate of a PEM (a chain is fine). */
export function certInfo(pem: string): CertInfo {
  const cert = parseCert(pem, "certificate");
  const dnsNames: string[] = [];
  const ipAddresses: string[] = [];
  const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
  for (const n of san?.names.items ?? []) {
    if (n.type === "dns") dnsNames.push(n.value);
    else if (n.type === "ip") ipAddresses.push(n.value);
  }
  return {
    serial: cert.serialNumber.toLowerCase(),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
    dnsNames,
    ipAddresses,
    subject: cert.subject,
    issuer: cert.issuer,
  };
}

/** The common name of the master's client certificate: the one identity a certificate carries. */
export const MASTER_CLIENT_CN = "mcp-master";
const CLIENT_AUTH = "1.3.6.1.5.5.7.3.2";

/**
 * Issues the master's client certificate (SPEC §5.2): CN mcp-master, clientAuth only (it cannot
 * serve TLS), no SAN. Agents with a [master] accept it for the master-only RPCs.
 */
export function issueMasterClientCert(ca: KeyPairPem, days = 825): Promise<IssuedCert> {
  return issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: MASTER_CLIENT_CN,
    dnsNames: [],
    ipAddresses: [],
    days,
    serverAuth: false,
    clientAuth: true,
  });
}

/**
 * Why `pair` is not a master client certificate agents trusting `caPem` accept, or null:
 * CN mcp-master, clientAuth, issued by that CA, valid now, and the key its own.
 */
export function masterClientCertProblem(pair: KeyPairPem, caPem: string, now = Date.now()): string | null {
  const leaf = new X509Certificate(pair.certPem);
  const cert = parseCert(pair.certPem, "certificate");
  const cn = cert.subjectName.getField("CN")[0] ?? "";
  if (cn !== MASTER_CLIENT_CN)
    return `the certificate's CN is ${JSON.stringify(cn)}, expected "${MASTER_CLIENT_CN}"`;
  const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)?.usages.map(String) ?? [];
  if (!eku.includes(CLIENT_AUTH))
    return "the certificate is not for client authentication (no clientAuth usage)";
  if (!leaf.checkPrivateKey(createPrivateKey(pair.keyPem))) return "client_key is not the key of client_cert";
  const issuers = (caPem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []).map(
    (p) => new X509Certificate(p),
  );
  if (!issuers.some((ca) => leaf.checkIssued(ca) && leaf.verify(ca.publicKey)))
    return "not issued by the fleet CA ([tls] ca_cert) the agents trust";
  if (cert.notAfter.getTime() <= now) return `expired on ${cert.notAfter.toISOString().slice(0, 10)}`;
  if (cert.notBefore.getTime() > now) return "not valid yet";
  return null;
}

/** Writes `<dir>/<name>.pem` (0644) and `<dir>/<name>.key` (0600), each atomically. */
export async function writeKeyPair(dir: string, name: string, pair: KeyPairPem): Promise<void> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name))
    throw new PkiError(`invalid key pair name: ${JSON.stringify(name)}`);
  // Key first: a cert without its key is useless, a key without its cert is harmless.
  await writeFileAtomic(join(dir, `${name}.key`), pair.keyPem, 0o600);
  await writeFileAtomic(join(dir, `${name}.pem`), pair.certPem, 0o644);
}

// ---------------------------------------------------------------------------

function checkCommonName(cn: string): void {
  if (cn.trim() === "" || cn.length > 64)
    throw new PkiError("certificate common name must be 1-64 characters");
}

function checkDays(days: number): void {
  if (!Number.isInteger(days) || days < 1 || days > 36_500) {
    throw new PkiError(`certificate validity must be a whole number of days (1-36500), got ${days}`);
  }
}

// JSON form, so a common name containing "," or "=" cannot inject RDNs.
function nameOf(cn: string): X509.JsonName {
  return [{ CN: [cn] }];
}

// 16 random bytes, positive and without a leading zero byte (minimal DER).
function randomSerial(): string {
  const b = randomBytes(16);
  b[0] = ((b[0] ?? 0) & 0x7f) | 0x40;
  return b.toString("hex");
}

async function generateKeys(): Promise<CryptoKeyPair> {
  return (await crypto.subtle.generateKey(KEY_ALG, true, ["sign", "verify"])) as CryptoKeyPair;
}

async function exportKeyPem(key: CryptoKey): Promise<string> {
  const der = await crypto.subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

async function importKeyPem(pem: string): Promise<CryptoKey> {
  let der: ArrayBuffer;
  try {
    const blocks = x509.PemConverter.decodeWithHeaders(pem).filter((b) => b.type === "PRIVATE KEY");
    const first = blocks[0];
    if (!first) throw new Error("no PRIVATE KEY block");
    der = first.rawData;
    return await crypto.subtle.importKey("pkcs8", der, KEY_ALG, false, ["sign"]);
  } catch {
    throw new PkiError("CA key is not a PKCS#8 ECDSA P-256 PEM private key");
  }
}

function parseCert(pem: string, what: string): X509.X509Certificate {
  const match = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/.exec(pem);
  if (!match) throw new PkiError(`${what} is not a PEM certificate`);
  try {
    return new x509.X509Certificate(match[0]);
  } catch {
    throw new PkiError(`${what} could not be parsed`);
  }
}
