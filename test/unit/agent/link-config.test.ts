// [master] and [edge] of the agent config as the daemon turns them into AgentSettings: the token
// and CA are read from their files ([tls] ca_cert is the CA fallback), [edge] has the Tailnet
// defaults, and missing files, missing keys or a bad CIDR are one-line config errors.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAgentConfig } from "../../../src/config/agent.ts";
import { settingsFromConfig } from "../../../src/roles/agent/daemon.ts";

let dir = "";
const file = () => join(dir, "mcp-agent.toml");

function settings(extra: Record<string, unknown>) {
  const { config } = parseAgentConfig(
    {
      server: { grpc_addr: "127.0.0.1:9444", tls_cert: "cert.pem", tls_key: "key.pem" },
      auth: { mode: "local", tokens: [{ name: "a", role: "admin", sha256: "0".repeat(64) }] },
      agent: { node_name: "n1", srv_root: join(dir, "srv") },
      log: { level: "error" },
      ...extra,
    },
    file(),
  );
  return settingsFromConfig(config, file(), "1.0.0", false);
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), "mcp-link-config-"));
  for (const [name, text] of [
    ["cert.pem", "CERT"],
    ["key.pem", "KEY"],
    ["master-ca.pem", "MASTER CA"],
    ["tls-ca.pem", "TLS CA"],
    ["agent.token", "secret-token\n"],
    ["empty.token", ""],
  ])
    writeFileSync(join(dir, name!), text!);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("[master] and [edge] → AgentSettings", () => {
  test("absent [master]: no link; [edge] defaults to the Tailnet range on 443", () => {
    const s = settings({});
    expect(s.master).toBeUndefined();
    expect(s.edge).toEqual({ allowedBackendCidrs: ["100.64.0.0/10"], listener: 443 });
  });

  test("[master] with its CA and token file; heartbeat in ms", () => {
    const s = settings({
      master: {
        address: "10.0.0.1:9555",
        role: "edge",
        heartbeat: "5s",
        ca_cert: "master-ca.pem",
        token_path: "agent.token",
      },
      edge: { allowed_backend_cidrs: ["127.0.0.0/8", "fd7a:115c:a1e0::/48"], listener: 8443 },
    });
    expect(s.master).toEqual({
      address: "10.0.0.1:9555",
      role: "edge",
      heartbeatMs: 5000,
      caPem: "MASTER CA",
      token: "secret-token",
    });
    expect(s.edge).toEqual({ allowedBackendCidrs: ["127.0.0.0/8", "fd7a:115c:a1e0::/48"], listener: 8443 });
  });

  test("[tls] ca_cert is the CA when [master] has none; heartbeat defaults to 30 s", () => {
    const s = settings({
      master: { address: "10.0.0.1:9555", token_path: "agent.token" },
      tls: { ca_cert: "tls-ca.pem" },
    });
    expect(s.master?.caPem).toBe("TLS CA");
    expect(s.master?.heartbeatMs).toBe(30_000);
    // No claim: the master's config decides the role (issue 16 finding 6).
    expect(s.master?.role).toBeUndefined();
  });

  test("one-line errors: no CA, no token, unreadable or empty token, bad CIDR", () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ master: { address: "10.0.0.1:9555", token_path: "agent.token" } }, "master.ca_cert: is required"],
      [{ master: { address: "10.0.0.1:9555", ca_cert: "master-ca.pem" } }, "master.token_path: is required"],
      [
        { master: { address: "10.0.0.1:9555", ca_cert: "master-ca.pem", token_path: "missing.token" } },
        "master.token_path: cannot read",
      ],
      [
        { master: { address: "10.0.0.1:9555", ca_cert: "master-ca.pem", token_path: "empty.token" } },
        "empty.token is empty",
      ],
      [{ edge: { allowed_backend_cidrs: ["100.64.0.0/40"] } }, "edge.allowed_backend_cidrs[0]"],
    ];
    for (const [extra, msg] of cases) {
      let err: Error | undefined;
      try {
        settings(extra);
      } catch (e) {
        err = e as Error;
      }
      expect(err?.message).toContain(msg);
      expect(err?.message).not.toContain("\n");
    }
  });
});
