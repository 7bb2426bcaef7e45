// Placement by runtime kinds, end to end in-process: a real master (TLS gRPC, bun:sqlite store) and
// two real agents that register and heartbeat through their own master link. Agent "ua" reports
// the unikernel runtime (with accelerator tcg and why), agent "ub" only containers; the master
// stores what each reported, lists it (ListNodes), places a service with a unikernel component on
// ua although ub is less busy, refuses the same service pinned to ub with one line (nothing placed,
// nothing created), refuses to migrate it there, still places a plain container service by load,
// and refuses malformed runtime reports from an agent without changing what it stored.
//
// Agent ua has the real unikernel runtime (QEMU, TCG here, the Nanos files from ../shared/unikernel):
// the deploy the master forwards boots the vm component as a Nanos VM (the fixture HTTP server in a
// FROM scratch image built locally).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { defToSpec } from "../../src/component/proto.ts";
import { parseServiceDef } from "../../src/config/service.ts";
import { McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { CallError, connect, type TypedClient } from "../../src/rpc/client.ts";
import { Code } from "../../src/rpc/wire.ts";
import { engineImageSource } from "../../src/runtime/nanos/image-source.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { ContainerInfo } from "../../src/runtime/runtime.ts";
import { UnikernelRuntime } from "../../src/runtime/unikernel.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, freePort, podman, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testMasterSettings } from "../support/master-settings.ts";
import { testPki } from "../support/pki.ts";
import { buildLocalHttpdImage, nanosDir, QEMU, qemuPidsNamed } from "../support/unikernel.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const UNI = `mrt-${RUN}-uni`; // web (container) + vm (unikernel), automatic placement
const PIN = `mrt-${RUN}-pin`; // the same, pinned to the container-only node
const PLAIN = `mrt-${RUN}-plain`; // one container component
const VMS = new Set([`${UNI}-vm`, `${PIN}-vm`]);
const CONTAINERS = [`${UNI}-web`, `${UNI}-vm`, `${PIN}-web`, `${PIN}-vm`, `${PLAIN}-web`];

const tokens = { operator: generateToken(), ua: generateToken(), ub: generateToken() };
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(tokens.operator) },
  { name: "agent-ua", role: "user", accountType: "system", sha256: hashToken(tokens.ua) },
  { name: "agent-ub", role: "user", accountType: "system", sha256: hashToken(tokens.ub) },
]);

/** This test's container components only (other tests share the podman store). */
class ScopedContainers extends PodmanRuntime {
  override async list(): Promise<ContainerInfo[]> {
    return (await super.list()).filter((c) => c.name.startsWith(`mrt-${RUN}-`) && !VMS.has(c.name));
  }
}

const VM_IMAGE = `localhost/mcp-test-mrt-vm-${RUN}:1`;
let unikernel: UnikernelRuntime;
let dir = "";
let image = "";
let master: RunningMaster;
const agents = new Map<string, RunningAgent>();
const clients: TypedClient<typeof McpMasterService>[] = [];
let operator: TypedClient<typeof McpMasterService>;

async function masterClient(token: string): Promise<TypedClient<typeof McpMasterService>> {
  const c = await connect(McpMasterService, {
    addresses: [`127.0.0.1:${master.port}`],
    caPem: caPem,
    token,
    defaultTimeoutMs: 90_000,
  });
  clients.push(c);
  return c;
}
let caPem = "";

function spec(name: string, extra: Record<string, unknown>, withVm: boolean) {
  const components = [
    { name: "web", image },
    ...(withVm
      ? [{ name: "vm", image: VM_IMAGE, runtime: "unikernel", network: "user", restart: "no" }]
      : []),
  ];
  return defToSpec(parseServiceDef({ name, ...extra, components }, "test").def);
}

async function failure(p: Promise<unknown>): Promise<CallError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  if (!(e instanceof CallError)) throw new Error(`expected a CallError, got ${String(e)}`);
  return e;
}

async function until(what: string, cond: () => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (cond()) return;
    await Bun.sleep(50);
  }
  if (!cond()) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
}

const state = async (name: string) => {
  if (VMS.has(name)) return (await unikernel.inspect(name))?.state ?? "missing";
  const r = await podman("container", "inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout.trim() : "missing";
};

beforeAll(async () => {
  image = await busyboxImage();
  dir = mkdtempSync(join(tmpdir(), "mcp-master-runtimes-"));
  const pki = await testPki("master runtimes", { commonName: "node" });
  caPem = pki.caPem;
  master = await startMaster(
    testMasterSettings(
      join(dir, "master"),
      { certPem: pki.leaf.chainPem, keyPem: pki.leaf.keyPem },
      {
        validator,
        caPem,
        clientCert: pki.masterClient,
        timeouts: { deployMs: 60_000, edgeRouteMs: 5_000, healthCheckMs: 5_000, undeployMs: 60_000 },
        heartbeat: { intervalMs: 200, miss: 50, probeTimeoutMs: 2_000 },
        registration: {
          allowedAgents: ["agent-ua", "agent-ub"],
          maxNodes: 16,
          registerIntervalMs: 50,
          heartbeatMinIntervalMs: 50,
        },
      },
    ),
  );
  const pe = await podmanEnv();
  const engine = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  await buildLocalHttpdImage(VM_IMAGE);
  const nanos = nanosDir();
  unikernel = new UnikernelRuntime({
    nanosDir: nanos,
    mkfs: join(nanos, "mkfs"),
    qemu: QEMU,
    accel: "auto",
    stateDir: join(dir, "unikernel"),
    images: engineImageSource(engine, engine.cli()),
  });
  for (const [name, token] of [
    ["ua", tokens.ua],
    ["ub", tokens.ub],
  ] as const) {
    const sub = join(dir, name);
    const settings = await testAgentSettings(
      sub,
      { certPem: pki.leaf.chainPem, keyPem: pki.leaf.keyPem },
      {
        nodeName: name,
        validator,
        pullPolicy: "never",
        grpcAddr: `127.0.0.1:${await freePort()}`,
        portRange: [21200, 21300],
        runtime: new ScopedContainers({ globalArgs: pe.globalArgs, env: pe.env }),
        ...(name === "ua" ? { unikernel } : {}),
        masterCaPem: caPem,
        master: {
          address: `127.0.0.1:${master.port}`,
          role: "worker",
          heartbeatMs: 200,
          caPem,
          token,
          backoffBaseMs: 100,
          backoffMaxMs: 400,
        },
      },
    );
    agents.set(name, await startAgent(settings));
  }
  operator = await masterClient(tokens.operator);
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.close();
  for (const a of agents.values()) await a.close();
  if (unikernel) {
    for (const vm of VMS) await unikernel.remove(vm, true).catch(() => {});
    unikernel.close();
  }
  for (const vm of VMS) for (const pid of qemuPidsNamed(vm)) process.kill(pid, "SIGKILL");
  await podman("rmi", "--force", "--ignore", VM_IMAGE);
  await master?.close();
  await removeContainers(CONTAINERS);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("master placement by node runtimes", () => {
  test("each node's runtimes and accelerator reach the master store and ListNodes", async () => {
    const store = master.ctx.store;
    await until(
      "ua to report the unikernel runtime and ub its container runtime",
      () => {
        const [ua, ub] = [store.getNode("ua"), store.getNode("ub")];
        return (
          ua?.status === "healthy" &&
          ub?.status === "healthy" &&
          ua.runtimes?.includes("unikernel") === true &&
          ub.runtimes !== null
        );
      },
      20_000,
    );
    expect(store.getNode("ua")).toMatchObject({
      runtimes: ["container", "unikernel"],
      unikernelAccel: unikernel.accel.accel,
      unikernelAccelReason: unikernel.accel.reason,
    });
    expect(store.getNode("ub")).toMatchObject({
      runtimes: ["container"],
      unikernelAccel: "",
      unikernelAccelReason: "",
    });
    const listed = await operator.listNodes({});
    expect(
      listed.nodes.map((n) => [n.name, [...n.runtimes], n.unikernelAccel, n.unikernelAccelReason]),
    ).toEqual([
      ["ua", ["container", "unikernel"], unikernel.accel.accel, unikernel.accel.reason],
      ["ub", ["container"], "", ""],
    ]);
  }, 30_000);

  test("a service with a unikernel component goes to the node with that runtime, though busier", async () => {
    // ua made busier than ub: load alone would pick ub.
    master.ctx.store.setContainers("ua", 5, 60_000);
    master.ctx.store.setContainers("ub", 0, 60_000);
    const res = await operator.deploy({ service: spec(UNI, {}, true) });
    expect(res.error).toBe("");
    expect(res.success).toBe(true);
    expect(res.node).toBe("ua");
    expect(res.components.map((c) => [c.name, c.success])).toEqual([
      ["web", true],
      ["vm", true],
    ]);
    expect(master.ctx.store.getPlacement(UNI)?.node).toBe("ua");
    expect(await state(`${UNI}-vm`)).toBe("running");
    const comps = agents.get("ua")!.registry.getService(UNI)?.components ?? [];
    expect(comps.map((c) => [c.name, c.runtime])).toEqual([
      ["vm", "unikernel"],
      ["web", "container"],
    ]);
    expect(agents.get("ub")!.registry.getService(UNI)).toBeNull();
  }, 120_000);

  test("pinned to the container-only node: refused in one line, nothing placed or created", async () => {
    const e = await failure(operator.deploy({ service: spec(PIN, { node: "ub" }, true) }));
    expect(e.code).toBe(Code.FAILED_PRECONDITION);
    expect(e.details).toBe(
      `service ${PIN}: component vm runs as a unikernel; node "ub" has runtimes container`,
    );
    expect(master.ctx.store.getPlacement(PIN)).toBeNull();
    for (const a of agents.values()) expect(a.registry.getService(PIN)).toBeNull();
    expect(await state(`${PIN}-web`)).toBe("missing");
    expect(await state(`${PIN}-vm`)).toBe("missing");
    // Pinned to the node that has it: placed there.
    const ok = await operator.deploy({ service: spec(PIN, { node: "ua" }, true) });
    expect(ok.error).toBe("");
    expect(ok.node).toBe("ua");
  }, 120_000);

  test("migrating the unikernel service to the container-only node is refused before anything moves", async () => {
    const res = await operator.migrate({ serviceName: UNI, targetNode: "ub" });
    expect(res.results.map((r) => [r.step, r.success, r.error])).toEqual([
      [
        `${UNI}: validate`,
        false,
        `service ${UNI}: component vm runs as a unikernel; node "ub" has runtimes container`,
      ],
    ]);
    expect(master.ctx.store.getPlacement(UNI)?.node).toBe("ua");
    expect(await state(`${UNI}-vm`)).toBe("running");
    expect(agents.get("ub")!.registry.getService(UNI)).toBeNull();
  }, 60_000);

  test("a plain container service is still placed by load", async () => {
    const res = await operator.deploy({ service: spec(PLAIN, {}, false) });
    expect(res.error).toBe("");
    expect(res.node).toBe("ub");
  }, 120_000);

  test("a malformed runtime report is refused and changes nothing stored", async () => {
    const ub = await masterClient(tokens.ub);
    const base = { name: "ub", cpuMillicores: 0n, memoryBytes: 0n, diskBytes: 0n, containers: 0 };
    const bad: [Record<string, unknown>, string][] = [
      [{ runtimes: ["container", "vm"] }, 'runtimes: unknown kind "vm" (expected container, unikernel)'],
      [{ runtimes: ["container", "container"] }, 'runtimes: "container" given twice'],
      [
        { runtimes: ["container"], unikernelAccel: "tcg" },
        'unikernel_accel "tcg" given without the unikernel runtime',
      ],
      [
        { runtimes: ["container", "unikernel"], unikernelAccel: "hvf" },
        'unikernel_accel must be kvm or tcg, got "hvf"',
      ],
      [
        { runtimes: ["container", "unikernel"], unikernelAccel: "kvm", unikernelAccelReason: "ok\u001b[2J" },
        "unikernel_accel_reason must be at most 200 printable characters",
      ],
    ];
    for (const [fields, line] of bad) {
      const e = await failure(ub.heartbeat({ ...base, ...fields }));
      expect(e.code).toBe(Code.INVALID_ARGUMENT);
      expect(e.details).toBe(line);
    }
    const reg = await failure(
      ub.register({
        name: "ub",
        role: "",
        address: agents.get("ub")!.ctx.settings.grpcAddr,
        runtimes: ["vm"],
      }),
    );
    expect(reg.code).toBe(Code.INVALID_ARGUMENT);
    expect(master.ctx.store.getNode("ub")).toMatchObject({ runtimes: ["container"], unikernelAccel: "" });
  }, 30_000);
});
