// The unikernel runtime: components of kind "unikernel" run as Nanos VMs under QEMU, beside the
// node's containers, behind the same Runtime interface (router.ts sends each component to its
// runtime). One VM per component, named like its container (`<service>-<component>`), each with a
// private state directory under `<state_dir>/vms/<name>/` (0700: the spec it was started from,
// QEMU's pid file, QMP socket, serial log and QEMU's own stderr).
//
// Images: a component's `image` is an OCI image from the same registry as containers. The node's
// container engine pulls it; its filesystem is exported once per image ID into `rootfs/<id>/`
// (nanos/oci.ts: no container ever runs), the volumes' host directories are copied by descriptor
// into a per-VM staging tree (nanos/copy.ts), and `mkfs` builds the image from a manifest written
// here (nanos/manifest.ts, every name and value quoted) — cached in `images/<key>.img` by the
// image ID and the hash of what was baked, so an unchanged restart reuses it and a file pushed
// into /srv/<svc> gives a new image on the next start.
//
// Processes: QEMU runs detached (its own session), so an agent restart, upgrade or `systemctl
// restart` (KillMode=process) leaves VMs running; the agent finds them again by pid file and
// /proc/<pid>/cmdline. While the agent that started a VM lives, QEMU is its child and the exit
// status is known (isa-debug-exit: status (N<<1)|1 = program exit N); a VM found again after a
// restart is watched by pid and its exit code is unknown. The restart policy is the agent's here
// (podman's conmon does it for containers): a VM that exits is started again per `restart`, with
// a growing delay, and each start counts for the monitor's flap rule like a container restart.
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { constants } from "node:os";
import { join } from "node:path";
import type { ObservedState } from "../component/state.ts";
import { formatDuration, isRestartPolicy } from "../config/service.ts";
import { parsePortSpec, parseVolumeSpec } from "../config/specs.ts";
import { unikernelProblems, vmMemoryMiB } from "../config/unikernel.ts";
import { KeyedLock } from "../util/keyed-lock.ts";
import { processExists, RuntimeError, run as runCmd } from "./exec.ts";
import type { ChangeListener } from "./live-runtime.ts";
import type { ViewChange } from "./live-view.ts";
import { type AccelChoice, detectAccel, readAccelFacts } from "./nanos/accel.ts";
import { copyTreeNoFollow, newContentHash } from "./nanos/copy.ts";
import { type GuestDir, type GuestNode, ManifestError, writeManifest } from "./nanos/manifest.ts";
import type { ImageConfig } from "./nanos/oci.ts";
import { kvmFailure, type PortForward, QemuError, Qmp, qemuArgv, stateFiles } from "./nanos/qemu.ts";
import { checkProgram, StageError, stageTree } from "./nanos/stage.ts";
import type {
  ContainerDetails,
  ContainerInfo,
  ContainerSpec,
  ExecResult,
  InspectOptions,
  LogOptions,
  Runtime,
  RuntimeCapabilities,
} from "./runtime.ts";

/** The node's container engine as the unikernel runtime uses it. */
export interface ImageSource {
  pull(image: string): Promise<void>;
  imageExists(image: string): Promise<boolean>;
  config(image: string): Promise<ImageConfig>;
  /** Writes the image's filesystem into `dest` (a new directory). */
  exportRootfs(image: string, dest: string): Promise<void>;
}

export interface UnikernelOptions {
  /** kernel.img, boot.img (and klibs/) of a Nanos release. */
  nanosDir: string;
  /** The Nanos mkfs tool (a release does not ship one). */
  mkfs: string;
  qemu: string;
  accel: "auto" | "kvm" | "tcg";
  /** Per-VM state, exported filesystems and built images; created 0700. */
  stateDir: string;
  images: ImageSource;
  /** How long a VM may take to show life on its serial console (default 30 s). */
  bootTimeoutMs?: number;
  logger?: { info(o: object, m: string): void; warn(o: object, m: string): void };
  /** Facts root for accel detection (tests). */
  accelRoot?: string;
}

/** A VM the runtime keeps: its spec and what it knows of its process. */
interface VmRecord {
  id: string;
  name: string;
  spec: ContainerSpec;
  createdAt: string;
  /** What the runtime keeps it at: "running" restarts it per policy, "stopped" leaves it down. */
  want: "running" | "stopped";
  pid: number | null;
  startedAt: string | null;
  /** Exit of the last run; code null when it could not be known (not our child). */
  exit: { code: number | null; at: string } | null;
  /** Policy restarts since the last start by the agent (on-failure:N counts them). */
  restarts: number;
  /** Built image the last start booted. */
  image: string;
  /** QEMU's start time (/proc/<pid>/stat field 22) when started: tells our QEMU from a reused pid. */
  pidStart?: string | null;
}

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** A refused unikernel component or VM operation: one line. */
export class UnikernelError extends Error {
  override name = "UnikernelError";
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The start time of process `pid` in clock ticks since boot (/proc/<pid>/stat field 22), or null. */
function procStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) is in parentheses and may hold spaces or ")": count after the last ")".
    return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null;
  } catch {
    return null;
  }
}

/** The one line refusing `spec` as a VM, or null when the runtime can run it (checked before anything is created). */
export function vmSpecProblem(spec: ContainerSpec): string | null {
  const p = unikernelProblems(spec)[0];
  if (p) return `${labelOf(spec)}: ${p.key} ${p.message}`;
  if (spec.restart !== "" && !isRestartPolicy(spec.restart))
    return `${labelOf(spec)}: restart ${JSON.stringify(spec.restart)} is not a policy`;
  return null;
}

/** How refusals name the VM's component: `web/api` (its owner), else the VM's name. */
function labelOf(spec: ContainerSpec): string {
  return spec.owner ? `component ${spec.owner.service}/${spec.owner.component}` : `component ${spec.name}`;
}

function forwardsOf(spec: ContainerSpec): PortForward[] {
  return spec.ports.map((p) => {
    const ps = parsePortSpec(p);
    return {
      hostIp: ps.hostIp ?? "0.0.0.0",
      hostPort: ps.hostPort,
      guestPort: ps.containerPort,
      protocol: ps.protocol ?? "tcp",
    };
  });
}

/** Whether an exit with `code` is restarted under `policy` after `restarts` policy restarts. */
export function shouldRestart(policy: string, code: number | null, restarts: number): boolean {
  if (policy === "always" || policy === "unless-stopped") return true;
  const m = /^on-failure(?::(\d+))?$/.exec(policy);
  if (!m) return false;
  if (code === 0) return false;
  return m[1] === undefined || restarts < Number(m[1]);
}

/** The program's exit code from QEMU's status: isa-debug-exit gives (N<<1)|1; a signal 128+n. */
export function exitCodeOf(status: number | null, signal: NodeJS.Signals | null): number | null {
  if (signal) {
    const n = (constants.signals as Record<string, number>)[signal];
    return n === undefined ? null : 128 + n;
  }
  if (status === null) return null;
  return status & 1 ? status >> 1 : status;
}

function setChild(dir: GuestDir, path: string, node: GuestNode): void {
  const segs = path.split("/").filter((s) => s !== "");
  let cur = dir.children as Map<string, GuestNode>;
  for (let i = 0; i < segs.length - 1; i++) {
    const s = segs[i]!;
    let next = cur.get(s);
    if (next?.kind !== "dir") {
      next = { kind: "dir", children: new Map() };
      cur.set(s, next);
    }
    cur = next.children as Map<string, GuestNode>;
  }
  cur.set(segs[segs.length - 1]!, node);
}

function envRecord(entries: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const e of entries) {
    const i = e.indexOf("=");
    if (i <= 0) continue;
    out[e.slice(0, i)] = e.slice(i + 1);
  }
  return out;
}

export class UnikernelRuntime implements Runtime {
  readonly kind = "unikernel" as const;
  readonly engine = "qemu" as const;
  // The serial console: followed by reading on, but its lines carry no time (no --since).
  readonly capabilities: RuntimeCapabilities = { exec: false, logsFollow: true, logsSince: false };
  readonly accel: AccelChoice;
  private readonly o: UnikernelOptions;
  private readonly locks = new KeyedLock();
  private readonly children = new Map<string, ChildProcess>();
  private readonly restartTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private watch: ReturnType<typeof setInterval> | null = null;
  private readonly changeListeners: ChangeListener[] = [];
  private versionText: string | null = null;
  private closed = false;
  /** Builds and image checks under way: prune waits for none (it would delete what they read). */
  private building = 0;

  constructor(o: UnikernelOptions) {
    this.o = o;
    if (o.accel === "auto") this.accel = detectAccel(readAccelFacts(o.accelRoot ?? "/"));
    else this.accel = { accel: o.accel, reason: `accel = "${o.accel}" in the agent config` };
    // Only the agent's user may read VM state (specs with env, serial logs, QMP sockets): an
    // existing directory with wider permissions is narrowed too.
    for (const d of [o.stateDir, this.path("vms"), this.path("rootfs"), this.path("images")]) {
      mkdirSync(d, { recursive: true, mode: 0o700 });
      chmodSync(d, 0o700);
    }
    // VMs started by an earlier agent: watched by pid for their exit (the policy still applies).
    this.watch = setInterval(() => void this.sweep(), 1000);
    this.watch.unref?.();
  }

  private path(...p: string[]): string {
    return join(this.o.stateDir, ...p);
  }

  private vmDir(name: string): string {
    if (!NAME_RE.test(name)) throw new UnikernelError(`invalid VM name ${JSON.stringify(name)}`);
    return this.path("vms", name);
  }

  private read(name: string): VmRecord | null {
    try {
      return JSON.parse(readFileSync(join(this.vmDir(name), "vm.json"), "utf8")) as VmRecord;
    } catch {
      return null;
    }
  }

  private write(r: VmRecord): void {
    const dir = this.vmDir(r.name);
    const tmp = join(dir, `vm.json.${process.pid}.tmp`);
    writeFileSync(tmp, JSON.stringify(r), { mode: 0o600 });
    renameSync(tmp, join(dir, "vm.json"));
  }

  /**
   * The QEMU pid of `r` if that process still runs this VM: pid reuse is checked by the start
   * time recorded at boot (a process that took the pid later, even with a cmdline naming our pid
   * file, is not ours and is never signalled), then by cmdline.
   */
  private livePid(r: VmRecord): number | null {
    if (r.pid === null || !processExists(r.pid)) return null;
    if (r.pidStart && procStart(r.pid) !== r.pidStart) return null;
    try {
      const cmd = readFileSync(`/proc/${r.pid}/cmdline`, "utf8");
      return cmd.includes(stateFiles(this.vmDir(r.name)).pid) ? r.pid : null;
    } catch {
      return null;
    }
  }

  async version(): Promise<string> {
    if (this.versionText === null) {
      const res = await runCmd([this.o.qemu, "--version"], { timeoutMs: 10_000 });
      if (res.code !== 0)
        throw new RuntimeError([this.o.qemu], res.code, res.stderr, `${this.o.qemu} --version failed`);
      const m = /version\s+(\S+)/.exec(res.stdout);
      this.versionText = m ? m[1]! : res.stdout.split("\n")[0]!.trim();
    }
    return this.versionText;
  }

  pull(image: string): Promise<void> {
    return this.o.images.pull(image);
  }

  imageExists(image: string): Promise<boolean> {
    return this.o.images.imageExists(image);
  }

  /** The ID of image `ref` on the node (the key of its exported filesystem). */
  async imageId(ref: string): Promise<string> {
    return (await this.o.images.config(ref)).id;
  }

  describeRun(spec: ContainerSpec): string[] {
    return qemuArgv(this.qemuOptions(spec, this.path("images", "<built at start>.img")));
  }

  private qemuOptions(spec: ContainerSpec, image: string) {
    const net = spec.network === "user" ? "user" : "none";
    return {
      qemu: this.o.qemu,
      name: spec.name,
      accel: this.accel.accel,
      memoryMiB: vmMemoryMiB(spec.memory),
      vcpus: spec.vcpus > 0 ? spec.vcpus : 1,
      image,
      stateDir: this.vmDir(spec.name),
      network: net,
      ...(net === "user" ? { forwards: forwardsOf(spec) } : {}),
    } as const;
  }

  async run(spec: ContainerSpec): Promise<string> {
    const problem = vmSpecProblem(spec);
    if (problem) throw new UnikernelError(problem);
    return this.locks.run(spec.name, async () => {
      const dir = this.vmDir(spec.name);
      if (existsSync(dir))
        throw new UnikernelError(`the VM name ${spec.name} is already in use (remove it first)`);
      // Everything that can refuse the component runs before the VM's directory exists.
      const image = await this.build(spec, null);
      mkdirSync(dir, { mode: 0o700 });
      const rec: VmRecord = {
        id: randomBytes(32).toString("hex"),
        name: spec.name,
        spec,
        createdAt: new Date().toISOString(),
        want: "running",
        pid: null,
        startedAt: null,
        exit: null,
        restarts: 0,
        image,
      };
      this.write(rec);
      try {
        await this.boot(rec);
      } catch (e) {
        rmSync(dir, { recursive: true, force: true });
        throw e;
      }
      return rec.id;
    });
  }

  /**
   * The image's exported filesystem (cached by image ID) and what to run from it; refuses in one
   * line an image a Nanos VM cannot run. The image must be on the node (pulled per policy).
   */
  private async rootfsFor(spec: ContainerSpec) {
    const label = labelOf(spec);
    const cfg = await this.o.images.config(spec.image).catch((e: Error) => {
      throw new UnikernelError(`${label}: image ${spec.image}: ${e.message}`);
    });
    if (cfg.architecture !== "" && cfg.architecture !== "amd64")
      throw new UnikernelError(
        `${label}: image ${spec.image} is for ${cfg.architecture}; a Nanos VM here runs x86-64 (amd64) programs`,
      );
    const argv = [...cfg.entrypoint, ...(spec.cmd.length > 0 ? spec.cmd : cfg.cmd)];
    if (argv.length === 0)
      throw new UnikernelError(`${label}: image ${spec.image} has no entrypoint or cmd: nothing to run`);
    if (!/^[0-9a-f]{12,64}$/.test(cfg.id))
      throw new UnikernelError(
        `${label}: image ${spec.image} has an unexpected ID ${JSON.stringify(cfg.id)}`,
      );
    const rootfs = this.path("rootfs", cfg.id);
    if (!existsSync(rootfs)) {
      const tmp = this.path("rootfs", `.${cfg.id}.${randomBytes(4).toString("hex")}`);
      try {
        await this.o.images.exportRootfs(spec.image, tmp);
        renameSync(tmp, rootfs);
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true });
        if (!existsSync(rootfs))
          throw new UnikernelError(`${label}: image ${spec.image}: ${(e as Error).message}`);
      }
    }
    const program = argv[0]!;
    const guestProgram = program.startsWith("/") ? program : `/${program}`;
    try {
      checkProgram(rootfs, guestProgram, label.slice("component ".length));
    } catch (e) {
      throw new UnikernelError((e as Error).message);
    }
    return { cfg, argv, rootfs, program, guestProgram };
  }

  async checkImage(spec: ContainerSpec): Promise<void> {
    const problem = vmSpecProblem(spec);
    if (problem) throw new UnikernelError(problem);
    this.building++;
    try {
      await this.rootfsFor(spec);
    } finally {
      this.building--;
    }
  }

  /**
   * Builds (or finds in the cache) the Nanos image for `spec`: the exported filesystem of its OCI
   * image plus each volume's host directory at its guest path. Returns the image path.
   */
  private async build(spec: ContainerSpec, vmDir: string | null): Promise<string> {
    // Counted until the caller records the image in vm.json (synchronously after this returns).
    this.building++;
    try {
      return await this.buildCounted(spec, vmDir);
    } finally {
      this.building--;
    }
  }

  private async buildCounted(spec: ContainerSpec, vmDir: string | null): Promise<string> {
    const label = labelOf(spec);
    const { cfg, argv, rootfs, program, guestProgram } = await this.rootfsFor(spec);

    // Volumes: copied into a fresh staging dir (the VM's, or a scratch one for a first build).
    const stage = join(vmDir ?? this.path("images"), `.stage-${randomBytes(6).toString("hex")}`);
    mkdirSync(stage, { mode: 0o700 });
    try {
      const hash = newContentHash();
      hash.update(`image\0${cfg.id}\0`);
      const tree = stageTree(rootfs);
      spec.volumes.forEach((v, i) => {
        const vs = parseVolumeSpec(v);
        const out = join(stage, String(i));
        hash.update(`volume\0${vs.target}\0`);
        copyTreeNoFollow(vs.source, out, hash, `${label}: volume ${v}`);
        setChild(tree.root, vs.target, stageTree(out).root);
      });
      const environment = { ...envRecord(cfg.env), ...envRecord(spec.env) };
      const manifestInput = { program: guestProgram, args: [program, ...argv.slice(1)], environment };
      const kernel = statSync(join(this.o.nanosDir, "kernel.img"));
      hash.update(JSON.stringify(manifestInput));
      hash.update(`kernel\0${kernel.size}\0${kernel.mtimeMs}\0`);
      const key = hash.digest("hex");
      const image = this.path("images", `${key}.img`);
      if (existsSync(image)) return image;
      const text = writeManifest({ root: tree.root, ...manifestInput });
      const tmpImg = `${image}.${randomBytes(4).toString("hex")}.tmp`;
      const res = await runCmd(
        [
          this.o.mkfs,
          "-b",
          join(this.o.nanosDir, "boot.img"),
          "-k",
          join(this.o.nanosDir, "kernel.img"),
          "-t",
          "(debug_exit:t)",
          tmpImg,
        ],
        { input: text, timeoutMs: 120_000, label: "mkfs" },
      );
      if (res.code !== 0) {
        rmSync(tmpImg, { force: true });
        // mkfs prints its errors on stdout (README §7).
        const why = (res.stdout + res.stderr).trim().split("\n").slice(-2).join(" | ") || `exit ${res.code}`;
        throw new UnikernelError(`${label}: mkfs failed: ${why}`);
      }
      renameSync(tmpImg, image);
      return image;
    } catch (e) {
      if (e instanceof StageError || e instanceof ManifestError || e instanceof QemuError)
        throw new UnikernelError(`${label}: ${e.message}`);
      throw e;
    } finally {
      rmSync(stage, { recursive: true, force: true });
    }
  }

  /** Starts QEMU for `rec` (its image built) and waits until the guest shows life. */
  private async boot(rec: VmRecord): Promise<void> {
    const dir = this.vmDir(rec.name);
    const files = stateFiles(dir);
    for (const f of [files.serial, files.qmp, files.pid]) rmSync(f, { force: true });
    const argv = qemuArgv(this.qemuOptions(rec.spec, rec.image));
    const log = openSync(join(dir, "qemu.log"), "w", 0o600);
    let child: ChildProcess;
    try {
      child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["ignore", log, log] });
    } finally {
      closeSync(log);
    }
    const exited = new Promise<{ status: number | null; signal: NodeJS.Signals | null }>((res) => {
      child.once("exit", (status, signal) => res({ status, signal }));
      child.once("error", () => res({ status: 127, signal: null }));
    });
    child.unref();
    const pid = child.pid ?? null;
    if (pid === null) throw new UnikernelError(`component ${rec.name}: cannot start ${argv[0]}`);
    this.children.set(rec.name, child);
    rec.pid = pid;
    rec.pidStart = procStart(pid);
    rec.startedAt = new Date().toISOString();
    rec.exit = null;
    this.write(rec);
    let ended: { status: number | null; signal: NodeJS.Signals | null } | null = null;
    void exited.then((x) => {
      ended = x;
      if (this.children.get(rec.name) === child) this.children.delete(rec.name);
      // A closed runtime (an agent shutting down) leaves the VM's state to the next one.
      if (!this.closed) void this.onExit(rec.name, pid, exitCodeOf(x.status, x.signal));
    });
    const why = await this.waitBoot(dir, () => ended);
    if (why) {
      if (ended === null) {
        try {
          process.kill(pid, "SIGKILL");
        } catch {}
        await Promise.race([exited, sleep(5000)]);
      }
      throw new UnikernelError(`component ${rec.name}: ${why}`);
    }
  }

  /**
   * Null once the start happened (TCG: QMP reports the machine running; either accel: the guest
   * printed on its console), else why the boot failed.
   */
  private async waitBoot(
    dir: string,
    ended: () => { status: number | null; signal: NodeJS.Signals | null } | null,
  ): Promise<string | null> {
    const files = stateFiles(dir);
    const deadline = Date.now() + (this.o.bootTimeoutMs ?? 30_000);
    let lastQmp = 0;
    const qemuLog = () => {
      try {
        return readFileSync(join(dir, "qemu.log"), "utf8");
      } catch {
        return "";
      }
    };
    while (Date.now() < deadline) {
      const e = ended();
      if (e) {
        const text = qemuLog().trim().split("\n").slice(-2).join(" | ");
        // A program that runs and exits at once is a start that happened (the policy decides).
        if (serialSize(files.serial) > 0 && e.status !== null && e.status & 1) return null;
        return `QEMU exited during boot (status ${e.status ?? e.signal})${text ? `: ${text}` : ""}`;
      }
      if (serialSize(files.serial) > 0) return null;
      // Under TCG QEMU emulates the CPU itself: once QMP says the machine runs, the start happened
      // (the guest's own readiness is the health gate's, as for a container). Under KVM the guest
      // must show life first: a PVM /dev/kvm lets QEMU run while the guest dies (README §4), which
      // QEMU's stderr or QMP's status says.
      const tcg = this.accel.accel === "tcg";
      if (!tcg && kvmFailure(qemuLog()))
        return `KVM failed to run the guest (KVM internal error; a PVM /dev/kvm cannot run Nanos: set accel = "tcg")`;
      if ((tcg || Date.now() - lastQmp > 500) && existsSync(files.qmp)) {
        lastQmp = Date.now();
        const status = await qmpStatus(files.qmp).catch(() => null);
        if (status !== null && kvmFailure("", status))
          return `the guest stopped with a hypervisor error (QMP status internal-error, accel ${this.accel.accel})`;
        if (tcg && status === "running") return null;
      }
      await sleep(tcg ? 5 : 20);
    }
    const within = formatDuration(this.o.bootTimeoutMs ?? 30_000);
    return this.accel.accel === "tcg"
      ? `QEMU did not report the machine running within ${within} (never became ready)`
      : `the guest printed nothing on its console within ${within} (never became ready)`;
  }

  private async onExit(name: string, pid: number, code: number | null): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = this.read(name);
      if (!rec || rec.pid !== pid) return; // removed, or already started again
      rec.exit = { code, at: new Date().toISOString() };
      this.write(rec);
      this.clearRunFiles(name);
      this.o.logger?.info({ vm: name, code }, "unikernel VM exited");
      this.changed(rec, "running");
      this.schedulePolicy(rec);
    });
  }

  /** After an exit the runtime did not ask for: start again per the restart policy, with a delay. */
  private schedulePolicy(rec: VmRecord): void {
    if (this.closed || rec.want !== "running") return;
    if (!shouldRestart(rec.spec.restart, rec.exit?.code ?? null, rec.restarts)) return;
    const ranMs = rec.startedAt ? Date.now() - Date.parse(rec.startedAt) : 0;
    const delay = ranMs > 30_000 ? 500 : Math.min(30_000, 500 * 2 ** Math.min(rec.restarts, 6));
    clearTimeout(this.restartTimers.get(rec.name));
    const t = setTimeout(() => {
      this.restartTimers.delete(rec.name);
      void this.locks
        .run(rec.name, async () => {
          const cur = this.read(rec.name);
          if (cur?.want !== "running" || this.livePid(cur) !== null || this.closed) return;
          cur.restarts += 1;
          cur.image = await this.build(cur.spec, this.vmDir(cur.name));
          this.write(cur);
          await this.boot(cur);
          this.changed(cur, "exited");
        })
        .catch((e: Error) =>
          this.o.logger?.warn({ vm: rec.name, err: e.message }, "unikernel VM restart failed"),
        );
    }, delay);
    t.unref?.();
    this.restartTimers.set(rec.name, t);
  }

  /** VMs not our children (an earlier agent's) whose process is gone: record the exit. */
  private async sweep(): Promise<void> {
    let names: string[];
    try {
      names = readdirSync(this.path("vms"));
    } catch {
      return;
    }
    for (const name of names) {
      if (this.children.has(name) || !NAME_RE.test(name)) continue;
      const rec = this.read(name);
      if (!rec || rec.pid === null || rec.exit !== null) continue;
      if (this.livePid(rec) === null) await this.onExit(name, rec.pid, null);
    }
  }

  async start(name: string): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = this.read(name);
      if (!rec) throw new UnikernelError(`no such VM: ${name}`);
      if (this.livePid(rec) !== null) return;
      rec.want = "running";
      rec.restarts = 0;
      rec.image = await this.build(rec.spec, this.vmDir(name));
      this.write(rec);
      await this.boot(rec);
    });
  }

  async stop(name: string, timeoutSec = 10): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = this.read(name);
      if (!rec) throw new UnikernelError(`no such VM: ${name}`);
      rec.want = "stopped";
      this.write(rec);
      clearTimeout(this.restartTimers.get(name));
      await this.halt(rec, timeoutSec);
    });
  }

  /** Powers the VM down: QMP system_powerdown, then quit/SIGTERM, then SIGKILL. */
  private async halt(rec: VmRecord, timeoutSec: number): Promise<void> {
    const pid = this.livePid(rec);
    if (pid === null) return;
    const gone = () => !processExists(pid) || this.livePid(rec) === null;
    const waitGone = async (ms: number) => {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        if (gone()) return true;
        await sleep(20);
      }
      return gone();
    };
    const qmp = stateFiles(this.vmDir(rec.name)).qmp;
    if (timeoutSec > 0) {
      // The ACPI power button is lost on a guest still booting (its ACPI is not up yet): press it
      // again every 250 ms until the guest goes or the stop timeout ends.
      const end = Date.now() + timeoutSec * 1000;
      while (Date.now() < end) {
        await qmpCommand(qmp, "system_powerdown").catch(() => {});
        if (await waitGone(Math.min(250, end - Date.now()))) return this.reaped(rec, pid);
      }
    }
    await qmpCommand(qmp, "quit").catch(() => {});
    if (await waitGone(1000)) return this.reaped(rec, pid);
    try {
      process.kill(pid, "SIGTERM");
    } catch {}
    if (await waitGone(2000)) return this.reaped(rec, pid);
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
    await waitGone(5000);
    return this.reaped(rec, pid);
  }

  /** Records the exit of a VM the runtime stopped itself (the child's exit event may come later). */
  private async reaped(rec: VmRecord, pid: number): Promise<void> {
    const child = this.children.get(rec.name);
    if (child && child.pid === pid && child.exitCode === null && child.signalCode === null)
      await Promise.race([new Promise((r) => child.once("exit", r)), sleep(1000)]);
    const cur = this.read(rec.name) ?? rec;
    this.clearRunFiles(rec.name);
    if (cur.pid === pid && cur.exit === null) {
      cur.exit = {
        code: child && child.pid === pid ? exitCodeOf(child.exitCode, child.signalCode) : null,
        at: new Date().toISOString(),
      };
      this.write(cur);
    }
  }

  /** A stopped VM keeps its spec and serial log; the QMP socket and pid file of the run go. */
  private clearRunFiles(name: string): void {
    const f = stateFiles(this.vmDir(name));
    rmSync(f.qmp, { force: true });
    rmSync(f.pid, { force: true });
  }

  async restart(name: string): Promise<void> {
    await this.stop(name);
    await this.start(name);
  }

  async remove(name: string, force = false): Promise<void> {
    await this.locks.run(name, async () => {
      const rec = this.read(name);
      const dir = this.vmDir(name);
      if (!rec) {
        rmSync(dir, { recursive: true, force: true });
        return;
      }
      if (this.livePid(rec) !== null) {
        if (!force) throw new UnikernelError(`VM ${name} is running; stop it first`);
        rec.want = "stopped";
        this.write(rec);
        await this.halt(rec, 0);
      }
      clearTimeout(this.restartTimers.get(name));
      this.children.delete(name);
      rmSync(dir, { recursive: true, force: true });
    });
  }

  async stopAndRemove(name: string, timeoutSec?: number): Promise<boolean> {
    if (!this.read(name)) {
      rmSync(this.vmDir(name), { recursive: true, force: true });
      return false;
    }
    await this.stop(name, timeoutSec);
    await this.remove(name, true);
    return true;
  }

  /**
   * Observed-state changes the runtime saw by itself (a VM's QEMU exiting, a restart by its
   * policy), in order: the agent records them at once, as it does container events.
   */
  onChange(listener: ChangeListener): void {
    this.changeListeners.push(listener);
  }

  private changed(rec: VmRecord, prev: ObservedState): void {
    const info = { ...this.info(rec), runtime: this.kind };
    if (info.state === prev) return;
    const change: ViewChange = {
      name: rec.name,
      prev,
      next: info.state,
      info,
      at: Date.now(),
      cause: "qemu",
    };
    for (const l of this.changeListeners) {
      try {
        l([change]);
      } catch (err) {
        this.o.logger?.warn({ err: (err as Error).message }, "unikernel change listener failed");
      }
    }
  }

  private info(rec: VmRecord): ContainerInfo {
    const pid = this.livePid(rec);
    const state = pid !== null ? "running" : rec.startedAt === null ? "stopped" : "exited";
    return {
      id: rec.id,
      name: rec.name,
      image: rec.spec.image,
      state,
      startedAt: rec.startedAt ? new Date(rec.startedAt) : null,
      createdAt: new Date(rec.createdAt),
      exitCode: state === "running" ? null : (rec.exit?.code ?? null),
      ...(rec.spec.owner ? { owner: rec.spec.owner } : {}),
    };
  }

  async inspect(name: string, _opts?: InspectOptions): Promise<ContainerDetails | null> {
    if (!NAME_RE.test(name)) return null;
    const rec = this.read(name);
    return rec ? { ...this.info(rec), spec: rec.spec } : null;
  }

  async list(): Promise<ContainerInfo[]> {
    let names: string[];
    try {
      names = readdirSync(this.path("vms")).sort();
    } catch {
      return [];
    }
    const out: ContainerInfo[] = [];
    for (const n of names) {
      if (!NAME_RE.test(n)) continue;
      const rec = this.read(n);
      if (rec) out.push(this.info(rec));
    }
    return out;
  }

  async exec(name: string, _argv: string[], _timeoutMs: number): Promise<ExecResult> {
    throw new UnikernelError(`VM ${name}: a unikernel cannot run commands inside it (no exec)`);
  }

  logs(name: string, opts: LogOptions): { lines: AsyncIterable<string>; kill(): void } {
    const file = stateFiles(this.vmDir(name)).serial;
    if (!this.read(name)) throw new UnikernelError(`no such VM: ${name}`);
    let stopped = false;
    async function* lines(): AsyncGenerator<string> {
      let text = "";
      try {
        text = readFileSync(file, "utf8");
      } catch {}
      let offset = Buffer.byteLength(text);
      let all = text.split("\n");
      let partial = all.pop() ?? "";
      if (opts.tail !== undefined && opts.tail >= 0) all = all.slice(Math.max(0, all.length - opts.tail));
      for (const l of all) yield l;
      if (!opts.follow) {
        if (partial !== "") yield partial;
        return;
      }
      while (!stopped) {
        await sleep(200);
        let size = 0;
        try {
          size = statSync(file).size;
        } catch {
          continue;
        }
        if (size < offset) offset = 0; // a new boot truncated the log
        if (size === offset) continue;
        const fd = openSync(file, "r");
        try {
          const buf = Buffer.alloc(size - offset);
          readSync(fd, buf, 0, buf.length, offset);
          offset = size;
          const parts = (partial + buf.toString("utf8")).split("\n");
          partial = parts.pop() ?? "";
          for (const l of parts) yield l;
        } finally {
          closeSync(fd);
        }
      }
    }
    return {
      lines: lines(),
      kill() {
        stopped = true;
      },
    };
  }

  /**
   * Built images and exported filesystems no current VM and none of `keepImages` (the image
   * references current specs and their rollback entries name) need are removed.
   */
  async prune(keepImageIds: ReadonlySet<string>): Promise<{ removed: string[] }> {
    const removed: string[] = [];
    // A build under way reads an exported filesystem and makes an image no vm.json names yet:
    // pruning now would delete them under it (the next deploy's prune catches up). Synchronous
    // from here on, so no build can start half-way.
    if (this.building > 0) return { removed };
    const inUse = new Set<string>();
    for (const n of readdirSync(this.path("vms"))) {
      const r = NAME_RE.test(n) ? this.read(n) : null;
      if (r) inUse.add(r.image);
    }
    for (const f of readdirSync(this.path("images"))) {
      const p = this.path("images", f);
      if (f.endsWith(".img") && !inUse.has(p)) {
        rmSync(p, { force: true });
        removed.push(p);
      }
    }
    for (const d of readdirSync(this.path("rootfs"))) {
      if (!keepImageIds.has(d)) {
        rmSync(this.path("rootfs", d), { recursive: true, force: true });
        removed.push(this.path("rootfs", d));
      }
    }
    return { removed };
  }

  close(): void {
    this.closed = true;
    if (this.watch) clearInterval(this.watch);
    for (const t of this.restartTimers.values()) clearTimeout(t);
    this.restartTimers.clear();
  }
}

function serialSize(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

async function qmpStatus(sock: string): Promise<string | null> {
  const q = await Qmp.connect(sock, 1000);
  try {
    const r = (await q.execute("query-status")) as { status?: string };
    return r?.status ?? null;
  } finally {
    q.close();
  }
}

async function qmpCommand(sock: string, cmd: string): Promise<void> {
  const q = await Qmp.connect(sock, 1000);
  try {
    await q.execute(cmd);
  } finally {
    q.close();
  }
}
