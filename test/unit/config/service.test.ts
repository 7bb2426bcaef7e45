import { describe, expect, test } from "bun:test";
import { chmodSync, readdirSync, readFileSync, statSync } from "node:fs";
import fc from "fast-check";
import { parse } from "smol-toml";
import { ConfigError } from "../../../src/config/errors.ts";
import {
  loadServiceDef,
  parseServiceDef,
  serviceDefToToml,
  setActiveInFile,
} from "../../../src/config/service.ts";
import { serviceArb } from "../../support/service-arb.ts";
import { tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

const FULL = `# metacrypt service
name = "metacrypt"
node = "rift"
tier = "core"
active = true

[build]
workspace = "../"
path = "metacrypt"

[build.images]
metacrypt = "Dockerfile.api"
metacrypt-web = "Dockerfile.web"

[snapshot]
method = "grpc"
exclude = ["layers/"]

[[components]]
name = "api"
image = "mcr.svc.mcp.metacircular.net:8443/metacrypt:v1.2.0"
network = "mcpnet"
user = "0:0"
restart = "unless-stopped"
ports = ["127.0.0.1:18443:8443", "127.0.0.1:19443:9443"]
volumes = ["/srv/metacrypt:/srv/metacrypt"]
cmd = ["server", "--config", "/srv/metacrypt/metacrypt.toml"]
env = ["LOG_LEVEL=debug"]
memory = "512M"
vcpus = 2

[[components.routes]]
name = "rest"
port = 8443
mode = "l7"
hostname = "metacrypt.metacircular.net"
public = true

[[components.routes]]
port = 9443

[[components]]
name = "web"
image = "mcr.svc.mcp.metacircular.net:8443/metacrypt-web:v1.2.0"
`;

const MINIMAL = `name = "mcq"\n[[components]]\nname = "mcq"\nimage = "mcr/mcq:v0.4.0"\n`;

function svcErr(text: string, strict = false): string {
  const f = writeTemp(dir, text, "svc.toml");
  const e = thrown(() => loadServiceDef(f, { strict }));
  expect(e).toBeInstanceOf(ConfigError);
  expect(e.message).not.toContain("\n");
  expect(e.message.startsWith(`${f}: `)).toBe(true);
  return e.message.slice(f.length + 2);
}

describe("loadServiceDef happy path", () => {
  test("full v1+v2 definition", () => {
    const f = writeTemp(dir, FULL);
    const { def, warnings } = loadServiceDef(f);
    expect(warnings).toEqual([]);
    expect(def.name).toBe("metacrypt");
    expect(def.node).toBe("rift");
    expect(def.tier).toBe("core");
    expect(def.build).toEqual({
      workspace: "../",
      path: "metacrypt",
      images: { metacrypt: "Dockerfile.api", "metacrypt-web": "Dockerfile.web" },
    });
    expect(def.snapshot).toEqual({ method: "grpc", exclude: ["layers/"] });
    expect(def.components[0]).toEqual({
      name: "api",
      image: "mcr.svc.mcp.metacircular.net:8443/metacrypt:v1.2.0",
      network: "mcpnet",
      user: "0:0",
      restart: "unless-stopped",
      ports: ["127.0.0.1:18443:8443", "127.0.0.1:19443:9443"],
      volumes: ["/srv/metacrypt:/srv/metacrypt"],
      cmd: ["server", "--config", "/srv/metacrypt/metacrypt.toml"],
      env: ["LOG_LEVEL=debug"],
      runtime: "container",
      memory: "512M",
      vcpus: 2,
      routes: [
        { name: "rest", port: 8443, mode: "l7", hostname: "metacrypt.metacircular.net", public: true },
        { port: 9443, mode: "l4", public: false },
      ],
    });
  });
  test("defaults of a minimal definition", () => {
    const { def } = loadServiceDef(writeTemp(dir, MINIMAL));
    expect(def).toEqual({
      name: "mcq",
      tier: "worker",
      active: true,
      components: [
        {
          name: "mcq",
          image: "mcr/mcq:v0.4.0",
          network: "",
          user: "",
          restart: "unless-stopped",
          ports: [],
          volumes: [],
          cmd: [],
          env: [],
          runtime: "container",
          routes: [],
        },
      ],
    });
  });
  test("untagged and :latest images warn; --strict makes them errors", () => {
    const text = `name = "x"\n[[components]]\nname = "a"\nimage = "mcr:8443/x"\n[[components]]\nname = "b"\nimage = "x:latest"\n`;
    const f = writeTemp(dir, text);
    const { warnings } = loadServiceDef(f);
    expect(warnings).toEqual([
      `${f}: components[0].image: image "mcr:8443/x" has no tag; pin a version tag such as :v1.0.0`,
      `${f}: components[1].image: image "x:latest" uses the :latest tag; pin a version tag such as :v1.0.0`,
    ]);
    expect(svcErr(text, true)).toBe(
      'components[0].image: image "mcr:8443/x" has no tag; pin a version tag (required by --strict)',
    );
  });
});

describe("bad definitions: one line naming file, key and expectation", () => {
  const comp = (extra: string) => `name = "x"\n[[components]]\nname = "api"\nimage = "a:v1"\n${extra}\n`;
  test("malformed TOML names the line", () => {
    expect(svcErr('name = "x"\n[[components]\nname = "a"\n')).toMatch(/^line 2: /);
  });
  test("unknown key in a component", () => {
    expect(svcErr('name = "x"\n[[components]]\nname = "api"\nimagee = "a:v1"\n')).toBe(
      'components[0].imagee: unknown key "imagee" (did you mean "image"?)',
    );
  });
  test("unknown top-level key and unknown route key", () => {
    expect(svcErr(`nodes = "rift"\n${MINIMAL}`)).toBe('nodes: unknown key "nodes" (did you mean "node"?)');
    expect(svcErr(comp("[[components.routes]]\nport = 443\npublc = true"))).toBe(
      'components[0].routes[0].publc: unknown key "publc" (did you mean "public"?)',
    );
  });
  test("bad port spec", () => {
    expect(svcErr(comp('ports = ["8443:8443", "127.0.0.1:8443"]'))).toBe(
      `components[0].ports[1]: host port "127.0.0.1" is not a port number in port spec "127.0.0.1:8443"; expected [ip:]hostPort:containerPort[/tcp|/udp] with ports 1-65535`,
    );
  });
  test("bad volume spec", () => {
    expect(svcErr(comp('volumes = ["srv/x:/srv/x"]'))).toContain('components[0].volumes[0]: source "srv/x"');
  });
  test("missing image", () => {
    expect(svcErr('name = "x"\n[[components]]\nname = "api"\n')).toBe(
      "components[0].image: required key is missing (expected string)",
    );
    expect(svcErr(comp("").replace('image = "a:v1"', 'image = ""'))).toBe(
      "components[0].image: expected a non-empty image reference",
    );
  });
  test("wrong type", () => {
    expect(svcErr('name = "x"\nactive = "yes"\n[[components]]\nname = "a"\nimage = "a:v1"\n')).toBe(
      "active: expected boolean, got string",
    );
    expect(svcErr(comp('ports = "8443:8443"'))).toBe("components[0].ports: expected array, got string");
    expect(svcErr(comp('[[components.routes]]\nport = "443"'))).toBe(
      "components[0].routes[0].port: expected number, got string",
    );
  });
  test("bad names", () => {
    expect(svcErr(MINIMAL.replace('name = "mcq"', 'name = "My_Svc"'))).toBe(
      'name: expected a lowercase name matching [a-z0-9][a-z0-9-]*, got "My_Svc"',
    );
    expect(svcErr(comp("").replace('name = "api"', 'name = "-api"'))).toBe(
      'components[0].name: expected a lowercase name matching [a-z0-9][a-z0-9-]*, got "-api"',
    );
    // A service name is a DNS label: 63 characters fit, 64 do not.
    expect(svcErr(MINIMAL.replace('name = "mcq"', `name = "${"a".repeat(64)}"`))).toBe(
      "name: expected at most 63 characters (a DNS label), got 64",
    );
    const fits = writeTemp(dir, MINIMAL.replace('name = "mcq"', `name = "${"a".repeat(63)}"`));
    expect(loadServiceDef(fits).def.name).toHaveLength(63);
  });
  test("enums, ranges, duplicates, env", () => {
    expect(svcErr(comp('runtime = "docker"'))).toBe(
      'components[0].runtime: expected one of "container", "unikernel", got "docker" (docker is a container engine, chosen per node by [agent] container_runtime)',
    );
    expect(svcErr(comp("[[components.routes]]\nport = 70000"))).toBe(
      "components[0].routes[0].port: expected a port number 1-65535, got 70000",
    );
    expect(svcErr(comp('[[components.routes]]\nport = 443\nmode = "l5"'))).toBe(
      'components[0].routes[0].mode: expected one of "l4", "l7", got "l5"',
    );
    expect(svcErr(`${comp("")}[[components]]\nname = "api"\nimage = "b:v1"\n`)).toBe(
      'components[1].name: duplicate component name "api" (also components[0])',
    );
    expect(svcErr(comp('env = ["LOG LEVEL=1"]'))).toContain("components[0].env[0]: expected KEY=value");
    expect(svcErr(comp('restart = "sometimes"'))).toContain("components[0].restart: expected one of");
    expect(svcErr('name = "x"\n')).toBe("components: required key is missing (expected array)");
  });
});

describe("setActiveInFile", () => {
  const original = `# my service — keep this comment
name = "svc"   # the name
active = true  # desired state

[[components]]
name = "api"
image = "a:v1"
# active = true  (a comment inside a table must not be touched)
`;
  test("rewrites only the active line, keeping comments and mode", () => {
    const f = writeTemp(dir, original, "edit1.toml");
    chmodSync(f, 0o640);
    setActiveInFile(f, false);
    expect(readFileSync(f, "utf8")).toBe(
      original.replace("active = true  # desired", "active = false  # desired"),
    );
    expect(statSync(f).mode & 0o777).toBe(0o640);
    expect(loadServiceDef(f).def.active).toBe(false);
    setActiveInFile(f, true);
    expect(readFileSync(f, "utf8")).toBe(original);
    expect(readdirSync(dir).filter((n) => n.includes(".tmp-"))).toEqual([]);
  });
  test("inserts active after name when absent; keeps CRLF", () => {
    const f = writeTemp(
      dir,
      'name = "svc"\r\n\r\n[[components]]\r\nname = "a"\r\nimage = "a:v1"\r\n',
      "edit2.toml",
    );
    setActiveInFile(f, false);
    expect(readFileSync(f, "utf8")).toBe(
      'name = "svc"\r\nactive = false\r\n\r\n[[components]]\r\nname = "a"\r\nimage = "a:v1"\r\n',
    );
  });
  test("refuses layouts it cannot edit safely", () => {
    const text = 'name = "svc"\nnote = """\nactive = true\n"""\n[[components]]\nname = "a"\nimage = "a:v1"\n';
    const f = writeTemp(dir, text, "edit3.toml");
    const e = thrown(() => setActiveInFile(f, false));
    expect(e).toBeInstanceOf(ConfigError);
    expect(readFileSync(f, "utf8")).toBe(text);
  });
  test("missing file", () => {
    expect(thrown(() => setActiveInFile(`${dir}/none.toml`, true)).message).toBe(
      `${dir}/none.toml: file not found`,
    );
  });
});

// ---- round-trip property ----------------------------------------------------

describe("serviceDefToToml", () => {
  test("property: load(write(def)) deep-equals def", () => {
    fc.assert(
      fc.property(serviceArb, (def) => {
        const text = serviceDefToToml(def);
        const back = parseServiceDef(parse(text), "gen.toml").def;
        expect(back).toEqual(def);
      }),
      { numRuns: 300 },
    );
  });
  test("full example round-trips through a file and stays tidy", () => {
    const { def } = loadServiceDef(writeTemp(dir, FULL));
    const text = serviceDefToToml(def);
    expect(text).not.toContain('restart = "unless-stopped"');
    expect(text).not.toContain('runtime = "podman"');
    expect(text).toContain("active = true");
    const f = writeTemp(dir, text);
    expect(loadServiceDef(f).def).toEqual(def);
    setActiveInFile(f, false);
    expect(loadServiceDef(f).def).toEqual({ ...def, active: false });
  });
});
