// e2e (issue 19, stumble 3 and the empty `mcp ps` of stumble 8), through the compiled binary and a
// real agent on a podman store of this file's own (so "nothing deployed" and drift are exact):
// `mcp status` and `mcp ps` say "unknown" for a node they could not see and never "no drift" for
// it, end with a line per node, exit 3 on drift or an unreachable node (0 when all is well), put
// a connection error in one short cell plus one hint line when a connection was refused, and
// carry the same facts in --json. `mcp node list` and `mcp agent status` keep the full error for
// --json and show the short reason. A second node at a closed 127.0.0.1 port is "connection
// refused"; a CLI config trusting another CA makes the TLS case.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { RunResult } from "../support/binary.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type LocalAgent, startLocalAgent } from "../support/local-agent.ts";
import { type OwnStore, ownPodmanStore } from "../support/own-store.ts";
import { testPki } from "../support/pki.ts";

/** The documented code of status/ps for drift or a node not reached (CLI exit-code policy). */
const EXIT_DRIFT = 3;
const P = `stx-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const SVC = `${P}-app`;
const WEB = `${SVC}-web`;
const EMPTY_PS = "no services deployed on local (mcp deploy <service> to start one)\n";
const RUNNING_LINE = "local: 1 service, 1 component, 1 running, no drift";
const DEFAULT_HINT =
  "is the agent running? systemctl status mcp-agent, or: mcp agent --config /srv/mcp/mcp-agent.toml";

let store: OwnStore;
let agent: LocalAgent;
let image = "";
let deadPort = 0;
/** The agent's CLI config plus a node "dead" at a closed 127.0.0.1 port. */
let twoNodes = "";

interface NodeJson {
  node: string;
  reachable: boolean;
  state: string;
  reason?: string;
  error?: string;
  services?: number;
  components?: number;
  running?: number;
  drift?: number;
}
interface FleetJson {
  nodes: NodeJson[];
  drift?: { node: string; service: string; component: string; desired: string; observed: string }[];
  containers?: { node: string; service: string; observed: string }[];
  services?: { node: string; service: string; observed: string }[];
  errors: { node: string; error: string; reason: string }[];
  hint?: string;
}

const mcp = (args: string[], config?: string): Promise<RunResult> =>
  agent.mcp(args, config ? { env: { MCP_CONFIG: config } } : {});

async function mcpJson(args: string[], config?: string): Promise<{ code: number; json: FleetJson }> {
  const r = await mcp([...args, "--json"], config);
  expect(r.stderr).toBe("");
  return { code: r.code, json: JSON.parse(r.stdout) as FleetJson };
}

const lines = (r: RunResult) => r.stdout.split("\n").filter((l) => l !== "");
const hints = (r: RunResult) => lines(r).filter((l) => l.startsWith("is the agent running?"));

beforeAll(async () => {
  image = await busyboxImage("v1.0.0");
  store = await ownPodmanStore(P, [image]);
  agent = await startLocalAgent({ runtimeArgs: store.globalArgs, env: store.env });
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    `name = "${SVC}"\nactive = true\n\n[[components]]\nname = "web"\nimage = "${image}"\n`,
  );
  deadPort = await freePort(); // free a moment ago and nothing listens there: connection refused
  twoNodes = join(agent.dir, "two-nodes.toml");
  writeFileSync(
    twoNodes,
    `${readFileSync(agent.cliConfig, "utf8")}\n[[nodes]]\nname = "dead"\naddress = "127.0.0.1:${deadPort}"\narch = "amd64"\n`,
  );
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await store?.remove([WEB]);
}, 60_000);

describe("nothing deployed", () => {
  test("ps prints one line instead of a bare header, exit 0; status says it per node", async () => {
    const ps = await mcp(["ps"]);
    expect(ps.stderr).toBe("");
    expect(ps.code).toBe(0);
    expect(ps.stdout).toBe(EMPTY_PS);

    const j = await mcpJson(["ps"]);
    expect(j.code).toBe(0);
    expect(j.json.containers).toEqual([]);
    expect(j.json.nodes).toEqual([
      { node: "local", reachable: true, state: "ok", services: 0, components: 0, running: 0, drift: 0 },
    ]);

    const st = await mcp(["status"]);
    expect(st.code).toBe(0);
    expect(st.stdout).toBe("local: no services deployed (mcp deploy <service> to start one)\n");
  }, 30_000);
});

describe("a deployed service", () => {
  test("all well: status and ps exit 0 and end with the node's line", async () => {
    const d = await mcp(["deploy", SVC, "--pull", "never"]);
    expect(d.stderr).toBe("");
    expect(d.code).toBe(0);

    const st = await mcp(["status"]);
    expect(st.stderr).toBe("");
    expect(st.code).toBe(0);
    expect(st.stdout).toMatch(new RegExp(`^local +${SVC} +web +running +running +v1\\.0\\.0 `, "m"));
    expect(lines(st).at(-1)).toBe(RUNNING_LINE);
    expect(st.stdout).not.toContain("state unknown"); // (an event may read "unknown -> running")
    expect(hints(st)).toEqual([]);

    const ps = await mcp(["ps"]);
    expect(ps.code).toBe(0);
    expect(ps.stdout).toMatch(new RegExp(`^${WEB} +local +running +v1\\.0\\.0 `, "m"));
    expect(lines(ps).at(-1)).toBe(RUNNING_LINE);

    for (const args of [["status"], ["ps"]]) {
      const j = await mcpJson(args);
      expect(j.code).toBe(0);
      expect(j.json.nodes).toEqual([
        { node: "local", reachable: true, state: "ok", services: 1, components: 1, running: 1, drift: 0 },
      ]);
      expect(j.json.errors).toEqual([]);
      expect(j.json.hint).toBeUndefined();
    }
  }, 60_000);

  test("its container removed behind the agent's back: status names the drift and exits 3; so does ps", async () => {
    const rm = await store.podman("rm", "-f", "-t", "1", WEB);
    expect(rm.code).toBe(0);
    // The agent learns of the removal from the runtime's events (a kill, then the removal): ask
    // until it has seen the removal (bounded).
    const removed = (x: FleetJson) => (x.drift ?? []).some((d) => d.observed === "removed");
    let j = await mcpJson(["status"]);
    for (let i = 0; i < 40 && !removed(j.json); i++) {
      await Bun.sleep(250);
      j = await mcpJson(["status"]);
    }
    expect(j.json.drift).toEqual([
      { node: "local", service: SVC, component: "web", desired: "running", observed: "removed" },
    ]);
    expect(j.code).toBe(EXIT_DRIFT);
    expect(j.json.nodes).toEqual([
      { node: "local", reachable: true, state: "drift", services: 1, components: 1, running: 0, drift: 1 },
    ]);

    const st = await mcp(["status", SVC]);
    expect(st.stderr).toBe("");
    expect(st.code).toBe(EXIT_DRIFT);
    expect(st.stdout).toMatch(new RegExp(`^local +${SVC} +web +running +removed .*DRIFT$`, "m"));
    expect(st.stdout).toContain(`  local/${SVC}/web: desired running, observed removed\n`);
    expect(lines(st).at(-1)).toBe("local: 1 service, 1 component, 0 running, 1 drift");
    expect(st.stdout).not.toContain("no drift");

    const ps = await mcp(["ps"]);
    expect(ps.code).toBe(EXIT_DRIFT);
    expect(ps.stdout).toMatch(
      new RegExp(`^${WEB} +local +removed +v1\\.0\\.0 +- +drift: desired running$`, "m"),
    );
    const pj = await mcpJson(["ps"]);
    expect(pj.code).toBe(EXIT_DRIFT);
    expect(pj.json.nodes[0]).toMatchObject({ node: "local", state: "drift", drift: 1 });

    // Deployed again: nothing drifts, exit 0.
    const d = await mcp(["deploy", SVC, "--pull", "never"]);
    expect(d.code).toBe(0);
    const again = await mcp(["status"]);
    expect(again.code).toBe(0);
    expect(lines(again).at(-1)).toBe(RUNNING_LINE);
  }, 60_000);
});

describe("a second node at a closed port", () => {
  test("status: one unknown row with a short cell, a line per node, one hint; exit 3", async () => {
    const st = await mcp(["status"], twoNodes);
    expect(st.stderr).toBe("");
    expect(st.code).toBe(EXIT_DRIFT);
    const dead = lines(st).filter((l) => l.startsWith("dead "));
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatch(/^dead +- +- +- +unknown +- +- +- +unreachable: connection refused$/);
    expect(lines(st).slice(-3)).toEqual([
      RUNNING_LINE,
      "dead: unreachable (connection refused), state unknown",
      DEFAULT_HINT, // the agent config beside this CLI config listens elsewhere: the packaged path
    ]);
    expect(hints(st)).toHaveLength(1);
    for (const l of lines(st)) expect(l.length).toBeLessThan(110);

    const j = await mcpJson(["status"], twoNodes);
    expect(j.code).toBe(EXIT_DRIFT);
    expect(j.json.nodes[0]).toMatchObject({ node: "local", reachable: true, state: "ok", drift: 0 });
    expect(j.json.nodes[1]).toMatchObject({
      node: "dead",
      reachable: false,
      state: "unknown",
      reason: "connection refused",
    });
    expect(j.json.nodes[1]!.error).toContain(`ECONNREFUSED 127.0.0.1:${deadPort}`);
    expect(j.json.errors).toEqual([
      { node: "dead", error: j.json.nodes[1]!.error!, reason: "connection refused" },
    ]);
    expect(j.json.hint).toBe(DEFAULT_HINT);
  }, 30_000);

  test("ps likewise: the reachable node's containers, an unknown row, exit 3", async () => {
    const ps = await mcp(["ps"], twoNodes);
    expect(ps.stderr).toBe("");
    expect(ps.code).toBe(EXIT_DRIFT);
    expect(ps.stdout).toMatch(new RegExp(`^${WEB} +local +running +v1\\.0\\.0 `, "m"));
    expect(ps.stdout).toMatch(/^- +dead +unknown +- +- +unreachable: connection refused$/m);
    expect(lines(ps).slice(-3)).toEqual([
      RUNNING_LINE,
      "dead: unreachable (connection refused), state unknown",
      DEFAULT_HINT,
    ]);
    const j = await mcpJson(["ps"], twoNodes);
    expect(j.code).toBe(EXIT_DRIFT);
    expect(j.json.nodes.map((n) => [n.node, n.state])).toEqual([
      ["local", "ok"],
      ["dead", "unknown"],
    ]);
  }, 30_000);

  test("node list and agent status: the AGENT column has the short reason, --json the whole error; exit 1", async () => {
    const nl = await mcp(["node", "list"], twoNodes);
    expect(nl.stderr).toBe("");
    expect(nl.code).toBe(1);
    const dead = lines(nl).filter((l) => l.startsWith("dead "));
    expect(dead).toHaveLength(1);
    expect(dead[0]).toMatch(
      new RegExp(`^dead +127\\.0\\.0\\.1:${deadPort} +amd64 +UNREACHABLE +connection refused$`),
    );
    // The whole error in the cell made every row ~150 characters wide.
    for (const l of lines(nl)) expect(l.length).toBeLessThan(110);
    expect(hints(nl)).toEqual([DEFAULT_HINT]);
    const nj = JSON.parse((await mcp(["node", "list", "--json"], twoNodes)).stdout) as {
      nodes: { name: string; reachable: boolean; reason?: string; error?: string }[];
    };
    const deadJson = nj.nodes.find((n) => n.name === "dead");
    expect(deadJson).toMatchObject({ reachable: false, reason: "connection refused" });
    expect(deadJson?.error).toStartWith("UNAVAILABLE: No connection established");
    expect(deadJson?.error).toContain(`ECONNREFUSED 127.0.0.1:${deadPort}`);

    const as = await mcp(["agent", "status"], twoNodes);
    expect(as.code).toBe(1);
    expect(lines(as).filter((l) => l.startsWith("dead "))).toEqual([
      expect.stringMatching(/^dead +UNREACHABLE +connection refused +amd64$/),
    ]);
    expect(hints(as)).toEqual([DEFAULT_HINT]);
    const aj = JSON.parse((await mcp(["agent", "status", "--json"], twoNodes)).stdout) as {
      nodes: { name: string; reason?: string; error?: string }[];
    };
    expect(aj.nodes.find((n) => n.name === "dead")).toMatchObject({
      reason: "connection refused",
      error: deadJson?.error,
    });

    const list = await mcp(["list"], twoNodes);
    expect(list.code).toBe(1);
    expect(list.stdout).toMatch(/^dead +- +- +- +unknown +unreachable: connection refused$/m);
  }, 30_000);
});

describe("a CLI config that trusts another CA", () => {
  test("status: unreachable: TLS: … in one short cell, no hint (nothing refused), exit 3", async () => {
    const other = await testPki(`${P}-other`);
    const caFile = join(agent.dir, "other-ca.pem");
    writeFileSync(caFile, other.caPem);
    const cfg = join(agent.dir, "other-ca.toml");
    const text = readFileSync(agent.cliConfig, "utf8");
    expect(text).toMatch(/^ca_cert = ".*"$/m);
    writeFileSync(cfg, text.replace(/^ca_cert = ".*"$/m, `ca_cert = ${JSON.stringify(caFile)}`));

    const st = await mcp(["status"], cfg);
    expect(st.stderr).toBe("");
    expect(st.code).toBe(EXIT_DRIFT);
    const row = lines(st).find((l) => l.startsWith("local "));
    expect(row).toMatch(/^local +- +- +- +unknown +- +- +- +unreachable: TLS: \S/);
    const cell = row!.slice(row!.indexOf("unreachable: "));
    expect(cell.length).toBeLessThanOrEqual(60);
    expect(hints(st)).toEqual([]);
    expect(st.stdout).not.toContain("no drift");

    const j = await mcpJson(["status"], cfg);
    expect(j.code).toBe(EXIT_DRIFT);
    expect(j.json.nodes[0]).toMatchObject({ node: "local", reachable: false, state: "unknown" });
    expect(j.json.nodes[0]!.reason).toStartWith("TLS: ");
    expect(j.json.nodes[0]!.error).toContain("certificate");
  }, 30_000);
});

describe("the agent stopped", () => {
  test("status and ps: unknown, no 'no drift', the hint names this agent's config; exit 3", async () => {
    await agent.stopAgent();
    try {
      const hint = `is the agent running? systemctl status mcp-agent, or: mcp agent --config ${agent.agentConfig}`;
      for (const args of [["status"], ["status", SVC]]) {
        const st = await mcp(args);
        expect(st.stderr).toBe("");
        expect(st.code).toBe(EXIT_DRIFT);
        expect(st.stdout).toMatch(/^local +- +- +- +unknown +- +- +- +unreachable: connection refused$/m);
        expect(st.stdout).not.toContain("no drift");
        expect(lines(st).slice(-2)).toEqual(["local: unreachable (connection refused), state unknown", hint]);
      }

      const ps = await mcp(["ps"]);
      expect(ps.stderr).toBe("");
      expect(ps.code).toBe(EXIT_DRIFT);
      expect(ps.stdout).toMatch(/^- +local +unknown +- +- +unreachable: connection refused$/m);
      expect(ps.stdout).not.toContain("no services deployed");
      expect(lines(ps).slice(-2)).toEqual(["local: unreachable (connection refused), state unknown", hint]);

      for (const args of [["status"], ["ps"]]) {
        const j = await mcpJson(args);
        expect(j.code).toBe(EXIT_DRIFT);
        expect(j.json.nodes).toEqual([
          {
            node: "local",
            reachable: false,
            state: "unknown",
            reason: "connection refused",
            error: `UNAVAILABLE: No connection established. Last error: connect ECONNREFUSED ${agent.address}`,
          },
        ]);
        expect(j.json.hint).toBe(hint);
      }
    } finally {
      await agent.startAgent();
    }
    expect((await mcp(["status"])).code).toBe(0);
  }, 60_000);
});
