// The runtime integration cases, written once and run against every real runtime (podman in
// test/integration/runtime.test.ts, docker in runtime-docker.test.ts): a real engine, the busybox
// test image, a real OCI registry. Every container is named mcptest-rt-<kind>-<random>-* and
// removed by name in afterAll. What differs between the runtimes is only the harness (client
// argv, image store, registry push) and the client's own wording, passed in or matched loosely.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type RunResult, RuntimeError } from "../../src/runtime/exec.ts";
import type { ContainerSpec, Runtime } from "../../src/runtime/runtime.ts";
import { freePort, type Registry, startRegistry } from "./env.ts";

export interface RuntimeHarness {
  rt: Runtime;
  /** The busybox test image in this runtime's store. */
  image: string;
  /** What every argv of the runtime starts with: binary and global args. */
  argvPrefix: string[];
  /** Runs the runtime's client directly (for setup and cleanup outside the Runtime API). */
  cli(...sub: string[]): Promise<RunResult>;
  /** Puts the test image into a registry under ref, leaving no local copy of ref. */
  push(image: string, ref: string): Promise<void>;
}

const HTTPD_CMD = ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"];
// Prints its env and the volume's content, then echoes "triggered-<x>" whenever the test drops a
// trigger file into the volume. Bounded: gives up after ~60 s.
const LOGGER_CMD = [
  "/bin/sh",
  "-c",
  [
    "trap 'exit 0' TERM",
    'echo "env=$GREETING"',
    'echo "volume=$(cat /data/msg.txt)"',
    "echo to-stderr >&2",
    "i=0",
    'while [ "$i" -lt 600 ]; do',
    '  if [ -f /data/trigger ]; then echo "triggered-$(cat /data/trigger)"; rm -f /data/trigger; fi',
    "  sleep 0.1; i=$((i+1))",
    "done",
  ].join("\n"),
];

/** GETs a URL until it answers 200 or the deadline passes (httpd needs a moment to bind). */
export async function getText(url: string, ms = 5000): Promise<string> {
  const deadline = Date.now() + ms;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (res.status === 200) return await res.text();
      last = `status ${res.status}`;
    } catch (e) {
      last = String(e);
    }
    await Bun.sleep(50);
  }
  throw new Error(`no answer from ${url}: ${last}`);
}

/** Next line matching pred, or throws after ms. */
async function nextMatching(it: AsyncIterator<string>, pred: (l: string) => boolean, ms: number) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const timeout = Bun.sleep(deadline - Date.now()).then(() => "timeout" as const);
    const r = await Promise.race([it.next(), timeout]);
    if (r === "timeout") break;
    if (r.done) throw new Error("log stream ended early");
    if (pred(r.value)) return r.value;
  }
  throw new Error("no matching log line in time");
}

/** Registers the shared runtime cases for one runtime; setup runs in beforeAll. */
export function runtimeSuite(kind: "podman" | "docker", setup: () => Promise<RuntimeHarness>): void {
  const PREFIX = `mcptest-rt-${kind}-${Math.random().toString(36).slice(2, 8)}`;
  const WEB = `${PREFIX}-web`;
  const LOGGER = `${PREFIX}-logger`;

  let h: RuntimeHarness;
  let rt: Runtime;
  let image: string;
  let webPort: number;
  let volDir: string;
  let registry: Registry | undefined;
  const pulledImages: string[] = [];

  describe(`${kind} runtime against a real engine`, () => {
    beforeAll(async () => {
      h = await setup();
      rt = h.rt;
      image = h.image;
      webPort = await freePort();
      volDir = await mkdtemp(join(tmpdir(), "mcptest-rt-vol-"));
      await writeFile(join(volDir, "msg.txt"), "from the host volume\n");
    }, 60_000);

    afterAll(async () => {
      if (rt) for (const name of [WEB, LOGGER]) await rt.remove(name, true);
      for (const ref of pulledImages) await h.cli("rmi", "--force", ref);
      await registry?.stop();
      if (volDir) await rm(volDir, { recursive: true, force: true });
    }, 60_000);

    const webSpec = (): ContainerSpec => ({
      name: WEB,
      image,
      network: "",
      user: "",
      restart: "",
      ports: [`127.0.0.1:${webPort}:8080`],
      volumes: [`${volDir}:/data:ro`],
      env: ["PORT=8080", "GREETING=hello there"],
      cmd: HTTPD_CMD,
      memory: "",
      vcpus: 0,
      runtime: "container",
    });
    const loggerSpec = (): ContainerSpec => ({
      name: LOGGER,
      image,
      network: "bridge",
      user: "0:0",
      restart: "unless-stopped",
      ports: [],
      volumes: [`${volDir}:/data`],
      env: ["GREETING=hi; $(not a shell)"],
      cmd: LOGGER_CMD,
      memory: "",
      vcpus: 0,
      runtime: "container",
    });

    test(`version reports the ${kind} version`, async () => {
      expect(await rt.version()).toMatch(/^\d+\.\d+\.\d+/);
      expect(rt.engine).toBe(kind);
      expect(rt.capabilities).toEqual({ logsFollow: true, logsSince: true, exec: true });
    });

    test("run starts a container that serves HTTP on its published 127.0.0.1 port", async () => {
      const id = await rt.run(webSpec());
      expect(id).toMatch(/^[0-9a-f]{64}$/);
      expect(await getText(`http://127.0.0.1:${webPort}/`)).toBe("hello from mcp\n");
      expect(await rt.run(loggerSpec())).toMatch(/^[0-9a-f]{64}$/);
    });

    test("inspect reads the spec back (ports, volumes, env, cmd, network, user, restart)", async () => {
      const web = await rt.inspect(WEB);
      expect(web).not.toBeNull();
      expect(web!.state).toBe("running");
      expect(web!.name).toBe(WEB);
      expect(web!.image).toBe(image);
      expect(web!.startedAt).toBeInstanceOf(Date);
      expect(web!.exitCode).toBeNull();
      expect(web!.spec.ports).toEqual([`127.0.0.1:${webPort}:8080`]);
      expect(web!.spec.volumes).toEqual([`${volDir}:/data:ro`]);
      expect(web!.spec.env).toEqual([...webSpec().env].sort());
      expect(web!.spec.cmd).toEqual(HTTPD_CMD);
      expect(web!.spec.user).toBe("");
      expect(web!.spec.restart).toBe("");
      // No --network given: podman reports its default "bridge", docker "default" (read as "").
      expect(["", "bridge"]).toContain(web!.spec.network);

      // The env list comes back sorted (the runtime does not keep its order); the logger has one.
      const logger = await rt.inspect(LOGGER);
      expect(logger!.spec).toEqual(loggerSpec());
    });

    test("a container started with the image's own CMD reads back cmd []", async () => {
      const name = `${PREFIX}-default`;
      try {
        await rt.run({ ...webSpec(), name, ports: [], volumes: [], env: [], cmd: [] });
        const d = await rt.inspect(name);
        expect(d!.spec.cmd).toEqual([]);
        expect(d!.spec.env).toEqual([]);
        expect(d!.spec.volumes).toEqual([]);
      } finally {
        await rt.remove(name, true);
      }
      expect(await rt.inspect(name)).toBeNull();
    });

    test("a spec's owner goes on the container as labels; inspect and list read it back", async () => {
      const name = `${PREFIX}-owned`;
      const owner = { service: `${PREFIX}-svc`, component: "api" };
      try {
        const spec = { ...webSpec(), name, ports: [], volumes: [], env: [], cmd: [], owner };
        expect(rt.describeRun(spec).join(" ")).toContain(
          `--name ${name} --label mcp.service=${owner.service} --label mcp.component=api`,
        );
        await rt.run(spec);
        const raw = await h.cli("container", "inspect", "--format", "{{json .Config.Labels}}", name);
        expect(JSON.parse(raw.stdout)).toMatchObject({
          "mcp.service": owner.service,
          "mcp.component": "api",
        });
        const d = await rt.inspect(name);
        expect(d!.owner).toEqual(owner);
        expect(d!.spec.owner).toEqual(owner);
        expect((await rt.list()).find((c) => c.name === name)?.owner).toEqual(owner);
        // A container without the labels has no owner (the web container, run without one).
        expect((await rt.inspect(WEB))!.owner).toBeUndefined();
        expect((await rt.list()).find((c) => c.name === WEB)?.owner).toBeUndefined();
      } finally {
        await rt.remove(name, true);
      }
    }, 30_000);

    test("list returns both containers, with start and creation times", async () => {
      const t0 = performance.now();
      const all = await rt.list();
      const ms = performance.now() - t0;
      const mine = all.filter((c) => c.name.startsWith(PREFIX)).sort((a, b) => a.name.localeCompare(b.name));
      expect(mine.map((c) => [c.name, c.state, c.image])).toEqual([
        [LOGGER, "running", image],
        [WEB, "running", image],
      ]);
      const web = await rt.inspect(WEB);
      expect(mine[1]!.id).toBe(web!.id);
      expect(mine[0]!.startedAt).toBeInstanceOf(Date);
      expect(mine[0]!.createdAt).toBeInstanceOf(Date);
      // The listing's times may be whole seconds (podman ps, docker ps CreatedAt); inspect's are exact.
      expect(Math.abs(mine[1]!.startedAt!.getTime() - web!.startedAt!.getTime())).toBeLessThan(1000);
      expect(Math.abs(mine[1]!.createdAt!.getTime() - web!.createdAt!.getTime())).toBeLessThan(1000);
      expect(mine.every((c) => c.exitCode === null)).toBe(true);
      console.log(`${kind} list(): ${all.length} containers in ${ms.toFixed(1)} ms`);
    });

    test("logs returns stdout and stderr; follow yields a line written after it started; kill ends it", async () => {
      const once = rt.logs(LOGGER, { follow: false });
      const lines: string[] = [];
      for await (const l of once.lines) lines.push(l);
      expect(lines).toContain("env=hi; $(not a shell)");
      expect(lines).toContain("volume=from the host volume");
      expect(lines).toContain("to-stderr");

      const tail = rt.logs(LOGGER, { follow: false, tail: 1 });
      const last: string[] = [];
      for await (const l of tail.lines) last.push(l);
      expect(last.length).toBe(1);

      const follow = rt.logs(LOGGER, { follow: true, tail: 5 });
      const it = follow.lines[Symbol.asyncIterator]();
      const token = Math.random().toString(36).slice(2);
      await writeFile(join(volDir, "trigger"), token);
      expect(await nextMatching(it, (l) => l.startsWith("triggered-"), 10_000)).toBe(`triggered-${token}`);
      follow.kill();
      // After kill the stream drains and ends, bounded.
      let ended = false;
      for (let i = 0; i < 100 && !ended; i++) {
        const r = await Promise.race([it.next(), Bun.sleep(5000).then(() => "timeout" as const)]);
        expect(r).not.toBe("timeout");
        ended = r !== "timeout" && r.done === true;
      }
      expect(ended).toBe(true);
    });

    test("stop is fast and idempotent; start and restart bring it back", async () => {
      const t0 = performance.now();
      await rt.stop(WEB, 5);
      expect(performance.now() - t0).toBeLessThan(4000);
      const stopped = await rt.inspect(WEB);
      expect(stopped!.state).toBe("exited");
      expect(stopped!.exitCode).toBe(0);
      await rt.stop(WEB); // already stopped: no error
      const listed = (await rt.list()).find((c) => c.name === WEB);
      expect(listed?.state).toBe("exited");
      expect(listed?.exitCode).toBe(0);

      await rt.start(WEB);
      expect((await rt.inspect(WEB))!.state).toBe("running");
      expect(await getText(`http://127.0.0.1:${webPort}/`)).toBe("hello from mcp\n");

      const before = (await rt.inspect(WEB))!.startedAt!.getTime();
      await rt.restart(WEB);
      const after = await rt.inspect(WEB);
      expect(after!.state).toBe("running");
      expect(after!.startedAt!.getTime()).toBeGreaterThan(before);
      expect(await getText(`http://127.0.0.1:${webPort}/`)).toBe("hello from mcp\n");
    });

    test("exec runs argv inside the running container: exit code and output, never a shell", async () => {
      const ok = await rt.exec(WEB, ["cat", "/www/index.html"], 10_000);
      expect(ok).toEqual({ code: 0, stdout: "hello from mcp\n", stderr: "" });
      const bad = await rt.exec(WEB, ["cat", "/www/nope; echo injected"], 10_000);
      expect(bad.code).toBe(1);
      expect(bad.stdout).not.toContain("injected");
      expect(bad.stderr).toContain("/www/nope; echo injected");
      const slow = (await rt.exec(WEB, ["sleep", "5"], 300).catch((e: unknown) => e)) as RuntimeError;
      expect(slow).toBeInstanceOf(RuntimeError);
      expect(slow.code).toBe(-1);
      expect(slow.message).toContain("timed out after 300 ms");
    });

    test(`errors carry ${kind}'s stderr in one line`, async () => {
      const dup = (await rt.run(webSpec()).catch((e: unknown) => e)) as RuntimeError;
      expect(dup).toBeInstanceOf(RuntimeError);
      expect(dup.stderr).toContain("already in use");
      expect(dup.message).toStartWith(`${kind} run ${WEB} failed (exit 125): Error: `);
      expect(dup.message).toContain("already in use");
      expect(dup.message).not.toContain("\n");
      expect(dup.argv.slice(0, h.argvPrefix.length)).toEqual(h.argvPrefix);

      const missing = (await rt.stop(`${PREFIX}-nope`).catch((e: unknown) => e)) as RuntimeError;
      expect(missing).toBeInstanceOf(RuntimeError);
      expect(missing.message).toStartWith(`${kind} stop ${PREFIX}-nope failed`);
      expect(missing.message).toMatch(/no such container/i);
      const noStart = (await rt.start(`${PREFIX}-nope`).catch((e: unknown) => e)) as RuntimeError;
      expect(noStart.stderr).toMatch(/no such container/i);
      expect(noStart.message).toMatch(/no such container/i);
    });

    test("remove deletes the container; inspect then returns null; removing again is fine", async () => {
      await rt.remove(WEB, true);
      expect(await rt.inspect(WEB)).toBeNull();
      await rt.remove(WEB);
      await rt.remove(WEB, true);
      await rt.stop(LOGGER, 5);
      await rt.remove(LOGGER);
      expect(await rt.inspect(LOGGER)).toBeNull();
      expect((await rt.list()).some((c) => c.name.startsWith(PREFIX))).toBe(false);
    });

    test("stopAndRemove stops with the grace period, then removes; false when there is none", async () => {
      const graceful = `${PREFIX}-graceful`;
      const stubborn = `${PREFIX}-stubborn`;
      const spec = (name: string, cmd: string[]): ContainerSpec => ({
        ...webSpec(),
        name,
        ports: [],
        volumes: [],
        cmd,
      });
      try {
        await rt.run(spec(graceful, HTTPD_CMD));
        // No image lookup: the same container and state as a full inspect.
        const light = await rt.inspect(graceful, { imageDefaults: false });
        expect(light?.state).toBe("running");
        expect(light?.id).toBe((await rt.inspect(graceful))!.id);
        let t0 = performance.now();
        expect(await rt.stopAndRemove(graceful, 10)).toBe(true);
        expect(performance.now() - t0).toBeLessThan(5000); // traps TERM: no wait for the 10 s
        expect(await rt.inspect(graceful)).toBeNull();
        expect(await rt.stopAndRemove(graceful, 10)).toBe(false);

        // `sleep` as PID 1 ignores SIGTERM: it is killed only when the 1 s grace is over.
        await rt.run(spec(stubborn, ["sleep", "30"]));
        t0 = performance.now();
        expect(await rt.stopAndRemove(stubborn, 1)).toBe(true);
        const ms = performance.now() - t0;
        expect(ms).toBeGreaterThan(900);
        expect(ms).toBeLessThan(8000);
        expect(await rt.inspect(stubborn)).toBeNull();
      } finally {
        await rt.remove(graceful, true);
        await rt.remove(stubborn, true);
      }
    }, 30_000);

    test("pull fetches from a local insecure registry; a missing tag fails with the registry's error", async () => {
      registry = await startRegistry();
      const ref = `${registry.address}/${PREFIX}:v1.0.0`;
      await h.push(image, ref);
      pulledImages.push(ref);
      expect(await rt.imageExists(ref)).toBe(false);
      await rt.pull(ref);
      expect(await rt.imageExists(ref)).toBe(true);
      expect(await rt.imageExists(image)).toBe(true);

      const bad = (await rt
        .pull(`${registry.address}/${PREFIX}:nope`)
        .catch((e: unknown) => e)) as RuntimeError;
      expect(bad).toBeInstanceOf(RuntimeError);
      expect(bad.message).toStartWith(`${kind} pull ${registry.address}/${PREFIX}:nope failed`);
      expect(bad.stderr).toMatch(/manifest unknown|not found/i);
    }, 60_000);
  });
}
