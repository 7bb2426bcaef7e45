// The master's per-RPC policy (architecture-v2 "Authentication and Authorization") and the
// agent-side policy once an agent has a master: a table of callers × methods → allowed or the
// reason. Pure functions, no I/O.
import { describe, expect, test } from "bun:test";
import { agentPolicy, operatorPolicy } from "../../../src/roles/agent/agent.ts";
import { CLI_RPCS, masterPolicy, methodName } from "../../../src/roles/master/policy.ts";

type Id = { name: string; roles: string[]; accountType: string };
const human: Id = { name: "kyle", roles: ["admin"], accountType: "human" };
const humanUser: Id = { name: "ana", roles: ["user"], accountType: "human" };
const humanGuest: Id = { name: "gus", roles: ["guest"], accountType: "human" };
const master: Id = { name: "mcp-master", roles: ["user"], accountType: "system" };
const agentRift: Id = { name: "agent-rift", roles: ["user"], accountType: "system" };
const agentRogue: Id = { name: "agent-rogue", roles: ["user"], accountType: "system" };
const agentGuest: Id = { name: "agent-orion", roles: ["guest"], accountType: "system" };
const humanNamedAgent: Id = { name: "agent-svc", roles: ["admin"], accountType: "human" };
const bareAgent: Id = { name: "agent-", roles: ["user"], accountType: "system" };
const ci: Id = { name: "ci-bot", roles: ["user"], accountType: "system" };

const policy = masterPolicy({ registration: { allowed_agents: ["agent-rift", "agent-orion", "agent-svc"] } });
const M = (m: string) => `/mcp.v1.McpMasterService/${m}`;

describe("masterPolicy", () => {
  const cases: [string, Id, string | null][] = [
    // CLI RPCs: operators and mcp-master, never agents.
    ["Deploy", human, null],
    ["Deploy", humanUser, null],
    ["Deploy", master, null],
    ["Deploy", ci, null],
    ["Deploy", humanGuest, "may not operate"],
    ["Deploy", agentRift, "agent-rift is an agent account; agents may not call Deploy"],
    ["Status", agentRogue, "agents may not call Status"],
    ["ListNodes", agentRift, "agents may not call ListNodes"],
    ["Migrate", agentRift, "agents may not call Migrate"],
    // Agent RPCs: allowlisted agent-<node> system accounts only.
    ["Register", agentRift, null],
    ["Heartbeat", agentRift, null],
    ["Register", human, "kyle is a human account; only agent-<node> service accounts may call Register"],
    ["Register", humanNamedAgent, "agent-svc is a human account"],
    ["Heartbeat", master, "mcp-master may not call Heartbeat (an agent RPC)"],
    ["Register", ci, "ci-bot is not an agent identity"],
    ["Register", bareAgent, "is not an agent identity"],
    ["Register", agentRogue, "agent-rogue is not in [registration] allowed_agents"],
    ["Register", agentGuest, "agent-orion is a guest account"],
  ];
  for (const [method, id, want] of cases) {
    test(`${method} by ${id.name} (${id.accountType}/${id.roles.join(",")}) → ${want ?? "allowed"}`, () => {
      const got = policy(M(method), id);
      if (want === null) expect(got).toBeNull();
      else expect(got).toContain(want);
    });
  }

  test("every CLI RPC rejects agents and accepts operators", () => {
    expect(CLI_RPCS.size).toBe(8);
    for (const m of CLI_RPCS) {
      expect(policy(M(m), agentRift)).toContain("agents may not call");
      expect(policy(M(m), human)).toBeNull();
      expect(policy(M(m), master)).toBeNull();
    }
  });

  test("an empty allowlist admits no agent", () => {
    const p = masterPolicy({ registration: { allowed_agents: [] } });
    expect(p(M("Register"), agentRift)).toContain("not in [registration] allowed_agents");
  });

  test("methodName takes the last path segment", () => {
    expect(methodName("/mcp.v1.McpMasterService/Register")).toBe("Register");
    expect(methodName("Heartbeat")).toBe("Heartbeat");
  });
});

describe("agentPolicy", () => {
  const A = (m: string) => `/mcp.v1.McpAgent/${m}`;
  test("without a master it is the operator policy", () => {
    expect(agentPolicy(false)).toBe(operatorPolicy);
  });
  const p = agentPolicy(true);
  const cases: [string, Id, string | null][] = [
    ["Deploy", master, null],
    ["Deploy", human, "Deploy on this agent is reserved for mcp-master"],
    ["UndeployService", human, "reserved for mcp-master"],
    ["SetupEdgeRoute", agentRift, "reserved for mcp-master"],
    ["RemoveEdgeRoute", ci, "reserved for mcp-master"],
    ["ListEdgeRoutes", human, "reserved for mcp-master"],
    ["ListEdgeRoutes", agentRift, "reserved for mcp-master"],
    ["ListEdgeRoutes", master, null],
    ["HealthCheck", human, "reserved for mcp-master"],
    ["HealthCheck", master, null],
    [
      "HealthCheck",
      { name: "mcp-master", roles: ["admin"], accountType: "human" },
      "reserved for mcp-master",
    ],
    // Everything else keeps the operator policy.
    ["ListServices", human, null],
    ["LiveCheck", master, null],
    ["StopService", human, null],
    ["ListServices", humanGuest, "may not operate"],
  ];
  for (const [method, id, want] of cases) {
    test(`${method} by ${id.name} (${id.accountType}) → ${want ?? "allowed"}`, () => {
      const got = p(A(method), id);
      if (want === null) expect(got).toBeNull();
      else expect(got).toContain(want);
    });
  }
});
