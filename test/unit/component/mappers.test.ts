// One component, one shape: a fully populated component (every field the schema has) crosses each
// boundary through its one mapper and comes back unchanged: definition file → wire (proto bytes)
// → registry row (a real SQLite file) → runtime spec (podman argv) → inspect read-back (podman
// 4.3.1's own output for that argv, captured) → export (the file the operator gets back). Random
// components (fast-check) take the round trips that are cheap to run many times.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import fc from "fast-check";
import { parse } from "smol-toml";
import { componentFromContainer, containerName, containerSpec } from "../../../src/component/container.ts";
import { componentKey, defToSpec, specToDef } from "../../../src/component/proto.ts";
import { recordToDef, toComponentInput } from "../../../src/component/registry.ts";
import {
  type ComponentDef,
  parseServiceDef,
  type ServiceDef,
  serviceDefSchema,
  serviceDefToToml,
} from "../../../src/config/service.ts";
import { formatMemorySize, parseMemorySize } from "../../../src/config/specs.ts";
import { ServiceSpecSchema } from "../../../src/gen/mcp/v1/mcp_pb.ts";
import { openRegistry, type Registry } from "../../../src/registry/index.ts";
import { parseDockerInspect } from "../../../src/runtime/docker.ts";
import { parseInspect, runArgs, unappliedLimits } from "../../../src/runtime/podman.ts";
import type { ContainerSpec } from "../../../src/runtime/runtime.ts";
import { componentArb, opt } from "../../support/service-arb.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-component-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const freshRegistry = (): Registry => openRegistry(join(dir, `r${++n}.db`));

// Every component key is written, none at its default. `api` is what the captured fixture ran
// (podman run ... --network mcp-shape-net --memory 64m --cpus 1 ...); `vm` covers the other
// runtime and health kind (tcp; exec is the wire arbitraries' below, a unikernel has no exec),
// with what a unikernel may set: user networking, a baked read-only
// host directory, no user).
const FILE = `
name = "shop"
node = "rift"
tier = "core"
active = true

[snapshot]
method = "exec: /usr/local/bin/dump --all"
exclude = ["cache", "tmp"]

[[components]]
name = "api"
image = "localhost/mcp-shape:v1.2.0"
network = "mcp-shape-net"
user = "65534:65534"
restart = "on-failure:3"
ports = ["127.0.0.1:18443:8443", "19090:9090/udp"]
volumes = ["/tmp/mcp-shape/data:/data:ro", "/tmp/mcp-shape/logs:/logs"]
cmd = ["/bin/sleep", "300"]
env = ["A=1", "LOG=debug"]
runtime = "container"
memory = "64m"
vcpus = 1

[[components.routes]]
name = "grpc"
port = 9443
mode = "l4"

[[components.routes]]
name = "web"
port = 8443
mode = "l7"
hostname = "shop.example.net"
public = true

[components.health]
type = "http"
route = "web"
path = "/healthz"
interval = "5s"
timeout = "1500ms"
retries = 5
start_period = "1m30s"

[[components]]
name = "vm"
image = "mcr.example.net/shop-vm:v2"
network = "user"
restart = "always"
ports = ["127.0.0.1:7000:7000"]
volumes = ["/srv/shop:/srv/shop:ro"]
cmd = ["--serve"]
env = ["EMPTY=", "B=x=y"]
runtime = "unikernel"
memory = "1g"
vcpus = 4

[[components.routes]]
port = 443
mode = "l7"

[components.health]
type = "tcp"
port = 7000
`;

const def = parseServiceDef(parse(FILE), "shop.toml").def;
const api = def.components[0]!;

/** The schema's own key lists, so a field added to it without a test here fails the first test. */
const componentShape = (
  serviceDefSchema as unknown as { shape: { components: { element: { shape: object } } } }
).shape.components.element.shape;

describe("the fully populated component", () => {
  test("sets every key the component schema has, none at its default", () => {
    for (const c of def.components) {
      expect(Object.keys(c).sort()).toEqual(Object.keys(componentShape).sort());
      expect(c.network).not.toBe("");
      // A Nanos VM has no users: the one key a unikernel must leave at its default.
      if (c.runtime !== "unikernel") expect(c.user).not.toBe("");
      expect(c.restart).not.toBe("unless-stopped");
      for (const list of [c.ports, c.volumes, c.cmd, c.env, c.routes]) expect(list.length).toBeGreaterThan(0);
    }
    expect(def.components.map((c) => c.runtime)).toEqual(["container", "unikernel"]);
    expect(api).toMatchObject({ memory: "64m", vcpus: 1 });
    expect(api.health).toEqual({
      type: "http",
      route: "web",
      path: "/healthz",
      intervalMs: 5000,
      timeoutMs: 1500,
      retries: 5,
      startPeriodMs: 90_000,
    });
  });
});

/** Wire round trip as a real call makes it: encode, decode, validate. */
function overTheWire(d: ServiceDef): ServiceDef {
  const bytes = toBinary(ServiceSpecSchema, defToSpec(d));
  return specToDef(fromBinary(ServiceSpecSchema, bytes), "test");
}

/** Registry round trip through a real SQLite file: upsert, read, map back. */
function throughRegistry(reg: Registry, service: string, c: ComponentDef, hostPorts: number[]): ComponentDef {
  reg.upsertService({ name: service, active: true });
  const ports = new Map(c.routes.map((r, i) => [r.name ?? "", hostPorts[i] ?? 0]));
  reg.upsertComponent(
    service,
    toComponentInput(c, { desiredState: "running", version: "v1", hostPort: (k) => ports.get(k) ?? 0 }),
  );
  const rec = reg.getComponent(service, c.name);
  if (!rec) throw new Error("component not stored");
  expect(rec.routes.map((r) => r.hostPort)).toEqual(c.routes.map((_, i) => hostPorts[i] ?? 0));
  return recordToDef(rec);
}

/** What a container can carry of a component: routes and health live in the registry only. */
function containerPart(c: ComponentDef): ComponentDef {
  const { health: _health, ...rest } = c;
  return { ...rest, routes: [] };
}

describe("file ↔ domain", () => {
  test("written back and read again: the same definition, key order included", () => {
    const back = parseServiceDef(parse(serviceDefToToml(def)), "shop.toml").def;
    expect(back).toEqual(def);
    expect(JSON.stringify(back)).toBe(JSON.stringify(def));
  });
});

describe("file: one route per key", () => {
  test("a second unnamed route is refused (it would share the first one's host port and $PORT)", () => {
    const routes = [{ port: 443 }, { name: "", port: 8443 }];
    expect(() =>
      parseServiceDef({ name: "s", components: [{ name: "c", image: "i:v1", routes }] }, "s.toml"),
    ).toThrow(
      "s.toml: components[0].routes[1].name: a second unnamed route (also components[0].routes[0]); give each a name",
    );
  });
});

describe("domain ↔ proto", () => {
  test("every field survives encoding, decoding and the schema's validation", () => {
    const back = overTheWire(def);
    expect(back).toEqual(def);
    expect(JSON.stringify(back)).toBe(JSON.stringify(def));
  });

  test("componentKey tells apart any one changed field and ignores nothing", () => {
    const changes: Partial<ComponentDef>[] = [
      { image: "localhost/mcp-shape:v1.2.1" },
      { network: "other" },
      { user: "0" },
      { restart: "no" },
      { ports: ["127.0.0.1:18444:8443"] },
      { volumes: [] },
      { cmd: ["/bin/sleep", "301"] },
      { env: ["A=2", "LOG=debug"] },
      { runtime: "unikernel" },
      { memory: "65m" },
      { vcpus: 2 },
      { routes: api.routes.slice(1) },
      { health: { ...api.health!, retries: 6 } },
    ];
    expect(new Set(changes.flatMap(Object.keys)).size).toBe(Object.keys(componentShape).length - 1);
    for (const change of changes) expect(componentKey({ ...api, ...change })).not.toBe(componentKey(api));
    expect(componentKey(overTheWire(def).components[0]!)).toBe(componentKey(api));
  });

  test("property: random components and services survive the wire", () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(componentWithHealth, { selector: (c) => c.name, minLength: 1, maxLength: 3 }),
        (cs) => {
          const d: ServiceDef = { name: "svc", tier: "worker", active: true, components: cs };
          expect(overTheWire(d)).toEqual(d);
        },
      ),
      { numRuns: 300 },
    );
  }, 30_000);
});

describe("domain ↔ registry row", () => {
  test("every field survives a real registry, route host ports beside it", () => {
    const reg = freshRegistry();
    try {
      for (const c of def.components) {
        const back = throughRegistry(reg, "shop", c, [20001, 20002]);
        expect(back).toEqual(c);
        expect(JSON.stringify(back)).toBe(JSON.stringify(c));
      }
    } finally {
      reg.close();
    }
  });

  test("property: random components survive a real registry", () => {
    const reg = freshRegistry();
    try {
      fc.assert(
        fc.property(componentWithHealth, (c) => {
          expect(throughRegistry(reg, "svc", c, [10001, 10002, 10003])).toEqual(c);
          reg.deleteService("svc");
        }),
        { numRuns: 200 },
      );
    } finally {
      reg.close();
    }
  }, 30_000);
});

describe("domain → runtime spec", () => {
  test("every container field reaches the spec and the podman argv, memory and cpus included", () => {
    const spec = containerSpec("shop", api);
    expect(spec).toEqual({
      name: "shop-api",
      image: "localhost/mcp-shape:v1.2.0",
      network: "mcp-shape-net",
      user: "65534:65534",
      restart: "on-failure:3",
      ports: ["127.0.0.1:18443:8443", "19090:9090/udp"],
      volumes: ["/tmp/mcp-shape/data:/data:ro", "/tmp/mcp-shape/logs:/logs"],
      env: ["A=1", "LOG=debug"],
      cmd: ["/bin/sleep", "300"],
      memory: "64m",
      vcpus: 1,
      runtime: "container",
    });
    // The argv the captured fixture was made with.
    expect(runArgs(spec)).toEqual([
      "run",
      "-d",
      "--name",
      "shop-api",
      "--network",
      "mcp-shape-net",
      "--user",
      "65534:65534",
      "--restart",
      "on-failure:3",
      "--memory",
      "64m",
      "--cpus",
      "1",
      "-p",
      "127.0.0.1:18443:8443",
      "-p",
      "19090:9090/udp",
      "-v",
      "/tmp/mcp-shape/data:/data:ro",
      "-v",
      "/tmp/mcp-shape/logs:/logs",
      "-e",
      "A=1",
      "-e",
      "LOG=debug",
      "localhost/mcp-shape:v1.2.0",
      "/bin/sleep",
      "300",
    ]);
    expect(containerSpec("vm", { ...api, name: "vm" }).name).toBe(containerName("vm", "vm"));
  });

  test("no limit, no flag; a fractional cpus count is passed as written", () => {
    const plain = containerSpec("shop", { ...api, memory: undefined, vcpus: undefined } as ComponentDef);
    expect(plain).toMatchObject({ memory: "", vcpus: 0 });
    expect(runArgs(plain)).not.toContain("--memory");
    expect(runArgs(plain)).not.toContain("--cpus");
    expect(runArgs({ ...plain, vcpus: 0.5 })).toContain("0.5");
  });
});

const FIXTURE = readFileSync(join(import.meta.dir, "fixtures", "podman-4.3.1-inspect-full.json"), "utf8");

describe("inspect read-back → domain → export", () => {
  test("podman 4.3.1's inspect of the spec reads back as the spec, memory in bytes and NanoCpus included", () => {
    const raw = JSON.parse(FIXTURE)[0];
    expect(raw.HostConfig.Memory).toBe(67108864);
    expect(raw.HostConfig.NanoCpus).toBe(1_000_000_000);
    // podman reports a named network as NetworkMode "bridge"; its name is a key of Networks.
    expect(raw.HostConfig.NetworkMode).toBe("bridge");
    expect(parseInspect(FIXTURE).spec).toEqual(containerSpec("shop", api));
    expect(unappliedLimits(containerSpec("shop", api), parseInspect(FIXTURE).spec)).toEqual([]);
  });

  test("the read-back component is the defined one (what a container carries), valid, and exports unchanged", () => {
    const back = componentFromContainer("api", parseInspect(FIXTURE).spec);
    expect(back).toEqual(containerPart(api));
    const adopted = parseServiceDef({ name: "shop", components: [back] }, "adopt").def;
    expect(adopted.components[0]).toEqual(back);
    // Export: the stored spec goes over the wire (GetServiceSpec) and is written as a file.
    const exported = parseServiceDef(parse(serviceDefToToml(overTheWire(adopted))), "export.toml").def;
    expect(exported.components[0]).toEqual(containerPart(api));
  });

  test("the whole way: file → proto → registry → runtime spec → inspect → export", () => {
    const reg = freshRegistry();
    try {
      const wire = overTheWire(parseServiceDef(parse(FILE), "shop.toml").def);
      const stored = wire.components.map((c) => throughRegistry(reg, "shop", c, [20001, 20002]));
      const spec = containerSpec("shop", stored[0]!);
      expect(runArgs(spec)).toContain("--memory");
      const readBack = componentFromContainer("api", parseInspect(FIXTURE).spec);
      expect(readBack).toEqual(containerPart(stored[0]!));
      // The registry keeps what a container cannot carry; export writes the registry's spec.
      const exported: ServiceDef = {
        ...wire,
        components: [{ ...readBack, routes: stored[0]!.routes, health: stored[0]!.health! }, stored[1]!],
      };
      const file = parseServiceDef(parse(serviceDefToToml(overTheWire(exported))), "export.toml").def;
      expect(file).toEqual(def);
    } finally {
      reg.close();
    }
  });

  test("docker reports the same limits under the same keys", () => {
    const d = parseDockerInspect(
      JSON.stringify([
        {
          Id: "x",
          Name: "/shop-api",
          Config: { Image: "i:v1", Env: [], Cmd: [] },
          HostConfig: { NetworkMode: "default", Memory: 536870912, NanoCpus: 500_000_000 },
          State: { Status: "running" },
        },
      ]),
    );
    expect(d.spec).toMatchObject({ network: "", memory: "512m", vcpus: 0.5 });
  });

  test("a limit the runtime did not apply is named, one line each", () => {
    const spec = containerSpec("shop", api);
    const none = { ...spec, memory: "", vcpus: 0 };
    expect(unappliedLimits(spec, none)).toEqual([
      "--memory 64m (the container has no limit)",
      "--cpus 1 (the container has no limit)",
    ]);
    expect(unappliedLimits(spec, { ...spec, memory: "65536k" })).toEqual([]);
    expect(unappliedLimits({ ...spec, memory: "", vcpus: 0 }, none)).toEqual([]);
  });
});

describe("memory sizes", () => {
  test("binary units, either case; zero is no limit; anything else is refused in one line", () => {
    expect(parseMemorySize("64m")).toBe(67108864);
    expect(parseMemorySize("64M")).toBe(67108864);
    expect(parseMemorySize("1g")).toBe(1024 ** 3);
    expect(parseMemorySize("512k")).toBe(524288);
    expect(parseMemorySize("1000")).toBe(1000);
    expect(parseMemorySize("0")).toBe(0);
    for (const bad of ["", "64 m", "64mb", "1.5g", "-1m", "64x", "m"])
      expect(() => parseMemorySize(bad)).toThrow(/^expected a memory size, a whole number/);
    expect(() =>
      parseServiceDef({ name: "s", components: [{ name: "c", image: "i:v1", memory: "lots" }] }, "s.toml"),
    ).toThrow(
      's.toml: components[0].memory: expected a memory size, a whole number with an optional unit b, k, m or g, such as "64m" or "1g", got "lots"',
    );
  });

  test("property: bytes read back in the shortest exact form, which parses to the same bytes", () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 40 }), (bytes) => {
        const s = formatMemorySize(bytes);
        expect(parseMemorySize(s)).toBe(bytes);
        expect(s).toMatch(/^[1-9][0-9]*[bkmg]$/);
      }),
      { numRuns: 2000 },
    );
    expect(formatMemorySize(67108864)).toBe("64m");
    expect(formatMemorySize(1536 * 1024 * 1024)).toBe("1536m");
  });
});

// ---- arbitraries: the definition file's components, plus a health check ----------------------

const durationMs = fc.integer({ min: 1, max: 3 * 3_600_000 });
const healthFor = (c: ComponentDef): fc.Arbitrary<ComponentDef["health"]> => {
  const common = {
    intervalMs: durationMs,
    timeoutMs: durationMs,
    retries: fc.integer({ min: 1, max: 9 }),
    startPeriodMs: fc.nat(600_000),
  };
  const named = c.routes.map((r) => r.name).filter((x): x is string => x !== undefined && x !== "");
  const target =
    named.length > 0
      ? fc.oneof(
          fc.record({ port: fc.integer({ min: 1, max: 65535 }) }),
          fc.record({ route: fc.constantFrom(...named) }),
        )
      : fc.record({ port: fc.integer({ min: 1, max: 65535 }) });
  const exec = fc.record({
    type: fc.constant("exec" as const),
    ...common,
    cmd: fc.array(fc.string({ minLength: 1, maxLength: 8 }), { minLength: 1, maxLength: 3 }),
  });
  const tcp = fc
    .tuple(fc.record({ type: fc.constant("tcp" as const), ...common }), target)
    .map(([h, t]) => ({ ...h, ...t }));
  // A unikernel has no exec (config/unikernel.ts): its checks are tcp or http.
  return fc.oneof(
    ...(c.runtime === "unikernel" ? [] : [exec]),
    tcp,
    fc
      .tuple(
        fc.record({
          type: fc.constant("http" as const),
          ...common,
          path: fc.stringMatching(/^\/[a-z0-9/]{0,10}$/),
        }),
        target,
      )
      .map(([h, t]) => ({ ...h, ...t })),
  );
};
/**
 * A route's empty name or hostname means the same as none (the unnamed route, the default
 * hostname); the wire and the registry keep one form of it, the absent one.
 */
function canonical(c: ComponentDef): ComponentDef {
  return {
    ...c,
    routes: c.routes.map(({ name, hostname, ...r }) => ({
      ...(name ? { name } : {}),
      ...r,
      ...(hostname ? { hostname } : {}),
    })),
  };
}
const componentWithHealth: fc.Arbitrary<ComponentDef> = componentArb.chain((c) =>
  opt(healthFor(c)).map((health) => canonical(health ? { ...c, health } : c)),
);

// Type-level guard: the spec a component runs as has exactly these keys.
const _specKeys: Record<keyof ContainerSpec, true> = {
  name: true,
  image: true,
  network: true,
  user: true,
  restart: true,
  ports: true,
  volumes: true,
  env: true,
  cmd: true,
  memory: true,
  vcpus: true,
  runtime: true,
  owner: true,
  specKey: true,
};
void _specKeys;
