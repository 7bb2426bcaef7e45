import { describe, expect, test } from "bun:test";
import { ConfigError } from "../../../src/config/errors.ts";
import { loadMasterConfig } from "../../../src/config/master.ts";
import { tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

const REFERENCE = `[server]
grpc_addr = "100.64.0.1:9555"
tls_cert  = "/srv/mcp-master/certs/cert.pem"
tls_key   = "/srv/mcp-master/certs/key.pem"

[database]
path = "/srv/mcp-master/master.db"

[mcias]
server_url   = "https://mcias.metacircular.net:8443"
service_name = "mcp-master"

[edge]
allowed_domains = ["metacircular.net", "wntrmute.net"]

[registration]
allowed_agents = ["agent-rift", "agent-svc", "agent-orion"]
max_nodes      = 16

[timeouts]
deploy       = "5m"
edge_route   = "30s"
health_check = "5s"
undeploy     = "2m"
snapshot     = "10m"

[master]
allowed_public_domains = ["example.org", "wntrmute.net"]

[[nodes]]
name    = "rift"
address = "100.95.252.120:9444"
role    = "master"

[snapshots]
dir = "/srv/mcp-master/snapshots"
interval = "24h"
retain = 7
`;

function masterErr(text: string): string {
  const f = writeTemp(dir, text);
  const e = thrown(() => loadMasterConfig(f));
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).not.toContain("\n");
  return e.message.slice(f.length + 2);
}

describe("master config", () => {
  test("architecture-v2 reference config", () => {
    const { config, warnings } = loadMasterConfig(writeTemp(dir, REFERENCE));
    expect(warnings).toEqual([]);
    expect(config.edge.allowed_domains).toEqual(["metacircular.net", "wntrmute.net", "example.org"]);
    expect(config.registration).toEqual({
      allowed_agents: ["agent-rift", "agent-svc", "agent-orion"],
      roles: {},
      max_nodes: 16,
      register_interval: 60_000,
      heartbeat_min_interval: 10_000,
    });
    expect(config.timeouts).toEqual({
      deploy: 300_000,
      edge_route: 30_000,
      health_check: 5_000,
      undeploy: 120_000,
      snapshot: 600_000,
    });
    expect(config.master).toEqual({
      heartbeat_miss: 3,
      heartbeat_interval: 30_000,
      probe_timeout: 5_000,
      allowed_public_domains: ["example.org", "wntrmute.net"],
      node_srv_root: "/srv",
    });
    expect(config.nodes).toEqual([
      { name: "rift", address: "100.95.252.120:9444", role: "master", arch: "amd64" },
    ]);
    expect(config.snapshots).toEqual({
      dir: "/srv/mcp-master/snapshots",
      interval: 86_400_000,
      retain: 7,
      max_bytes: 1024 ** 3,
    });
    expect(config.mcias?.service_name).toBe("mcp-master");
  });
  test("defaults", () => {
    const minimal = REFERENCE.slice(0, REFERENCE.indexOf("[edge]"));
    const { config } = loadMasterConfig(writeTemp(dir, minimal));
    expect(config.registration.max_nodes).toBe(16);
    expect(config.master.heartbeat_miss).toBe(3);
    expect(config.timeouts.deploy).toBe(300_000);
    expect(config.edge.allowed_domains).toEqual([]);
    expect(config.nodes).toEqual([]);
    expect(config.snapshots).toBeUndefined();
    expect(config.tls).toBeUndefined();
    expect(config.log.level).toBe("info");
  });
  test("unknown keys warn; bad values fail with key paths", () => {
    const f = writeTemp(dir, REFERENCE.replace("max_nodes      = 16", "max_node = 16"));
    expect(loadMasterConfig(f).warnings).toEqual([
      `${f}: registration.max_node: unknown key "max_node" (ignored; did you mean "max_nodes"?)`,
    ]);
    expect(masterErr(REFERENCE.replace('deploy       = "5m"', 'deploy = "5 minutes"'))).toContain(
      "timeouts.deploy: expected a duration like",
    );
    expect(masterErr(REFERENCE.replace('role    = "master"', 'role = "boss"'))).toBe(
      'nodes[0].role: expected one of "worker", "edge", "master", got "boss"',
    );
    expect(masterErr(REFERENCE.replace('"wntrmute.net"]\n\n[reg', '"Bad_Domain"]\n\n[reg'))).toBe(
      'edge.allowed_domains[1]: expected a lowercase domain such as "example.net", got "Bad_Domain"',
    );
    expect(masterErr(REFERENCE.replace("max_nodes      = 16", "max_nodes = 0"))).toBe(
      "registration.max_nodes: expected a value >= 1, got 0",
    );
  });

  test("[registration] roles: the master decides each node's role; a key without its agent or against [[nodes]] is refused", () => {
    const withRoles = (roles: string) =>
      REFERENCE.replace("max_nodes      = 16", `max_nodes      = 16\nroles = ${roles}`);
    const { config } = loadMasterConfig(writeTemp(dir, withRoles('{ svc = "edge", rift = "master" }')));
    expect(config.registration.roles).toEqual({ svc: "edge", rift: "master" });
    expect(masterErr(withRoles('{ ghost = "edge" }'))).toBe(
      'registration.roles.ghost: node "ghost" has no agent-ghost in [registration] allowed_agents',
    );
    expect(masterErr(withRoles('{ rift = "worker" }'))).toBe(
      'registration.roles.rift: "worker" contradicts the [[nodes]] entry "rift" (role "master")',
    );
    expect(masterErr(withRoles('{ svc = "boss" }'))).toContain("registration.roles.svc: expected one of");
  });
});
