// Host ports for routes: the node address default, the free-port probe against real listeners,
// allocation through a real sqlite registry (reuse, skipping taken ports, clear exhaustion error),
// the dry-run preview that keeps nothing, and releasing the ports of dropped routes.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseAgentConfig } from "../../../src/config/agent.ts";
import { openRegistry } from "../../../src/registry/index.ts";
import {
  allocateRoutePorts,
  defaultNodeAddress,
  HostPortError,
  isPortFree,
  previewRoutePorts,
  publishHost,
  routeKey,
  runSpec,
} from "../../../src/roles/agent/host-ports.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-host-ports-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const dbPath = () => join(dir, `r${++n}.db`);
const always = () => true;

async function listen(host = "127.0.0.1"): Promise<{ server: Server; port: number }> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, host, () => resolve());
  });
  return { server, port: (server.address() as { port: number }).port };
}
const close = (s: Server) => new Promise<void>((r) => s.close(() => r()));

describe("node address", () => {
  test("defaults to server.grpc_addr's host when it is one IP of the node", () => {
    expect(defaultNodeAddress("100.95.252.120:9444")).toEqual({ address: "100.95.252.120", fallback: false });
    expect(defaultNodeAddress("[fd7a:115c::1]:9444")).toEqual({ address: "fd7a:115c::1", fallback: false });
    expect(defaultNodeAddress("127.0.0.1:9444")).toEqual({ address: "127.0.0.1", fallback: false });
    expect(defaultNodeAddress("localhost:9444")).toEqual({ address: "127.0.0.1", fallback: false });
  });

  test("falls back to loopback, flagged, for wildcards and host names", () => {
    for (const a of ["0.0.0.0:9444", "[::]:9444", "rift.ts.net:9444"]) {
      expect(defaultNodeAddress(a)).toEqual({ address: "127.0.0.1", fallback: true });
    }
  });

  test("publish host brackets IPv6 only", () => {
    expect(publishHost("10.0.0.5")).toBe("10.0.0.5");
    expect(publishHost("fd00::1")).toBe("[fd00::1]");
  });

  const cfg = (agent: Record<string, unknown>) => ({
    server: { grpc_addr: "100.95.252.120:9444", tls_cert: "/c.pem", tls_key: "/k.pem" },
    mcias: { server_url: "https://mcias.example.net:8443", ca_cert: "", service_name: "mcp-agent" },
    agent,
  });

  test("[agent] address accepts an IP and is optional", () => {
    expect(parseAgentConfig(cfg({ address: "10.1.2.3" }), "a.toml").config.agent.address).toBe("10.1.2.3");
    expect(parseAgentConfig(cfg({ address: "fd00::7" }), "a.toml").config.agent.address).toBe("fd00::7");
    expect(parseAgentConfig(cfg({}), "a.toml").config.agent.address).toBeUndefined();
  });

  test("[agent] address rejects host names and wildcards with one clear line", () => {
    for (const bad of ["rift.ts.net", "0.0.0.0", "::", "10.1.2.3:80", ""]) {
      let err: Error | null = null;
      try {
        parseAgentConfig(cfg({ address: bad }), "a.toml");
      } catch (e) {
        err = e as Error;
      }
      expect(err?.name).toBe("ConfigError");
      expect(err?.message).toContain("agent.address");
      expect(err?.message).toContain("expected this node's IP address");
      expect(err?.message).not.toContain("\n");
    }
  });
});

describe("isPortFree", () => {
  test("false while something listens there, true once it is gone", async () => {
    const { server, port } = await listen();
    expect(isPortFree("127.0.0.1", port)).toBe(false);
    await close(server);
    expect(isPortFree("127.0.0.1", port)).toBe(true);
    // The probe itself released the port: probing again still says free.
    expect(isPortFree("127.0.0.1", port)).toBe(true);
  });

  test("a wildcard listener makes the port taken on loopback too", async () => {
    const { server, port } = await listen("0.0.0.0");
    expect(isPortFree("127.0.0.1", port)).toBe(false);
    await close(server);
  });

  test("an address this host does not have is an error, not 'every port taken'", () => {
    let err: unknown = null;
    try {
      isPortFree("192.0.2.77", 20000); // TEST-NET-1: never assigned to a real host
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostPortError);
    expect((err as Error).message).toBe(
      "node address 192.0.2.77 is not an address of this host (see [agent] address)",
    );
  });
});

describe("allocateRoutePorts", () => {
  const comp = {
    name: "api",
    routes: [{ name: "grpc" }, { name: undefined }],
  };

  test("one port per route key ('' for the unnamed route), reused on the next call", () => {
    const reg = openRegistry(dbPath());
    const a = allocateRoutePorts(reg, "svc", comp, [21000, 21009], "127.0.0.1", always);
    expect([...a]).toEqual([
      ["grpc", 21000],
      ["", 21001],
    ]);
    expect(reg.allocatedPorts("svc").map((p) => [p.route, p.port])).toEqual([
      ["grpc", 21000],
      ["", 21001],
    ]);
    // Reuse does not probe: our own container may be holding the port.
    const b = allocateRoutePorts(reg, "svc", comp, [21000, 21009], "127.0.0.1", () => false);
    expect([...b]).toEqual([...a]);
    expect(routeKey({ name: undefined })).toBe("");
    reg.close();
  });

  test("skips a port that is really in use on the address", async () => {
    const { server, port } = await listen();
    const reg = openRegistry(dbPath());
    const got = allocateRoutePorts(reg, "svc", { name: "web", routes: [{}] }, [port, port + 1], "127.0.0.1");
    expect(got.get("")).toBe(port + 1);
    await close(server);
    reg.close();
  });

  test("an exhausted range names the range, address and route", () => {
    const reg = openRegistry(dbPath());
    allocateRoutePorts(reg, "other", { name: "x", routes: [{}] }, [21100, 21100], "127.0.0.1", always);
    let err: unknown = null;
    try {
      allocateRoutePorts(reg, "svc", comp, [21100, 21100], "127.0.0.1", always);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(HostPortError);
    expect((err as Error).message).toBe(
      "no free host port in 21100-21100 on 127.0.0.1 for svc/api route grpc",
    );
    // Nothing half-allocated for svc.
    expect(reg.allocatedPorts("svc")).toEqual([]);
    reg.close();
  });

  test("releasePorts with keep drops only the routes a definition no longer has", () => {
    const reg = openRegistry(dbPath());
    allocateRoutePorts(reg, "svc", comp, [21200, 21209], "127.0.0.1", always);
    expect(reg.releasePorts("svc", "api", ["grpc"])).toBe(1);
    expect(reg.allocatedPorts("svc").map((p) => p.route)).toEqual(["grpc"]);
    expect(reg.releasePorts("svc", "api", ["grpc"])).toBe(0);
    reg.close();
  });
});

describe("previewRoutePorts", () => {
  test("shows what a deploy would take, distinct across components, and keeps nothing", () => {
    const reg = openRegistry(dbPath());
    allocateRoutePorts(reg, "svc", { name: "old", routes: [{}] }, [21300, 21309], "127.0.0.1", always);
    const plan = previewRoutePorts(
      reg,
      "svc",
      [
        { name: "old", routes: [{}] },
        { name: "a", routes: [{}] },
        { name: "b", routes: [{ name: "grpc" }] },
      ],
      [21300, 21309],
      "127.0.0.1",
      always,
    );
    expect(plan.get("old")?.get("")).toBe(21300);
    expect(plan.get("a")?.get("")).toBe(21301);
    expect(plan.get("b")?.get("grpc")).toBe(21302);
    expect(reg.allocatedPorts("svc").map((p) => p.port)).toEqual([21300]);
    reg.close();
  });

  test("probe errors still surface", () => {
    const reg = openRegistry(dbPath());
    expect(() =>
      previewRoutePorts(reg, "svc", [{ name: "a", routes: [{}] }], [21400, 21401], "192.0.2.77"),
    ).toThrow(HostPortError);
    reg.close();
  });
});

describe("runSpec", () => {
  const fields = {
    name: "api",
    image: "img:v1",
    network: "",
    user: "",
    restart: "",
    ports: ["127.0.0.1:9000:9000"],
    volumes: [],
    env: ["PORT=1", "A=b"],
    cmd: [],
    runtime: "container" as const,
    routes: [],
  };

  test("publishes route ports on the node address beside legacy ports and injects $PORT*", () => {
    const spec = runSpec({ nodeAddress: "10.0.0.5" }, "svc", fields, [
      { name: "grpc", hostPort: 10001 },
      { name: "", hostPort: 10002 },
    ]);
    expect(spec.name).toBe("svc-api");
    expect(spec.ports).toEqual(["127.0.0.1:9000:9000", "10.0.0.5:10001:10001", "10.0.0.5:10002:10002"]);
    expect(spec.env).toEqual(["A=b", "PORT_GRPC=10001", "PORT=10002"]);
  });

  test("loopback without a node address; IPv6 in brackets", () => {
    expect(runSpec({}, "svc", fields, [{ name: "", hostPort: 10002 }]).ports).toContain(
      "127.0.0.1:10002:10002",
    );
    expect(
      runSpec({ nodeAddress: "fd00::1" }, "svc", fields, [{ name: "", hostPort: 10002 }]).ports,
    ).toContain("[fd00::1]:10002:10002");
  });
});
