// The mc-proxy adapter against the fake mc-proxy over a real unix socket (grpc-js both ends):
// AddRoute upserts (same listener+hostname replaces), removing a missing route is fine, list
// (all or per listener) and status; the fake's INVALID_ARGUMENT lines (l7 without cert, a
// leaf-only cert, bad backend) surface as one-line IntegrationErrors with the gRPC code; a
// missing socket, a path that is not a socket and a stale socket each give a clear line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { McProxyClient } from "../../src/integrations/mcproxy.ts";
import { IntegrationError, type ProxyRoute } from "../../src/integrations/types.ts";
import { createCA, issueCert } from "../../src/pki/ca.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";

let fake: FakeMcProxy;
let client: McProxyClient;
let dir: string;
let chainPath: string;
let leafPath: string;
let keyPath: string;

const l4 = (hostname: string, backend = "10.0.0.5:10001", listener = 443): ProxyRoute => ({
  listener,
  hostname,
  backend,
  mode: "l4",
  tlsCert: "",
  tlsKey: "",
  backendTls: false,
});

async function failure(p: Promise<unknown>): Promise<IntegrationError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(IntegrationError);
    return err as IntegrationError;
  }
  throw new Error("expected the call to fail");
}

beforeAll(async () => {
  fake = await startFakeMcProxy();
  client = new McProxyClient(fake.socket);
  dir = mkdtempSync(join(tmpdir(), "mcproxy-test-"));
  const ca = await createCA({ commonName: "mcproxy test CA", days: 2 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "web.svc.example.net",
    dnsNames: ["web.svc.example.net"],
    ipAddresses: [],
    days: 1,
  });
  chainPath = join(dir, "web.pem");
  leafPath = join(dir, "leaf-only.pem");
  keyPath = join(dir, "web.key");
  writeFileSync(chainPath, leaf.chainPem);
  writeFileSync(leafPath, leaf.certPem);
  writeFileSync(keyPath, leaf.keyPem, { mode: 0o600 });
});

afterAll(async () => {
  client?.close();
  await fake?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("McProxyClient against the fake mc-proxy", () => {
  test("the socket is a unix socket with mode 0660 (file permissions are the auth)", () => {
    const st = statSync(fake.socket);
    expect(st.isSocket()).toBe(true);
    expect(st.mode & 0o777).toBe(0o660);
  });

  test("AddRoute is an idempotent upsert keyed by listener + hostname", async () => {
    await client.addRoute(l4("api.example.net"));
    await client.addRoute(l4("api.example.net"));
    expect(fake.routes()).toEqual([l4("api.example.net")]);
    // Same key, new backend: replaced, not added.
    await client.addRoute(l4("api.example.net", "10.0.0.6:10002"));
    // Same hostname on another listener is another route.
    await client.addRoute(l4("api.example.net", "10.0.0.6:10003", 9443));
    expect(fake.routes()).toEqual([
      l4("api.example.net", "10.0.0.6:10002"),
      l4("api.example.net", "10.0.0.6:10003", 9443),
    ]);
    const adds = fake.calls().filter((c) => c.method === "AddRoute");
    expect(adds).toHaveLength(4);
    expect(adds.every((c) => c.result === "OK")).toBe(true);
  });

  test("an l7 route with a full-chain cert is stored with its cert, key and backend_tls", async () => {
    const route: ProxyRoute = {
      listener: 443,
      hostname: "web.svc.example.net",
      backend: "10.0.0.5:10010",
      mode: "l7",
      tlsCert: chainPath,
      tlsKey: keyPath,
      backendTls: true,
    };
    await client.addRoute(route);
    expect(fake.routes()).toContainEqual(route);
    expect(await client.listRoutes()).toContainEqual(route);
  });

  test("list: every route, or one listener's", async () => {
    const all = await client.listRoutes();
    expect(all.map((r) => `${r.listener}/${r.hostname}`)).toEqual([
      "443/api.example.net",
      "443/web.svc.example.net",
      "9443/api.example.net",
    ]);
    const only = await client.listRoutes(9443);
    expect(only).toEqual([l4("api.example.net", "10.0.0.6:10003", 9443)]);
    expect(await client.listRoutes(8443)).toEqual([]);
  });

  test("status: version, route count and listeners", async () => {
    const s = await client.status();
    expect(s.version).toBe(fake.version);
    expect(s.routes).toBe(3);
    expect(s.listeners).toEqual([
      { port: 443, routes: 2 },
      { port: 9443, routes: 1 },
    ]);
  });

  test("remove deletes one listener's route; removing a missing route is not an error", async () => {
    await client.removeRoute(9443, "api.example.net");
    expect(fake.routes().some((r) => r.listener === 9443)).toBe(false);
    await client.removeRoute(9443, "api.example.net");
    await client.removeRoute(8443, "never-added.example.net");
    expect(fake.routes()).toHaveLength(2);
  });

  test("mc-proxy's refusals come back as one IntegrationError line with the gRPC code", async () => {
    const cases: [ProxyRoute, string][] = [
      [
        { ...l4("web2.example.net"), mode: "l7" },
        "mc-proxy: AddRoute 443/web2.example.net: INVALID_ARGUMENT: l7 route needs tls_cert and tls_key",
      ],
      [
        { ...l4("web2.example.net"), mode: "l7", tlsCert: leafPath, tlsKey: keyPath },
        `mc-proxy: AddRoute 443/web2.example.net: INVALID_ARGUMENT: tls_cert ${leafPath}: leaf-only certificate, the full chain (leaf + intermediates) is required`,
      ],
      [
        { ...l4("web2.example.net"), mode: "l7", tlsCert: join(dir, "missing.pem"), tlsKey: keyPath },
        `mc-proxy: AddRoute 443/web2.example.net: INVALID_ARGUMENT: tls_cert ${join(dir, "missing.pem")}: no such file`,
      ],
      [
        l4("web2.example.net", "no-port"),
        'mc-proxy: AddRoute 443/web2.example.net: INVALID_ARGUMENT: backend "no-port": expected host:port',
      ],
      [
        l4("bad_name!"),
        'mc-proxy: AddRoute 443/bad_name!: INVALID_ARGUMENT: hostname "bad_name!": not a DNS name',
      ],
      [
        l4("x.example.net", "10.0.0.5:1", 70000),
        "mc-proxy: AddRoute 70000/x.example.net: INVALID_ARGUMENT: listener 70000: must be 1-65535",
      ],
    ];
    for (const [route, message] of cases) {
      const err = await failure(client.addRoute(route));
      expect(err.message).toBe(message);
      expect(err.message).not.toContain("\n");
      expect(err.integration).toBe("mc-proxy");
      expect(err.status).toBe(status.INVALID_ARGUMENT);
    }
    // Nothing half-stored.
    expect(fake.routes().some((r) => r.hostname === "web2.example.net")).toBe(false);
  });

  test("a missing socket: one clear line, before any gRPC", async () => {
    const path = join(dir, "nope", "mc-proxy.sock");
    const c = new McProxyClient(path);
    const err = await failure(c.listRoutes());
    expect(err.message).toBe(`mc-proxy: socket ${path} not found`);
    expect(err.status).toBe(status.UNAVAILABLE);
    c.close();
  });

  test("a path that is not a socket, and a stale socket nobody listens on", async () => {
    const c = new McProxyClient(keyPath);
    expect((await failure(c.status())).message).toBe(
      `mc-proxy: ${keyPath} is not a unix socket ([mcproxy] socket)`,
    );
    c.close();

    // A socket file left behind by a dead mc-proxy: a process that listened is SIGKILLed, so
    // nothing unlinks the path and the kernel refuses the connect.
    const stale = join(dir, "stale.sock");
    const child = Bun.spawn(
      [
        process.execPath,
        "-e",
        `Bun.listen({ unix: ${JSON.stringify(stale)}, socket: { data() {} } }); console.log("ready"); setInterval(() => {}, 1000);`,
      ],
      { stdout: "pipe", stderr: "ignore" },
    );
    const reader = (child.stdout as ReadableStream<Uint8Array>).getReader();
    await reader.read(); // "ready"
    child.kill("SIGKILL");
    await child.exited;
    expect(statSync(stale).isSocket()).toBe(true);
    const s = new McProxyClient(stale, { timeoutMs: 3000 });
    const t0 = Date.now();
    const err = await failure(s.listRoutes());
    expect(err.status).toBe(status.UNAVAILABLE);
    expect(err.message).toStartWith("mc-proxy: ListRoutes: UNAVAILABLE:");
    expect(err.message).not.toContain("\n");
    expect(Date.now() - t0).toBeLessThan(3000);
    s.close();
  });
});
