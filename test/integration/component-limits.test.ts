// A component's memory and vcpus reach the container (real podman 4.3, runc): `memory = "64m"`,
// `vcpus = 1` from a definition become `--memory 64m --cpus 1`, podman reports HostConfig.Memory
// 67108864 and NanoCpus 1e9, and our inspect reads them (and every other container field of a
// fully populated component, a named network and on-failure:N included) back into the same
// component. Containers and the network are named mcp-itest-shape-<pid>-*, removed by name.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { componentFromContainer, containerSpec } from "../../src/component/container.ts";
import { parseServiceDef } from "../../src/config/service.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { BUSYBOX_CMD, busyboxImage, freePort, podman, podmanEnv } from "../support/env.ts";

const SVC = `mcp-itest-shape-${process.pid}`;
// Not the image's own CMD (that one reads back as []): this one must come back as written.
const HTTPD = ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"];
const NET = `${SVC}-net`;
let rt: PodmanRuntime;
let image: string;
let dir: string;

beforeAll(async () => {
  const pe = await podmanEnv();
  rt = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
  image = await busyboxImage();
  dir = mkdtempSync(join(tmpdir(), "mcp-shape-"));
  const made = await podman("network", "create", NET);
  if (made.code !== 0) throw new Error(`podman network create ${NET}: ${made.stderr.trim()}`);
}, 120_000);

afterAll(async () => {
  for (const name of [`${SVC}-web`, `${SVC}-plain`]) await rt?.remove(name, true);
  await podman("network", "rm", "-f", NET);
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 60_000);

describe("memory and vcpus reach podman and come back", () => {
  test("HostConfig.Memory = 67108864, NanoCpus = 1e9; the read-back is the defined component", async () => {
    const port = await freePort();
    const { def } = parseServiceDef(
      {
        name: SVC,
        components: [
          {
            name: "web",
            image,
            network: NET,
            user: "0:0",
            restart: "on-failure:3",
            ports: [`127.0.0.1:${port}:8080`],
            volumes: [`${dir}:/data:ro`],
            cmd: HTTPD,
            env: ["GREETING=hello", "PORT=8080"],
            memory: "64m",
            vcpus: 1,
            routes: [{ name: "http", port: 443, mode: "l7" }],
            health: { type: "http", route: "http", path: "/" },
          },
        ],
      },
      "shape.toml",
    );
    const web = def.components[0]!;
    const spec = containerSpec(SVC, web);
    expect(rt.describeRun(spec)).toEqual(expect.arrayContaining(["--memory", "64m", "--cpus", "1"]));
    await rt.run(spec);

    const raw = await podman("container", "inspect", spec.name);
    expect(raw.code).toBe(0);
    const host = JSON.parse(raw.stdout)[0].HostConfig;
    expect(host.Memory).toBe(67108864);
    expect(host.NanoCpus).toBe(1_000_000_000);

    const details = await rt.inspect(spec.name);
    expect(details?.state).toBe("running");
    expect(details?.spec).toEqual(spec);
    // Routes and health are the registry's; everything a container carries comes back as defined.
    const { health: _health, ...carried } = web;
    expect(componentFromContainer("web", details!.spec)).toEqual({ ...carried, routes: [] });
  }, 60_000);

  test("without limits: no flags, and nothing reads back", async () => {
    const { def } = parseServiceDef(
      { name: SVC, components: [{ name: "plain", image, cmd: BUSYBOX_CMD }] },
      "p.toml",
    );
    const spec = containerSpec(SVC, def.components[0]!);
    expect(rt.describeRun(spec)).not.toContain("--memory");
    await rt.run(spec);
    const raw = JSON.parse((await podman("container", "inspect", spec.name)).stdout)[0].HostConfig;
    expect([raw.Memory, raw.NanoCpus]).toEqual([0, 0]);
    expect((await rt.inspect(spec.name))?.spec).toMatchObject({ memory: "", vcpus: 0 });
  }, 60_000);
});
