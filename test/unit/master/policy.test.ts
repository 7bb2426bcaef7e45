// The master's per-RPC policy (architecture-v2 "Authentication and Authorization") and the
// agent-side policy once an agent has a master: a table of callers × methods → allowed or the
// reason. Pure functions, no I/O.
import { describe, expect, test } from "bun:test";
import { agentPolicy, operatorPolicy } from "../../../src/roles/agent/agent.ts";
import { CLI_RPCS, masterPolicy, methodName } from "../../../src/roles/master/policy.ts";

type Id = { name: string; roles: string[]; accountType: string; credential?: "token" | "certificate" };
const human: Id = { name: "kyle", roles: ["admin"], accountType: "human" };
const humanUser: Id = { name: "ana", roles: ["user"], accountType: "human" };
const humanGuest: Id = { name: "gus", roles: ["guest"], accountType: "human" };
const master: Id = { name: "mcp-master", roles: [], accountType: "system", credential: "certificate" };
const masterByToken: Id = { name: "mcp-master", roles: ["user"], accountType: "system", credential: "token" };
const agentRift: Id = { name: "agent-rift", roles: ["user"], accountType: "system" };
const agentRogue: Id = { name: "agent-rogue", roles: ["user"], accountType: "system" };
const agentGuest: Id = { name: "agent-orion", roles: ["guest"], accountType: "system" };
const humanNamedAgent: Id = { name: "agent-svc", roles: ["admin"], accountType: "human" };
const bareAgent: Id = { name: "agent-", roles: ["user"], accountType: "system" };
const ci: Id = { name: "ci-bot", roles: ["user"], accountType: "system" };

const listed: Id = { name: "deployer", roles: [], accountType: "system" };
const policy = masterPolicy({
  registration: { allowed_agents: ["agent-rift", "agent-orion", "agent-svc"] },
  operators: ["deployer"],
});
const M = (m: string) => `/mcp.v1.McpMasterService/${m}`;

describe("masterPolicy", () => {
  const cases: [string, Id, string | null][] = [
    // CLI RPCs: operators (humans with user/admin, listed system accounts); never agents or the master.
    ["Deploy", human, null],
    ["Deploy", humanUser, null],
    ["Deploy", listed, null],
    ["Deploy", master, "mcp-master may call only the master's RPCs"],
    ["Deploy", masterByToken, "mcp-master by bearer token is refused"],
    ["Deploy", ci, "system account ci-bot is not in this daemon's [auth] operators"],
    ["Deploy", humanGuest, "guest account and may not operate"],
    ["Deploy", agentRift, "agent-rift is a node's identity; nodes may not operate"],
    ["Status", agentRogue, "nodes may not operate"],
    ["ListNodes", agentRift, "nodes may not operate"],
    ["Migrate", agentRift, "nodes may not operate"],
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
      expect(policy(M(m), agentRift)).toContain("nodes may not operate");
      expect(policy(M(m), human)).toBeNull();
      expect(policy(M(m), master)).not.toBeNull();
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
  test("without a master every RPC is an operator RPC", () => {
    const p = agentPolicy({ master: false });
    for (const m of ["Deploy", "SyncDesiredState", "HealthCheck", "ListServices"]) {
      expect(p(A(m), human)).toBeNull();
      expect(p(A(m), agentRift)).toContain("nodes may not operate");
    }
  });
  const p = agentPolicy({ master: true, operators: ["deployer"] });
  const cases: [string, Id, string | null][] = [
    ["Deploy", master, null],
    ["Deploy", masterByToken, "Deploy on this agent is reserved for the master"],
    ["Deploy", human, "Deploy on this agent is reserved for the master"],
    ["SyncDesiredState", master, null],
    ["SyncDesiredState", human, "reserved for the master"],
    ["SyncDesiredState", agentRift, "reserved for the master"],
    ["UndeployService", human, "reserved for the master"],
    ["SetupEdgeRoute", agentRift, "reserved for the master"],
    ["RemoveEdgeRoute", ci, "reserved for the master"],
    ["ListEdgeRoutes", human, "reserved for the master"],
    ["ListEdgeRoutes", master, null],
    ["HealthCheck", master, null],
    [
      "HealthCheck",
      { name: "mcp-master", roles: ["admin"], accountType: "human" },
      "reserved for the master",
    ],
    // Everything else: operators; the master only for the reads it needs; nodes never.
    ["ListServices", human, null],
    ["ListServices", listed, null],
    ["ListServices", ci, "not in this daemon's [auth] operators"],
    ["LiveCheck", master, null],
    ["ListServices", master, "mcp-master may call only the master's RPCs"],
    ["StopService", master, null],
    ["StartService", master, null],
    ["RestartService", master, "mcp-master may call only the master's RPCs"],
    ["StartService", agentRift, "nodes may not operate"],
    ["PushFile", agentRift, "nodes may not operate"],
    ["StopService", human, null],
    ["ListServices", humanGuest, "may not operate"],
  ];
  for (const [method, id, want] of cases) {
    test(`${method} by ${id.name} (${id.accountType}, ${id.credential ?? "token"}) → ${want ?? "allowed"}`, () => {
      const got = p(A(method), id);
      if (want === null) expect(got).toBeNull();
      else expect(got).toContain(want);
    });
  }
  test("operatorPolicy admits humans with user/admin only", () => {
    expect(operatorPolicy(A("ListServices"), humanUser)).toBeNull();
    expect(operatorPolicy(A("ListServices"), ci)).toContain("[auth] operators");
  });
});
