// The runtime router at the agent's use-case level with real podman and a real sqlite registry
// (no gRPC): components reach podman through the router (name-only calls find their kind in the
// registry, unknown names fall back to the container runtime); a definition whose runtime kind
// the node lacks is refused with one line and creates nothing — no registry row, no container,
// no host port, no history entry — for deploy, its dry run, sync and recover; a legacy
// `runtime = "podman"` definition still deploys and reads back as "container"; and a runtime
// that declares it cannot exec is never asked to (exec health checks are refused instead).
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseTomlText } from "../../src/config/load.ts";
import {
  type ComponentDef,
  parseServiceDef,
  type ServiceDef,
  serviceDefToToml,
} from "../../src/config/service.ts";
import { openRegistry } from "../../src/registry/index.ts";
import type { AgentContext } from "../../src/roles/agent/context.ts";
import { deployService } from "../../src/roles/agent/deploy.ts";
import { checkTarget } from "../../src/roles/agent/deploy-health.ts";
import { effectiveDef } from "../../src/roles/agent/history.ts";
import { recoverServices } from "../../src/roles/agent/recover.ts";
import { syncDesiredState } from "../../src/roles/agent/sync.ts";
import { RpcError } from "../../src/rpc/errors.ts";
import { Code } from "../../src/rpc/wire.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { RuntimeUnavailableError } from "../../src/runtime/router.ts";
import { containerComponent, testAgentContext } from "../support/agent-context.ts";
import { busyboxImage, podman, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `router-${rand()}`; // a container component, deployed through the router
const UNI = `router-uni-${rand()}`; // web (container) + vm (unikernel): refused whole
const OLD = `router-old-${rand()}`; // runtime = "podman" in its file
const EXE = `router-exec-${rand()}`; // exec health check on a runtime without exec
const STRANGER = `router-stranger-${rand()}`; // a container no component has
const CONTAINERS = [`${SVC}-web`, `${UNI}-web`, `${UNI}-vm`, OLD, `${EXE}-web`, STRANGER, `${STRANGER}-x`];
const NODE_LINE = `is not available on node local (has: container)`;

let dir = "";
let ctx: AgentContext;
let image = "";
let real: PodmanRuntime;

const state = async (name: string) => {
  const r = await podman("container", "inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout.trim() : "missing";
};

const comp = (name: string, extra: Partial<ComponentDef> = {}) => containerComponent(name, image, extra);

function context(runtime: PodmanRuntime, registry = openRegistry(join(dir, `${rand()}.db`))): AgentContext {
  return testAgentContext({ runtime, registry, settings: { portRange: [20000, 20100], runtime } });
}

/** Nothing of `service` anywhere: registry row, host ports, history, containers. */
async function expectNothing(c: AgentContext, service: string, containers: string[]): Promise<void> {
  expect(c.registry.getService(service)).toBeNull();
  expect(c.registry.allocatedPorts(service)).toEqual([]);
  expect(c.registry.listHistory(service)).toEqual([]);
  for (const n of containers) expect(await state(n)).toBe("missing");
}

beforeAll(async () => {
  const [pe, img] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  image = img;
  dir = mkdtempSync(join(tmpdir(), "mcp-router-"));
  real = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  ctx = context(real, openRegistry(join(dir, "mcp.db")));
  await removeContainers(CONTAINERS);
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  ctx?.registry.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 30_000);

describe("real podman behind the router", () => {
  test("a container component is deployed, inspected, exec'd, listed and stopped through the router", async () => {
    expect(ctx.runtime.kinds()).toEqual(["container"]);
    const def: ServiceDef = { name: SVC, tier: "worker", active: true, components: [comp("web")] };
    const [r] = await deployService(ctx, def, { pullPolicy: "never" });
    expect(r?.error).toBeUndefined();
    expect(r?.success).toBe(true);
    const name = `${SVC}-web`;
    expect(ctx.registry.getComponent(SVC, "web")?.runtime).toBe("container");
    expect(ctx.runtime.kindOfContainer(name)).toBe("container");
    expect((await ctx.runtime.inspect(name))?.state).toBe("running");
    expect((await ctx.runtime.exec(name, ["echo", "hi"], 10_000)).stdout.trim()).toBe("hi");
    expect((await ctx.runtime.list()).find((c) => c.name === name)?.state).toBe("running");
    await ctx.runtime.stop(name, 1);
    expect(await state(name)).toBe("exited");
  }, 60_000);

  test("a container no component has goes to the container runtime; one recorded as unikernel is refused", async () => {
    const run = await podman("run", "-d", "--name", STRANGER, image);
    expect(run.code).toBe(0);
    expect(ctx.registry.runtimeOfContainer(STRANGER)).toBeUndefined();
    expect((await ctx.runtime.inspect(STRANGER))?.state).toBe("running");
    // A registry row that says this container's component is a unikernel (a node that lost that
    // runtime): the router refuses it rather than stopping it with podman.
    ctx.registry.upsertService({ name: STRANGER, active: true });
    ctx.registry.upsertComponent(STRANGER, {
      ...comp(STRANGER),
      runtime: "unikernel",
      desiredState: "running",
      version: "",
      routes: [],
      memory: "",
      vcpus: 0,
    });
    expect(ctx.runtime.kindOfContainer(STRANGER)).toBe("unikernel");
    const e = await ctx.runtime.stop(STRANGER).catch((x) => x);
    expect(e).toBeInstanceOf(RuntimeUnavailableError);
    expect((e as Error).message).toBe(`runtime "unikernel" ${NODE_LINE}`);
    expect(await state(STRANGER)).toBe("running");
    // recover leaves it alone with the same line, naming the component.
    const res = await recoverServices(ctx, STRANGER);
    expect(res).toEqual([
      {
        service: STRANGER,
        component: STRANGER,
        action: "failed",
        success: false,
        error: `component ${STRANGER}/${STRANGER}: runtime "unikernel" ${NODE_LINE}`,
      },
    ]);
    expect(await state(STRANGER)).toBe("running");
    ctx.registry.deleteService(STRANGER);
    await removeContainers([STRANGER]);
  }, 60_000);

  test("registry rows that stored the legacy words read as container and route to podman", async () => {
    for (const word of ["podman", "docker", ""]) {
      ctx.registry.db.run("UPDATE components SET runtime = ? WHERE service = ?", [word, SVC]);
      expect(ctx.registry.getComponent(SVC, "web")?.runtime).toBe("container");
      expect(ctx.registry.runtimeOfContainer(`${SVC}-web`)).toBe("container");
      expect((await ctx.runtime.inspect(`${SVC}-web`))?.state).toBe("exited");
    }
  }, 30_000);
});

describe("a runtime kind the node lacks is refused before anything is created", () => {
  const uniDef = (): ServiceDef => {
    const port = 20050;
    return {
      name: UNI,
      tier: "worker",
      active: true,
      components: [
        comp("web", { routes: [{ name: "http", port: 443, mode: "l4", public: false }] }),
        comp("vm", {
          runtime: "unikernel",
          ports: [`127.0.0.1:${port}:8080`],
          routes: [{ name: "api", port: 8443, mode: "l4", public: false }],
        }),
      ],
    };
  };
  const LINE = `component ${UNI}/vm: runtime "unikernel" ${NODE_LINE}`;

  test("deploy (the whole service or only its container component) fails FAILED_PRECONDITION with one line", async () => {
    for (const component of [undefined, "web", "vm"]) {
      const e = await deployService(ctx, uniDef(), {
        pullPolicy: "never",
        caller: "tester",
        ...(component ? { component } : {}),
      }).catch((x) => x);
      expect(e).toBeInstanceOf(RpcError);
      expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
      expect((e as Error).message).toBe(LINE);
    }
    await expectNothing(ctx, UNI, [`${UNI}-web`, `${UNI}-vm`]);
  }, 30_000);

  test("the dry run shows the same refusal", async () => {
    const e = await deployService(ctx, uniDef(), { dryRun: true }).catch((x) => x);
    expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
    expect((e as Error).message).toBe(LINE);
    await expectNothing(ctx, UNI, [`${UNI}-web`, `${UNI}-vm`]);
  });

  test("sync records nothing for it (its dry run says the same)", async () => {
    for (const dryRun of [true, false]) {
      const res = await syncDesiredState(ctx, [uniDef()], { dryRun });
      expect(res.find((r) => r.name === UNI)).toEqual({
        name: UNI,
        changed: false,
        summary: "unchanged",
        error: LINE,
      });
    }
    await expectNothing(ctx, UNI, [`${UNI}-web`, `${UNI}-vm`]);
  }, 30_000);

  test('a legacy runtime = "podman" definition deploys; its export writes the canonical word (omitted)', async () => {
    const text = [
      `name = "${OLD}"`,
      "",
      "[[components]]",
      `name = "${OLD}"`,
      `image = "${image}"`,
      'runtime = "podman"',
      'restart = "no"',
      "",
    ].join("\n");
    const { def } = parseServiceDef(parseTomlText(text, "old.toml"), "old.toml");
    expect(def.components[0]?.runtime).toBe("container");
    const [r] = await deployService(ctx, def, { pullPolicy: "never", caller: "tester" });
    expect(r?.success).toBe(true);
    expect(await state(OLD)).toBe("running");
    expect(ctx.registry.getComponent(OLD, OLD)?.runtime).toBe("container");
    expect(ctx.registry.listHistory(OLD)).toHaveLength(1);
    const out = serviceDefToToml(effectiveDef(ctx, def));
    expect(out).not.toContain("runtime");
    // A unikernel component exports its kind.
    expect(serviceDefToToml(uniDef())).toContain('runtime = "unikernel"');
  }, 60_000);
});

describe("a container name is one component's", () => {
  // Security review of issue 15: "a" + "b-c" and "a-b" + "c" both run as container "a-b-c", so one
  // service's lifecycle calls (and runtime routing by name) would reach the other's container.
  test("a second service whose component would run as another's container is refused, nothing created", async () => {
    const a = `nm${UNI.slice(-4)}`;
    const first: ServiceDef = { name: a, tier: "worker", active: false, components: [comp("b-c")] };
    await syncDesiredState(ctx, [first], {});
    expect(ctx.registry.getService(a)).not.toBeNull();
    const second: ServiceDef = { name: `${a}-b`, tier: "worker", active: true, components: [comp("c")] };
    const line = `component ${a}-b/c: its container name ${a}-b-c is already the container of ${a}/b-c; rename one of them`;
    for (const dryRun of [false, true]) {
      const e = await deployService(ctx, second, { pullPolicy: "never", caller: "tester", dryRun }).catch(
        (x) => x,
      );
      expect(e).toBeInstanceOf(RpcError);
      expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
      expect((e as Error).message).toBe(line);
    }
    const synced = await syncDesiredState(ctx, [second], {});
    expect(synced.find((r) => r.name === `${a}-b`)?.error).toBe(line);
    await expectNothing(ctx, `${a}-b`, [`${a}-b-c`]);
    ctx.registry.deleteService(a);
  }, 30_000);
});

describe("capabilities are consulted instead of assumed", () => {
  test("a runtime without exec: exec health checks are refused at deploy and never exec'd by the monitor", async () => {
    let execs = 0;
    const noExec = Object.create(real) as PodmanRuntime;
    Object.defineProperty(noExec, "capabilities", {
      value: { exec: false, logsFollow: true, logsSince: true },
    });
    noExec.exec = async (...a) => {
      execs++;
      return real.exec(...a);
    };
    const c2 = context(noExec);
    const def: ServiceDef = {
      name: EXE,
      tier: "worker",
      active: true,
      components: [
        comp("web", {
          health: {
            type: "exec",
            cmd: ["true"],
            intervalMs: 200,
            timeoutMs: 1000,
            retries: 1,
            startPeriodMs: 0,
          },
        }),
      ],
    };
    const e = await deployService(c2, def, { pullPolicy: "never", caller: "tester" }).catch((x) => x);
    expect((e as RpcError).code).toBe(Code.FAILED_PRECONDITION);
    expect((e as Error).message).toBe(
      `component ${EXE}/web: the container runtime (podman) cannot exec (run a command in it) (its health check is exec)`,
    );
    await expectNothing(c2, EXE, [`${EXE}-web`]);
    // The monitor's check of such a target fails with the same reason and calls nothing.
    const check = checkTarget(c2, `${EXE}-web`, { kind: "exec", cmd: ["true"] });
    expect(await check(1000)).toEqual({
      healthy: false,
      detail: 'exec ["true"]: the container runtime (podman) cannot exec (run a command in it)',
      ms: 0,
    });
    expect(execs).toBe(0);
    c2.registry.close();
  }, 30_000);
});
