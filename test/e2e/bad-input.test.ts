// e2e: bad input through the COMPILED binary. Every mistake an operator can make in a definition
// file, a flag, the CLI config or the agent config must give exactly one clear line on stderr
// (file, key, and line for TOML syntax; never a stack trace), a non-zero exit (2 for config
// errors), and must change nothing: the agent registry is byte-identical before and after, and a
// service that was deployed fine keeps its running container when a bad redeploy is refused.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type RunResult, runMcp } from "../support/binary.ts";
import { busyboxImage, freePort, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const SVC = `bad-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const WEB = `${SVC}-web`;

let agent: LocalAgent;
let image = "";
let defFile = "";
let goodDef = "";
let webPort = 0;
let webId = "";

/** "<id> <state>" of the service's container, to prove a refused redeploy left it alone. */
async function webContainer(): Promise<string> {
  const r = await podman("inspect", "--format", "{{.Id}} {{.State.Status}}", WEB);
  expect(r.code).toBe(0);
  return r.stdout;
}

/**
 * The local agent's registry as `mcp list --json` shows it (no runtime query, so nothing moves by
 * itself). While the deliberately dead node is configured, list exits 1 with an error row for it.
 */
async function registrySnapshot(): Promise<string> {
  const r = await agent.mcp(["list", "--json"]);
  const out = JSON.parse(r.stdout) as { services: { node: string }[]; errors: { node: string }[] };
  expect(out.errors.filter((e) => e.node !== "dead")).toEqual([]);
  expect(r.code).toBe(out.errors.length === 0 ? 0 : 1);
  expect(out.services.some((s) => s.node === "local")).toBe(true);
  return JSON.stringify(out.services);
}

/** Exactly one non-empty stderr line, no stack frames; returns that line. */
function oneLine(r: RunResult): string {
  expect(r.stderr).not.toMatch(/^\s+at /m);
  expect(r.stderr.endsWith("\n")).toBe(true);
  const lines = r.stderr.split("\n").slice(0, -1);
  expect(lines).toHaveLength(1);
  expect(lines[0]!.trim()).not.toBe("");
  return lines[0]!;
}

/**
 * Runs `mcp ...args` and checks the common contract: one line on stderr, the exit code, nothing
 * on stdout unless allowed, registry and the deployed container unchanged. Returns the line.
 */
async function refused(
  args: string[],
  code: number,
  opts: { env?: Record<string, string>; stdout?: string } = {},
): Promise<string> {
  const regBefore = await registrySnapshot();
  const ctrBefore = await webContainer();
  const r = await agent.mcp(args, { env: opts.env });
  const line = oneLine(r);
  expect(r.code).toBe(code);
  expect(r.stdout).toBe(opts.stdout ?? "");
  expect(await registrySnapshot()).toBe(regBefore);
  expect(await webContainer()).toBe(ctrBefore);
  return line;
}

/** Replaces the deployed service's definition with `text` and tries to redeploy it. */
async function badRedeploy(text: string): Promise<string> {
  writeFileSync(defFile, text);
  try {
    return await refused(["deploy", SVC, "--pull", "never"], 2);
  } finally {
    writeFileSync(defFile, goodDef);
  }
}

const component = (body: string) => `name = "${SVC}"\nactive = true\n\n[[components]]\n${body}`;

beforeAll(async () => {
  const [a, img, port] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0"), freePort()]);
  agent = a;
  image = img;
  webPort = port;
  defFile = join(agent.servicesDir, `${SVC}.toml`);
  goodDef = component(`name = "web"\nimage = "${image}"\nports = ["127.0.0.1:${webPort}:8080"]\n`);
  writeFileSync(defFile, goodDef);
  // The control: this exact service deploys fine, so each refusal below is due to the bad input.
  const r = await agent.mcp(["deploy", SVC, "--pull", "never"]);
  if (r.code !== 0) throw new Error(`good deploy failed: ${r.stderr}${r.stdout}`);
  webId = await webContainer();
  expect(webId).toMatch(/^[0-9a-f]{64} running$/);
}, 60_000);

afterAll(async () => {
  await removeContainers([WEB]);
  await agent?.stop();
}, 30_000);

describe("bad service definitions: one line naming file and key, exit 2, nothing changes", () => {
  test("malformed TOML names the line", async () => {
    // line 6 is the broken one: a key without "="
    const line = await badRedeploy(component(`name = "web"\nimage "${image}"\n`));
    expect(line).toStartWith(`mcp: ${defFile}: line 6: `);
  }, 15_000);

  test("unknown key (a typo) is an error, not silently ignored", async () => {
    const line = await badRedeploy(component(`name = "web"\nimagee = "${image}"\n`));
    expect(line).toBe(`mcp: ${defFile}: components[0].imagee: unknown key "imagee" (did you mean "image"?)`);
  }, 15_000);

  test("port out of range", async () => {
    const line = await badRedeploy(
      component(`name = "web"\nimage = "${image}"\nports = ["127.0.0.1:99999:80"]\n`),
    );
    expect(line).toStartWith(`mcp: ${defFile}: components[0].ports[0]: `);
    expect(line).toContain("99999");
    expect(line).toContain('"127.0.0.1:99999:80"');
  }, 15_000);

  test("missing image", async () => {
    const line = await badRedeploy(component(`name = "web"\n`));
    expect(line).toBe(`mcp: ${defFile}: components[0].image: required key is missing (expected string)`);
  }, 15_000);

  test("bad component name", async () => {
    const line = await badRedeploy(component(`name = "Web_1"\nimage = "${image}"\n`));
    expect(line).toStartWith(`mcp: ${defFile}: components[0].name: `);
    expect(line).toContain('"Web_1"');
  }, 15_000);

  test('wrong type: active = "yes"', async () => {
    const text = component(`name = "web"\nimage = "${image}"\n`).replace("active = true", 'active = "yes"');
    const line = await badRedeploy(text);
    expect(line).toBe(`mcp: ${defFile}: active: expected boolean, got string`);
  }, 15_000);

  test("node that is not in the CLI config: the definition file is named, not the CLI config", async () => {
    const line = await badRedeploy(goodDef.replace("active = true", 'active = true\nnode = "mars"'));
    expect(line).toBe(`mcp: ${defFile}: node: no node named "mars" in ${agent.cliConfig} (known: local)`);
  }, 15_000);

  test("after all that, the definition on disk is the good one again", () => {
    expect(readFileSync(defFile, "utf8")).toBe(goodDef);
  });
});

describe("bad flags, targets and CLI configs", () => {
  test("--pull bogus", async () => {
    const line = await refused(["deploy", SVC, "--pull", "bogus"], 2);
    expect(line).toBe('mcp: --pull: expected always, missing or never, got "bogus"');
  }, 15_000);

  test("--node that is not in the CLI config", async () => {
    const line = await refused(["deploy", SVC, "--node", "mars"], 2);
    expect(line).toBe(`mcp: ${agent.cliConfig}: nodes: no node named "mars" (known: local)`);
  }, 15_000);

  test("unknown service without a definition file says where to create it", async () => {
    const line = await refused(["deploy", "no-such-svc"], 2);
    expect(line).toContain('"no-such-svc"');
    expect(line).toContain(`create ${join(agent.servicesDir, "no-such-svc.toml")}`);
  }, 15_000);

  test("-f pointing at a missing file", async () => {
    const missing = join(agent.dir, "nope.toml");
    const line = await refused(["deploy", SVC, "-f", missing], 2);
    expect(line).toBe(`mcp: ${missing}: file not found`);
  }, 15_000);

  test("CLI config that does not exist (--config and MCP_CONFIG)", async () => {
    const missing = join(agent.dir, "missing-mcp.toml");
    for (const [args, env] of [
      [["list", "--config", missing], {}],
      [["ps"], { MCP_CONFIG: missing }],
      [["deploy", SVC], { MCP_CONFIG: missing }],
    ] as [string[], Record<string, string>][]) {
      const line = await refused(args, 2, { env });
      expect(line).toStartWith(`mcp: ${missing}: file not found`);
    }
  }, 20_000);
});

describe("an unreachable node", () => {
  let deadPort = 0;
  beforeAll(async () => {
    deadPort = await freePort(); // free a moment ago, so nothing listens there: connection refused
    const add = await agent.mcp(["node", "add", "dead", `127.0.0.1:${deadPort}`]);
    expect(add.code).toBe(0);
  });
  afterAll(async () => {
    await agent.mcp(["node", "remove", "dead"]);
  });

  test("ps lists the reachable node's containers, an unknown row for the dead one, exit 3", async () => {
    const human = await agent.mcp(["ps"]);
    expect(human.code).toBe(3);
    expect(human.stderr).toBe("");
    expect(human.stdout).toMatch(new RegExp(`^${WEB} +local +running +v1\\.0\\.0 `, "m"));
    const dead = human.stdout.split("\n").filter((l) => /^- +dead +unknown/.test(l));
    expect(dead).toEqual([
      expect.stringMatching(/^- +dead +unknown +- +- +unreachable: connection refused$/),
    ]);
    expect(human.stdout).toContain("\ndead: unreachable (connection refused), state unknown\n");

    const json = await agent.mcp(["ps", "--json"]);
    expect(json.code).toBe(3);
    const out = JSON.parse(json.stdout) as {
      containers: { node: string; service: string; component: string; observed: string }[];
      errors: { node: string; error: string }[];
    };
    expect(out.containers).toContainEqual(
      expect.objectContaining({ node: "local", service: SVC, component: "web", observed: "running" }),
    );
    expect(out.containers.filter((c) => c.node === "dead")).toEqual([]);
    expect(out.errors).toHaveLength(1);
    expect(out.errors[0]!.node).toBe("dead");
    expect(out.errors[0]!.error).toStartWith("UNAVAILABLE: ");
    expect(out.errors[0]!.error).toContain(`ECONNREFUSED 127.0.0.1:${deadPort}`);
    expect(out.errors[0]!.error).not.toContain("\n");
    expect(out.errors[0]!.error).not.toContain("Resolution note");
  }, 20_000);

  test("deploying to it fails with one line and exit 1, leaving the local node alone", async () => {
    const line = await refused(["deploy", SVC, "--node", "dead"], 1, {
      stdout: `deploying ${SVC} to dead (from ${defFile})\n`,
    });
    expect(line).toStartWith("mcp: dead: UNAVAILABLE: ");
    expect(line).toContain(`127.0.0.1:${deadPort}`);
  }, 20_000);
});

describe("bad agent configs: one line, non-zero exit, no stack, nothing bound", () => {
  const agentRun = (args: string[]) => runMcp(["agent", ...args], { env: agent.env, timeoutMs: 15_000 });
  const variant = (name: string, edit: (text: string) => string): string => {
    const file = join(agent.dir, `${name}.toml`);
    const text = edit(readFileSync(agent.agentConfig, "utf8"));
    writeFileSync(file, text);
    return file;
  };
  const refusesToConnect = async (port: number) => {
    const ok = await Bun.connect({ hostname: "127.0.0.1", port, socket: { data() {} } }).then(
      (s) => {
        s.end();
        return true;
      },
      () => false,
    );
    expect(ok).toBe(false);
  };

  test("unknown auth mode", async () => {
    const file = variant("auth-mode", (t) => t.replace('mode = "local"', 'mode = "kerberos"'));
    const r = await agentRun(["--config", file]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(
      `mcp agent: ${file}: auth.mode: expected one of "mcias", "local", got "kerberos"`,
    );
  }, 20_000);

  test("grpc_addr on 0.0.0.0 is refused without --allow-any-addr", async () => {
    const port = await freePort();
    const file = variant("any-addr", (t) => t.replace(/^grpc_addr = .*$/m, `grpc_addr = "0.0.0.0:${port}"`));
    expect(readFileSync(file, "utf8")).toContain(`grpc_addr = "0.0.0.0:${port}"`);
    const r = await agentRun(["--config", file]);
    expect(r.code).toBe(2);
    const line = oneLine(r);
    expect(line).toStartWith(`mcp agent: ${file}: server.grpc_addr: refusing to bind 0.0.0.0:${port}`);
    expect(line).toContain("--allow-any-addr");
    await refusesToConnect(port);
  }, 20_000);

  test("missing config file", async () => {
    const missing = join(agent.dir, "no-agent.toml");
    const r = await agentRun(["--config", missing]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe(`mcp agent: ${missing}: file not found`);
  }, 20_000);

  test("malformed agent TOML names the line", async () => {
    const file = variant("syntax", (t) => `${t}\n[server\n`);
    const lineNo = readFileSync(file, "utf8").split("\n").indexOf("[server") + 1;
    const r = await agentRun(["--config", file]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toStartWith(`mcp agent: ${file}: line ${lineNo}: `);
  }, 20_000);

  test("unknown argument", async () => {
    const r = await agentRun(["--bogus"]);
    expect(r.code).toBe(2);
    expect(oneLine(r)).toBe('mcp agent: unknown argument "--bogus" (see mcp agent --help)');
  }, 20_000);

  test("the local agent is still serving after all of the above", async () => {
    expect(await webContainer()).toBe(webId);
    const r = await agent.mcp(["ps", "--json"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`"service": "${SVC}"`);
  }, 15_000);
});
