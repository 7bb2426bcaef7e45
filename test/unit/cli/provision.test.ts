// Pure helpers of `mcp node provision`: subordinate-id range picking (property-tested: never
// overlaps, always on the useradd grid, lowest possible), certificate SANs, reuse decisions for an
// existing agent cert (real certs from src/pki), agent config rendering (parsed by the real agent
// config schema) and the key-by-key comparison that decides "already done".
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parse as parseToml } from "smol-toml";
import { hashToken } from "../../../src/auth/local.ts";
import { parseAgentConfig } from "../../../src/config/agent.ts";
import { createCA, issueCert } from "../../../src/pki/ca.ts";
import {
  appendSubid,
  certNames,
  certProblem,
  chainsTo,
  compareAgentConfig,
  findSubid,
  parsePasswdLine,
  parseSubidFile,
  pickSubidStart,
  renderAgentConfig,
  SUBID_COUNT,
  SUBID_MIN,
} from "../../../src/roles/cli/provision-steps.ts";

describe("subordinate ids", () => {
  test("parse, find by name or uid, append with a missing newline fixed", () => {
    const text = "# comment\nalice:100000:65536\n850:165536:65536\njunk line\n";
    const r = parseSubidFile(text);
    expect(r).toEqual([
      { owner: "alice", start: 100000, count: 65536 },
      { owner: "850", start: 165536, count: 65536 },
    ]);
    expect(findSubid(r, "mcp", 850)?.start).toBe(165536);
    expect(findSubid(r, "bob", 1000)).toBeUndefined();
    expect(appendSubid("alice:100000:65536", "mcp", 165536)).toBe("alice:100000:65536\nmcp:165536:65536\n");
    expect(appendSubid("", "mcp", 100000)).toBe("mcp:100000:65536\n");
  });

  test("the first free grid slot is picked", () => {
    expect(pickSubidStart([])).toBe(100000);
    expect(pickSubidStart([{ owner: "a", start: 100000, count: 65536 }])).toBe(165536);
    // An odd range in the middle pushes past its end, back onto the grid.
    expect(pickSubidStart([{ owner: "a", start: 150000, count: 10 }])).toBe(165536);
    expect(
      pickSubidStart([
        { owner: "a", start: 100005, count: 10 },
        { owner: "b", start: 100020, count: 200000 },
      ]),
    ).toBe(100000 + 4 * 65536);
  });

  test("property: the picked range overlaps nothing, is on the grid, and no lower slot was free", () => {
    const range = fc.record({
      owner: fc.constant("x"),
      start: fc.integer({ min: 0, max: 3_000_000 }),
      count: fc.integer({ min: 1, max: 300_000 }),
    });
    fc.assert(
      fc.property(fc.array(range, { maxLength: 12 }), (taken) => {
        const start = pickSubidStart(taken);
        const overlaps = (s: number) => taken.some((r) => r.start < s + SUBID_COUNT && s < r.start + r.count);
        expect(overlaps(start)).toBe(false);
        expect((start - SUBID_MIN) % SUBID_COUNT).toBe(0);
        for (let s = SUBID_MIN; s < start; s += SUBID_COUNT) expect(overlaps(s)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe("agent certificate", () => {
  test("SANs: address host, listen host (not a wildcard), node name, localhost, 127.0.0.1", () => {
    expect(certNames({ name: "rift", address: "100.95.252.120:9444", listen: "10.88.0.5:9444" })).toEqual({
      dnsNames: ["rift", "localhost"],
      ipAddresses: ["100.95.252.120", "10.88.0.5", "127.0.0.1"],
    });
    expect(certNames({ name: "svc", address: "svc.example.net:9555", listen: "0.0.0.0:9555" })).toEqual({
      dnsNames: ["svc.example.net", "svc", "localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    expect(certNames({ name: "n", address: "127.0.0.1:1", listen: "127.0.0.1:1" }).ipAddresses).toEqual([
      "127.0.0.1",
    ]);
  });

  test("an existing cert is kept only when it matches its key, covers the SANs, lasts > 30 days and chains to the CLI CA", async () => {
    const ca = await createCA({ commonName: "test CA", days: 100 });
    const other = await createCA({ commonName: "other CA", days: 100 });
    const names = certNames({ name: "n1", address: "127.0.0.1:9444", listen: "10.0.0.2:9444" });
    const issue = (c: typeof ca, days: number, ips = names.ipAddresses) =>
      issueCert({
        caCertPem: c.certPem,
        caKeyPem: c.keyPem,
        commonName: "mcp-agent-n1",
        dnsNames: names.dnsNames,
        ipAddresses: ips,
        days,
      });
    const good = await issue(ca, 90);
    const base = { trustPem: ca.certPem, names };
    expect(certProblem({ ...base, certPem: good.chainPem, keyPem: good.keyPem })).toBeUndefined();
    expect(certProblem({ ...base, certPem: undefined, keyPem: undefined })).toBe("no certificate");
    expect(certProblem({ ...base, certPem: good.chainPem, keyPem: undefined })).toBe("no private key");
    const second = await issue(ca, 90);
    expect(certProblem({ ...base, certPem: good.chainPem, keyPem: second.keyPem })).toBe(
      "key.pem does not match cert.pem",
    );
    const short = await issue(ca, 20);
    expect(certProblem({ ...base, certPem: short.chainPem, keyPem: short.keyPem })).toMatch(
      /^expires in 1?\d days$/,
    );
    const narrow = await issue(ca, 90, ["127.0.0.1"]);
    expect(certProblem({ ...base, certPem: narrow.chainPem, keyPem: narrow.keyPem })).toBe(
      "SANs do not cover 10.0.0.2",
    );
    const foreign = await issue(other, 90);
    expect(certProblem({ ...base, certPem: foreign.chainPem, keyPem: foreign.keyPem })).toBe(
      "not issued by the CA in the CLI's [tls] ca_cert",
    );
    expect(chainsTo(ca.certPem, `${other.certPem}\n${ca.certPem}`)).toBe(true);
    expect(chainsTo(other.certPem, ca.certPem)).toBe(false);
  });
});

describe("agent config", () => {
  const token = "mcpl_test-token";
  const local = renderAgentConfig({ name: "n1", listen: "10.88.0.5:9444", auth: { kind: "local", token } });

  test("local mode: the real agent schema accepts it with the token's hash and provision's paths", () => {
    const { config } = parseAgentConfig(parseToml(local), "mcp-agent.toml");
    expect(config.server.grpc_addr).toBe("10.88.0.5:9444");
    expect(config.server.tls_cert).toBe("/srv/mcp/certs/cert.pem");
    expect(config.server.tls_key).toBe("/srv/mcp/certs/key.pem");
    expect(config.server.allow_any_addr).toBe(false);
    expect(config.database.path).toBe("/srv/mcp/mcp.db");
    expect(config.auth.mode).toBe("local");
    expect(config.auth.tokens).toEqual([
      { name: "admin", role: "admin", account_type: "human", sha256: hashToken(token) },
    ]);
    expect(config.agent.node_name).toBe("n1");
    expect(config.agent.container_runtime).toBe("podman");
    expect(config.agent.srv_root).toBe("/srv");
    expect(local).not.toContain(token);
  });

  test("mcias mode and a wildcard listen address", () => {
    const text = renderAgentConfig({
      name: "n2",
      listen: "0.0.0.0:9444",
      auth: {
        kind: "mcias",
        serverUrl: "https://mcias.example:8443",
        caCert: "/srv/mcp/certs/mcias-ca.pem",
        serviceName: "mcp-agent",
      },
    });
    const { config } = parseAgentConfig(parseToml(text), "mcp-agent.toml");
    expect(config.auth.mode).toBe("mcias");
    expect(config.mcias?.server_url).toBe("https://mcias.example:8443");
    expect(config.mcias?.ca_cert).toBe("/srv/mcp/certs/mcias-ca.pem");
    expect(config.server.allow_any_addr).toBe(true);
  });

  test("comparison: identical or extended files are covered; changed keys and dropped extras are named", () => {
    expect(compareAgentConfig(local, local)).toEqual({ covered: true, changed: [], extra: [] });
    const extended = `${local}\n[mcproxy]\nsocket = "/srv/mc-proxy/mc-proxy.sock"\n`;
    expect(compareAgentConfig(extended, local)).toEqual({
      covered: true,
      changed: [],
      extra: ["mcproxy.socket"],
    });
    const moved = renderAgentConfig({
      name: "n1",
      listen: "10.88.0.6:9444",
      auth: { kind: "local", token: "other" },
    });
    const cmp = compareAgentConfig(moved, local);
    expect(cmp.covered).toBe(false);
    expect(cmp.changed).toEqual(["server.grpc_addr", "auth.tokens.0.sha256"]);
    expect(compareAgentConfig(undefined, local).covered).toBe(false);
    expect(compareAgentConfig("not = [toml", local)).toEqual({
      covered: false,
      changed: ["(unparseable TOML)"],
      extra: [],
    });
  });

  test("passwd lines", () => {
    expect(parsePasswdLine("mcp:x:850:850:MCP agent:/srv/mcp:/usr/sbin/nologin")).toEqual({
      name: "mcp",
      uid: 850,
      gid: 850,
      home: "/srv/mcp",
      shell: "/usr/sbin/nologin",
    });
    expect(parsePasswdLine("garbage")).toBeUndefined();
  });
});
