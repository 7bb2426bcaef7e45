// A throwaway PKI for tests that run a real TLS gRPC server on 127.0.0.1: a CA named
// "<name> test CA" and one server leaf for localhost and 127.0.0.1 signed by it. The leaf's
// common name, validity and extra addresses can be set where a test depends on them.
import {
  createCA,
  type IssuedCert,
  issueCert,
  issueMasterClientCert,
  type KeyPairPem,
} from "../../src/pki/ca.ts";

export interface TestPki {
  /** The CA certificate, what clients trust. */
  caPem: string;
  ca: KeyPairPem;
  /** The server leaf (certPem alone, chainPem with the CA, keyPem). */
  leaf: IssuedCert;
  certPem: string;
  keyPem: string;
  /** The master's client certificate from this CA (CN mcp-master, clientAuth): MasterSettings.clientCert. */
  masterClient: { certPem: string; keyPem: string };
}

export interface TestPkiOptions {
  /** Validity of the CA in days (default 2). */
  caDays?: number;
  /** The leaf's common name (default "mcp-agent"). */
  commonName?: string;
  /** Validity of the leaf in days (default 1). */
  days?: number;
  /** The leaf's IP addresses (default 127.0.0.1). */
  ipAddresses?: string[];
}

export async function testPki(name: string, opts: TestPkiOptions = {}): Promise<TestPki> {
  const ca = await createCA({ commonName: `${name} test CA`, days: opts.caDays ?? 2 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: opts.commonName ?? "mcp-agent",
    dnsNames: ["localhost"],
    ipAddresses: opts.ipAddresses ?? ["127.0.0.1"],
    days: opts.days ?? 1,
  });
  const mc = await issueMasterClientCert(ca, opts.days ?? 1);
  return {
    caPem: ca.certPem,
    ca,
    leaf,
    certPem: leaf.certPem,
    keyPem: leaf.keyPem,
    masterClient: { certPem: mc.certPem, keyPem: mc.keyPem },
  };
}
