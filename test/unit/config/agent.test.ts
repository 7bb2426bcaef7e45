import { describe, expect, test } from "bun:test";
import { loadAgentConfig } from "../../../src/config/agent.ts";
import { ConfigError } from "../../../src/config/errors.ts";
import { tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

const SERVER = `[server]
grpc_addr = "100.95.252.120:9444"
tls_cert = "/srv/mcp/certs/cert.pem"
tls_key = "/srv/mcp/certs/key.pem"
`;
const MCIAS = `[mcias]
server_url = "https://mcias.metacircular.net:8443"
ca_cert = ""
service_name = "mcp-agent"
`;
const HASH = "a".repeat(64);

const REFERENCE = `${SERVER}
[database]
path = "/srv/mcp/mcp.db"
${MCIAS}
[agent]
node_name = "rift"
container_runtime = "podman"
runtime_args = ["--runtime", "runc"]
port_range = [20000, 20100]
pull = "missing"
recover_on_start = true
[monitor]
interval = "60s"
alert_command = ["/usr/bin/logger", "-t", "mcp"]
cooldown = "15m"
flap_threshold = 3
flap_window = "10m"
retention = "30d"
[master]
address = "rift.ts.net:9555"
role = "master"
heartbeat = "30s"
token_path = "/srv/mcp/master-token"
[mcproxy]
socket = "/srv/mc-proxy/admin.sock"
cert_dir = "/srv/mc-proxy/certs"
[metacrypt]
server_url = "https://metacrypt.svc.mcp.metacircular.net:8443"
ca_cert = "/srv/mcp/certs/metacircular-ca.pem"
mount = "pki"
issuer = "infra"
token_path = "/srv/mcp/metacrypt-token"
[mcns]
server_url = "https://mcns.svc.mcp.metacircular.net:8443"
token_path = "/srv/mcp/mcns-token"
[tls]
ca_cert = "/srv/mcp/certs/metacircular-ca.pem"
[[boot.sequence]]
name = "foundation"
timeout = "120s"
health = "tcp"
blocking = true
[[boot.sequence.services]]
name = "mcias"
tier = "core"
[[boot.sequence.services.components]]
name = "mcias"
image = "mcr.svc.mcp.metacircular.net:8443/mcias:v1.10.5"
volumes = ["/srv/mcias:/srv/mcias"]
cmd = ["mciassrv", "-config", "/srv/mcias/mcias.toml"]
[[boot.sequence.services.components.routes]]
port = 8443
[log]
level = "debug"
`;

function agentErr(text: string): string {
  const f = writeTemp(dir, text);
  const e = thrown(() => loadAgentConfig(f));
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).not.toContain("\n");
  expect(e.message.startsWith(`${f}: `)).toBe(true);
  return e.message.slice(f.length + 2);
}

describe("agent config", () => {
  test("reference config with every section", () => {
    const { config, warnings } = loadAgentConfig(writeTemp(dir, REFERENCE));
    expect(warnings).toEqual([]);
    expect(config.server).toEqual({
      grpc_addr: "100.95.252.120:9444",
      tls_cert: "/srv/mcp/certs/cert.pem",
      tls_key: "/srv/mcp/certs/key.pem",
      allow_any_addr: false,
    });
    expect(config.mcias).toEqual({
      server_url: "https://mcias.metacircular.net:8443",
      ca_cert: "",
      service_name: "mcp-agent",
      validate_path: "/v1/token/validate",
    });
    expect(config.agent).toEqual({
      node_name: "rift",
      container_runtime: "podman",
      runtime_args: ["--runtime", "runc"],
      runtime_api: "auto",
      srv_root: "/srv",
      port_range: [20000, 20100],
      pull: "missing",
      history_keep: 10,
      import_max_bytes: 1024 ** 3,
      import_max_entries: 100_000,
      recover_on_start: true,
    });
    expect(config.monitor).toEqual({
      interval: 60_000,
      alert_command: ["/usr/bin/logger", "-t", "mcp"],
      cooldown: 900_000,
      flap_threshold: 3,
      flap_window: 600_000,
      retention: 30 * 86_400_000,
      alert_timeout: 30_000,
    });
    expect(config.master).toEqual({
      address: "rift.ts.net:9555",
      role: "master",
      heartbeat: 30_000,
      token_path: "/srv/mcp/master-token",
    });
    expect(config.mcns).toEqual({
      server_url: "https://mcns.svc.mcp.metacircular.net:8443",
      ca_cert: "",
      zone: "svc.mcp.metacircular.net",
      token_path: "/srv/mcp/mcns-token",
    });
    expect(config.metacrypt?.issuer).toBe("infra");
    expect(config.mcproxy).toEqual({ socket: "/srv/mc-proxy/admin.sock", cert_dir: "/srv/mc-proxy/certs" });
    expect(config.log.level).toBe("debug");
    const stage = config.boot!.sequence[0]!;
    expect(stage.name).toBe("foundation");
    expect(stage.timeout).toBe(120_000);
    expect(stage.blocking).toBe(true);
    expect(stage.services[0]!.tier).toBe("core");
    expect(stage.services[0]!.components[0]!.routes).toEqual([{ port: 8443, mode: "l4", public: false }]);
  });
  test("minimal config: defaults filled, optional sections undefined", () => {
    const { config } = loadAgentConfig(writeTemp(dir, SERVER + MCIAS));
    expect(config.database.path).toBe("/srv/mcp/mcp.db");
    expect(config.auth).toEqual({ mode: "mcias", tokens: [], operators: [], host_access: "admin" });
    expect(config.agent.port_range).toEqual([10000, 60000]);
    expect(config.agent.srv_root).toBe("/srv");
    expect(config.agent.pull).toBe("always");
    expect(config.agent.node_name.length).toBeGreaterThan(0);
    expect(config.monitor.interval).toBe(60_000);
    expect(config.log.level).toBe("info");
    for (const k of ["master", "mcproxy", "metacrypt", "mcns", "tls", "boot"] as const)
      expect(config[k]).toBeUndefined();
  });
  test("local auth with hashed tokens", () => {
    const text = `${SERVER}[auth]\nmode = "local"\n[[auth.tokens]]\nname = "admin"\nrole = "admin"\nsha256 = "${HASH.toUpperCase()}"\n`;
    const { config } = loadAgentConfig(writeTemp(dir, text));
    expect(config.auth).toEqual({
      mode: "local",
      tokens: [{ name: "admin", role: "admin", account_type: "human", sha256: HASH }],
      operators: [],
      host_access: "admin",
    });
    expect(config.mcias).toBeUndefined();
    const withExpiry = `${text}expires = 2030-01-02T03:04:05Z\n[[auth.tokens]]\nname = "ci"\nrole = "user"\naccount_type = "system"\nsha256 = "${HASH}"\nexpires = "2031-01-01T00:00:00Z"\n`;
    const tokens = loadAgentConfig(writeTemp(dir, withExpiry)).config.auth.tokens;
    expect(tokens.map((t) => t.expires)).toEqual(["2030-01-02T03:04:05.000Z", "2031-01-01T00:00:00Z"]);
    expect(agentErr(withExpiry.replace('"2031-01-01T00:00:00Z"', '"soon"'))).toBe(
      'auth.tokens[1].expires: expected an ISO 8601 date, got "soon"',
    );
  });
  test("unknown keys are warnings", () => {
    const f = writeTemp(dir, `${SERVER}${MCIAS}[agent]\nnode_nam = "x"\n`);
    expect(loadAgentConfig(f).warnings).toEqual([
      `${f}: agent.node_nam: unknown key "node_nam" (ignored; did you mean "node_name"?)`,
    ]);
  });
  test("bad inputs name file, key and expectation", () => {
    expect(agentErr(MCIAS)).toBe("server: required key is missing (expected table)");
    expect(agentErr(SERVER)).toBe(
      'mcias: section is required when auth.mode = "mcias" (the default); or set auth.mode = "local"',
    );
    expect(agentErr(`${SERVER}[auth]\nmode = "local"\n`)).toBe(
      'auth.tokens: expected at least one [[auth.tokens]] entry when auth.mode = "local"',
    );
    expect(agentErr(`${SERVER}${MCIAS}[monitor]\ninterval = "60"\n`)).toBe(
      'monitor.interval: expected a duration like "500ms", "60s", "15m", "1h30m" or "30d", got "60"',
    );
    expect(agentErr(`${SERVER}${MCIAS}[monitor]\ncooldown = 15\n`)).toBe(
      "monitor.cooldown: expected string, got integer",
    );
    expect(agentErr(`${SERVER}${MCIAS}[agent]\nport_range = [60000, 10000]\n`)).toBe(
      "agent.port_range: expected low <= high",
    );
    expect(agentErr(`${SERVER}${MCIAS}[agent]\ncontainer_runtime = "lxc"\n`)).toBe(
      'agent.container_runtime: expected one of "podman", "docker", got "lxc"',
    );
    expect(agentErr(SERVER.replace("100.95.252.120:9444", "100.95.252.120") + MCIAS)).toContain(
      "server.grpc_addr: missing port",
    );
    expect(
      agentErr(
        `${SERVER}[auth]\nmode = "local"\n[[auth.tokens]]\nname = "a"\nrole = "root"\nsha256 = "${HASH}"\n`,
      ),
    ).toBe('auth.tokens[0].role: expected one of "admin", "user", "guest", got "root"');
    expect(
      agentErr(
        `${SERVER}[auth]\nmode = "local"\n[[auth.tokens]]\nname = "a"\nrole = "admin"\nsha256 = "abc"\n`,
      ),
    ).toBe("auth.tokens[0].sha256: expected 64 hex characters (SHA-256 of the token)");
  });
  test("boot services are strict service definitions", () => {
    const bad = REFERENCE.replace('tier = "core"', 'tier = "core"\nimagee = "x"');
    expect(agentErr(bad)).toBe('boot.sequence[0].services[0].imagee: unknown key "imagee"');
    const names = `${SERVER}${MCIAS}[[boot.sequence]]\nname = "core"\nservices = ["mcias"]\n`;
    expect(agentErr(names)).toBe("boot.sequence[0].services[0]: expected table, got string");
    const untagged = REFERENCE.replace(":v1.10.5", "");
    const f = writeTemp(dir, untagged);
    expect(loadAgentConfig(f).warnings).toEqual([
      `${f}: boot.sequence[0].services[0].components[0].image: image "mcr.svc.mcp.metacircular.net:8443/mcias" has no tag; pin a version tag such as :v1.0.0`,
    ]);
  });
});
