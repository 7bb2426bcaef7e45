// `mcp login` against a fake MCIAS over real HTTPS, token precedence (MCP_TOKEN, token file,
// system-account login on demand), and an agent in MCIAS mode validating those tokens.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type FakeMcias, startFakeMcias } from "../fakes/mcias.ts";
import { runMcp } from "../support/binary.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";

let fake: FakeMcias;
let agent: LocalAgent;
let cli: string;

function cliConfig(extraAuth = ""): string {
  return `[services]
dir = ${JSON.stringify(agent.servicesDir)}
[mcias]
server_url = ${JSON.stringify(fake.url)}
ca_cert = ${JSON.stringify(fake.caCertPath)}
service_name = "mcp"
[auth]
token_path = ${JSON.stringify(join(agent.dir, "mcias-token"))}
${extraAuth}
[tls]
ca_cert = ${JSON.stringify(join(agent.dir, "certs", "ca.pem"))}
[[nodes]]
name = "local"
address = ${JSON.stringify(agent.address)}
`;
}

beforeAll(async () => {
  fake = await startFakeMcias({
    users: [
      { username: "alice", password: "alice-pw", roles: ["user"], accountType: "human" },
      { username: "gus", password: "gus-pw", roles: ["guest"], accountType: "human" },
      { username: "mcp-ops", password: "ops-pw", roles: ["user"], accountType: "system" },
    ],
  });
  agent = await startLocalAgent();
  // Switch the agent from local tokens to MCIAS validation.
  await agent.stopAgent();
  const agentToml = readFileSync(agent.agentConfig, "utf8").replace(
    'mode = "local"',
    // mcp-ops is a system account: it operates only when listed (SPEC §5.2).
    'mode = "mcias"\noperators = ["mcp-ops"]',
  );
  writeFileSync(
    agent.agentConfig,
    `${agentToml}\n[mcias]\nserver_url = ${JSON.stringify(fake.url)}\nca_cert = ${JSON.stringify(fake.caCertPath)}\nservice_name = "mcp-agent"\n`,
  );
  await agent.startAgent();
  cli = join(agent.dir, "mcias-cli.toml");
  writeFileSync(cli, cliConfig());
});

afterAll(async () => {
  await agent?.stop();
  await fake?.stop();
});

const mcp = (args: string[], env: Record<string, string | undefined> = {}, input?: string) =>
  runMcp(["--config", cli, ...args], {
    env: { ...agent.env, MCP_CONFIG: undefined, MCP_TOKEN: undefined, ...env },
    input,
  });

describe("mcp login", () => {
  test("stores the MCIAS token 0600 and forwards service_name", async () => {
    const r = await mcp(["login", "--username", "alice"], {}, "alice-pw\n");
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const tokenPath = join(agent.dir, "mcias-token");
    expect(statSync(tokenPath).mode & 0o777).toBe(0o600);
    expect(readFileSync(tokenPath, "utf8").trim().split(".").length).toBe(3);
    expect(fake.lastLogin()?.service_name).toBe("mcp");
    // The stored token works against an agent that validates with MCIAS.
    const ps = await mcp(["ps", "--json"]);
    expect(ps.code).toBe(0);
    expect(JSON.parse(ps.stdout).errors).toEqual([]);
  });

  test("a wrong password is one clear line and a non-zero exit", async () => {
    const r = await mcp(["login", "--username", "alice"], {}, "nope\n");
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines.length).toBe(1);
    expect(lines[0]).toContain("invalid credentials");
  });

  test("MCP_TOKEN wins over the token file; a guest token is refused by the agent", async () => {
    writeFileSync(join(agent.dir, "mcias-token"), "garbage-token\n", { mode: 0o600 });
    const bad = await mcp(["ps", "--json"]);
    expect(bad.code).toBe(1);
    expect(JSON.parse(bad.stdout).errors[0].error).toContain("UNAUTHENTICATED");
    const good = await mcp(["ps", "--json"], { MCP_TOKEN: fake.issueToken("alice") });
    expect(good.code).toBe(0);
    const guest = await mcp(["node", "list", "--json"], { MCP_TOKEN: fake.issueToken("gus") });
    expect(guest.code).toBe(1);
    expect(JSON.parse(guest.stdout).nodes[0].error).toContain("PERMISSION_DENIED");
  });

  test("with username + password_file and no token, the CLI logs in on demand", async () => {
    const pwFile = join(agent.dir, "ops-password");
    writeFileSync(pwFile, "ops-pw\n", { mode: 0o600 });
    writeFileSync(cli, cliConfig(`username = "mcp-ops"\npassword_file = ${JSON.stringify(pwFile)}`));
    const tokenPath = join(agent.dir, "mcias-token");
    writeFileSync(tokenPath, "");
    const before = fake.loginCalls();
    const r = await mcp(["list", "--json"]);
    expect(r.code).toBe(0);
    expect(fake.loginCalls()).toBe(before + 1);
    expect(readFileSync(tokenPath, "utf8").trim().length).toBeGreaterThan(20);
    expect(statSync(tokenPath).mode & 0o777).toBe(0o600);
  });
});
