// fast-check arbitraries for service definitions as the schema produces them (parsed, defaults
// filled): the round-trip properties of the definition file and of every component mapping use them.
import fc from "fast-check";
import {
  type ComponentDef,
  formatPortSpec,
  formatVolumeSpec,
  type RouteDef,
  type ServiceDef,
} from "../../src/config/service.ts";

export const nameArb = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,12}$/);
const anyText = fc.oneof(
  fc.string({ maxLength: 12 }),
  fc.string({ unit: "grapheme", maxLength: 6 }),
  fc.string({ unit: "binary-ascii", maxLength: 8 }),
);
export const opt = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined });
const port = fc.integer({ min: 1, max: 65535 });
const portSpec = fc
  .record(
    {
      hostIp: fc.oneof(fc.ipV4(), fc.ipV6()),
      hostPort: port,
      containerPort: port,
      protocol: fc.constantFrom("tcp" as const, "udp" as const),
    },
    { requiredKeys: ["hostPort", "containerPort"] },
  )
  .map(formatPortSpec);
const absPath = fc
  .array(fc.stringMatching(/^[A-Za-z0-9._-]{1,8}$/), { maxLength: 3 })
  .map((s) => `/${s.join("/")}`);
const volumeSpec = fc
  .record({
    source: fc.oneof(absPath, nameArb),
    target: absPath,
    options: fc.array(fc.constantFrom("ro", "z", "Z", "U"), { maxLength: 2 }),
  })
  .map((v) => formatVolumeSpec({ ...v, kind: "bind" }));
const envEntry = fc
  .tuple(fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,8}$/), anyText)
  .map(([k, v]) => `${k}=${v}`);

/** Drops undefined-valued keys so generated objects look like parsed ones. */
function clean<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as T;
}

const routeArb: fc.Arbitrary<RouteDef> = fc
  .record({
    name: opt(fc.stringMatching(/^[a-z0-9_-]{0,8}$/)),
    port,
    mode: fc.constantFrom("l4" as const, "l7" as const),
    hostname: opt(fc.oneof(fc.constant(""), fc.domain())),
    public: fc.boolean(),
  })
  .map(clean);

export const componentArb: fc.Arbitrary<ComponentDef> = fc
  .record({
    name: nameArb,
    image: fc.stringMatching(/^[a-z0-9][a-z0-9./:@_-]{0,30}$/),
    network: anyText,
    user: anyText,
    restart: fc.constantFrom("no", "always", "unless-stopped", "on-failure", "on-failure:5"),
    ports: fc.uniqueArray(portSpec, { maxLength: 3 }),
    volumes: fc.uniqueArray(volumeSpec, { maxLength: 3 }),
    cmd: fc.array(anyText, { maxLength: 4 }),
    env: fc.array(envEntry, { maxLength: 3 }),
    runtime: fc.constantFrom("container" as const, "unikernel" as const),
    memory: opt(fc.stringMatching(/^[0-9]{1,4}[MG]$/)),
    vcpus: opt(fc.integer({ min: 1, max: 64 })),
    routes: fc.array(routeArb, { maxLength: 3 }).map((rs) => {
      // Route names must be unique within a component, the unnamed route ("" or none) included.
      const seen = new Set<string>();
      return rs.filter((r) => {
        const key = r.name ?? "";
        if (seen.has(key)) return false;
        seen.add(key);
        return true;
      });
    }),
  })
  .map(clean)
  .map(asRunnable);

/**
 * A unikernel component keeps only what a Nanos VM can honour (config/unikernel.ts): user
 * networking when it has ports or routes, no user, bind volumes without options, at least 32 MiB.
 */
const mib = (m: string) => Number(m.slice(0, -1)) * (m.endsWith("G") ? 1024 : 1);

function asRunnable(c: ComponentDef): ComponentDef {
  if (c.runtime !== "unikernel") return c;
  const hasPorts = c.ports.length > 0 || c.routes.length > 0;
  return {
    ...c,
    network: hasPorts ? "user" : c.network === "user" ? "user" : "",
    user: "",
    ports: c.ports.filter((p) => !p.startsWith("[")),
    volumes: [
      ...new Set(
        c.volumes
          .filter((v) => v.startsWith("/"))
          .map((v) => v.split(":").slice(0, 2))
          .filter(([, target]) => target !== "/" && !/(^|\/)\.\.?(\/|$)/.test(target!))
          .map((parts) => parts.join(":")),
      ),
    ],
    ...(c.memory !== undefined && mib(c.memory) < 32 ? { memory: "32M" } : {}),
    ...(c.health?.type === "exec" ? { health: undefined } : {}),
  };
}

export const serviceArb: fc.Arbitrary<ServiceDef> = fc
  .record({
    name: nameArb,
    node: opt(anyText),
    tier: fc.constantFrom("core" as const, "worker" as const),
    active: fc.boolean(),
    build: opt(
      fc
        .record({
          workspace: opt(anyText),
          path: opt(anyText),
          images: fc.dictionary(nameArb, fc.string({ minLength: 1, maxLength: 20 }), { maxKeys: 3 }),
        })
        .map(clean),
    ),
    snapshot: opt(
      fc
        .record({
          method: opt(fc.constantFrom("grpc", "cli", "full", "exec: /usr/local/bin/backup.sh --all")),
          exclude: fc.array(anyText, { maxLength: 3 }),
        })
        .map(clean),
    ),
    components: fc.uniqueArray(componentArb, { selector: (c) => c.name, minLength: 1, maxLength: 3 }),
  })
  .map(clean);
