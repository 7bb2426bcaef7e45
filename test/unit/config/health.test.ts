// [components.health] in definitions: defaults, one-line errors, the TOML round trip and the
// wire round trip (defToSpec/specToDef), so a deploy carries exactly what the file says.
import { describe, expect, test } from "bun:test";
import { parse } from "smol-toml";
import { defToSpec, specToDef } from "../../../src/component/proto.ts";
import { ConfigError } from "../../../src/config/errors.ts";
import { parseDuration } from "../../../src/config/load.ts";
import { formatDuration, parseServiceDef, serviceDefToToml } from "../../../src/config/service.ts";
import { thrown } from "./helpers.ts";

const base = (health: string, routes = "") => `
name = "web"
[[components]]
name = "app"
image = "img:v1"
ports = ["127.0.0.1:18080:80"]
${routes}
[components.health]
${health}
`;

const load = (text: string) => parseServiceDef(parse(text), "web.toml").def;
const err = (text: string) => {
  const e = thrown(() => load(text));
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).not.toContain("\n");
  return e.message;
};

describe("[components.health]", () => {
  test("defaults: interval 2s, timeout 2s, retries 3, start_period 0s, http path /", () => {
    const h = load(base('type = "http"\nport = 80')).components[0]!.health;
    expect(h).toEqual({
      type: "http",
      port: 80,
      path: "/",
      intervalMs: 2000,
      timeoutMs: 2000,
      retries: 3,
      startPeriodMs: 0,
    });
  });

  test("every key set", () => {
    const h = load(
      base(
        'type = "http"\nroute = "api"\npath = "/healthz"\ninterval = "500ms"\ntimeout = "1s"\nretries = 5\nstart_period = "1m30s"',
        '[[components.routes]]\nname = "api"\nport = 8443',
      ),
    ).components[0]!.health;
    expect(h).toEqual({
      type: "http",
      route: "api",
      path: "/healthz",
      intervalMs: 500,
      timeoutMs: 1000,
      retries: 5,
      startPeriodMs: 90_000,
    });
  });

  test("exec takes an argv and no port", () => {
    const h = load(base('type = "exec"\ncmd = ["cat", "/ok"]')).components[0]!.health;
    expect(h).toEqual({
      type: "exec",
      cmd: ["cat", "/ok"],
      intervalMs: 2000,
      timeoutMs: 2000,
      retries: 3,
      startPeriodMs: 0,
    });
  });

  test("bad input is one line naming the key", () => {
    expect(err(base('type = "udp"\nport = 80'))).toContain("components[0].health.type");
    expect(err(base('type = "tcp"'))).toContain('type = "tcp" needs exactly one of port or route');
    expect(err(base('type = "tcp"\nport = 80\nroute = "x"'))).toContain("exactly one of port or route");
    expect(err(base('type = "exec"'))).toContain('needs cmd = ["argv", ...]');
    expect(err(base('type = "exec"\ncmd = ["x"]\nport = 80'))).toContain('port is not used by type = "exec"');
    expect(err(base('type = "tcp"\nport = 80\npath = "/x"'))).toContain('path is only for type = "http"');
    expect(err(base('type = "http"\nport = 80\npath = "x"'))).toContain('expected a path starting with "/"');
    expect(err(base('type = "tcp"\nport = 80\ninterval = "soon"'))).toContain(
      "components[0].health.interval",
    );
    expect(err(base('type = "tcp"\nport = 80\ntimeout = "0s"'))).toContain("expected a duration above 0");
    expect(err(base('type = "tcp"\nport = 80\nretries = 0'))).toContain("retries of at least 1");
    expect(err(base('type = "tcp"\nport = 80\nbogus = 1'))).toContain("bogus");
    expect(err(base('type = "tcp"\nroute = "nope"'))).toContain(
      'components[0].health.route: health route "nope" is not a named route of component "app"',
    );
  });

  test("serviceDefToToml writes it back: load(write(def)) equals def, defaults omitted", () => {
    for (const text of [
      base('type = "http"\nport = 80'),
      base('type = "exec"\ncmd = ["sh", "-c", "test -f /ok"]\nretries = 1\nstart_period = "10s"'),
      base(
        'type = "tcp"\nroute = "api"\ninterval = "1h2m3s4ms"\ntimeout = "250ms"',
        '[[components.routes]]\nname = "api"\nport = 8443',
      ),
    ]) {
      const def = load(text);
      const out = serviceDefToToml(def);
      expect(load(out)).toEqual(def);
    }
    const out = serviceDefToToml(load(base('type = "http"\nport = 80')));
    expect(out).toContain('[components.health]\ntype = "http"\nport = 80\n');
    expect(out).not.toContain("interval");
  });

  test("the wire carries it and validates it like a file", () => {
    const def = load(base('type = "http"\nport = 80\npath = "/h"\nstart_period = "3s"'));
    expect(specToDef(defToSpec(def))).toEqual(def);
    const exec = load(base('type = "exec"\ncmd = ["true"]'));
    expect(specToDef(defToSpec(exec))).toEqual(exec);
    const spec = defToSpec(def);
    spec.components[0]!.health!.interval = "bad";
    expect(thrown(() => specToDef(spec)).message).toContain("components[0].health.interval");
  });

  test("formatDuration is read back exactly by parseDuration", () => {
    for (const ms of [0, 1, 999, 1000, 1500, 60_000, 61_001, 3_600_000, 90_061_001]) {
      expect(parseDuration(formatDuration(ms))).toBe(ms);
    }
    expect(formatDuration(90_000)).toBe("1m30s");
  });
});
