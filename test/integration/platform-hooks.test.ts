// platformHooks with the real adapters against the fakes (mc-proxy over its unix socket,
// Metacrypt and MCNS over HTTPS), no containers: the rules the e2e test does not reach — DNS kept
// while another component of the service is meant to run, mc-proxy without Metacrypt (operator
// placed certs, refused before anything when missing, never deleted), a route without a host port,
// the cert step of a later onDeployed (recover/start), and which lines composeHooks logs.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import type { ComponentDef, ServiceDef } from "../../src/config/service.ts";
import { McnsClient } from "../../src/integrations/mcns.ts";
import { McProxyClient } from "../../src/integrations/mcproxy.ts";
import { MetacryptClient } from "../../src/integrations/metacrypt.ts";
import type { ComponentRecord, RouteRecord, ServiceRecord } from "../../src/registry/types.ts";
import { composeHooks, NOT_CONFIGURED, platformHooks } from "../../src/roles/agent/integrations.ts";
import { type FakeMcns, startFakeMcns } from "../fakes/mcns.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";
import { type FakeMetacrypt, startFakeMetacrypt } from "../fakes/metacrypt.ts";

const ZONE = "svc.mcp.metacircular.net";
const silent = pino({ level: "silent" });
let proxy: FakeMcProxy;
let metacrypt: FakeMetacrypt;
let mcns: FakeMcns;
let dir = "";
const clients: McProxyClient[] = [];

function comp(
  name: string,
  routes: Partial<RouteRecord>[],
  desired: "running" | "stopped" = "running",
): ComponentRecord {
  return {
    service: "svc",
    name,
    image: "img:v1",
    network: "",
    user: "",
    restart: "no",
    desiredState: desired,
    observedState: "running",
    version: "v1",
    ports: [],
    volumes: [],
    cmd: [],
    env: [],
    routes: routes.map((r) => ({
      name: "",
      port: 443,
      mode: "l7",
      hostname: "",
      public: false,
      hostPort: 0,
      ...r,
    })),
    runtime: "container",
    memory: "",
    vcpus: 0,
    createdAt: new Date(),
    updatedAt: new Date(),
  };
}

function service(name: string, components: ComponentRecord[]): ServiceRecord {
  return {
    name,
    active: true,
    tier: "worker",
    node: "",
    components: components.map((c) => ({ ...c, service: name })),
    specJson: null,
    createdAt: new Date(),
    updatedAt: new Date(),
  };
}

/** The definition side of a component (what prepareDeploy gets). */
function def(name: string, c: ComponentRecord): { svc: ServiceDef; c: ComponentDef } {
  const cd = {
    name: c.name,
    image: c.image,
    routes: c.routes.map((r) => ({
      ...(r.name ? { name: r.name } : {}),
      ...(r.hostname ? { hostname: r.hostname } : {}),
      port: r.port,
      mode: r.mode,
      public: false,
    })),
  } as unknown as ComponentDef;
  return { svc: { name, components: [cd] } as unknown as ServiceDef, c: cd };
}

const newProxy = () => {
  const p = new McProxyClient(proxy.socket);
  clients.push(p);
  return p;
};

beforeAll(async () => {
  [proxy, metacrypt, mcns] = await Promise.all([
    startFakeMcProxy(),
    startFakeMetacrypt({ tokens: ["mc"] }),
    startFakeMcns({ tokens: ["dns"], zone: ZONE }),
  ]);
  dir = mkdtempSync(join(tmpdir(), "mcp-platform-hooks-"));
});

afterAll(async () => {
  for (const c of clients) c.close();
  await Promise.all([proxy?.stop(), metacrypt?.stop(), mcns?.stop()]);
  rmSync(dir, { recursive: true, force: true });
});

describe("platformHooks with every adapter", () => {
  const certDir = () => join(dir, "issued");

  const hooks = () =>
    platformHooks(
      { logger: silent, nodeAddress: "127.0.0.1" },
      {
        proxy: newProxy(),
        certs: new MetacryptClient({
          serverUrl: metacrypt.url,
          caCertPath: metacrypt.caCertPath,
          token: "mc",
          certDir: certDir(),
        }),
        dns: new McnsClient({ serverUrl: mcns.url, caCertPath: mcns.caCertPath, zone: ZONE, token: "dns" }),
      },
    );

  test("the A record stays while another component is meant to run", async () => {
    const h = hooks();
    const api = comp("api", [{ name: "grpc", port: 9443, mode: "l4", hostPort: 20001 }]);
    const web = comp("web", [{ port: 443, mode: "l7", hostPort: 20002 }]);
    let svc = service("two", [api, web]);
    for (const c of svc.components) {
      const d = def("two", c);
      expect((await h.prepareDeploy!(d.svc, d.c)).every((s) => s.success)).toBe(true);
      expect((await h.onDeployed(svc, c)).every((s) => s.success)).toBe(true);
    }
    expect(proxy.routes().filter((r) => r.hostname === `two.${ZONE}`)).toHaveLength(2);
    // Stop api alone: its route goes, the record stays (web still desired running).
    svc = service("two", [comp("api", api.routes, "stopped"), web]);
    const stopped = await h.onStopped(svc, svc.components[0]!);
    expect(stopped.map((s) => s.step)).toEqual(["route"]);
    expect(
      proxy
        .routes()
        .filter((r) => r.hostname === `two.${ZONE}`)
        .map((r) => r.listener),
    ).toEqual([443]);
    expect(mcns.records().filter((r) => r.name === "two")).toHaveLength(1);
    // Then web too: the record goes.
    svc = service("two", [comp("api", api.routes, "stopped"), comp("web", web.routes, "stopped")]);
    expect((await h.onStopped(svc, svc.components[1]!)).map((s) => [s.step, s.success])).toEqual([
      ["route", true],
      ["dns", true],
    ]);
    expect(mcns.records().filter((r) => r.name === "two")).toEqual([]);
    expect(proxy.routes().filter((r) => r.hostname === `two.${ZONE}`)).toEqual([]);
    // Undeploy removes the cert; twice is fine.
    for (let i = 0; i < 2; i++) expect((await h.onUndeployed(svc)).every((s) => s.success)).toBe(true);
    expect(existsSync(join(certDir(), `two.${ZONE}.pem`))).toBe(false);
  });

  test("an onDeployed without a preceding prepareDeploy (recover, start) ensures the cert itself", async () => {
    const h = hooks();
    const web = comp("web", [{ port: 443, mode: "l7", hostname: "app.example.test", hostPort: 20003 }]);
    const svc = service("later", [web]);
    const first = await h.onDeployed(svc, svc.components[0]!);
    expect(first.map((s) => [s.step, s.success, s.detail])).toEqual([
      ["cert", true, "app.example.test issued"],
      ["route", true, `443 app.example.test → 127.0.0.1:20003`],
      ["dns", true, `later.${ZONE} A 127.0.0.1`],
    ]);
    const again = await h.onDeployed(svc, svc.components[0]!);
    expect(again[0]).toMatchObject({ step: "cert", success: true, detail: "app.example.test reused" });
    await h.onUndeployed(svc);
  });

  test("a route without a host port fails its step with a clear line, DNS still done", async () => {
    const h = hooks();
    const svc = service("noport", [comp("api", [{ name: "grpc", port: 9443, mode: "l4", hostPort: 0 }])]);
    const res = await h.onDeployed(svc, svc.components[0]!);
    expect(res.map((s) => [s.step, s.success])).toEqual([
      ["route", false],
      ["dns", true],
    ]);
    expect(res[0]!.error).toBe(`route noport.${ZONE}:9443 has no host port allocated`);
    await h.onUndeployed(svc);
  });
});

describe("mc-proxy without Metacrypt", () => {
  test("an L7 route needs an operator-placed cert: refused before anything without one, used and kept with one", async () => {
    const placed = join(dir, "placed");
    const h = platformHooks(
      { logger: silent, nodeAddress: "127.0.0.1", certDir: placed },
      { proxy: newProxy() },
    );
    const web = comp("web", [{ port: 443, mode: "l7", hostname: "placed.example.test", hostPort: 20004 }]);
    const svc = service("placed", [web]);
    const d = def("placed", web);
    const refused = await h.prepareDeploy!(d.svc, d.c);
    expect(refused).toHaveLength(1);
    expect(refused[0]!.success).toBe(false);
    expect(refused[0]!.error).toContain(
      "no certificate for placed.example.test: Metacrypt is not configured",
    );

    // The operator places a full-chain cert (issued here through the fake for a real chain).
    const issuer = new MetacryptClient({
      serverUrl: metacrypt.url,
      caCertPath: metacrypt.caCertPath,
      token: "mc",
      certDir: placed,
    });
    await issuer.ensureCert("placed.example.test");
    expect((await h.prepareDeploy!(d.svc, d.c))[0]).toMatchObject({ step: "cert", success: true });
    const res = await h.onDeployed(svc, web);
    expect(res.map((s) => [s.step, s.success])).toEqual([["route", true]]);
    const route = proxy.routes().find((r) => r.hostname === "placed.example.test");
    expect(route?.tlsCert).toBe(join(placed, "placed.example.test.pem"));
    await h.onUndeployed(svc);
    expect(proxy.routes().find((r) => r.hostname === "placed.example.test")).toBeUndefined();
    expect(existsSync(join(placed, "placed.example.test.pem"))).toBe(true);
  });
});

describe("composeHooks", () => {
  function capture() {
    const lines: string[] = [];
    const stream = new Writable({
      write(chunk, _enc, cb) {
        lines.push(JSON.parse(String(chunk)).msg);
        cb();
      },
    });
    return { lines, logger: pino({ level: "info" }, stream) };
  }

  test("says once per absent integration; none configured behaves as noIntegrations", async () => {
    const { lines, logger } = capture();
    const h = composeHooks({ logger, nodeAddress: "127.0.0.1" });
    expect(lines).toEqual([NOT_CONFIGURED.proxy, NOT_CONFIGURED.certs, NOT_CONFIGURED.dns]);
    const svc = service("none", [comp("web", [{ port: 443, mode: "l7", hostPort: 20005 }])]);
    const d = def("none", svc.components[0]!);
    expect(await h.prepareDeploy!(d.svc, d.c)).toEqual([]);
    expect(await h.onDeployed(svc, svc.components[0]!)).toEqual([]);
    expect(await h.onStopped(svc, svc.components[0]!)).toEqual([]);
    expect(lines).toHaveLength(4); // + noIntegrations' one skip line, once
  });

  test("only DNS configured: the other two are said, DNS is done", async () => {
    const { lines, logger } = capture();
    const h = composeHooks(
      { logger, nodeAddress: "127.0.0.1" },
      { dns: new McnsClient({ serverUrl: mcns.url, caCertPath: mcns.caCertPath, zone: ZONE, token: "dns" }) },
    );
    expect(lines).toEqual([NOT_CONFIGURED.proxy, NOT_CONFIGURED.certs]);
    const svc = service("dnsonly", [comp("web", [{ port: 443, mode: "l7", hostPort: 20006 }])]);
    const d = def("dnsonly", svc.components[0]!);
    expect(await h.prepareDeploy!(d.svc, d.c)).toEqual([]);
    expect((await h.onDeployed(svc, svc.components[0]!)).map((s) => s.step)).toEqual(["dns"]);
    expect(mcns.records().filter((r) => r.name === "dnsonly")).toHaveLength(1);
    expect((await h.onUndeployed(svc)).map((s) => s.step)).toEqual(["dns"]);
    expect(mcns.records().filter((r) => r.name === "dnsonly")).toEqual([]);
  });
});
