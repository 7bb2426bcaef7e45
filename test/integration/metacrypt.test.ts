// Metacrypt adapter against the fake Metacrypt over real HTTPS (issue 5 items 3 and 6): real
// certificates from a root → intermediate chain land in <cert_dir> as full chain + 0600 key, are
// reused while more than 30 days remain and reissued otherwise; every error answer (403, 401,
// malformed issuance) is a one-line IntegrationError and leaves no files behind.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MetacryptClient, type MetacryptOptions } from "../../src/integrations/metacrypt.ts";
import { fileToken } from "../../src/integrations/token.ts";
import { IntegrationError } from "../../src/integrations/types.ts";
import { certInfo, createCA, issueCert, writeKeyPair } from "../../src/pki/ca.ts";
import { type FakeMetacrypt, startFakeMetacrypt } from "../fakes/metacrypt.ts";

const TOKEN = "agent-token-1";
const HOST = "web.svc.mcp.metacircular.net";
const DAY_MS = 86_400_000;

let fake: FakeMetacrypt;
let root: string;

beforeAll(async () => {
  fake = await startFakeMetacrypt({ tokens: [TOKEN], denyHostnames: /^forbidden\./ });
  root = await mkdtemp(join(tmpdir(), "metacrypt-test-"));
});

afterAll(async () => {
  await fake.stop();
  await rm(root, { recursive: true, force: true });
});

let dirs = 0;
/** A fresh, not yet existing cert dir: the adapter's atomic writer creates it on first write. */
async function certDir(): Promise<string> {
  return join(root, `certs-${++dirs}`);
}

function client(dir: string, extra: Partial<MetacryptOptions> = {}): MetacryptClient {
  return new MetacryptClient({
    serverUrl: fake.url,
    caCertPath: fake.caCertPath,
    token: TOKEN,
    certDir: dir,
    ...extra,
  });
}

async function failure(p: Promise<unknown>): Promise<IntegrationError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(IntegrationError);
  return e as IntegrationError;
}

async function files(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

/** Pre-creates <dir>/<host>.pem|.key from a local CA: full chain, `left` days of validity remaining. */
async function precreate(dir: string, host: string, left: number, sans = [host]): Promise<string> {
  const ca = await createCA({ commonName: "pre-existing CA", days: 400 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: host,
    dnsNames: sans,
    ipAddresses: [],
    days: 90,
    notBefore: new Date(Date.now() - (90 - left) * DAY_MS),
  });
  await writeKeyPair(dir, host, { certPem: leaf.chainPem, keyPem: leaf.keyPem });
  return leaf.serial;
}

function pemBlocks(pem: string): string[] {
  return pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
}

describe("issuance", () => {
  test("writes the full chain (0644) and key (0600) with the hostname SAN, verifying to the root", async () => {
    const dir = await certDir();
    const before = fake.issueCalls();
    const res = await client(dir).ensureCert(HOST);
    expect(fake.issueCalls()).toBe(before + 1);
    expect(res).toMatchObject({
      hostname: HOST,
      certPath: join(dir, `${HOST}.pem`),
      keyPath: join(dir, `${HOST}.key`),
      reused: false,
    });
    expect(fake.lastRequest()).toEqual({
      mount: "pki",
      operation: "issue",
      data: { issuer: "infra", common_name: HOST, dns_names: [HOST], ttl: "2160h" },
    });

    expect((await stat(res.keyPath)).mode & 0o777).toBe(0o600);
    expect((await stat(res.certPath)).mode & 0o777).toBe(0o644);
    const pem = await readFile(res.certPath, "utf8");
    const blocks = pemBlocks(pem);
    expect(blocks.length).toBe(2); // leaf + intermediate

    const info = certInfo(pem);
    expect(info.dnsNames).toEqual([HOST]);
    expect(info.serial).toBe(res.serial);
    expect(info.notAfter.getTime()).toBe(res.notAfter.getTime());
    const days = (info.notAfter.getTime() - Date.now()) / DAY_MS;
    expect(days).toBeGreaterThan(89);
    expect(days).toBeLessThanOrEqual(90);

    // Chain: leaf ← intermediate ← root (the root from the public CA endpoint).
    const caPem = await client(dir).fetchCa();
    expect(caPem.trim()).toBe(fake.rootPem.trim());
    const leaf = new X509Certificate(blocks[0] as string);
    const inter = new X509Certificate(blocks[1] as string);
    const rootX = new X509Certificate(caPem);
    expect(leaf.verify(inter.publicKey)).toBe(true);
    expect(inter.verify(rootX.publicKey)).toBe(true);
    expect(leaf.verify(rootX.publicKey)).toBe(false); // really two levels
    expect(inter.ca).toBe(true);
    expect(leaf.checkPrivateKey(createPrivateKey(await readFile(res.keyPath)))).toBe(true);
  });

  test("a second ensureCert reuses the fresh cert; concurrent calls share one issuance", async () => {
    const dir = await certDir();
    const c = client(dir);
    const before = fake.issueCalls();
    const [a, b] = await Promise.all([c.ensureCert(HOST), c.ensureCert(HOST)]);
    expect(fake.issueCalls()).toBe(before + 1);
    expect(a.serial).toBe(b.serial);
    const again = await c.ensureCert(HOST);
    expect(again).toMatchObject({ reused: true, serial: a.serial });
    expect(fake.issueCalls()).toBe(before + 1);
  });

  test("ca_chain (array) answers are accepted too", async () => {
    const other = await startFakeMetacrypt({ tokens: [TOKEN], chainAs: "ca_chain" });
    try {
      const dir = await certDir();
      const res = await new MetacryptClient({
        serverUrl: other.url,
        caCertPath: other.caCertPath,
        token: TOKEN,
        certDir: dir,
      }).ensureCert(HOST);
      const blocks = pemBlocks(await readFile(res.certPath, "utf8"));
      expect(blocks.length).toBe(2);
      expect(blocks[1]?.trim()).toBe(other.intermediatePem.trim());
    } finally {
      await other.stop();
    }
  });
});

describe("reuse window", () => {
  test("40 days left → reused, nothing requested", async () => {
    const dir = await certDir();
    const serial = await precreate(dir, HOST, 40);
    const before = fake.requestCalls();
    const res = await client(dir).ensureCert(HOST);
    expect(res).toMatchObject({ reused: true, serial });
    expect(fake.requestCalls()).toBe(before);
  });

  test("20 days left → reissued", async () => {
    const dir = await certDir();
    const old = await precreate(dir, HOST, 20);
    const before = fake.issueCalls();
    const res = await client(dir).ensureCert(HOST);
    expect(res.reused).toBe(false);
    expect(res.serial).not.toBe(old);
    expect(fake.issueCalls()).toBe(before + 1);
    expect(certInfo(await readFile(res.certPath, "utf8")).serial).toBe(res.serial);
  });

  test("the clock decides: 65 days later the 90-day cert (25 left) is reissued", async () => {
    const dir = await certDir();
    const first = await client(dir).ensureCert(HOST);
    const before = fake.issueCalls();
    const at = (d: number) => () => new Date(Date.now() + d * DAY_MS);
    expect((await client(dir, { now: at(55) }).ensureCert(HOST)).reused).toBe(true);
    expect(fake.issueCalls()).toBe(before);
    const later = await client(dir, { now: at(65) }).ensureCert(HOST);
    expect(later.reused).toBe(false);
    expect(later.serial).not.toBe(first.serial);
    expect(fake.issueCalls()).toBe(before + 1);
  });

  test("a cert without the hostname as SAN is reissued", async () => {
    const dir = await certDir();
    await precreate(dir, HOST, 80, ["other.svc.mcp.metacircular.net"]);
    const before = fake.issueCalls();
    const res = await client(dir).ensureCert(HOST);
    expect(res.reused).toBe(false);
    expect(fake.issueCalls()).toBe(before + 1);
    expect(certInfo(await readFile(res.certPath, "utf8")).dnsNames).toEqual([HOST]);
  });

  test("a key that does not match the cert, or a leaf-only file, is reissued", async () => {
    const dir = await certDir();
    await precreate(dir, HOST, 80);
    const other = await createCA({ commonName: "other", days: 2 });
    await writeFile(join(dir, `${HOST}.key`), other.keyPem, { mode: 0o600 });
    const before = fake.issueCalls();
    expect((await client(dir).ensureCert(HOST)).reused).toBe(false);
    expect(fake.issueCalls()).toBe(before + 1);

    const leafOnly = pemBlocks(await readFile(join(dir, `${HOST}.pem`), "utf8"))[0] as string;
    await writeFile(join(dir, `${HOST}.pem`), leafOnly);
    expect((await client(dir).ensureCert(HOST)).reused).toBe(false);
    expect(fake.issueCalls()).toBe(before + 2);
  });
});

describe("errors", () => {
  test("403 from Metacrypt → IntegrationError with status 403, no files written", async () => {
    const dir = await certDir();
    fake.setDenyAll(true);
    try {
      const e = await failure(client(dir).ensureCert(HOST));
      expect(e.status).toBe(403);
      expect(e.integration).toBe("metacrypt");
      expect(e.message).toBe(`metacrypt: issue certificate for ${HOST}: 403: permission denied`);
      expect(e.message).not.toContain("\n");
    } finally {
      fake.setDenyAll(false);
    }
    expect(await files(dir)).toEqual([]);
    // A policy on hostnames denies just those.
    const e2 = await failure(client(dir).ensureCert("forbidden.svc.mcp.metacircular.net"));
    expect(e2.status).toBe(403);
    expect(await files(dir)).toEqual([]);
  });

  test("401 for a bad token, and a missing token file is one clear line", async () => {
    const dir = await certDir();
    const e = await failure(client(dir, { token: "wrong" }).ensureCert(HOST));
    expect(e.status).toBe(401);
    expect(e.message).toBe(`metacrypt: issue certificate for ${HOST}: 401: invalid token`);
    expect(e.message).not.toContain("wrong");

    const path = join(root, "metacrypt.token");
    const missing = await failure(client(dir, { token: fileToken(path) }).ensureCert(HOST));
    expect(missing.message).toBe(`metacrypt: token file ${path} does not exist`);
    expect(await files(dir)).toEqual([]);
  });

  test("a rotated token file is picked up without a new client", async () => {
    const dir = await certDir();
    const path = join(root, "rotating.token");
    await writeFile(path, "stale-token\n", { mode: 0o600 });
    const c = client(dir, { token: fileToken(path) });
    expect((await failure(c.ensureCert(HOST))).status).toBe(401);
    await writeFile(path, `${TOKEN}\n`, { mode: 0o600 });
    expect((await c.ensureCert(HOST)).reused).toBe(false);
  });

  test("bad issuance answers are refused and nothing is written", async () => {
    const cases = [
      ["wrong-san", "does not name"],
      ["wrong-key", "private key does not match"],
      ["no-chain", "no CA chain"],
      ["wrong-chain", "chain does not sign"],
    ] as const;
    for (const [mode, text] of cases) {
      const dir = await certDir();
      fake.setMisbehave(mode);
      try {
        const e = await failure(client(dir).ensureCert(HOST));
        expect(e.message).toContain(text);
        expect(e.message).not.toContain("\n");
      } finally {
        fake.setMisbehave(undefined);
      }
      expect(await files(dir)).toEqual([]);
    }
  });

  test("an invalid hostname is refused before any request", async () => {
    const dir = await certDir();
    const before = fake.requestCalls();
    for (const h of ["../etc/passwd", "*.svc.mcp.metacircular.net", "", "a b"]) {
      const e = await failure(client(dir).ensureCert(h));
      expect(e.message).toContain("invalid hostname");
    }
    expect(fake.requestCalls()).toBe(before);
  });

  test("TLS is verified: without the CA file the server is not trusted", async () => {
    const dir = await certDir();
    const e = await failure(client(dir, { caCertPath: undefined }).ensureCert(HOST));
    expect(e.message).toStartWith(`metacrypt: cannot reach ${fake.url}:`);
    const e2 = await failure(client(dir, { caCertPath: join(root, "nope.pem") }).ensureCert(HOST));
    expect(e2.message).toContain("cannot read ca_cert");
  });
});

test("removeCert deletes both files; removing again is fine", async () => {
  const dir = await certDir();
  const c = client(dir);
  await c.ensureCert(HOST);
  expect((await files(dir)).sort()).toEqual([`${HOST}.key`, `${HOST}.pem`]);
  await c.removeCert(HOST);
  expect(await files(dir)).toEqual([]);
  await c.removeCert(HOST);
  expect(await files(dir)).toEqual([]);
});
