// e2e of a component's runtime kind through the COMPILED binary and a real agent process: a
// definition with `runtime = "unikernel"` on a node that has only the container runtime is
// refused by `mcp deploy` (and its dry run) with one line naming the component and the runtimes
// the node has, and nothing is created — no registry row, no container, no host port, no history
// entry (read from the agent's registry file); a legacy `runtime = "podman"` definition still
// deploys, and `mcp service show` writes it back without the old word.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxImage, podman } from "../support/env.ts";
import {
  type LocalAgent,
  NO_REGISTRY_ROWS,
  registryRows,
  removeContainers,
  startLocalAgent,
} from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const UNI = `e2e-uni-${rand()}`;
const OLD = `e2e-old-${rand()}`;
const CONTAINERS = [`${UNI}-web`, `${UNI}-vm`, OLD];
const LINE = `mcp: local: FAILED_PRECONDITION: component ${UNI}/vm: runtime "unikernel" is not available on node local (has: container)`;

let agent: LocalAgent;
let image = "";

const state = async (name: string) => {
  const r = await podman("container", "inspect", "--format", "{{.State.Status}}", name);
  return r.code === 0 ? r.stdout.trim() : "missing";
};

beforeAll(async () => {
  const [a, img] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0")]);
  agent = a;
  image = img;
  writeFileSync(
    join(agent.servicesDir, `${UNI}.toml`),
    [
      `name = "${UNI}"`,
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      "",
      "[[components.routes]]",
      "port = 443",
      "",
      "[[components]]",
      'name = "vm"',
      `image = "${image}"`,
      'runtime = "unikernel"',
      "",
      "[[components.routes]]",
      "port = 8443",
      "",
    ].join("\n"),
  );
  writeFileSync(
    join(agent.servicesDir, `${OLD}.toml`),
    [
      `name = "${OLD}"`,
      "",
      "[[components]]",
      `name = "${OLD}"`,
      `image = "${image}"`,
      'runtime = "podman"',
      "",
    ].join("\n"),
  );
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  await agent?.stop();
}, 30_000);

describe("runtime kinds (compiled binary, real agent, real podman)", () => {
  test("deploy of a unikernel component on a container-only node fails with one line and creates nothing", async () => {
    for (const args of [[UNI], [UNI, "--dry-run"], [`${UNI}/web`]]) {
      const r = await agent.mcp(["deploy", ...args, "--pull", "never"]);
      expect(r.code).not.toBe(0);
      expect(r.stderr).toBe(`${LINE}\n`);
    }
    expect(registryRows(agent, UNI)).toEqual(NO_REGISTRY_ROWS);
    for (const c of [`${UNI}-web`, `${UNI}-vm`]) expect(await state(c)).toBe("missing");
    const list = JSON.parse((await agent.mcp(["list", "--json"])).stdout) as {
      services: { service: string }[];
    };
    expect(list.services.filter((s) => s.service === UNI)).toEqual([]);
  }, 60_000);

  test('a legacy runtime = "podman" definition deploys and is shown back without the old word', async () => {
    const r = await agent.mcp(["deploy", OLD, "--pull", "never"]);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(await state(OLD)).toBe("running");
    expect(registryRows(agent, OLD)).toEqual({ services: 1, components: 1, ports: 0, history: 1 });
    const show = await agent.mcp(["service", "show", OLD]);
    expect(show.code).toBe(0);
    expect(show.stdout).toContain(`name = "${OLD}"`);
    expect(show.stdout).not.toContain("runtime");
  }, 60_000);
});
