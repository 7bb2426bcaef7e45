// `mcp route list|add|remove` through the COMPILED binary and a real local agent whose
// [mcproxy] socket is the fake mc-proxy's unix socket: add/list/remove round trip through the
// agent into the fake; an l7 add without a cert is refused by mc-proxy with one line; a node
// without mc-proxy says so clearly (error for add/remove, a note row for list); an unreachable
// node is an error row and a non-zero exit.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createCA, issueCert } from "../../src/pki/ca.ts";
import { type FakeMcProxy, startFakeMcProxy } from "../fakes/mcproxy.ts";
import { freePort } from "../support/env.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";

let agent: LocalAgent;
let fake: FakeMcProxy;
let certDir: string;
let chain: string;
let key: string;

beforeAll(async () => {
  fake = await startFakeMcProxy();
  // Starts WITHOUT [mcproxy]: the first test checks that case, then the agent is restarted with it.
  agent = await startLocalAgent({ node: "edge" });
  certDir = mkdtempSync(join(tmpdir(), "route-cli-certs-"));
  const ca = await createCA({ commonName: "route-cli test CA", days: 2 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "web.svc.example.net",
    dnsNames: ["web.svc.example.net"],
    ipAddresses: [],
    days: 1,
  });
  chain = join(certDir, "web.svc.example.net.pem");
  key = join(certDir, "web.svc.example.net.key");
  writeFileSync(chain, leaf.chainPem);
  writeFileSync(key, leaf.keyPem, { mode: 0o600 });
}, 60_000);

afterAll(async () => {
  await agent?.stop();
  await fake?.stop();
  if (certDir) rmSync(certDir, { recursive: true, force: true });
});

describe("mcp route", () => {
  test("a node without mc-proxy: add/remove fail with one clear line, list shows a note", async () => {
    const add = await agent.mcp(["route", "add", "a.example.net", "127.0.0.1:10001", "-n", "edge"]);
    expect(add.code).toBe(1);
    expect(add.stderr).toBe(
      "mcp: edge: FAILED_PRECONDITION: mc-proxy is not configured on node edge ([mcproxy] socket)\n",
    );
    const rm = await agent.mcp(["route", "remove", "a.example.net"]);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain("mc-proxy is not configured on node edge");

    const list = await agent.mcp(["route", "list"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(
      /^edge\s+-\s+-\s+-\s+-\s+mc-proxy is not configured \(\[mcproxy\] socket\)$/m,
    );
    const json = JSON.parse((await agent.mcp(["route", "list", "--json"])).stdout);
    expect(json).toEqual({
      routes: [],
      notes: [{ node: "edge", note: "mc-proxy is not configured ([mcproxy] socket)" }],
      errors: [],
    });
    expect(fake.calls()).toEqual([]);
  });

  test("with [mcproxy] socket: add l4 + l7, list by listener, upsert, remove (twice)", async () => {
    await agent.stopAgent();
    appendFileSync(agent.agentConfig, `\n[mcproxy]\nsocket = ${JSON.stringify(fake.socket)}\n`);
    await agent.startAgent();

    const empty = await agent.mcp(["route", "list", "-n", "edge"]);
    expect(empty.code).toBe(0);
    expect(empty.stdout).toMatch(/^edge\s+-\s+-\s+-\s+-\s+no routes$/m);

    const l4 = await agent.mcp(["route", "add", "api.example.net", "127.0.0.1:10001", "--listener", "9443"]);
    expect(l4.stderr).toBe("");
    expect(l4.code).toBe(0);
    expect(l4.stdout).toBe("edge: route 9443/api.example.net → 127.0.0.1:10001 (l4) added\n");
    const l7 = await agent.mcp([
      "route",
      "add",
      "web.svc.example.net",
      "127.0.0.1:10002",
      "--mode",
      "l7",
      "--tls-cert",
      chain,
      "--tls-key",
      key,
      "--backend-tls",
      "-n",
      "edge",
    ]);
    expect(l7.stderr).toBe("");
    expect(l7.code).toBe(0);
    expect(fake.routes()).toEqual([
      {
        listener: 443,
        hostname: "web.svc.example.net",
        backend: "127.0.0.1:10002",
        mode: "l7",
        tlsCert: chain,
        tlsKey: key,
        backendTls: true,
      },
      {
        listener: 9443,
        hostname: "api.example.net",
        backend: "127.0.0.1:10001",
        mode: "l4",
        tlsCert: "",
        tlsKey: "",
        backendTls: false,
      },
    ]);

    // Upsert: same listener + hostname, new backend, still one route.
    const again = await agent.mcp([
      "route",
      "add",
      "api.example.net",
      "127.0.0.1:10003",
      "--listener",
      "9443",
    ]);
    expect(again.code).toBe(0);
    expect(fake.routes().filter((r) => r.hostname === "api.example.net")).toHaveLength(1);

    const list = await agent.mcp(["route", "list"]);
    expect(list.code).toBe(0);
    const lines = list.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^NODE\s+LISTENER\s+HOSTNAME\s+BACKEND\s+MODE\s+TLS$/);
    expect(lines[1]).toMatch(
      new RegExp(
        `^edge\\s+443\\s+web\\.svc\\.example\\.net\\s+127\\.0\\.0\\.1:10002\\s+l7\\s+${chain}, backend tls$`,
      ),
    );
    expect(lines[2]).toMatch(/^edge\s+9443\s+api\.example\.net\s+127\.0\.0\.1:10003\s+l4\s+passthrough$/);
    expect(lines).toHaveLength(3);

    const json = JSON.parse((await agent.mcp(["route", "list", "--json"])).stdout);
    expect(json.errors).toEqual([]);
    expect(json.notes).toEqual([]);
    expect(json.routes).toContainEqual({
      node: "edge",
      listener: 9443,
      hostname: "api.example.net",
      backend: "127.0.0.1:10003",
      mode: "l4",
      tlsCert: "",
      tlsKey: "",
      backendTls: false,
    });

    const rm = await agent.mcp(["route", "remove", "api.example.net", "--listener", "9443", "-n", "edge"]);
    expect(rm.code).toBe(0);
    expect(rm.stdout).toContain("edge: route 9443/api.example.net removed");
    expect(fake.routes().map((r) => r.hostname)).toEqual(["web.svc.example.net"]);
    // Removing it again is fine: mc-proxy has nothing to remove.
    expect((await agent.mcp(["route", "remove", "api.example.net", "--listener", "9443"])).code).toBe(0);
    expect(fake.calls().filter((c) => c.method === "RemoveRoute")).toHaveLength(2);
  }, 60_000);

  test("l7 without a cert, or with a leaf-only cert: mc-proxy's one-line refusal, nothing stored", async () => {
    const before = fake.routes();
    const noCert = await agent.mcp(["route", "add", "shop.example.net", "127.0.0.1:10004", "--mode", "l7"]);
    expect(noCert.code).toBe(1);
    expect(noCert.stdout).toBe("");
    expect(noCert.stderr).toBe(
      "mcp: edge: INVALID_ARGUMENT: mc-proxy: AddRoute 443/shop.example.net: l7 route needs tls_cert and tls_key\n",
    );
    const leafOnly = join(certDir, "leaf.pem");
    writeFileSync(leafOnly, (await Bun.file(chain).text()).split(/(?<=-----END CERTIFICATE-----\n)/)[0]!);
    const leaf = await agent.mcp([
      "route",
      "add",
      "shop.example.net",
      "127.0.0.1:10004",
      "--mode",
      "l7",
      "--tls-cert",
      leafOnly,
      "--tls-key",
      key,
    ]);
    expect(leaf.code).toBe(1);
    expect(leaf.stderr).toContain("leaf-only certificate, the full chain (leaf + intermediates) is required");
    expect(leaf.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(fake.routes()).toEqual(before);
  }, 30_000);

  test("bad CLI input is exit 2 before any call", async () => {
    const calls = fake.calls().length;
    const cases: [string[], string][] = [
      [["route", "add", "x.example.net", "no-port"], 'backend "no-port": expected host:port'],
      [["route", "add", "x.example.net", "127.0.0.1:1", "--mode", "l5"], '--mode l5: expected "l4" or "l7"'],
      [
        ["route", "add", "x.example.net", "127.0.0.1:1", "--listener", "0"],
        "--listener 0: expected a port 1-65535",
      ],
      [
        ["route", "add", "x.example.net", "127.0.0.1:1", "--tls-cert", "/c.pem"],
        "--tls-cert/--tls-key are for l7 routes",
      ],
      [
        ["route", "add", "x.example.net", "127.0.0.1:1", "--mode", "l7", "--tls-cert", "rel.pem"],
        "--tls-cert rel.pem: expected an absolute path on the node",
      ],
      [["route", "remove", "bad name"], 'hostname "bad name": expected a DNS name'],
      [["route", "list", "-n", "nowhere"], "nowhere"],
    ];
    for (const [args, msg] of cases) {
      const r = await agent.mcp(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(msg);
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
    expect(fake.calls().length).toBe(calls);
  }, 30_000);

  test("an unreachable node is an error row next to the reachable node's routes, exit 1", async () => {
    const port = await freePort();
    const add = await agent.mcp(["node", "add", "ghost", `127.0.0.1:${port}`]);
    expect(add.code).toBe(0);
    const list = await agent.mcp(["route", "list"], { timeoutMs: 30_000 });
    expect(list.code).toBe(1);
    expect(list.stdout).toMatch(/^edge\s+443\s+web\.svc\.example\.net\s/m);
    expect(list.stdout).toMatch(/^ghost\s+-\s+-\s+-\s+UNREACHABLE\s+UNAVAILABLE: /m);
    const json = JSON.parse((await agent.mcp(["route", "list", "--json"], { timeoutMs: 30_000 })).stdout);
    expect(json.errors).toHaveLength(1);
    expect(json.errors[0].node).toBe("ghost");
    // With two nodes, add/remove must name one.
    const which = await agent.mcp(["route", "remove", "web.svc.example.net"]);
    expect(which.code).toBe(2);
    expect(which.stderr).toBe("mcp: which node's mc-proxy? pass --node (nodes: edge, ghost)\n");
  }, 60_000);

  test("mc-proxy's socket gone while configured: UNAVAILABLE naming the socket, back when it returns", async () => {
    const moved = `${fake.socket}.moved`;
    renameSync(fake.socket, moved);
    try {
      const add = await agent.mcp(["route", "add", "b.example.net", "127.0.0.1:10005", "-n", "edge"]);
      expect(add.code).toBe(1);
      expect(add.stderr).toBe(`mcp: edge: UNAVAILABLE: mc-proxy: socket ${fake.socket} not found\n`);
      const list = await agent.mcp(["route", "list", "-n", "edge"]);
      expect(list.code).toBe(1);
      expect(list.stdout).toContain(`UNAVAILABLE: mc-proxy: socket ${fake.socket} not found`);
    } finally {
      renameSync(moved, fake.socket);
    }
    const list = await agent.mcp(["route", "list", "-n", "edge"]);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/^edge\s+443\s+web\.svc\.example\.net\s/m);
  }, 30_000);
});
