// Shared TLS setup for the HTTPS fakes: a throwaway CA, a server cert for
// 127.0.0.1/localhost issued by it (this project's own CA code), and the CA
// written to a temp file that adapters are pointed at via ca_cert. Plus the
// small JSON helpers every fake uses ({"error": "..."} bodies, bearer check).

import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCA, issueCert } from "../../src/pki/ca.ts";

export interface FakeTls {
  /** Pass as Bun.serve({ tls }). */
  tls: { cert: string; key: string };
  caCertPem: string;
  caCertPath: string;
  /** Temp dir holding caCertPath; removed by cleanup(). */
  dir: string;
  cleanup(): Promise<void>;
}

export async function fakeTls(name: string): Promise<FakeTls> {
  const ca = await createCA({ commonName: `fake ${name} test CA`, days: 2 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: `${name}.test`,
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 1,
  });
  const dir = await mkdtemp(join(tmpdir(), `fake-${name}-`));
  const caCertPath = join(dir, "ca.pem");
  await writeFile(caCertPath, ca.certPem, { mode: 0o644 });
  return {
    tls: { cert: leaf.certPem, key: leaf.keyPem },
    caCertPem: ca.certPem,
    caCertPath,
    dir,
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

export const jsonResponse = (status: number, body: unknown): Response => Response.json(body, { status });

/** The bearer token of a request, or undefined. */
export function bearer(req: Request): string | undefined {
  return /^Bearer (\S+)$/.exec(req.headers.get("authorization") ?? "")?.[1];
}

/** A JSON object body, or undefined for bad JSON / a non-object. */
export async function readJsonObject(req: Request): Promise<Record<string, unknown> | undefined> {
  try {
    const v: unknown = await req.json();
    return v !== null && typeof v === "object" && !Array.isArray(v)
      ? (v as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
