// healthTarget: the pure mapping from a component record's health declaration to what is checked.
import { describe, expect, test } from "bun:test";
import type { HealthDef } from "../../../src/config/service.ts";
import type { RouteRecord } from "../../../src/registry/types.ts";
import { describeTarget, HealthTargetError, healthTarget } from "../../../src/roles/agent/health-target.ts";

const timing = { intervalMs: 2000, timeoutMs: 2000, retries: 3, startPeriodMs: 0 };
const rec = (health: HealthDef | undefined, ports: string[] = [], routes: RouteRecord[] = []) => ({
  service: "web",
  name: "app",
  health,
  ports,
  routes,
});
const route = (name: string, hostPort: number): RouteRecord => ({
  name,
  port: 443,
  mode: "l4",
  hostname: "",
  public: false,
  hostPort,
});

describe("healthTarget", () => {
  test("route → its host port on the node address", () => {
    const t = healthTarget(
      rec(
        { type: "http", route: "api", path: "/healthz", ...timing },
        [],
        [route("", 10001), route("api", 10002)],
      ),
      "10.0.0.5",
    );
    expect(t).toEqual({ kind: "http", host: "10.0.0.5", port: 10002, path: "/healthz" });
    expect(describeTarget(t)).toBe("http http://10.0.0.5:10002/healthz");
  });

  test("port → the published host port, on its bind address or the node address for wildcards", () => {
    const h: HealthDef = { type: "tcp", port: 80, ...timing };
    expect(healthTarget(rec(h, ["127.0.0.2:18080:80"]), "10.0.0.5")).toEqual({
      kind: "tcp",
      host: "127.0.0.2",
      port: 18080,
      path: "",
    });
    expect(healthTarget(rec(h, ["9000:90", "0.0.0.0:18081:80"]), "10.0.0.5")).toMatchObject({
      host: "10.0.0.5",
      port: 18081,
    });
    expect(healthTarget(rec(h, ["18082:80/udp"]), "10.0.0.5")).toMatchObject({ host: "10.0.0.5", port: 80 });
    expect(healthTarget(rec(h, []), "::1")).toEqual({ kind: "tcp", host: "::1", port: 80, path: "" });
    expect(describeTarget(healthTarget(rec(h, []), "::1"))).toBe("tcp [::1]:80");
  });

  test("http without a path checks /", () => {
    expect(healthTarget(rec({ type: "http", port: 80, ...timing }), "127.0.0.1")).toMatchObject({
      path: "/",
    });
  });

  test("exec → the argv", () => {
    const t = healthTarget(rec({ type: "exec", cmd: ["cat", "/ok"], ...timing }), "127.0.0.1");
    expect(t).toEqual({ kind: "exec", cmd: ["cat", "/ok"] });
    expect(describeTarget(t)).toBe('exec ["cat","/ok"]');
  });

  test("unresolvable declarations throw one line", () => {
    const cases = [
      rec(undefined),
      rec({ type: "tcp", route: "api", ...timing }),
      rec({ type: "tcp", route: "api", ...timing }, [], [route("api", 0)]),
      rec({ type: "exec", ...timing }),
      rec({ type: "tcp", ...timing }),
    ];
    for (const c of cases) {
      let e: unknown;
      try {
        healthTarget(c, "127.0.0.1");
      } catch (x) {
        e = x;
      }
      expect(e).toBeInstanceOf(HealthTargetError);
      expect((e as Error).message).toStartWith("web/app");
    }
  });
});
