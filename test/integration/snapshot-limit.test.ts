// Issue 16 (limits): the master's CreateSnapshot against a real agent over real TLS gRPC stores
// at most [snapshots] max_bytes of archive. Over it: RESOURCE_EXHAUSTED with one line, no file
// (not even the .partial) and no store row; within it the same service is stored as before.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import type { MasterConfig } from "../../src/config/master.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { AgentPool } from "../../src/roles/master/agents.ts";
import type { MasterContext } from "../../src/roles/master/context.ts";
import { createSnapshot } from "../../src/roles/master/snapshots.ts";
import { type MasterStore, openMasterStore } from "../../src/roles/master/store.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { Code } from "../../src/rpc/wire.ts";
import { KeyedLock } from "../../src/util/keyed-lock.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";

const SVC = "bulky";
const token = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
]);
let dir = "";
let agent: RunningAgent;
let caPem = "";
let masterClient: { certPem: string; keyPem: string };
const stores: MasterStore[] = [];
const pools: AgentPool[] = [];

function masterCtx(snapDir: string, maxBytes?: number): { ctx: MasterContext; store: MasterStore } {
  const store = openMasterStore(":memory:");
  stores.push(store);
  store.upsertNode({ name: "n1", role: "worker", address: `127.0.0.1:${agent.port}`, arch: "amd64" });
  store.upsertPlacement({ service: SVC, node: "n1", tier: "worker" });
  const agents = new AgentPool({ caPem, clientCert: masterClient, connectTimeoutMs: 5000 });
  pools.push(agents);
  const snapshots = {
    dir: snapDir,
    interval: 3600_000,
    retain: 7,
    ...(maxBytes ? { max_bytes: maxBytes } : {}),
  };
  const ctx = {
    settings: { config: { snapshots, timeouts: { snapshot: 30_000 } } as unknown as MasterConfig },
    store,
    agents,
    locks: new KeyedLock(),
    logger: pino({ level: "silent" }),
    startedAt: new Date(),
    shutdown: new AbortController().signal,
    fleetReport: null,
  } as unknown as MasterContext;
  return { ctx, store };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-snap-limit-"));
  const pki = await testPki("snap-limit", { commonName: "agent", days: 2 });
  const { ca, leaf } = pki;
  caPem = ca.certPem;
  masterClient = pki.masterClient; // the master's client certificate: how agents know the master
  const sub = join(dir, "agent");
  mkdirSync(sub);
  agent = await startAgent(
    await testAgentSettings(
      sub,
      { certPem: leaf.chainPem, keyPem: leaf.keyPem },
      { nodeName: "n1", validator, pullPolicy: "never", masterCaPem: ca.certPem },
    ),
  );
  const svc = join(sub, "srv", SVC);
  mkdirSync(svc, { recursive: true });
  // 3 MiB of incompressible data: the archive is at least that large.
  writeFileSync(join(svc, "blob.bin"), randomBytes(3 * 1024 * 1024));
  agent.registry.upsertService({
    name: SVC,
    specJson: JSON.stringify({ name: SVC, snapshot: { method: "full", exclude: [] }, components: [] }),
  });
});

afterAll(async () => {
  for (const p of pools) p.close();
  for (const s of stores) s.close();
  await agent?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

test("an archive over [snapshots] max_bytes is refused whole: one line, no file, no record", async () => {
  const snapDir = join(dir, "snaps-small");
  const { ctx, store } = masterCtx(snapDir, 1024 * 1024);
  const err = await createSnapshot(ctx, SVC).catch((e: unknown) => e);
  expect(err).toBeInstanceOf(RpcError);
  expect((err as RpcError).code).toBe(Code.RESOURCE_EXHAUSTED);
  expect((err as RpcError).message).toBe(
    `snapshot of ${SVC} from node n1 refused: the archive exceeds ${1024 * 1024} bytes ([snapshots] max_bytes); nothing was stored`,
  );
  expect(readdirSync(join(snapDir, SVC))).toEqual([]);
  expect(store.listSnapshots(SVC)).toEqual([]);
});

test("within the default limit the same service is stored", async () => {
  const snapDir = join(dir, "snaps-default");
  const { ctx, store } = masterCtx(snapDir);
  const r = await createSnapshot(ctx, SVC);
  expect(r.sizeBytes).toBeGreaterThan(3 * 1024 * 1024);
  expect(statSync(r.path).size).toBe(r.sizeBytes);
  expect(readdirSync(join(snapDir, SVC))).toEqual([r.filename]);
  expect(store.listSnapshots(SVC).map((s) => s.filename)).toEqual([r.filename]);
});
