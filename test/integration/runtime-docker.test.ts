// DockerRuntime against a real Docker engine (Debian's docker.io dockerd, started by the test with
// its own data-root and socket): the same shared runtime cases podman runs, plus what is docker's
// own (list() = ps + one inspect for start times, the "default" network read-back, engine version).
import { afterAll, describe, expect, test } from "bun:test";
import { DockerRuntime } from "../../src/runtime/docker.ts";
import { bareSpec } from "../support/containers.ts";
import { type Dockerd, dockerBusyboxImage, dockerCli, dockerPush, startDockerd } from "../support/docker.ts";
import { runtimeSuite } from "../support/runtime-suite.ts";

let dockerd: Dockerd | undefined;
// After every describe's own cleanup: the engine goes with this file (the next file starts its own).
afterAll(async () => {
  await dockerd?.stop();
}, 30_000);

runtimeSuite("docker", async () => {
  const d = await startDockerd();
  dockerd = d;
  console.log(`dockerd ${d.version} answered ${d.startupMs} ms after spawn`);
  return {
    rt: new DockerRuntime({ binary: d.binary, globalArgs: d.globalArgs }),
    image: await dockerBusyboxImage(d),
    argvPrefix: [d.binary, ...d.globalArgs],
    cli: (...sub: string[]) => dockerCli(d, ...sub),
    push: (image, ref) => dockerPush(d, image, ref),
  };
});

describe("docker-only behaviour", () => {
  const PREFIX = `mcptest-rtd-${Math.random().toString(36).slice(2, 8)}`;
  const names: [string, string, string] = [`${PREFIX}-a`, `${PREFIX}-b`, `${PREFIX}-c`];
  // Not under PREFIX: the list() test below counts the containers under it.
  const SPOOF = `mcptest-rtspoof-${Math.random().toString(36).slice(2, 8)}`;
  const spoofs: [string, string, string] = [`${SPOOF}-extra`, `${SPOOF}-owned`, `${SPOOF}-image`];
  const spoofImage = `localhost/${SPOOF}:v1`;
  afterAll(async () => {
    if (dockerd) for (const n of [...names, ...spoofs]) await dockerCli(dockerd, "rm", "-f", n);
    if (dockerd) await dockerCli(dockerd, "rmi", "-f", spoofImage);
  }, 30_000);

  test("a label value holding ',mcp.service=victim' (the container's or its image's) is not read as an owner", async () => {
    // Security review 16: ps prints Labels as "k=v,k=v" in no fixed order, so an image label
    // x=a,mcp.service=victim could be parsed as the owner label of a container victim never ran.
    const d = await startDockerd();
    const rt = new DockerRuntime({ binary: d.binary, globalArgs: d.globalArgs });
    const image = await dockerBusyboxImage(d);
    const create = async (...args: string[]) => {
      const r = await dockerCli(d, "create", ...args);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
    };
    await create(
      "--name",
      spoofs[0],
      "--label",
      "x=a,mcp.service=victim",
      "--label",
      "y=b,mcp.component=web",
      image,
    );
    await create(
      "--name",
      spoofs[1],
      "--label",
      "mcp.service=mine",
      "--label",
      "mcp.component=api",
      "--label",
      "z=1,mcp.service=victim,mcp.component=web",
      image,
    );
    const commit = await dockerCli(
      d,
      "commit",
      "--change",
      'LABEL w="c,mcp.service=victim"',
      spoofs[0],
      spoofImage,
    );
    expect(commit.code).toBe(0);
    await create("--name", spoofs[2], spoofImage);
    // The image label is really there, in the very string ps prints.
    const ps = await dockerCli(d, "ps", "-a", "--filter", `name=${spoofs[2]}`, "--format", "{{.Labels}}");
    expect(ps.stdout).toContain("mcp.service=victim");

    const mine = (await rt.list())
      .filter((c) => spoofs.includes(c.name))
      .sort((a, b) => a.name.localeCompare(b.name));
    // Sorted by name: -extra, -image, -owned.
    expect(mine.map((c) => [c.name, c.owner ?? null])).toEqual([
      [spoofs[0], null],
      [spoofs[2], null],
      [spoofs[1], { service: "mine", component: "api" }],
    ]);
    for (const n of spoofs) expect((await rt.inspect(n))?.owner?.service).not.toBe("victim");
    for (const n of spoofs) await dockerCli(d, "rm", "-f", n);
  }, 60_000);

  test("the endpoint can come from DOCKER_HOST instead of -H; version() is the engine's", async () => {
    const d = await startDockerd();
    const rt = new DockerRuntime({ binary: d.binary, globalArgs: [], env: d.env });
    expect(await rt.version()).toBe(d.version);
    expect(rt.describeRun(bareSpec("x", "i"))).toEqual([d.binary, "run", "-d", "--name", "x", "i"]);
  });

  test("an unreachable engine is one clear error", async () => {
    const rt = new DockerRuntime({
      binary: (await startDockerd()).binary,
      globalArgs: ["-H", "unix:///nonexistent/docker.sock"],
    });
    const err = (await rt.version().catch((e: unknown) => e)) as Error;
    expect(err).toBeInstanceOf(Error);
    expect(err.message).toStartWith("docker version failed");
    expect(err.message).toContain("Cannot connect to the Docker daemon");
    expect(err.message).not.toContain("\n");
  });

  test("list() takes start times for running containers from one inspect; no --network reads back as ''", async () => {
    const d = await startDockerd();
    const rt = new DockerRuntime({ binary: d.binary, globalArgs: d.globalArgs });
    const image = await dockerBusyboxImage(d);
    await rt.run(bareSpec(names[0], image));
    await rt.run(bareSpec(names[1], image));
    await rt.run(bareSpec(names[2], image, { cmd: ["/bin/sh", "-c", "exit 3"] }));
    // The third exits at once; wait (bounded) until the engine says so.
    for (let i = 0; i < 50 && (await rt.inspect(names[2]))?.state !== "exited"; i++) await Bun.sleep(100);

    const t0 = performance.now();
    const all = await rt.list();
    const ms = performance.now() - t0;
    const mine = all.filter((c) => c.name.startsWith(PREFIX)).sort((a, b) => a.name.localeCompare(b.name));
    expect(mine.map((c) => [c.name, c.state, c.exitCode])).toEqual([
      [names[0], "running", null],
      [names[1], "running", null],
      [names[2], "exited", 3],
    ]);
    for (const c of mine.slice(0, 2)) {
      const d2 = await rt.inspect(c.name);
      expect(c.startedAt?.getTime()).toBe(d2!.startedAt!.getTime());
      expect(d2!.spec.network).toBe("");
    }
    expect(mine[2]!.startedAt).toBeNull(); // ps has no start time and only running ones are inspected
    console.log(`docker list(): ${all.length} containers (ps + 1 inspect) in ${ms.toFixed(1)} ms`);
  }, 30_000);
});
