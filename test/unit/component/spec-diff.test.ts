// The plan renderer (src/component/spec-diff.ts): the lines an operator reads for a changed image,
// env, port, cmd, health and component, and properties over random definitions: a definition
// against itself has no change; applying the changes of a→b to a's view gives b's view (so the
// diff misses nothing and invents nothing); b→a has the same paths with the kinds swapped; every
// change renders as single lines that start with its path.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parse } from "smol-toml";
import {
  changeJson,
  changePath,
  diffSpecs,
  renderChange,
  renderChanges,
  type SpecChange,
  specView,
} from "../../../src/component/spec-diff.ts";
import { type ComponentDef, parseServiceDef, type ServiceDef } from "../../../src/config/service.ts";
import { componentArb, opt, serviceArb } from "../../support/service-arb.ts";

const def = (toml: string): ServiceDef => parseServiceDef(parse(toml), "test.toml").def;

const BEFORE = def(`
name = "shop"

[[components]]
name = "web"
image = "registry/x:v1"
ports = ["127.0.0.1:8080:80", "127.0.0.1:8443:443"]
cmd = ["sh", "-c", "httpd -f"]
env = ["FOO=a", "OLD=1", "SAME=s"]

[components.health]
type = "http"
port = 80
interval = "2s"

[[components.routes]]
name = "http"
port = 443
mode = "l7"

[[components]]
name = "worker"
image = "registry/w:v1"
`);

const AFTER = def(`
name = "shop"
tier = "core"

[[components]]
name = "web"
image = "registry/x:v2"
ports = ["127.0.0.1:8443:443", "127.0.0.1:8081:80"]
cmd = ["sh", "-c", "httpd -f -v"]
env = ["FOO=b", "SAME=s", "NEW=bar baz"]

[components.health]
type = "http"
port = 80
interval = "5s"
start_period = "1m30s"

[[components.routes]]
name = "http"
port = 8443
mode = "l7"

[[components]]
name = "api"
image = "registry/api:v3"
ports = ["127.0.0.1:9000:9000"]
`);

describe("what the operator reads", () => {
  test("image, ports, cmd, env, health, routes, tier and whole components, one line each", () => {
    expect(renderChanges(diffSpecs(BEFORE, AFTER))).toEqual([
      "  tier: worker -> core",
      "  web.image: registry/x:v1 -> registry/x:v2",
      '  web.ports: - "127.0.0.1:8080:80"',
      '  web.ports: + "127.0.0.1:8081:80"',
      '  web.cmd: ["sh", "-c", "httpd -f"] -> ["sh", "-c", "httpd -f -v"]',
      "  web.env.FOO: a -> b",
      '  web.env.OLD: - removed (was "1")',
      '  web.env.NEW: + "bar baz"',
      "  web.routes.http.port: 443 -> 8443",
      "  web.health.interval: 2s -> 5s",
      "  web.health.start_period: 0s -> 1m30s",
      "  worker: - removed",
      "  api: + added",
      '  api.image: + "registry/api:v3"',
      '  api.restart: + "unless-stopped"',
      '  api.ports: + ["127.0.0.1:9000:9000"]',
      '  api.runtime: + "container"',
    ]);
  });

  test("the same definition has no change; only the order of ports is a change of the whole list", () => {
    expect(diffSpecs(BEFORE, BEFORE)).toEqual([]);
    const swapped: ServiceDef = {
      ...BEFORE,
      components: BEFORE.components.map((c) =>
        c.name === "web" ? { ...c, ports: [...c.ports].reverse() } : c,
      ),
    };
    expect(renderChanges(diffSpecs(BEFORE, swapped), "")).toEqual([
      'web.ports: ["127.0.0.1:8080:80", "127.0.0.1:8443:443"] -> ["127.0.0.1:8443:443", "127.0.0.1:8080:80"]',
    ]);
  });

  test("a variable set twice is compared as the list it is; values with odd characters are quoted", () => {
    const web = BEFORE.components[0]!;
    const twice = { ...BEFORE, components: [{ ...web, env: ["A=1", "A=2"] }] };
    const once = { ...BEFORE, components: [{ ...web, env: ["A=1", "B=line\nbreak"] }] };
    expect(renderChanges(diffSpecs(twice, once), "")).toEqual([
      'web.env: ["A=1", "A=2"] -> {A: "1", B: "line\\nbreak"}',
    ]);
  });

  test("a variable or route named __proto__ is compared like any other", () => {
    const web = BEFORE.components[0]!;
    const plain = { ...BEFORE, components: [{ ...web, env: [] }] };
    const odd = {
      ...BEFORE,
      components: [
        {
          ...web,
          env: ["__proto__=x"],
          routes: [{ name: "__proto__", port: 443, mode: "l4" as const, public: false }],
        },
      ],
    };
    expect(renderChanges(diffSpecs(plain, odd), "")).toEqual([
      'web.env.__proto__: + "x"',
      "web.routes.http: - removed",
      "web.routes.__proto__: + added",
      "web.routes.__proto__.port: + 443",
      'web.routes.__proto__.mode: + "l4"',
      "web.routes.__proto__.public: + false",
    ]);
  });

  test("--json form: path as shown, values as they are", () => {
    const [image, removed, added] = [
      diffSpecs(BEFORE, AFTER).find((c) => changePath(c.path) === "web.image")!,
      diffSpecs(BEFORE, AFTER).find((c) => c.kind === "removed" && c.item)!,
      diffSpecs(BEFORE, AFTER).find((c) => changePath(c.path) === "web.env.NEW")!,
    ];
    expect(changeJson(image)).toEqual({
      path: "web.image",
      kind: "changed",
      from: "registry/x:v1",
      to: "registry/x:v2",
    });
    expect(changeJson(removed)).toEqual({
      path: "web.ports",
      kind: "removed",
      item: true,
      from: "127.0.0.1:8080:80",
    });
    expect(changeJson(added)).toEqual({ path: "web.env.NEW", kind: "added", to: "bar baz" });
  });
});

// ---- properties -------------------------------------------------------------------------------

const durationMs = fc.integer({ min: 0, max: 3_600_000 });
const healthArb = opt(
  fc.record(
    {
      type: fc.constantFrom("tcp" as const, "http" as const, "exec" as const),
      port: fc.integer({ min: 1, max: 65535 }),
      path: fc.constantFrom("/", "/healthz"),
      intervalMs: durationMs,
      timeoutMs: durationMs,
      retries: fc.integer({ min: 1, max: 9 }),
      startPeriodMs: durationMs,
      cmd: fc.array(fc.string({ maxLength: 6 }), { maxLength: 3 }),
    },
    { requiredKeys: ["type", "intervalMs", "timeoutMs", "retries", "startPeriodMs"] },
  ),
);
const componentWithHealth: fc.Arbitrary<ComponentDef> = fc
  .tuple(componentArb, healthArb)
  .map(([c, health]) => (health ? { ...c, health } : c));
const serviceWithHealth: fc.Arbitrary<ServiceDef> = fc
  .tuple(serviceArb, fc.array(componentWithHealth, { minLength: 1, maxLength: 3 }))
  .map(([s, comps]) => ({ ...s, components: dedupe(comps) }));

function dedupe(comps: ComponentDef[]): ComponentDef[] {
  const seen = new Set<string>();
  return comps.filter((c) => !seen.has(c.name) && seen.add(c.name));
}

/** A second definition close to the first: the same components, some replaced in place by random ones. */
const related: fc.Arbitrary<[ServiceDef, ServiceDef]> = serviceWithHealth.chain((a) =>
  fc
    .tuple(
      fc.array(fc.option(componentWithHealth, { nil: undefined }), {
        minLength: a.components.length,
        maxLength: a.components.length,
      }),
      fc.array(componentWithHealth, { maxLength: 1 }),
      fc.boolean(),
      fc.subarray(["image", "env", "ports", "cmd", "health", "routes"] as const),
    )
    .map(([replace, extra, flip, keep]): [ServiceDef, ServiceDef] => {
      const components = a.components.map((c, i) => {
        const r = replace[i];
        if (!r) return c;
        // Keep some fields as they were, so the changes are field by field, not whole components.
        const mixed: ComponentDef = { ...r, name: c.name };
        for (const k of keep) (mixed as unknown as Record<string, unknown>)[k] = c[k];
        return mixed;
      });
      return [
        a,
        { ...a, active: flip ? !a.active : a.active, components: dedupe([...components, ...extra]) },
      ];
    }),
);
const pairs = fc.oneof(related, fc.tuple(serviceWithHealth, serviceWithHealth));

type Plain = Record<string, unknown>;
const isPlain = (v: unknown): v is Plain => typeof v === "object" && v !== null && !Array.isArray(v);

/** A deep copy; objects without a prototype, so a key named `__proto__` stays a key. */
function clone(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(clone);
  if (!isPlain(v)) return v;
  const out = Object.create(null) as Plain;
  for (const [k, x] of Object.entries(v)) set(out, k, clone(x));
  return out;
}

const set = (o: Plain, k: string, v: unknown) =>
  Object.defineProperty(o, k, { value: v, enumerable: true, writable: true, configurable: true });

/** Applies changes to a view (the test's own reading of what each change means). */
function apply(view: Plain, changes: readonly SpecChange[]): Plain {
  const root = clone(view) as Plain;
  for (const c of changes) {
    const parent = c.path.slice(0, -1).reduce<Plain>((o, k) => o[k] as Plain, root);
    const key = c.path.at(-1)!;
    if (c.item && c.kind === "added") (parent[key] as unknown[]).push(c.to);
    else if (c.item) {
      const list = parent[key] as unknown[];
      list.splice(
        list.findIndex((x) => Bun.deepEquals(x, c.from, true)),
        1,
      );
    } else if (c.kind === "removed") delete parent[key];
    else set(parent, key, clone(c.to));
  }
  return root;
}

/** Lists compared as sets are sorted (the diff says what is in them, not where, unless only order changed). */
function norm(v: unknown, key = ""): unknown {
  if (Array.isArray(v)) {
    const items = v.map((x) => norm(x));
    const scalars = items.every((x) => typeof x !== "object" || x === null);
    return scalars && key !== "cmd" ? items.map((x) => JSON.stringify(x)).sort() : items;
  }
  if (isPlain(v)) {
    const out = Object.create(null) as Plain;
    for (const [k, x] of Object.entries(v)) set(out, k, norm(x, k));
    return out;
  }
  return v;
}

describe("properties (fast-check)", () => {
  test("a definition against itself has no change", () => {
    fc.assert(
      fc.property(serviceWithHealth, (d) => {
        expect(diffSpecs(d, structuredClone(d))).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  test("applying the changes of a→b to a's view gives b's view; no change exactly when the views are equal", () => {
    fc.assert(
      fc.property(pairs, ([a, b]) => {
        const changes = diffSpecs(a, b);
        expect(norm(apply(specView(a), changes))).toEqual(norm(specView(b)));
        expect(changes.length === 0).toBe(Bun.deepEquals(specView(a), specView(b)));
      }),
      { numRuns: 400 },
    );
  });

  test("b→a names the same paths as a→b with added and removed swapped", () => {
    const swap = { added: "removed", removed: "added", changed: "changed" } as const;
    const key = (c: SpecChange) => `${c.path.join("\u0000")} ${c.kind} ${c.item === true}`;
    fc.assert(
      fc.property(pairs, ([a, b]) => {
        const forward = diffSpecs(a, b)
          .map((c) => key({ ...c, kind: swap[c.kind] }))
          .sort();
        const back = diffSpecs(b, a).map(key).sort();
        expect(back).toEqual(forward);
      }),
      { numRuns: 300 },
    );
  });

  test("every change renders as single lines that start with its path", () => {
    fc.assert(
      fc.property(pairs, ([a, b]) => {
        for (const c of diffSpecs(a, b)) {
          const lines = renderChange(c);
          expect(lines.length).toBeGreaterThan(0);
          for (const l of lines) {
            expect(l).not.toContain("\n");
            expect(l.startsWith(`${changePath(c.path)}`)).toBe(true);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
