// Issue 16 finding 4 at the agent's use-case level, real podman and real sqlite registries (no
// gRPC): service "a" with component "b-c" and service "a-b" with component "c" both run as container
// "a-b-c". Every container the agent creates carries its owner as labels (mcp.service,
// mcp.component); deploy, sync, adopt, recover and undeploy read them (the registry is the
// fallback for containers without labels) and never replace, claim or remove another service's
// container, naming its owner in one line — also after the registry was lost (a fresh database).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceDef } from "../../src/config/service.ts";
import { openRegistry } from "../../src/registry/index.ts";
import { adoptContainers } from "../../src/roles/agent/adopt.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { deployService, recordSpec } from "../../src/roles/agent/deploy.ts";
import { recoverServices } from "../../src/roles/agent/recover.ts";
import { syncDesiredState } from "../../src/roles/agent/sync.ts";
import { undeployService } from "../../src/roles/agent/undeploy.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { Code } from "../../src/rpc/wire.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { containerComponent, testAgentContext } from "../support/agent-context.ts";
import { busyboxImage, podman, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const A = `own${rand()}`; // service A: component b-c → container A-b-c; service A-b: component c → the same
const X = `ownx${rand()}`; // a hand-started (unlabelled) X-y-z adopted into X; then X-y/z
const U = `ownu${rand()}`; // a hand-started U-web that deploy must not replace
const ABC = `${A}-b-c`;
const XYZ = `${X}-y-z`;
const UWEB = `${U}-web`;
const CONTAINERS = [ABC, XYZ, UWEB];

let dir = "";
let image = "";
let rt: PodmanRuntime;
let ctx: AgentContext; // the node's registry
let lost: AgentContext; // the same node after its registry was lost: a fresh database

const def = (name: string, component: string): ServiceDef => ({
  name,
  tier: "worker",
  active: true,
  components: [containerComponent(component, image)],
});

function context(db: string): AgentContext {
  return testAgentContext({
    runtime: rt,
    registry: openRegistry(join(dir, db)),
    settings: { portRange: [20000, 20100], runtime: rt },
  });
}

const inspect = async (name: string): Promise<{ state: string; labels: Record<string, string> } | null> => {
  const r = await podman("container", "inspect", name);
  if (r.code !== 0) return null;
  const c = JSON.parse(r.stdout)[0];
  return { state: c.State.Status, labels: c.Config.Labels ?? {} };
};

async function refusal(p: Promise<unknown>): Promise<RpcError> {
  const e = await p.then(
    () => new Error("expected a refusal"),
    (x: unknown) => x,
  );
  expect(e).toBeInstanceOf(RpcError);
  expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
  return e as RpcError;
}

beforeAll(async () => {
  const [pe, img] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  image = img;
  dir = mkdtempSync(join(tmpdir(), "mcp-owner-"));
  rt = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  ctx = context("mcp.db");
  lost = context("lost.db");
  await removeContainers(CONTAINERS);
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  ctx?.registry.close();
  lost?.registry.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("a-b/c and a/b-c: one container name, one owner", () => {
  const line = `component ${A}-b/c: container ${ABC} belongs to ${A}/b-c (by its label); rename one of them`;

  test("a deployed container carries its service and component as labels, and inspect reads them", async () => {
    const [r] = await deployService(ctx, def(A, "b-c"), { pullPolicy: "never", caller: "tester" });
    expect(r?.success).toBe(true);
    const got = await inspect(ABC);
    expect(got?.state).toBe("running");
    expect(got?.labels).toMatchObject({ "mcp.service": A, "mcp.component": "b-c" });
    expect((await rt.inspect(ABC))?.owner).toEqual({ service: A, component: "b-c" });
    expect((await rt.list()).find((c) => c.name === ABC)?.owner).toEqual({ service: A, component: "b-c" });
  }, 60_000);

  test("after a registry loss, deploy (and its dry run) and sync of a-b/c are refused by the label, owner named", async () => {
    const before = await rt.inspect(ABC, { imageDefaults: false });
    for (const dryRun of [false, true]) {
      const e = await refusal(deployService(lost, def(`${A}-b`, "c"), { pullPolicy: "never", dryRun }));
      expect(e.message).toBe(line);
    }
    const [synced] = await syncDesiredState(lost, [def(`${A}-b`, "c")]);
    expect(synced).toMatchObject({ name: `${A}-b`, changed: false, error: line });
    expect(lost.registry.getService(`${A}-b`)).toBeNull();
    // A's container is the same one, untouched.
    const after = await rt.inspect(ABC, { imageDefaults: false });
    expect(after?.id).toBe(before!.id);
    expect(after?.state).toBe("running");
    expect(after?.owner).toEqual({ service: A, component: "b-c" });
  }, 60_000);

  test("adopt into a-b is refused, naming the owner (by label, even with no registry entry)", async () => {
    for (const c of [ctx, lost]) {
      const e = await refusal(adoptContainers(c, `${A}-b`));
      expect(e.message).toBe(`container ${ABC} belongs to ${A}/b-c (by its label); not adopted into ${A}-b`);
      expect(c.registry.getService(`${A}-b`)).toBeNull();
    }
    // Adopting it back into its own service restores the lost registry's entry.
    const res = await adoptContainers(lost, A);
    expect(res).toEqual([{ container: ABC, component: "b-c", success: true }]);
    expect(lost.registry.getComponent(A, "b-c")?.desiredState).toBe("running");
    lost.registry.deleteService(A);
  }, 60_000);

  test("recover of a-b/c (a registry that says so) leaves A's stopped container alone", async () => {
    recordSpec(lost, def(`${A}-b`, "c"), def(`${A}-b`, "c").components); // what a pre-fix registry could hold
    expect((await podman("stop", "-t", "1", ABC)).code).toBe(0);
    const [r] = await recoverServices(lost, `${A}-b`);
    expect(r).toMatchObject({ service: `${A}-b`, component: "c", action: "failed", success: false });
    expect(r?.error).toBe(
      `container ${ABC} belongs to ${A}/b-c (by its label), not to ${A}-b/c; left as it is`,
    );
    const got = await inspect(ABC);
    expect(got?.state).toBe("exited");
    expect(got?.labels["mcp.service"]).toBe(A);
    expect((await podman("start", ABC)).code).toBe(0);
  }, 60_000);

  test("undeploy of a-b leaves A's container running; undeploy of A removes it", async () => {
    const res = await undeployService(lost, `${A}-b`);
    expect(res).toHaveLength(1);
    expect(res[0]).toMatchObject({ name: "c", success: true });
    expect(res[0]?.warnings).toEqual([`container ${ABC} belongs to ${A}/b-c (by its label): left as it is`]);
    expect(lost.registry.getService(`${A}-b`)).toBeNull();
    expect((await inspect(ABC))?.state).toBe("running");
    const mine = await undeployService(ctx, A);
    expect(mine[0]).toMatchObject({ name: "b-c", success: true });
    expect(mine[0]?.warnings ?? []).toEqual([]);
    expect(await inspect(ABC)).toBeNull();
  }, 60_000);
});

describe("containers without labels: the registry decides", () => {
  test("adopt X of a hand-started X-y-z; adopt into X-y is refused by the registry entry", async () => {
    expect((await podman("run", "-d", "--name", XYZ, image)).code).toBe(0);
    expect(await adoptContainers(ctx, X)).toEqual([{ container: XYZ, component: "y-z", success: true }]);
    const e = await refusal(adoptContainers(ctx, `${X}-y`));
    expect(e.message).toBe(
      `container ${XYZ} belongs to ${X}/y-z (by its registry entry); not adopted into ${X}-y`,
    );
  }, 60_000);

  test("undeploy of X-y (recorded beside it) leaves X's unlabelled container; undeploy of X removes it", async () => {
    recordSpec(ctx, def(`${X}-y`, "z"), []); // a registry collision from before the check existed
    const res = await undeployService(ctx, `${X}-y`);
    expect(res[0]).toMatchObject({ name: "z", success: true });
    expect(res[0]?.warnings).toEqual([
      `container ${XYZ} belongs to ${X}/y-z (by its registry entry): left as it is`,
    ]);
    expect((await inspect(XYZ))?.state).toBe("running");
    const mine = await undeployService(ctx, X);
    expect(mine[0]).toMatchObject({ name: "y-z", success: true });
    expect(await inspect(XYZ)).toBeNull();
  }, 60_000);

  test("deploy never replaces a container MCP does not manage; after adopt it does, and labels it", async () => {
    expect((await podman("run", "-d", "--name", UWEB, image)).code).toBe(0);
    const id = (await rt.inspect(UWEB, { imageDefaults: false }))?.id;
    const e = await refusal(deployService(ctx, def(U, "web"), { pullPolicy: "never", caller: "tester" }));
    expect(e.message).toBe(
      `component ${U}/web: container ${UWEB} exists and is not MCP's (no owner label, not in the registry); claim it with mcp adopt ${U} or remove it first`,
    );
    expect(ctx.registry.getService(U)).toBeNull();
    expect((await rt.inspect(UWEB, { imageDefaults: false }))?.id).toBe(id);
    // Adopted (the registry now says it is U's, as for containers created before labels existed).
    expect((await adoptContainers(ctx, U))[0]?.success).toBe(true);
    // Recover still works for it: stopped, it is recreated from the registry, now labelled.
    expect((await podman("stop", "-t", "1", UWEB)).code).toBe(0);
    const [rec] = await recoverServices(ctx, U);
    expect(rec).toMatchObject({ component: "web", action: "recreated", success: true });
    expect((await inspect(UWEB))?.labels).toMatchObject({ "mcp.service": U, "mcp.component": "web" });
    const [r] = await deployService(ctx, def(U, "web"), { pullPolicy: "never", caller: "tester" });
    expect(r?.success).toBe(true);
    expect((await inspect(UWEB))?.labels).toMatchObject({ "mcp.service": U, "mcp.component": "web" });
    await undeployService(ctx, U);
    expect(await inspect(UWEB)).toBeNull();
  }, 90_000);
});
