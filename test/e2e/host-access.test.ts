// Issue 16 finding 7 through the compiled binary: `mcp deploy` in local mode as a "user" caller
// (an [[auth.tokens]] entry added to the agent config) with network = "host" prints one line
// naming the field and exits non-zero; nothing is created. (The admin token `mcp init` writes
// deploys as before: deploy.test.ts.)
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { appendFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { generateToken, hashToken } from "../../src/auth/local.ts";
import { busyboxImage, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const SVC = `hae2e-${Math.random().toString(36).slice(2, 8)}`;
const userToken = generateToken();
let agent: LocalAgent;

beforeAll(async () => {
  const image = await busyboxImage();
  agent = await startLocalAgent();
  appendFileSync(
    agent.agentConfig,
    `\n[[auth.tokens]]\nname = "bob"\nrole = "user"\naccount_type = "human"\nsha256 = "${hashToken(userToken)}"\n`,
  );
  await agent.stopAgent();
  await agent.startAgent();
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    `name = "${SVC}"\nnode = "local"\n\n[[components]]\nname = "web"\nimage = "${image}"\nnetwork = "host"\nrestart = "no"\n`,
  );
}, 120_000);

afterAll(async () => {
  await removeContainers([`${SVC}-web`]);
  await agent?.stop();
});

describe("mcp deploy as a user", () => {
  test('network = "host" is refused with one line naming the field; nothing created', async () => {
    const r = await agent.mcp(["deploy", SVC], { env: { MCP_TOKEN: userToken } });
    expect(r.code).not.toBe(0);
    const lines = r.stderr.trim().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(
      `service ${SVC}: component web: network = "host": host-level access needs an admin`,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
    expect((await podman("container", "exists", `${SVC}-web`)).code).not.toBe(0);
  }, 60_000);
});
