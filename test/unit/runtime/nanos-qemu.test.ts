// src/runtime/nanos/qemu.ts without QEMU: the argv builder (exact lines for TCG/KVM, user/none networks,
// refusals naming the component: ports, memory, commas and '=' in paths, long socket paths), the QMP
// client against a scripted unix-socket server (greeting, capabilities, events before the return, error
// desc in one line, bounded timeouts, a closed socket), waitReady against servers that accept but never
// answer, reset, or answer late, and kvmFailure.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  kvmFailure,
  QemuError,
  type QemuOptions,
  Qmp,
  qemuArgv,
  waitReady,
} from "../../../src/runtime/nanos/qemu.ts";

const base: QemuOptions = {
  qemu: "/usr/bin/qemu-system-x86_64",
  name: "web-api",
  accel: "tcg",
  memoryMiB: 64,
  vcpus: 1,
  image: "/var/lib/mcp/vm/web-api/app.img",
  stateDir: "/run/mcp/vm/web-api",
  network: "user",
  forwards: [
    { hostIp: "127.0.0.1", hostPort: 18080, guestPort: 8080 },
    { hostIp: "0.0.0.0", hostPort: 18443, guestPort: 8443 },
  ],
};

describe("qemuArgv", () => {
  test("TCG, user network with two forwards: the README's line", () => {
    expect(qemuArgv(base)).toEqual([
      "/usr/bin/qemu-system-x86_64",
      ...["-name", "web-api,process=web-api", "-machine", "q35", "-accel", "tcg"],
      ...["-m", "64M", "-smp", "1", "-display", "none"],
      ...["-serial", "file:/run/mcp/vm/web-api/serial.log", "-no-reboot", "-device", "isa-debug-exit"],
      "-drive",
      "if=none,id=hd0,format=raw,file=/var/lib/mcp/vm/web-api/app.img,snapshot=on",
      ...["-device", "virtio-blk-pci,drive=hd0"],
      "-netdev",
      "user,id=n0,hostfwd=tcp:127.0.0.1:18080-:8080,hostfwd=tcp:0.0.0.0:18443-:8443",
      ...["-device", "virtio-net-pci,netdev=n0"],
      ...["-qmp", "unix:/run/mcp/vm/web-api/qmp.sock,server=on,wait=off"],
      ...["-pidfile", "/run/mcp/vm/web-api/qemu.pid"],
    ]);
  });

  test("KVM uses -enable-kvm -cpu host; memory and vcpus as given", () => {
    const a = qemuArgv({ ...base, accel: "kvm", memoryMiB: 256, vcpus: 2 });
    expect(a.slice(5, 9)).toEqual(["-enable-kvm", "-cpu", "host", "-m"]);
    expect(a).not.toContain("-accel");
    expect(a[a.indexOf("-m") + 1]).toBe("256M");
    expect(a[a.indexOf("-smp") + 1]).toBe("2");
  });

  test("network none: no NIC at all (not QEMU's default one)", () => {
    const a = qemuArgv({ ...base, network: "none", forwards: [] });
    expect(a.join(" ")).not.toMatch(/netdev|virtio-net|hostfwd/);
    expect(a[a.indexOf("-nic") + 1]).toBe("none");
    expect(() => qemuArgv({ ...base, network: "none" })).toThrow(/component web-api: port forwards need/);
  });

  test("user network without ports still gets a NIC", () => {
    const a = qemuArgv({ ...base, forwards: [] });
    expect(a).toContain("user,id=n0");
    expect(a).toContain("virtio-net-pci,netdev=n0");
  });

  const refusals: [string, Partial<QemuOptions>, RegExp][] = [
    ["memory below 32 MiB", { memoryMiB: 16 }, /^component web-api: memory 16 MiB is below the 32 MiB/],
    ["fractional memory", { memoryMiB: 64.5 }, /component web-api: memory 64.5 MiB/],
    ["0 vcpus", { vcpus: 0 }, /component web-api: vcpus 0/],
    [
      "host port 0",
      { forwards: [{ hostIp: "127.0.0.1", hostPort: 0, guestPort: 80 }] },
      /host port 0 is not a port/,
    ],
    [
      "guest port 65536",
      { forwards: [{ hostIp: "127.0.0.1", hostPort: 80, guestPort: 65536 }] },
      /guest port 65536 is not a port/,
    ],
    ["host name, not IPv4", { forwards: [{ hostIp: "localhost", hostPort: 80, guestPort: 80 }] }, /not IPv4/],
    [
      "same host port twice",
      {
        forwards: [
          { hostIp: "127.0.0.1", hostPort: 80, guestPort: 80 },
          { hostIp: "127.0.0.1", hostPort: 80, guestPort: 81 },
        ],
      },
      /forwarded twice/,
    ],
    [
      "comma in the image path",
      { image: "/img/a,snapshot=off.img" },
      /image "\/img\/a,snapshot=off.img" holds a comma/,
    ],
    ["comma in the state dir", { stateDir: "/run/a,b" }, /state directory "\/run\/a,b" holds a comma/],
    ["'=' in the state dir", { stateDir: "/run/a=b" }, /holds '='/],
    ["newline in a path", { image: "/img/a\nb" }, /control character/],
    ["relative image", { image: "app.img" }, /image is not an absolute path/],
    ["socket path too long", { stateDir: `/run/${"x".repeat(100)}` }, /longer than 107 bytes/],
    ["name with a comma", { name: "a,b" }, /invalid name "a,b"/],
    ["name with a space", { name: "a b" }, /invalid name/],
  ];
  for (const [what, patch, re] of refusals) {
    test(`refuses ${what} in one line`, () => {
      let err: unknown;
      try {
        qemuArgv({ ...base, ...patch });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(QemuError);
      expect((err as Error).message).toMatch(re);
      expect((err as Error).message).not.toContain("\n");
    });
  }

  test("a comma elsewhere in a name would have split the option: accepted names never hold one", () => {
    for (const arg of qemuArgv(base)) {
      for (const part of arg.split(",")) expect(part).not.toBe(""); // no ",," anywhere
    }
  });
});

describe("kvmFailure", () => {
  test("stderr or QMP status", () => {
    expect(kvmFailure("KVM internal error. Suberror: 1\nemulation failure\n")).toBe(true);
    expect(kvmFailure("", "internal-error")).toBe(true);
    expect(kvmFailure("", "running")).toBe(false);
    expect(kvmFailure("qemu-system-x86_64: terminating on signal 15\n", "shutdown")).toBe(false);
  });
});

const tmp = mkdtempSync(join(tmpdir(), "mcp-qmp-"));
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A unix-socket QMP server: `onLine` answers each command line the client sends. */
async function qmpServer(
  name: string,
  onLine: (cmd: Record<string, unknown>, s: Socket) => void,
  greet = true,
) {
  const path = join(tmp, name);
  const srv = createServer((s) => {
    if (greet) s.write('{"QMP": {"version": {}, "capabilities": []}}\r\n');
    let buf = "";
    s.setEncoding("utf8");
    s.on("data", (d: string) => {
      buf += d;
      for (let i = buf.indexOf("\n"); i >= 0; i = buf.indexOf("\n")) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        onLine(JSON.parse(line), s);
      }
    });
  });
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(path, r));
  return path;
}

const reply = (s: Socket, cmd: Record<string, unknown>, body: Record<string, unknown>) =>
  s.write(`${JSON.stringify({ ...body, id: cmd.id })}\r\n`);

describe("Qmp", () => {
  test("greeting, capabilities, return value, events before the return collected", async () => {
    const seen: string[] = [];
    const path = await qmpServer("ok.sock", (cmd, s) => {
      seen.push(cmd.execute as string);
      if (cmd.execute === "qmp_capabilities") return reply(s, cmd, { return: {} });
      if (cmd.execute === "query-status") {
        s.write('{"event": "RESUME", "data": {}, "timestamp": {"seconds": 1}}\n');
        s.write('{"event": "POWERDOWN", "timestamp": {"seconds": 2}}\n');
        return reply(s, cmd, { return: { status: "running", running: true } });
      }
    });
    const q = await Qmp.connect(path);
    expect(await q.execute("query-status")).toEqual({ status: "running", running: true });
    expect(q.events.map((e) => e.event)).toEqual(["RESUME", "POWERDOWN"]);
    expect(seen).toEqual(["qmp_capabilities", "query-status"]);
    q.close();
  });

  test("an error's desc in one line", async () => {
    const path = await qmpServer("err.sock", (cmd, s) => {
      if (cmd.execute === "qmp_capabilities") return reply(s, cmd, { return: {} });
      reply(s, cmd, { error: { class: "CommandNotFound", desc: "The command nope\nhas not been found" } });
    });
    const q = await Qmp.connect(path);
    await expect(q.execute("nope")).rejects.toThrow(/^QMP nope: The command nope has not been found$/);
    q.close();
  });

  test("bounded: no greeting, no answer, closed socket, nothing listening", async () => {
    const silent = await qmpServer("silent.sock", () => {}, false);
    let t = Date.now();
    await expect(Qmp.connect(silent, 200)).rejects.toThrow(/QMP greeting: no answer in time/);
    expect(Date.now() - t).toBeLessThan(1500);

    const mute = await qmpServer("mute.sock", (cmd, s) => {
      if (cmd.execute === "qmp_capabilities") reply(s, cmd, { return: {} });
    });
    const q = await Qmp.connect(mute);
    t = Date.now();
    await expect(q.execute("query-status", undefined, 200)).rejects.toThrow(
      /QMP query-status: no answer in time/,
    );
    expect(Date.now() - t).toBeLessThan(1500);
    q.close();

    const closer = await qmpServer("closer.sock", (cmd, s) => {
      if (cmd.execute === "qmp_capabilities") return reply(s, cmd, { return: {} });
      s.destroy();
    });
    const q2 = await Qmp.connect(closer);
    await expect(q2.execute("quit")).rejects.toThrow(/QMP connection closed/);

    await expect(Qmp.connect(join(tmp, "absent.sock"), 500)).rejects.toThrow(/absent\.sock: .*ENOENT/);
  });
});

async function tcpServer(onConn: (s: Socket) => void): Promise<number> {
  const srv = createServer(onConn);
  servers.push(srv);
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  return (srv.address() as { port: number }).port;
}

describe("waitReady", () => {
  test("a listener that accepts but never answers (slirp before the guest) is not ready; bounded", async () => {
    const port = await tcpServer(() => {});
    const t = Date.now();
    expect(await waitReady("127.0.0.1", port, 700)).toBe(false);
    const ms = Date.now() - t;
    expect(ms).toBeGreaterThanOrEqual(650);
    expect(ms).toBeLessThan(1200);
  });

  test("a listener that resets is not ready; one that answers after a few resets is", async () => {
    let n = 0;
    const port = await tcpServer((s) => {
      n++;
      if (n <= 3) return s.resetAndDestroy();
      s.once("data", () => s.end("HTTP/1.0 200 OK\r\n\r\nok"));
    });
    expect(await waitReady("127.0.0.1", port, 5000)).toBe(true);
    expect(n).toBe(4);
  });

  test("stop() ends the wait at once", async () => {
    const port = await tcpServer(() => {});
    const t = Date.now();
    expect(await waitReady("127.0.0.1", port, 10_000, () => Date.now() - t > 100)).toBe(false);
    expect(Date.now() - t).toBeLessThan(1000);
  });
});
