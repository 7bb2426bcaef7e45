// deploy/examples/{mcp-agent,mcp}.toml load with the real loaders, without a single warning,
// and say what the docs around them say (the node layout under /srv/mcp, the snapshot dir).
import { describe, expect, test } from "bun:test";
import { dirname, join } from "node:path";
import { loadAgentConfig } from "../../../src/config/agent.ts";
import { loadCliConfig } from "../../../src/config/cli.ts";
import { resolveConfigPath } from "../../../src/config/load.ts";
import { REPO_ROOT } from "../../support/binary.ts";

const EXAMPLES = join(REPO_ROOT, "deploy", "examples");

describe("deploy/examples", () => {
  test("mcp-agent.toml: valid agent config, /srv/mcp layout, snapshots land in /srv/mcp/backups", () => {
    const file = join(EXAMPLES, "mcp-agent.toml");
    const { config, warnings } = loadAgentConfig(file, { strict: true });
    expect(warnings).toEqual([]);
    expect(config.auth.mode).toBe("mcias");
    expect(config.mcias?.service_name).toBe("mcp-agent");
    expect(config.server.tls_cert).toBe("/srv/mcp/certs/cert.pem");
    expect(config.agent.srv_root).toBe("/srv");
    expect(config.agent.container_runtime).toBe("podman");
    expect(config.monitor.alert_command).toEqual([]);
    const db = resolveConfigPath(file, config.database.path);
    expect(db).toBe("/srv/mcp/mcp.db");
    // `mcp agent snapshot`'s default directory (src/roles/cli/snapshot.ts).
    expect(join(dirname(db), "backups")).toBe("/srv/mcp/backups");
  });

  test("mcp.toml: valid CLI config with one node", () => {
    const { config, warnings } = loadCliConfig(join(EXAMPLES, "mcp.toml"));
    expect(warnings).toEqual([]);
    expect(config.nodes).toHaveLength(1);
    expect(config.nodes[0]).toMatchObject({ name: "rift", address: "100.95.252.120:9444", arch: "amd64" });
    expect(config.mcias?.service_name).toBe("mcp");
    expect(config.services.dir.endsWith("/.config/mcp/services")).toBe(true);
    expect(config.auth.token_path.endsWith("/.config/mcp/token")).toBe(true);
  });
});
