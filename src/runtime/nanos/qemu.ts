// QEMU for Nanos VMs: the command line (pure), a small QMP client, and the readiness probe. The measured
// recipe behind every choice is shared/unikernel/README.md §2–5: q35, -no-reboot + isa-debug-exit (the
// program's exit code N comes back as QEMU status (N<<1)|1), the image booted with snapshot=on, user-mode
// networking with hostfwd, QMP on a unix socket, and "slirp accepts before the guest listens" (probe with
// short per-attempt timeouts and a real HTTP byte back).
import { createConnection, isIPv4, type Socket } from "node:net";
import { MIN_VM_MEMORY_MIB } from "../../config/unikernel.ts";

/** A refused VM option; the message is one line naming the component. */
export class QemuError extends Error {
  override name = "QemuError";
}

export interface PortForward {
  /** Host address the forward listens on (IPv4 literal, e.g. 127.0.0.1 or 0.0.0.0). */
  hostIp: string;
  /** Default "tcp". */
  protocol?: "tcp" | "udp";
  hostPort: number;
  guestPort: number;
}

export interface QemuOptions {
  /** The QEMU binary (argv[0]). */
  qemu: string;
  /** The VM's name (`<service>-<component>`, as containers are named): QEMU's -name and process name. */
  name: string;
  accel: "kvm" | "tcg";
  memoryMiB: number;
  vcpus: number;
  /** The built Nanos image; booted with snapshot=on so it never changes. */
  image: string;
  /** Per-VM state directory: serial.log, qmp.sock, qemu.pid. */
  stateDir: string;
  network: "user" | "none";
  /** Only with network "user". */
  forwards?: PortForward[];
}

/** Below this Nanos does not come up (README §2: 32M booted and served). */
export const MIN_MEMORY_MIB = MIN_VM_MEMORY_MIB;
export const MAX_VCPUS = 255;
/** sun_path is 108 bytes with the terminating NUL. */
const MAX_UNIX_PATH = 107;
const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export const stateFiles = (stateDir: string) => ({
  serial: `${stateDir}/serial.log`,
  qmp: `${stateDir}/qmp.sock`,
  pid: `${stateDir}/qemu.pid`,
});

// QEMU's option syntax splits on ',' (a literal comma is written ",,"), but not everywhere: `-serial
// file:P` and `-pidfile P` take P literally while `-drive file=P` and `-qmp unix:P` parse it. One escape
// cannot be right for all of them, so a comma in a path is refused; so are NUL and newlines.
function checkPath(label: string, what: string, p: string): void {
  if (!p.startsWith("/"))
    throw new QemuError(`${label}: ${what} is not an absolute path: ${JSON.stringify(p)}`);
  if (/[,\0\n\r]/.test(p)) {
    throw new QemuError(
      `${label}: ${what} ${JSON.stringify(p)} holds a comma or control character, which QEMU options cannot carry`,
    );
  }
}

function checkPort(label: string, what: string, n: number): void {
  if (!Number.isInteger(n) || n < 1 || n > 65535) {
    throw new QemuError(`${label}: ${what} ${n} is not a port (1-65535)`);
  }
}

/** The full argv (argv[0] is opts.qemu) that boots the VM. Throws QemuError on any invalid input. */
export function qemuArgv(o: QemuOptions): string[] {
  const name = o.name;
  if (!NAME_RE.test(name)) throw new QemuError(`unikernel VM: invalid name ${JSON.stringify(name)}`);
  const label = `component ${name}`;
  if (!Number.isInteger(o.memoryMiB) || o.memoryMiB < MIN_MEMORY_MIB) {
    throw new QemuError(
      `${label}: memory ${o.memoryMiB} MiB is below the ${MIN_MEMORY_MIB} MiB a Nanos VM needs`,
    );
  }
  if (!Number.isInteger(o.vcpus) || o.vcpus < 1 || o.vcpus > MAX_VCPUS) {
    throw new QemuError(`${label}: vcpus ${o.vcpus} is not an integer from 1 to ${MAX_VCPUS}`);
  }
  if (o.qemu === "" || o.qemu.includes("\0")) throw new QemuError(`${label}: empty or invalid QEMU path`);
  checkPath(label, "image", o.image);
  checkPath(label, "state directory", o.stateDir);
  const f = stateFiles(o.stateDir);
  // `-qmp unix:P,...` reads P as the implied first key, so an '=' in it would turn it into key=value.
  if (o.stateDir.includes("=")) {
    throw new QemuError(
      `${label}: state directory ${JSON.stringify(o.stateDir)} holds '=', which -qmp cannot carry`,
    );
  }
  if (Buffer.byteLength(f.qmp) > MAX_UNIX_PATH) {
    throw new QemuError(`${label}: QMP socket path ${f.qmp} is longer than ${MAX_UNIX_PATH} bytes`);
  }

  const argv = [o.qemu, "-name", `${name},process=${name}`, "-machine", "q35"];
  argv.push(...(o.accel === "kvm" ? ["-enable-kvm", "-cpu", "host"] : ["-accel", "tcg"]));
  argv.push("-m", `${o.memoryMiB}M`, "-smp", String(o.vcpus), "-display", "none");
  argv.push("-serial", `file:${f.serial}`, "-no-reboot", "-device", "isa-debug-exit");
  argv.push(
    "-drive",
    `if=none,id=hd0,format=raw,file=${o.image},snapshot=on`,
    "-device",
    "virtio-blk-pci,drive=hd0",
  );

  const forwards = o.forwards ?? [];
  if (o.network === "user") {
    const seen = new Set<string>();
    const fwd = forwards.map((p) => {
      if (!isIPv4(p.hostIp))
        throw new QemuError(`${label}: host address ${JSON.stringify(p.hostIp)} is not IPv4`);
      checkPort(label, "host port", p.hostPort);
      checkPort(label, "guest port", p.guestPort);
      const proto = p.protocol ?? "tcp";
      const key = `${proto}:${p.hostIp}:${p.hostPort}`;
      if (seen.has(key)) throw new QemuError(`${label}: host port ${key} is forwarded twice`);
      seen.add(key);
      return `,hostfwd=${proto}:${p.hostIp}:${p.hostPort}-:${p.guestPort}`;
    });
    argv.push("-netdev", `user,id=n0${fwd.join("")}`, "-device", "virtio-net-pci,netdev=n0");
  } else if (o.network === "none") {
    if (forwards.length > 0) throw new QemuError(`${label}: port forwards need network "user"`);
    // Without this QEMU adds its default NIC (user networking) to the machine.
    argv.push("-nic", "none");
  } else {
    throw new QemuError(`${label}: unknown network ${JSON.stringify(o.network)}`);
  }
  argv.push("-qmp", `unix:${f.qmp},server=on,wait=off`, "-pidfile", f.pid);
  return argv;
}

/** True when QEMU reports the failure a PVM /dev/kvm gives Nanos (README §4); QEMU keeps running then. */
export function kvmFailure(stderrText: string, qmpStatus?: string): boolean {
  return stderrText.includes("KVM internal error") || qmpStatus === "internal-error";
}

const oneLine = (s: string): string => s.replace(/\s*[\r\n]+\s*/g, " ").trim();

export interface QmpEvent {
  event: string;
  data?: unknown;
  timestamp?: unknown;
}

type Msg = Record<string, unknown>;

/** Longest QMP line accepted; a longer one closes the connection. */
const MAX_LINE = 1 << 20;

/** A QMP connection over a unix socket: greeting read and capabilities negotiated by `connect`. */
export class Qmp {
  /** Events seen so far (including those that arrived before a command's return). */
  readonly events: QmpEvent[] = [];
  private buf = "";
  private queue: Msg[] = [];
  private waiter: (() => void) | null = null;
  private closedWith: Error | null = null;
  private nextId = 1;

  private constructor(private readonly sock: Socket) {
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => this.onData(chunk));
    sock.on("error", (e) => this.fail(new Error(`QMP socket: ${oneLine(e.message)}`)));
    sock.on("close", () => this.fail(new Error("QMP connection closed")));
  }

  static async connect(path: string, timeoutMs = 5000): Promise<Qmp> {
    const deadline = Date.now() + timeoutMs;
    const sock = await new Promise<Socket>((resolve, reject) => {
      const s = createConnection({ path });
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`QMP ${path}: no connection within ${timeoutMs} ms`));
      }, timeoutMs);
      s.once("connect", () => {
        clearTimeout(t);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(t);
        reject(new Error(`QMP ${path}: ${oneLine(e.message)}`));
      });
    });
    const q = new Qmp(sock);
    try {
      const greeting = await q.next(deadline);
      if (!("QMP" in greeting))
        throw new Error(`QMP ${path}: no greeting (got ${oneLine(JSON.stringify(greeting))})`);
      await q.execute("qmp_capabilities", undefined, Math.max(1, deadline - Date.now()));
    } catch (e) {
      q.close();
      throw e;
    }
    return q;
  }

  /** Runs `cmd`; resolves with its `return` or throws its `error.desc` in one line. */
  async execute(cmd: string, args?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
    const deadline = Date.now() + timeoutMs;
    const id = this.nextId++;
    if (this.closedWith) throw this.closedWith;
    this.sock.write(
      `${JSON.stringify(args ? { execute: cmd, arguments: args, id } : { execute: cmd, id })}\n`,
    );
    for (;;) {
      const m = await this.next(deadline, cmd);
      if (typeof m.event === "string") {
        this.events.push(m as unknown as QmpEvent);
        continue;
      }
      if (m.id !== id) continue; // a late answer to a command that timed out
      if ("return" in m) return m.return;
      const err = m.error as { class?: string; desc?: string } | undefined;
      throw new Error(`QMP ${cmd}: ${oneLine(err?.desc ?? JSON.stringify(m))}`);
    }
  }

  close(): void {
    this.sock.destroy();
  }

  private onData(chunk: string): void {
    this.buf += chunk;
    let i = this.buf.indexOf("\n");
    while (i >= 0) {
      const line = this.buf.slice(0, i).trim();
      this.buf = this.buf.slice(i + 1);
      if (line !== "") {
        try {
          this.queue.push(JSON.parse(line) as Msg);
        } catch {
          this.fail(new Error(`QMP: not JSON: ${oneLine(line).slice(0, 200)}`));
          this.sock.destroy();
          return;
        }
      }
      i = this.buf.indexOf("\n");
    }
    if (this.buf.length > MAX_LINE) {
      this.fail(new Error(`QMP: a line longer than ${MAX_LINE} bytes`));
      this.sock.destroy();
    }
    this.wake();
  }

  private fail(e: Error): void {
    this.closedWith ??= e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async next(deadline: number, cmd = "greeting"): Promise<Msg> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.closedWith) throw this.closedWith;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`QMP ${cmd}: no answer in time`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }
}

/** One probe: connect, send a request, and require at least one byte back, all within `timeoutMs`. */
function probe(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host, port });
    const done = (ok: boolean) => {
      clearTimeout(t);
      s.destroy();
      resolve(ok);
    };
    const t = setTimeout(() => done(false), timeoutMs);
    s.once("connect", () => s.write("GET / HTTP/1.0\r\n\r\n"));
    s.once("data", () => done(true));
    s.once("error", () => done(false));
    s.once("close", () => done(false));
  });
}

export const PROBE_TIMEOUT_MS = 250;
export const PROBE_INTERVAL_MS = 20;

/**
 * Resolves true once an HTTP request through host:port gets a byte back, false when `timeoutMs` passes
 * first (or `stop()` says so, e.g. because QEMU exited). Slirp accepts the host side before the guest
 * listens, so a connect alone proves nothing (README §2 "Readiness").
 */
export async function waitReady(
  host: string,
  port: number,
  timeoutMs: number,
  stop?: () => boolean,
  /** Per attempt: an attempt slirp accepted before the guest listens hangs this long. */
  probeMs = PROBE_TIMEOUT_MS,
): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (stop?.()) return false;
    const left = deadline - Date.now();
    if (left <= 0) return false;
    if (await probe(host, port, Math.min(probeMs, left))) return true;
    if (Date.now() + PROBE_INTERVAL_MS >= deadline) return false;
    await Bun.sleep(PROBE_INTERVAL_MS);
  }
}
