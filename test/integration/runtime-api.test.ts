// PodmanRuntime's list() and inspect() through the agent-owned `podman system service` (api: true) against
// real podman 4.3: the same containers listed both ways give identical ContainerInfo; once the
// service is up a listing starts no podman process (counted by a wrapper binary that logs each
// invocation); a killed service falls back to the CLI with correct answers; close() ends the
// child; and a SIGKILLed owner does not leave the service behind (setpriv --pdeathsig).
// Bounded: every wait has a deadline; containers are mcptest-api-<random>-* and removed by name.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { chmod, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { ContainerInfo } from "../../src/runtime/runtime.ts";
import { busyboxImage, freePort, podman, podmanEnv } from "../support/env.ts";

const tag = `mcptest-api-${Math.random().toString(36).slice(2, 8)}`;
const names = {
  run: `${tag}-run`,
  exit: `${tag}-exit`,
  created: `${tag}-created`,
  stopped: `${tag}-stopped`,
};
let dir = "";
let wrapper = "";
let countFile = "";

const mine = (l: ContainerInfo[]) =>
  l.filter((c) => c.name.startsWith(tag)).sort((a, b) => a.name.localeCompare(b.name));
const podmanCalls = () =>
  existsSync(countFile) ? readFileSync(countFile, "utf8").split("\n").filter(Boolean) : [];
/** Running (a zombie awaiting its reaper counts as gone). */
const alive = (pid: number) => {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return false;
  }
};
async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await Bun.sleep(20);
  }
}

beforeAll(async () => {
  const image = await busyboxImage();
  dir = await mkdtemp(join(tmpdir(), "mcp-api-test-"));
  countFile = join(dir, "calls");
  // A podman that notes each invocation's subcommand, so the test can count process starts.
  wrapper = join(dir, "podman");
  await writeFile(wrapper, `#!/bin/sh\necho "$*" >> ${countFile}\nexec podman "$@"\n`);
  await chmod(wrapper, 0o755);
  const port = await freePort();
  const ok = async (...a: string[]) => {
    const r = await podman(...a);
    if (r.code !== 0) throw new Error(`podman ${a.join(" ")}: ${r.stderr}`);
  };
  await ok("run", "-d", "--name", names.run, "-p", `127.0.0.1:${port}:8080`, "-l", "app=web", image);
  await podman("run", "--name", names.exit, image, "sh", "-c", "exit 3");
  await ok("create", "--name", names.created, image);
  await ok("run", "-d", "--name", names.stopped, image);
  await ok("stop", "-t", "0", names.stopped);
}, 60_000);

afterAll(async () => {
  for (const n of Object.values(names)) await podman("rm", "-f", "-t", "0", "--ignore", n);
  if (dir) await rm(dir, { recursive: true, force: true });
}, 60_000);

describe("podman list()/inspect() through the REST service", () => {
  test("same ContainerInfo as the CLI; no podman process per listing once the service is up", async () => {
    const pe = await podmanEnv();
    const cli = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
    const api = new PodmanRuntime({ binary: wrapper, globalArgs: pe.globalArgs, env: pe.env, api: true });
    try {
      const viaApi = mine(await api.list());
      const viaCli = mine(await cli.list());
      expect(viaApi.map((c) => c.name)).toEqual([names.created, names.exit, names.run, names.stopped]);
      expect(viaApi).toEqual(viaCli);
      expect(viaApi.map((c) => [c.state, c.exitCode])).toEqual([
        ["stopped", null],
        ["exited", 3],
        ["running", null],
        ["exited", 137],
      ]);
      // The first listing started the service: one `system service` invocation, no `ps`.
      expect(podmanCalls().map((l) => l.split(" ").slice(2, 4).join(" "))).toEqual(["system service"]);
      for (let i = 0; i < 5; i++) expect(mine(await api.list())).toEqual(viaCli);
      // inspect too: same ContainerDetails (with and without the image lookup), missing = null.
      for (const n of Object.values(names)) {
        expect(await api.inspect(n)).toEqual(await cli.inspect(n));
        const stateOnly = { imageDefaults: false };
        expect(await api.inspect(n, stateOnly)).toEqual(await cli.inspect(n, stateOnly));
      }
      expect(await api.inspect(`${tag}-missing`)).toBeNull();
      expect(podmanCalls()).toHaveLength(1);
    } finally {
      api.close();
    }
  }, 60_000);

  test("a killed service: the next listing falls back to the CLI, still correct; close() ends the child", async () => {
    const pe = await podmanEnv();
    const cli = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env });
    const api = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env, api: true });
    try {
      const expected = mine(await cli.list());
      expect(mine(await api.list())).toEqual(expected);
      const svc = (api as unknown as { service: { pid: number | undefined; socketPath: string } }).service;
      const pid = svc.pid!;
      expect(alive(pid)).toBe(true);
      process.kill(pid, "SIGKILL");
      await until("the service to die", () => !alive(pid));
      expect(mine(await api.list())).toEqual(expected); // CLI fallback (restart is backed off)
      const sock = svc.socketPath;
      api.close();
      expect(existsSync(sock)).toBe(false);
    } finally {
      api.close();
    }
  }, 60_000);

  test("a SIGKILLed owner takes its service down (no orphan)", async () => {
    const pe = await podmanEnv();
    const script = join(dir, "owner.ts");
    const src = join(import.meta.dir, "..", "..", "src", "runtime", "podman.ts");
    await writeFile(
      script,
      [
        `import { PodmanRuntime } from ${JSON.stringify(src)};`,
        `const rt = new PodmanRuntime({ globalArgs: ${JSON.stringify(pe.globalArgs)}, env: ${JSON.stringify(pe.env)}, api: true });`,
        "await rt.list();",
        "console.log(String((rt as any).service.pid));",
        "setInterval(() => {}, 1000);",
      ].join("\n"),
    );
    const owner = Bun.spawn([process.execPath, script], { stdout: "pipe", stderr: "inherit" });
    try {
      const reader = owner.stdout.getReader();
      const { value } = await Promise.race([
        reader.read(),
        Bun.sleep(20_000).then(() => ({ value: undefined })),
      ]);
      const pid = Number(new TextDecoder().decode(value).trim());
      expect(pid).toBeGreaterThan(0);
      expect(alive(pid)).toBe(true);
      owner.kill("SIGKILL");
      await owner.exited;
      await until("the orphaned service to exit", () => !alive(pid), 10_000);
    } finally {
      owner.kill("SIGKILL");
    }
  }, 60_000);
});
