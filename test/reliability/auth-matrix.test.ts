// Reliability (issues 10, 16), auth matrix: every RPC of the agent (standalone, and with a [master]
// configured) and of the master × 12 callers, against real TLS servers validating through a real
// HTTPS fake MCIAS, the master's caller presenting a real fleet-CA client certificate. The expected
// outcomes are DATA, written from the identity model (SPEC §5.2) in test/data/auth-matrix.toml —
// not derived from the code's own tables. "allowed" = the call got past authentication and
// authorization (any code but UNAUTHENTICATED/PERMISSION_DENIED: the minimal request itself may
// then fail with INVALID_ARGUMENT, NOT_FOUND…).
// Bounded: (27 + 27 + 10) RPCs × 12 callers = 768 calls, 4 RPCs at a time, 15 s deadline each;
// a few seconds on a quiet 2-core box.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { DescService } from "@bufbuild/protobuf";
import { status } from "@grpc/grpc-js";
import pino from "pino";
import { parse as parseToml } from "smol-toml";
import { CachedValidator, MciasClient } from "../../src/auth/mcias.ts";
import { McpAgent, McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { createCA, issueCert, issueMasterClientCert } from "../../src/pki/ca.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import type { MasterLinkSettings } from "../../src/roles/agent/context.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { type FakeMcias, startFakeMcias } from "../fakes/mcias.ts";
import { freePort, podmanEnv } from "../support/env.ts";
import { testMasterSettings } from "../support/master-settings.ts";
import { codeName, rawCall, rawChannel, rawMethods } from "../support/raw-grpc.ts";
import { recordSuite } from "../support/reliability.ts";

interface MatrixData {
  callers: string[];
  patterns: Record<string, string>;
  agent_standalone: Record<string, string>;
  agent_with_master: Record<string, string>;
  master: Record<string, string>;
}
const DATA = parseToml(
  readFileSync(join(import.meta.dir, "..", "data", "auth-matrix.toml"), "utf8"),
) as unknown as MatrixData;
const CALLERS = DATA.callers;
/** Every caller but the certificate one carries a token (or none). */
const CERT_CALLER = "master-cert";
/** The node every agent under test runs as: its own agent account is "agent-self". */
const NODE = "self";
/** System account listed in [auth] operators of every daemon under test. */
const LISTED = "deployer";

/** Minimal requests; empty (all defaults) unless the check needs a field to get past binding. */
const REQUESTS: Record<string, unknown> = {
  // agent-other may only speak for "other"; agent-self's empty address is then INVALID_ARGUMENT
  // (past authorization, and registers nothing).
  "McpMasterService/Register": { name: NODE, role: "worker", address: "" },
  "McpMasterService/Heartbeat": { name: NODE },
};

let fake: FakeMcias;
const tokens = {} as Record<string, string | null>;
let masterCert: { certPem: string; keyPem: string };
let dir: string;
let caPem: string;
let certPem: string;
let keyPem: string;
const agents: RunningAgent[] = [];
let master: RunningMaster | undefined;
let calls = 0;
/** Calls the table says must be refused (the "faults": bad or insufficient credentials). */
let refusals = 0;
let matricesPassed = 0;

function validator(): CachedValidator {
  return new CachedValidator(
    new MciasClient({
      serverUrl: fake.url,
      caCertPath: fake.caCertPath,
      serviceName: "mcp",
      timeoutMs: 5000,
    }),
  );
}

async function agentOn(label: string, masterLink?: MasterLinkSettings): Promise<RunningAgent> {
  const pe = await podmanEnv();
  const a = await startAgent({
    nodeName: NODE,
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: certPem,
    tlsKeyPem: keyPem,
    dbPath: join(dir, `${label}.db`),
    validator: validator(),
    operators: [LISTED],
    // As the daemon does with [tls] ca_cert: the master's client certificate is verified with it.
    masterCaPem: caPem,
    runtime: new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env }),
    srvRoot: join(dir, `srv-${label}`),
    portRange: [20000, 20100],
    pullPolicy: "never",
    logger: pino({ level: "silent" }),
    version: "0.0.0-test",
    ...(masterLink ? { master: masterLink } : {}),
  });
  agents.push(a);
  return a;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-auth-matrix-"));
  fake = await startFakeMcias({
    users: [
      { username: "gail", password: "pw", roles: ["guest"], accountType: "human" },
      { username: "uma", password: "pw", roles: ["user"], accountType: "human" },
      { username: "ada", password: "pw", roles: ["admin"], accountType: "human" },
      { username: `agent-${NODE}`, password: "pw", roles: [], accountType: "system" },
      { username: "agent-other", password: "pw", roles: [], accountType: "system" },
      { username: "mcp-master", password: "pw", roles: [], accountType: "system" },
      { username: "backup-bot", password: "pw", roles: [], accountType: "system" },
      { username: LISTED, password: "pw", roles: [], accountType: "system" },
    ],
  });
  const good = fake.issueToken("uma");
  Object.assign(tokens, {
    none: null,
    invalid: `${good.slice(0, -6)}AAAAAA`, // signature no longer matches
    expired: fake.issueToken("uma", { expired: true }),
    guest: fake.issueToken("gail"),
    user: good,
    admin: fake.issueToken("ada"),
    "agent-self": fake.issueToken(`agent-${NODE}`),
    "agent-other": fake.issueToken("agent-other"),
    "master-token": fake.issueToken("mcp-master"),
    [CERT_CALLER]: null,
    "system-unlisted": fake.issueToken("backup-bot"),
    "system-listed": fake.issueToken(LISTED),
  });
  expect(Object.keys(tokens).sort()).toEqual([...CALLERS].sort());
  const ca = await createCA({ commonName: "auth matrix CA", days: 1 });
  const leaf = await issueCert({
    caCertPem: ca.certPem,
    caKeyPem: ca.keyPem,
    commonName: "mcp",
    dnsNames: ["localhost"],
    ipAddresses: ["127.0.0.1"],
    days: 1,
  });
  [caPem, certPem, keyPem] = [ca.certPem, leaf.certPem, leaf.keyPem];
  const mc = await issueMasterClientCert(ca, 1);
  masterCert = { certPem: mc.certPem, keyPem: mc.keyPem };
}, 30_000);

afterAll(async () => {
  for (const a of agents) await a.close();
  await master?.close();
  await fake?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A table's row for one RPC: its pattern expanded to caller → outcome. */
const expand = (patternName: string): Record<string, string> => {
  const row = DATA.patterns[patternName];
  expect(row).toBeDefined();
  const cells = row!.trim().split(/\s+/);
  expect(cells.length).toBe(CALLERS.length);
  const name = { U: "UNAUTHENTICATED", D: "PERMISSION_DENIED", A: "allowed" } as Record<string, string>;
  return Object.fromEntries(CALLERS.map((c, i) => [c, name[cells[i]!]!]));
};

const outcome = (code: number) =>
  code === status.UNAUTHENTICATED || code === status.PERMISSION_DENIED ? codeName(code) : "allowed";

/** Runs the matrix of one server, prints the observed codes, asserts every cell. */
async function runMatrix(svc: DescService, port: number, table: Record<string, string>): Promise<void> {
  const methods = rawMethods(svc);
  // The table covers exactly the served methods: a new RPC must be given its row.
  expect(Object.keys(table).sort()).toEqual(methods.map((m) => m.name).sort());
  const ch = rawChannel(`127.0.0.1:${port}`, caPem);
  // The master's caller: a grpc-js channel presenting the master's client certificate, no token.
  const certCh = rawChannel(`127.0.0.1:${port}`, caPem, masterCert);
  const mismatches: string[] = [];
  const grid: string[] = [];
  const queue = [...methods];
  try {
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        for (let m = queue.shift(); m; m = queue.shift()) {
          const req = REQUESTS[`${svc.name}/${m.name}`] ?? {};
          const payload = m.encode(req);
          const want = expand(table[m.name]!);
          const got: string[] = [];
          for (const caller of CALLERS) {
            const channel = caller === CERT_CALLER ? certCh : ch;
            const r = await rawCall(
              channel,
              m,
              tokens[caller] ?? null,
              m.requestStream ? [] : [payload],
              15_000,
            );
            calls++;
            if (want[caller] !== "allowed") refusals++;
            got.push(codeName(r.code));
            if (outcome(r.code) !== want[caller])
              mismatches.push(
                `${m.name} as ${caller}: want ${want[caller]}, got ${codeName(r.code)}: ${r.details}`,
              );
            // A refusal names no internals: one line, no stack.
            expect(r.details).not.toMatch(/\n\s+at /);
          }
          grid.push(`  ${m.name.padEnd(18)} ${got.join(" ")}`);
        }
      }),
    );
  } finally {
    ch.close();
    certCh.close();
  }
  console.log(`auth-matrix ${svc.name} (${CALLERS.join(" ")}):\n${grid.sort().join("\n")}`);
  expect(mismatches).toEqual([]);
  matricesPassed++;
}

describe("auth matrix", () => {
  test("the table covers every caller in every pattern", () => {
    for (const name of Object.keys(DATA.patterns)) expect(Object.keys(expand(name))).toEqual(CALLERS);
    for (const t of [DATA.agent_standalone, DATA.agent_with_master, DATA.master])
      for (const p of Object.values(t)) expect(DATA.patterns[p]).toBeDefined();
  });

  test(`standalone agent: every RPC × ${CALLERS.length} callers`, async () => {
    const a = await agentOn("matrix-solo");
    await runMatrix(McpAgent, a.port, DATA.agent_standalone);
  }, 60_000);

  test("agent with [master]: master-only RPCs refuse everyone but the master's certificate", async () => {
    const closed = await freePort(); // no master listens there: the link just retries (slowly)
    const a = await agentOn("matrix-managed", {
      address: `127.0.0.1:${closed}`,
      role: "worker",
      heartbeatMs: 60_000,
      caPem,
      token: "unused",
      backoffBaseMs: 60_000,
      backoffMaxMs: 60_000,
    });
    await runMatrix(McpAgent, a.port, DATA.agent_with_master);
  }, 60_000);

  test(`master: CLI RPCs and agent RPCs × ${CALLERS.length} callers`, async () => {
    master = await startMaster(
      testMasterSettings(
        dir,
        { certPem, keyPem },
        {
          validator: validator(),
          caPem,
          clientCert: masterCert,
          operators: [LISTED],
          registration: { allowedAgents: [`agent-${NODE}`, "agent-other"], maxNodes: 4 },
        },
      ),
    );
    await runMatrix(McpMasterService, master.port, DATA.master);
    expect(matricesPassed).toBe(3); // recorded only when all three matrices held
    recordSuite({
      suite: "auth-matrix",
      cases: calls,
      faults: refusals,
      dataLost: 0,
      detail: `${Object.keys(DATA.agent_standalone).length} agent RPCs ×2 configs + ${Object.keys(DATA.master).length} master RPCs × ${CALLERS.length} callers, all as test/data/auth-matrix.toml says`,
    });
  }, 60_000);
});
