// src/runtime/nanos/qemu.ts against real QEMU (TCG: these machines' /dev/kvm is PVM, README §4) and a
// real Nanos image: a small static C HTTP server (built here with gcc) that serves a baked file is
// staged with stageTree, written with writeManifest and baked with mkfs (debug_exit:t); QEMU is spawned
// with qemuArgv (network user, hostfwd 127.0.0.1:<free port> → 8080). waitReady sees it serve, the GET
// returns the file, the pidfile holds QEMU's pid, QMP query-status says running, QMP system_powerdown
// ends QEMU with the status the README measured (31: Nanos' SIGTERM to the program, code 15). A second
// boot of the same image: GET /quit/3 makes the program exit 3, which isa-debug-exit turns into status 7.
// A third with network "none": no PCI network controller (QEMU's default e1000e would be there without
// -nic none), the guest says so on serial, and QMP quit ends QEMU with 0, removing pidfile and socket.
//
// Needs gcc with a static libc, qemu-system-x86_64 and the Nanos files (kernel.img, boot.img, mkfs)
// from $MCP_NANOS_DIR, default `<repo>/../shared/unikernel`, else /work/shared/unikernel.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { chmod, copyFile, mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { killAfter, run } from "../../src/runtime/exec.ts";
import { detectAccel, readAccelFacts } from "../../src/runtime/nanos/accel.ts";
import { writeManifest } from "../../src/runtime/nanos/manifest.ts";
import { kvmFailure, Qmp, qemuArgv, stateFiles, waitReady } from "../../src/runtime/nanos/qemu.ts";
import { checkProgram, stageTree } from "../../src/runtime/nanos/stage.ts";
import { freePort } from "../support/env.ts";
import { httpdBinary, nanosDir, QEMU, requireTools } from "../support/unikernel.ts";

let NANOS_DIR = "";
const GUEST_PORT = 8080;
const READY_TIMEOUT_MS = 20_000;
const EXIT_TIMEOUT_MS = 20_000;
const QUIT_CODE = 3;
const CONTENT = `served from the image ${crypto.randomUUID()}\n`;

const tmps: string[] = [];
const live = new Set<Bun.Subprocess>();

afterAll(async () => {
  for (const p of live) p.kill("SIGKILL");
  for (const d of tmps) await rm(d, { recursive: true, force: true });
});

interface Vm {
  proc: Bun.Subprocess<"ignore", "ignore", "pipe">;
  port: number;
  state: string;
  stderr: Promise<string>;
  status: Promise<{ code: number; timedOut: boolean }>;
}

/** Boots `img` with a fresh state dir and port; QEMU is SIGKILLed if still running after `lifeMs`. */
async function boot(img: string, lifeMs: number, network: "user" | "none" = "user"): Promise<Vm> {
  const state = await mkdtemp(join(tmpdir(), "mcp-vm-"));
  tmps.push(state);
  await chmod(state, 0o700);
  const port = await freePort();
  const choice = detectAccel(readAccelFacts());
  const argv = qemuArgv({
    qemu: QEMU,
    name: "demo-web",
    accel: choice.accel,
    memoryMiB: 64,
    vcpus: 1,
    image: img,
    stateDir: state,
    network,
    forwards: network === "user" ? [{ hostIp: "127.0.0.1", hostPort: port, guestPort: GUEST_PORT }] : [],
  });
  console.log(`qemu accel ${choice.accel} (${choice.reason})`);
  const proc = Bun.spawn(argv, { stdin: "ignore", stdout: "ignore", stderr: "pipe" });
  live.add(proc);
  const deadline = killAfter(proc, lifeMs);
  const status = proc.exited.then((code) => {
    deadline.clear();
    live.delete(proc);
    return { code, timedOut: deadline.timedOut };
  });
  return { proc, port, state, stderr: new Response(proc.stderr).text(), status };
}

const serial = (vm: Vm): string => {
  const f = stateFiles(vm.state).serial;
  return existsSync(f) ? readFileSync(f, "utf8").replaceAll("\r", "") : "";
};

async function get(port: number, path: string): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`, { signal: AbortSignal.timeout(5000) });
  expect(r.status).toBe(200);
  return r.text();
}

describe("a Nanos VM under QEMU from qemuArgv", () => {
  let dir = "";
  let img = "";

  beforeAll(async () => {
    NANOS_DIR = nanosDir();
    requireTools();
    dir = await mkdtemp(join(tmpdir(), "mcp-nanos-qemu-"));
    tmps.push(dir);
    const staging = join(dir, "staging");
    await mkdir(join(staging, "app"), { recursive: true });
    await mkdir(join(staging, "srv", "demo"), { recursive: true });
    // The shared fixture (test/fixtures/unikernel/httpd.c): GET /file/<name> answers $DATA_DIR/<name>,
    // GET /quit/<n> answers "bye" then exits n.
    await copyFile(await httpdBinary(), join(staging, "app", "server"));
    await chmod(join(staging, "app", "server"), 0o755);
    await writeFile(join(staging, "srv", "demo", "content.txt"), CONTENT);

    checkProgram(staging, "/app/server", "demo-web");
    const t = stageTree(staging);
    const manifest = writeManifest({
      root: t.root,
      program: "/app/server",
      args: ["/app/server"],
      environment: { PORT: String(GUEST_PORT), DATA_DIR: "/srv/demo" },
    });
    img = join(dir, "app.img");
    const mk = await run(
      [
        join(NANOS_DIR, "mkfs"),
        ...["-b", join(NANOS_DIR, "boot.img"), "-k", join(NANOS_DIR, "kernel.img")],
        ...["-t", "(debug_exit:t)", img],
      ],
      { input: manifest, timeoutMs: 60_000 },
    );
    if (mk.code !== 0) throw new Error(`mkfs exited ${mk.code}: ${mk.stdout}${mk.stderr}`);
  }, 120_000);

  test("serves the baked file, QMP says running, system_powerdown ends it with status 31", async () => {
    const imgBefore = readFileSync(img);
    const vm = await boot(img, READY_TIMEOUT_MS + EXIT_TIMEOUT_MS);
    const t0 = performance.now();
    let exited = false;
    void vm.status.then(() => {
      exited = true;
    });
    const ready = await waitReady("127.0.0.1", vm.port, READY_TIMEOUT_MS, () => exited);
    const err = () => `serial:\n${serial(vm)}`;
    expect(ready, err()).toBe(true);
    console.log(`ready after ${Math.round(performance.now() - t0)} ms`);
    expect(await get(vm.port, "/file/content.txt")).toBe(CONTENT);

    const files = stateFiles(vm.state);
    expect(readFileSync(files.pid, "utf8").trim()).toBe(String(vm.proc.pid));
    const qmp = await Qmp.connect(files.qmp);
    const st = (await qmp.execute("query-status")) as { status: string; running: boolean };
    expect(st).toMatchObject({ status: "running", running: true });
    expect(kvmFailure("", st.status)).toBe(false);
    await expect(qmp.execute("no-such-command")).rejects.toThrow(/^QMP no-such-command: .*no-such-command/);
    expect(await qmp.execute("system_powerdown")).toEqual({});
    const { code, timedOut } = await vm.status;
    qmp.close();
    expect(timedOut, err()).toBe(false);
    // README §2: Nanos sends SIGTERM to the program and exits through isa-debug-exit with code 15.
    expect(code, err()).toBe(31);
    expect(code & 1).toBe(1);
    expect(code >> 1).toBe(15);
    expect(kvmFailure(await vm.stderr)).toBe(false);
    expect(serial(vm)).toContain(`httpd: listening on ${GUEST_PORT}`);
    // snapshot=on: the built image is unchanged by the boot.
    expect(Buffer.compare(readFileSync(img), imgBefore)).toBe(0);
  }, 60_000);

  test("a second boot: GET /quit/3 → program exits 3 → QEMU status 7", async () => {
    const vm = await boot(img, READY_TIMEOUT_MS + EXIT_TIMEOUT_MS);
    let exited = false;
    void vm.status.then(() => {
      exited = true;
    });
    expect(await waitReady("127.0.0.1", vm.port, READY_TIMEOUT_MS, () => exited), serial(vm)).toBe(true);
    expect(await get(vm.port, `/quit/${QUIT_CODE}`)).toBe("bye\n");
    const { code, timedOut } = await vm.status;
    expect(timedOut, serial(vm)).toBe(false);
    expect(code, serial(vm)).toBe((QUIT_CODE << 1) | 1);
    expect(serial(vm)).toContain(`httpd: quit ${QUIT_CODE}`);
    expect(await vm.stderr).toBe("");
  }, 60_000);

  test("network none: no NIC in the guest; QMP quit → status 0, pidfile and socket removed", async () => {
    const vm = await boot(img, READY_TIMEOUT_MS + EXIT_TIMEOUT_MS, "none");
    const deadline = Date.now() + READY_TIMEOUT_MS;
    while (!serial(vm).includes("httpd: listening") && Date.now() < deadline) await Bun.sleep(20);
    expect(serial(vm)).toContain("NET: no network interface found");
    expect(serial(vm)).toContain(`httpd: listening on ${GUEST_PORT}`);
    const files = stateFiles(vm.state);
    const qmp = await Qmp.connect(files.qmp);
    // Without -nic none QEMU would add its default NIC (e1000e on q35): no PCI network controller at all.
    const pci = (await qmp.execute("query-pci")) as { devices: { class_info: { class: number } }[] }[];
    const classes = pci.flatMap((b) => b.devices.map((d) => d.class_info.class));
    expect(classes.length).toBeGreaterThan(0);
    expect(classes.filter((c) => c >> 8 === 0x02)).toEqual([]);
    await qmp.execute("quit").catch(() => {}); // the socket may close before the return arrives
    qmp.close();
    const { code, timedOut } = await vm.status;
    expect(timedOut, serial(vm)).toBe(false);
    expect(code).toBe(0); // host-initiated: README §2
    expect(existsSync(files.pid)).toBe(false);
    expect(existsSync(files.qmp)).toBe(false);
  }, 60_000);
});
