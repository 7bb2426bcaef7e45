// Security review of the live state (issue 18): what a container event can make the agent write
// that a listing could not. Real in-process agent, real podman, real sqlite, real alert command,
// monitor interval 60 s (nothing here comes from a tick after the first one).
//   - a container named like a unikernel component's VM (`<svc>-<vm>`: the container runtime does
//     not know VM names, so anyone who can create containers can take it) must not write the
//     VM component's observed state nor fire its alerts; a listing never let it (the VM's entry
//     wins in the merged listing).
import { afterAll, beforeAll, expect, test } from "bun:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { toComponentInput } from "../../src/component/registry.ts";
import { Monitor } from "../../src/monitor/monitor.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { reconcile, startedOf } from "../../src/roles/agent/reconcile.ts";
import { runOk } from "../../src/runtime/exec.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, type PodmanEnv, podmanEnv } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testPki } from "../support/pki.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");

let dir = "";
let pe: PodmanEnv;
let image = "";
let agent: RunningAgent;
let out = "";
const names: string[] = [];

function podman(...args: string[]): Promise<unknown> {
  return runOk(["podman", ...pe.globalArgs, ...args], { env: pe.env, timeoutMs: 120_000 });
}

function alertsFor(service: string): string[] {
  if (!existsSync(out)) return [];
  return readFileSync(out, "utf8")
    .split("\n")
    .filter((l) => l.split(" ")[1] === service);
}

async function waitFor(what: string, cond: () => boolean | Promise<boolean>, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(20);
  }
}

async function inView(name: string): Promise<boolean> {
  return (await agent.ctx.runtime.list()).some((c) => c.name === name);
}

beforeAll(async () => {
  [pe, image] = await Promise.all([podmanEnv(), busyboxImage("v1.0.0")]);
  dir = mkdtempSync(join(tmpdir(), "mcp-live-sec-"));
  out = join(dir, "alerts.log");
  const script = join(dir, "alert.sh");
  writeFileSync(
    script,
    `#!/bin/bash\necho "$MCP_ALERT_TYPE $MCP_SERVICE $MCP_COMPONENT $MCP_OBSERVED" >> "${out}"\n`,
  );
  chmodSync(script, 0o755);
  agent = await startAgent(
    await testAgentSettings(dir, await testPki("live-sec"), {
      nodeName: "live-sec",
      validator: new LocalTokenValidator([
        { name: "alice", role: "admin", accountType: "human", sha256: hashToken(generateToken()) },
      ]),
      runtime: new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env, api: true }),
      pullPolicy: "never",
      monitor: {
        intervalMs: 60_000,
        alertCommand: [script],
        cooldownMs: 60_000,
        flapThreshold: 10,
        flapWindowMs: 60_000,
        retentionMs: 3_600_000,
        alertTimeoutMs: 5_000,
      },
    }),
  );
  if (!(await agent.startup).some((b) => b instanceof Monitor)) throw new Error("no monitor");
  await waitFor("the live view", () => agent.ctx.live?.status().current === true, 15_000);
}, 120_000);

afterAll(async () => {
  await agent?.close();
  agent?.ctx.settings.runtime.close?.();
  await removeContainers(names);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 120_000);

test("a container named like a VM component changes neither the VM's state nor its alerts", async () => {
  const svc = `sec-vm-${RUN}`;
  const name = `${svc}-vm`;
  names.push(name);
  // A running unikernel component, as a deploy on a unikernel node records it.
  agent.registry.withTransaction(() => {
    agent.registry.upsertService({ name: svc, active: true });
    agent.registry.upsertComponent(
      svc,
      toComponentInput(
        { ...containerComponent("vm", image), runtime: "unikernel" },
        { desiredState: "running", observedState: "running", version: "" },
      ),
    );
  });
  // Someone else's container under the VM's name: started, then removed.
  await podman("run", "-d", "--network", "none", "--name", name, image, "sleep", "3600");
  await waitFor("the container in the view", () => inView(name), 5_000);
  // A listing (ps, status, a tick) attributes it no more than an event does: this node lists no
  // VM of that name, so the VM component is observed removed, never running through the container.
  const res = await reconcile(agent.ctx);
  expect(agent.registry.getComponent(svc, "vm")?.observedState).toBe("removed");
  expect(startedOf(res, svc)(agent.registry.getComponent(svc, "vm")!)).toBeNull();
  agent.registry.setObservedState(svc, "vm", "running");
  await podman("rm", "-f", "-t", "0", name);
  await waitFor("the container gone from the view", async () => !(await inView(name)), 5_000);
  await agent.ctx.recorder!.settle();
  expect(agent.registry.getComponent(svc, "vm")?.observedState).toBe("running");
  // Only the listing's own (true) observation above: nothing from the container's events.
  expect(
    agent.registry.recentEvents({ service: svc, limit: 10 }).map((e) => `${e.prevState}->${e.newState}`),
  ).toEqual(["removed->running", "running->removed"]);
  expect(alertsFor(svc)).toEqual([]);
}, 60_000);
