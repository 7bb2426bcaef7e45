// The unikernel runtime (src/runtime/unikernel.ts) against real QEMU (TCG here), the Nanos files and
// podman's image store: exit codes from isa-debug-exit, the restart policy kept by the runtime
// (on-failure:N counts, "no" leaves it down, a stop is never undone by the policy), and VMs found
// again by a second runtime over the same state directory (an agent restart): running, then their
// exit noticed by pid and the policy applied. The image is the fixture server (test/fixtures/
// unikernel/httpd.c) in a FROM scratch image built locally; no registry needed.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { engineImageSource } from "../../src/runtime/nanos/image-source.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { ContainerSpec } from "../../src/runtime/runtime.ts";
import { UnikernelRuntime } from "../../src/runtime/unikernel.ts";
import { bareSpec } from "../support/containers.ts";
import { freePort, podman, podmanEnv } from "../support/env.ts";
import { buildLocalHttpdImage, nanosDir, QEMU, qemuPidsNamed } from "../support/unikernel.ts";

const RUN = Math.random().toString(36).slice(2, 8);
const IMAGE = `localhost/mcp-test-ukrt-${RUN}:1`;
/** The same filesystem with nothing to run (no ENTRYPOINT, no CMD). */
const BARE = `localhost/mcp-test-ukrt-bare-${RUN}:1`;
let work = "";
let state = "";
let pod: PodmanRuntime;
const runtimes: UnikernelRuntime[] = [];

function runtime(over: Partial<ConstructorParameters<typeof UnikernelRuntime>[0]> = {}): UnikernelRuntime {
  const dir = nanosDir();
  const u = new UnikernelRuntime({
    nanosDir: dir,
    mkfs: join(dir, "mkfs"),
    qemu: QEMU,
    accel: "auto",
    stateDir: state,
    images: engineImageSource(pod, pod.cli()),
    ...over,
  });
  runtimes.push(u);
  return u;
}

function spec(name: string, port: number, restart: string): ContainerSpec {
  return bareSpec(name, IMAGE, {
    network: "user",
    restart,
    ports: [`127.0.0.1:${port}:8080`],
    env: ["PORT=8080"],
    runtime: "unikernel",
  });
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(50);
  }
}

/** GET until a 200 (slirp accepts before the guest listens). */
const served = (port: number, path = "/") =>
  waitFor(`GET ${path} on ${port}`, async () => {
    try {
      const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(500) });
      return r.status === 200 ? await r.text() : undefined;
    } catch {
      return undefined;
    }
  });

/** Asks the program to exit with `code` (its answer may be cut short by the exit). */
async function quit(port: number, code: number): Promise<void> {
  await fetch(`http://127.0.0.1:${port}/quit/${code}`, { signal: AbortSignal.timeout(2000) }).catch(() => {});
}

const info = async (u: UnikernelRuntime, name: string) => (await u.list()).find((c) => c.name === name);

beforeAll(async () => {
  const pe = await podmanEnv();
  for (const [k, v] of Object.entries(pe.env)) process.env[k] = v;
  pod = new PodmanRuntime({ binary: "podman", globalArgs: pe.globalArgs, api: false });
  work = mkdtempSync(join(tmpdir(), "mcp-ukrt-"));
  state = join(work, "state");
  await buildLocalHttpdImage(IMAGE);
  await buildLocalHttpdImage(BARE, { entrypoint: false });
}, 120_000);

afterAll(async () => {
  for (const u of runtimes) {
    for (const c of await u.list()) await u.remove(c.name, true).catch(() => {});
    u.close();
  }
  for (const name of ["ukrt-fail", "ukrt-no", "ukrt-again", "ukrt-kvm", "ukrt-slow", "ukrt-early"])
    for (const pid of qemuPidsNamed(`${name}-${RUN}`)) process.kill(pid, "SIGKILL");
  await podman("rmi", "--force", "--ignore", IMAGE, BARE);
  rmSync(work, { recursive: true, force: true });
});

describe("the unikernel runtime's exits and restart policy (real QEMU)", () => {
  test("on-failure:1: exit 3 is recorded, restarted once, then left exited", async () => {
    const u = runtime();
    const name = `ukrt-fail-${RUN}`;
    const port = await freePort();
    // What the runtime reports by itself (the agent records it at once: live-events.ts).
    const seen: string[] = [];
    u.onChange((cs) => {
      for (const c of cs)
        if (c.name === name)
          seen.push(`${c.prev}->${c.next}${c.info?.exitCode != null ? ` ${c.info.exitCode}` : ""}`);
    });
    await u.run(spec(name, port, "on-failure:1"));
    await served(port);
    const first = (await info(u, name))!.startedAt!.getTime();
    await quit(port, 3);
    // Restarted by the runtime (a later start time) and serving again.
    await waitFor("the policy restart", async () => {
      const c = await info(u, name);
      return c?.state === "running" && c.startedAt!.getTime() > first ? c : undefined;
    });
    await served(port);
    await quit(port, 3);
    const down = await waitFor("the second exit", async () => {
      const c = await info(u, name);
      return c?.state === "exited" ? c : undefined;
    });
    expect(down.exitCode).toBe(3);
    // on-failure:1 allows one restart: it stays down.
    await Bun.sleep(2500);
    expect((await info(u, name))?.state).toBe("exited");
    // Its own run is the caller's to record; the exits and the policy's restart are reported.
    expect(seen).toEqual(["running->exited 3", "exited->running", "running->exited 3"]);
    expect(qemuPidsNamed(name)).toEqual([]);
    // A stopped VM keeps its spec and log, not its run files.
    const vm = join(state, "vms", name);
    expect(existsSync(join(vm, "qmp.sock"))).toBe(false);
    expect(existsSync(join(vm, "qemu.pid"))).toBe(false);
    expect(readFileSync(join(vm, "serial.log"), "utf8")).toContain("listening on 8080");
    await u.remove(name);
    expect(existsSync(vm)).toBe(false);
  }, 60_000);

  test('restart "no": exit 0 stays exited with code 0; a stop is never undone by "always"', async () => {
    const u = runtime();
    const name = `ukrt-no-${RUN}`;
    const port = await freePort();
    await u.run(spec(name, port, "no"));
    await served(port);
    await quit(port, 0);
    const c = await waitFor("the exit", async () => {
      const x = await info(u, name);
      return x?.state === "exited" ? x : undefined;
    });
    expect(c.exitCode).toBe(0);
    await u.remove(name);

    await u.run(spec(name, port, "always"));
    await served(port);
    await u.stop(name, 10);
    const stopped = await info(u, name);
    expect(stopped?.state).toBe("exited");
    // system_powerdown: the program got SIGTERM and its exit (15) came back through isa-debug-exit.
    expect(stopped?.exitCode).toBe(15);
    await Bun.sleep(2000);
    expect((await info(u, name))?.state).toBe("exited");
    expect(qemuPidsNamed(name)).toEqual([]);
    await u.remove(name);
  }, 60_000);

  test("a second runtime over the same state (an agent restart) finds the VM, notices its death, applies the policy", async () => {
    const a = runtime();
    const name = `ukrt-again-${RUN}`;
    const port = await freePort();
    await a.run(spec(name, port, "always"));
    await served(port);
    a.close(); // the old agent is gone; its VM is not
    const b = runtime();
    const found = await info(b, name);
    expect(found?.state).toBe("running");
    const [pid] = qemuPidsNamed(name);
    expect(pid).toBeGreaterThan(0);
    process.kill(pid!, "SIGKILL");
    // Not b's child: noticed by its pid watch, exit code unknown, restarted per "always".
    const back = await waitFor("the restart by the new runtime", async () => {
      const pids = qemuPidsNamed(name);
      return pids.length === 1 && pids[0] !== pid ? pids[0] : undefined;
    });
    expect(back).not.toBe(pid);
    await served(port);
    expect((await info(b, name))?.state).toBe("running");
    await b.remove(name, true);
    expect(qemuPidsNamed(name)).toEqual([]);
  }, 60_000);

  test("a start that fails is killed and leaves nothing: KVM that cannot run the guest, a VM never ready", async () => {
    // accel = "kvm" here: this machine's /dev/kvm is missing or PVM-only, so QEMU either cannot
    // open it (exits at once) or runs while the guest dies (KVM internal error): a failed start.
    const kvm = runtime({ accel: "kvm", bootTimeoutMs: 10_000 });
    const name = `ukrt-kvm-${RUN}`;
    const err = await kvm.run(spec(name, await freePort(), "always")).then(
      () => "",
      (e: Error) => e.message,
    );
    expect(err).toMatch(
      new RegExp(`^component ${name}: (QEMU exited during boot|KVM failed to run the guest|the guest)`),
    );
    expect(err.split("\n")).toHaveLength(1);
    expect(qemuPidsNamed(name)).toEqual([]);
    expect(existsSync(join(state, "vms", name))).toBe(false);
    // A boot that does not become ready in time is killed by the runtime.
    const slow = runtime({ accel: "tcg", bootTimeoutMs: 1 });
    const slowName = `ukrt-slow-${RUN}`;
    const why = await slow.run(spec(slowName, await freePort(), "always")).then(
      () => "",
      (e: Error) => e.message,
    );
    expect(why).toBe(
      `component ${slowName}: QEMU did not report the machine running within 1ms (never became ready)`,
    );
    expect(qemuPidsNamed(slowName)).toEqual([]);
    expect(existsSync(join(state, "vms", slowName))).toBe(false);
  }, 60_000);

  test("an image with nothing to run is refused in one line naming the component; nothing is created", async () => {
    const u = runtime();
    const name = `ukrt-bare-${RUN}`;
    const s = {
      ...spec(name, await freePort(), "no"),
      image: BARE,
      owner: { service: "ukrt", component: "bare" },
    };
    const why = await u.checkImage(s).then(
      () => "",
      (e: Error) => e.message,
    );
    expect(why).toBe(`component ukrt/bare: image ${BARE} has no entrypoint or cmd: nothing to run`);
    const again = await u.run(s).then(
      () => "",
      (e: Error) => e.message,
    );
    expect(again).toBe(why);
    expect(existsSync(join(state, "vms", name))).toBe(false);
    // With a cmd from the definition there is something to run.
    await u.checkImage({ ...s, cmd: ["/httpd"] });
  }, 60_000);

  test("a stop while the guest still boots is graceful: the power button is pressed again until the guest hears it", async () => {
    const u = runtime();
    const name = `ukrt-early-${RUN}`;
    await u.run(spec(name, await freePort(), "always"));
    // Under TCG run() returns once QEMU runs the machine, long before Nanos has ACPI up: a single
    // system_powerdown then is lost, and the stop would end in a hard quit (exit 0) after the timeout.
    await u.stop(name, 10);
    const c = await info(u, name);
    expect(c?.state).toBe("exited");
    expect(c?.exitCode).toBe(15); // the program got SIGTERM from Nanos (isa-debug-exit (15<<1)|1)
    expect(qemuPidsNamed(name)).toEqual([]);
    await u.remove(name);
  }, 60_000);
});
