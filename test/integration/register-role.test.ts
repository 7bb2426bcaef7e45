// Issue 16 finding 6: a node's role is the master's decision, never the node's. An in-process
// master over real TLS (real bun:sqlite store, local tokens per identity) whose config gives
// `e` the edge role ([registration] roles) and `hub` the master role (its bootstrap [[nodes]]
// entry); `w` is a plain allowlisted worker. A Register claiming another role is refused with one
// line, audited at warn, and nothing is stored; an empty claim gets the configured role.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { testMasterSettings } from "../support/master-settings.ts";
import { testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

const tokens = { w: generateToken(), e: generateToken(), hub: generateToken() };
const chunks: string[] = [];
const logLines = () =>
  chunks
    .join("")
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);

let dir: string;
let caPem: string;
let master: RunningMaster;
const clients: TypedClient<typeof McpMasterService>[] = [];

async function as(node: keyof typeof tokens): Promise<TypedClient<typeof McpMasterService>> {
  const c = await connect(McpMasterService, {
    addresses: [`127.0.0.1:${master.port}`],
    caPem,
    token: tokens[node],
    defaultTimeoutMs: 10_000,
  });
  clients.push(c);
  return c;
}

// Nobody listens on port 9: the health monitor's probes fail, which does not matter here.
const reg = (name: string, role: string) => ({
  name,
  role,
  address: "127.0.0.1:9",
  arch: "amd64",
  version: "1",
});

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-register-role-"));
  const { caPem: ca, leaf } = await testPki("register-role", { commonName: "mcp" });
  caPem = ca;
  master = await startMaster(
    testMasterSettings(dir, leaf, {
      validator: new LocalTokenValidator(
        (["w", "e", "hub"] as const).map((n) => ({
          name: `agent-${n}`,
          role: "user" as const,
          accountType: "system" as const,
          sha256: hashToken(tokens[n]),
        })),
      ),
      logger: pino({ level: "info" }, { write: (s: string) => void chunks.push(s) }),
      caPem,
      clientCert: null,
      heartbeat: { intervalMs: 60_000, miss: 3, probeTimeoutMs: 500 },
      registration: {
        allowedAgents: ["agent-w", "agent-e", "agent-hub"],
        roles: { e: "edge" },
        maxNodes: 8,
        registerIntervalMs: 1,
        heartbeatMinIntervalMs: 1,
      },
      bootstrapNodes: [{ name: "hub", role: "master", address: "127.0.0.1:9", arch: "amd64" }],
    }),
  );
});

afterAll(async () => {
  for (const c of clients) c.close();
  await master?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe("Register: the role comes from the master's config", () => {
  test("an allowlisted worker claiming master or edge → PERMISSION_DENIED, audited, nothing stored", async () => {
    const c = await as("w");
    for (const claimed of ["master", "edge"]) {
      const e = await failure(c.register(reg("w", claimed)));
      expect(e.code).toBe(status.PERMISSION_DENIED);
      expect(e.details).toBe(
        `agent-w claimed role ${claimed}; this master's config says worker ([registration] roles)`,
      );
      const audit = logLines().find(
        (l) => l.audit === true && l.caller === "agent-w" && String(l.error).includes(`role ${claimed}`),
      );
      expect(audit).toMatchObject({ level: 40, method: "/mcp.v1.McpMasterService/Register" });
    }
    expect(master.ctx.store.getNode("w")).toBeNull();
  });

  test("the edge node claiming master → refused; its stored role stays what the config says", async () => {
    const e = await failure((await as("e")).register(reg("e", "master")));
    expect(e.code).toBe(status.PERMISSION_DENIED);
    expect(e.details).toContain("agent-e claimed role master; this master's config says edge");
    expect(master.ctx.store.getNode("e")).toBeNull();
    // The bootstrap [[nodes]] entry holds hub's configured role; a worker claim from it is refused.
    const h = await failure((await as("hub")).register(reg("hub", "worker")));
    expect(h.details).toContain("agent-hub claimed role worker; this master's config says master");
    expect(master.ctx.store.getNode("hub")?.role).toBe("master");
  });

  test("an empty claim or the configured one is accepted; the configured role is what is stored", async () => {
    expect((await (await as("w")).register(reg("w", ""))).accepted).toBe(true);
    expect((await (await as("e")).register(reg("e", ""))).accepted).toBe(true);
    expect((await (await as("hub")).register(reg("hub", "master"))).accepted).toBe(true);
    expect(master.ctx.store.getNode("w")?.role).toBe("worker");
    expect(master.ctx.store.getNode("e")?.role).toBe("edge");
    expect(master.ctx.store.getNode("hub")?.role).toBe("master");
  });
});
