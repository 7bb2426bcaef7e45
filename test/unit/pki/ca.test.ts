import { describe, expect, test } from "bun:test";
import { X509Certificate } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { certInfo, createCA, issueCert, PkiError, writeKeyPair } from "../../../src/pki/ca.ts";

const ca = await createCA({ commonName: "MCP unit CA", days: 3650 });
const leaf = await issueCert({
  caCertPem: ca.certPem,
  caKeyPem: ca.keyPem,
  commonName: "rift",
  dnsNames: ["localhost", "rift.example.net"],
  ipAddresses: ["127.0.0.1", "::1"],
  days: 90,
});

describe("createCA / issueCert", () => {
  test("CA is a CA, leaf chains to it, SANs match", () => {
    const caX = new X509Certificate(ca.certPem);
    const leafX = new X509Certificate(leaf.certPem);
    expect(caX.ca).toBe(true);
    expect(leafX.ca).toBe(false);
    expect(caX.verify(caX.publicKey)).toBe(true);
    expect(leafX.verify(caX.publicKey)).toBe(true);
    expect(leafX.checkIssued(caX)).toBe(true);
    expect(leafX.checkIP("127.0.0.1")).toBe("127.0.0.1");
    expect(leafX.checkHost("localhost")).toBe("localhost");
    expect(leafX.checkHost("evil.example.net")).toBeUndefined();
    expect(leafX.checkIP("10.0.0.1")).toBeUndefined();
    expect(leafX.subject).toContain("CN=rift");
    expect(leafX.issuer).toContain("CN=MCP unit CA");
  });

  test("keys are PKCS#8 PEM and chain is leaf then CA", () => {
    expect(ca.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    expect(leaf.keyPem).toStartWith("-----BEGIN PRIVATE KEY-----");
    const blocks = leaf.chainPem.match(/-----BEGIN CERTIFICATE-----/g) ?? [];
    expect(blocks.length).toBe(2);
    expect(leaf.chainPem.indexOf(leaf.certPem.trim())).toBe(0);
    expect(leaf.chainPem).toContain(ca.certPem.trim());
  });

  test("certInfo reports serial, validity, SANs", () => {
    const info = certInfo(leaf.chainPem);
    expect(info.serial).toBe(leaf.serial);
    expect(info.serial).toBe(new X509Certificate(leaf.certPem).serialNumber.toLowerCase());
    expect(info.dnsNames).toEqual(["localhost", "rift.example.net"]);
    expect(info.ipAddresses).toEqual(["127.0.0.1", "::1"]);
    expect(info.subject).toBe("CN=rift");
    expect(info.issuer).toBe("CN=MCP unit CA");
    expect(info.notAfter.getTime()).toBe(leaf.notAfter.getTime());
    const days = (info.notAfter.getTime() - info.notBefore.getTime()) / 86_400_000;
    expect(days).toBe(90);
    expect(info.notBefore.getTime()).toBeLessThanOrEqual(Date.now());
  });

  test("notBefore, serverAuth/clientAuth EKU honoured", async () => {
    const nb = new Date("2030-01-01T00:00:00Z");
    const c = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      commonName: "client",
      dnsNames: ["client"],
      ipAddresses: [],
      days: 1,
      serverAuth: false,
      clientAuth: true,
      notBefore: nb,
    });
    expect(certInfo(c.certPem).notBefore.toISOString()).toBe(nb.toISOString());
    expect(c.notAfter.toISOString()).toBe("2030-01-02T00:00:00.000Z");
    expect(new X509Certificate(c.certPem).keyUsage).toEqual(["1.3.6.1.5.5.7.3.2"]);
    expect(new X509Certificate(leaf.certPem).keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
  });

  test("serials are unique", async () => {
    const a = await issueCert({
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      commonName: "a",
      dnsNames: ["a"],
      ipAddresses: [],
      days: 1,
    });
    expect(a.serial).not.toBe(leaf.serial);
    expect(a.serial).toMatch(/^[0-9a-f]{32}$/);
  });

  test("bad input is a one-line PkiError", async () => {
    const base = {
      caCertPem: ca.certPem,
      caKeyPem: ca.keyPem,
      commonName: "x",
      dnsNames: ["x"],
      ipAddresses: [],
      days: 1,
    };
    const cases = [
      { ...base, ipAddresses: ["999.1.1.1"] },
      { ...base, dnsNames: ["bad name"] },
      { ...base, dnsNames: [] },
      { ...base, days: 0 },
      { ...base, caKeyPem: "garbage" },
      { ...base, caCertPem: leaf.certPem }, // not a CA
      { ...base, caKeyPem: leaf.keyPem }, // key of another cert
    ];
    for (const c of cases) {
      const e = await issueCert(c).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(PkiError);
      expect((e as Error).message).not.toContain("\n");
    }
    expect(() => certInfo("not a cert")).toThrow(PkiError);
  });
});

describe("TLS with issued certs", () => {
  async function withServer<T>(fn: (port: number) => Promise<T>): Promise<T> {
    const server = tls.createServer({ cert: leaf.chainPem, key: leaf.keyPem, minVersion: "TLSv1.3" }, (s) => {
      s.end("hello\n");
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const addr = server.address();
    if (addr === null || typeof addr === "string") throw new Error("no port");
    try {
      return await fn(addr.port);
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  }

  function connect(
    port: number,
    opts: tls.ConnectionOptions,
  ): Promise<{ protocol: string | null; data: string }> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("timeout")), 5000);
      const sock = tls.connect({ host: "127.0.0.1", port, ca: ca.certPem, ...opts }, () => {
        const protocol = sock.getProtocol();
        let data = "";
        sock.on("data", (d) => {
          data += d.toString();
        });
        sock.on("end", () => {
          clearTimeout(timer);
          resolve({ protocol, data });
        });
      });
      sock.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  test("client trusting the CA connects with TLS 1.3 (by IP and by name)", async () => {
    await withServer(async (port) => {
      const byIp = await connect(port, {});
      expect(byIp.protocol).toBe("TLSv1.3");
      expect(byIp.data).toBe("hello\n");
      const byName = await connect(port, { servername: "localhost" });
      expect(byName.protocol).toBe("TLSv1.3");
    });
  });

  test("TLS 1.2-only client is refused", async () => {
    await withServer(async (port) => {
      // minVersion too: importing src/rpc raises the process-wide TLS minimum to 1.3.
      const e = await connect(port, { minVersion: "TLSv1.2", maxVersion: "TLSv1.2" }).catch(
        (err: unknown) => err,
      );
      expect(e).toBeInstanceOf(Error);
      expect((e as Error).message).toMatch(/PROTOCOL_VERSION/i);
    });
  });

  test("client not trusting the CA is refused", async () => {
    await withServer(async (port) => {
      const other = await createCA({ commonName: "other", days: 1 });
      const e = await connect(port, { ca: other.certPem }).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(Error);
      expect((e as { code?: string }).code).toMatch(/CERT|SIGNED/);
    });
  });
});

describe("writeKeyPair", () => {
  test("writes cert 0644 and key 0600, replacing a wider existing key", async () => {
    const dir = await mkdtemp(join(tmpdir(), "pki-test-"));
    try {
      await writeFile(join(dir, "agent.key"), "old", { mode: 0o666 });
      await writeKeyPair(dir, "agent", leaf);
      expect((await stat(join(dir, "agent.pem"))).mode & 0o777).toBe(0o644);
      expect((await stat(join(dir, "agent.key"))).mode & 0o777).toBe(0o600);
      expect(await readFile(join(dir, "agent.pem"), "utf8")).toBe(leaf.certPem);
      expect(await readFile(join(dir, "agent.key"), "utf8")).toBe(leaf.keyPem);
      await expect(writeKeyPair(dir, "../x", leaf)).rejects.toThrow(PkiError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
