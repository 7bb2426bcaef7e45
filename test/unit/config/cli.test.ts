import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import {
  type CliConfig,
  cliConfigToToml,
  defaultCliConfigPath,
  findNode,
  loadCliConfig,
  writeCliConfig,
} from "../../../src/config/cli.ts";
import { ConfigError } from "../../../src/config/errors.ts";
import { SPEC_EXAMPLE, tempDir, thrown, writeTemp } from "./helpers.ts";

const dir = tempDir();

describe("CLI config", () => {
  test("the SPEC §3.1 example", () => {
    const { config, warnings } = loadCliConfig(writeTemp(dir, SPEC_EXAMPLE));
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      services: { dir: "/home/op/.config/mcp/services" },
      mcias: { server_url: "https://mcias.example.net:8443", ca_cert: "", service_name: "mcp" },
      auth: { token_path: "/home/op/.config/mcp/token" },
      tls: { ca_cert: "/home/op/.config/mcp/ca.pem" },
      master: { address: "rift.example.ts.net:9555", addresses: [] },
      nodes: [
        {
          name: "rift",
          address: "100.95.252.120:9444",
          addresses: ["192.168.88.181:9444"],
          ssh: "rift",
          arch: "amd64",
        },
        { name: "orion", address: "[fd7a:115c::1]:9444", addresses: [], arch: "arm64" },
      ],
    });
    expect(findNode(config, "orion").arch).toBe("arm64");
    expect(thrown(() => findNode(config, "nope", "mcp.toml")).message).toBe(
      'mcp.toml: nodes: no node named "nope" (known: rift, orion)',
    );
  });
  test("empty file: defaults beside the config file; optional sections undefined", () => {
    const f = writeTemp(dir, "", "empty.toml");
    const { config } = loadCliConfig(f);
    expect(config).toEqual({
      services: { dir: join(dir, "services") },
      auth: { token_path: join(dir, "token") },
      nodes: [],
    });
    expect(config.master).toBeUndefined();
    expect(config.mcias).toBeUndefined();
  });
  test("~ and relative paths are resolved", () => {
    const home = process.env["HOME"]!;
    const { config } = loadCliConfig(
      writeTemp(
        dir,
        '[services]\ndir = "~/svc"\n[auth]\ntoken_path = "tok"\npassword_file = "~/pw"\nusername = "op"\n',
      ),
    );
    expect(config.services.dir).toBe(join(home, "svc"));
    expect(config.auth).toEqual({
      token_path: join(dir, "tok"),
      username: "op",
      password_file: join(home, "pw"),
    });
  });
  test("unknown keys are warnings", () => {
    const f = writeTemp(dir, '[services]\ndri = "/x"\n[extra]\na = 1\n');
    const { config, warnings } = loadCliConfig(f);
    expect(config.services.dir).toBe(join(dir, "services"));
    expect(warnings.sort()).toEqual([
      `${f}: extra: unknown key "extra" (ignored)`,
      `${f}: services.dri: unknown key "dri" (ignored; did you mean "dir"?)`,
    ]);
  });
  test("bad values are one-line errors", () => {
    const cases: [string, string][] = [
      [
        '[[nodes]]\nname = "rift"\naddress = "100.95.252.120"\n',
        'nodes[0].address: missing port in address "100.95.252.120"',
      ],
      [
        '[[nodes]]\nname = "rift"\naddress = "h:1"\narch = "x86"\n',
        'nodes[0].arch: expected one of "amd64", "arm64", got "x86"',
      ],
      [
        '[[nodes]]\nname = "a"\naddress = "h:1"\n[[nodes]]\nname = "a"\naddress = "h:2"\n',
        'nodes[1].name: duplicate node name "a"',
      ],
      [
        '[mcias]\nserver_url = "mcias:8443"\n',
        'mcias.server_url: expected an https:// URL, got "mcias:8443"',
      ],
      ["[master]\naddress = 9555\n", "master.address: expected string, got integer"],
    ];
    for (const [text, want] of cases) {
      const f = writeTemp(dir, text);
      const e = thrown(() => loadCliConfig(f));
      expect(e).toBeInstanceOf(ConfigError);
      expect(e.message.startsWith(`${f}: ${want}`)).toBe(true);
      expect(e.message).not.toContain("\n");
    }
  });
  test("writeCliConfig round-trips and is readable", () => {
    const { config } = loadCliConfig(writeTemp(dir, SPEC_EXAMPLE));
    const withAuth: CliConfig = { ...config, auth: { ...config.auth, username: "op", password_file: "/pw" } };
    const out = join(dir, "new", "sub", "mcp.toml");
    writeCliConfig(out, withAuth);
    expect(loadCliConfig(out).config).toEqual(withAuth);
    const text = cliConfigToToml(withAuth);
    expect(text).toContain(
      '[[nodes]]\nname = "rift"\naddress = "100.95.252.120:9444"\naddresses = ["192.168.88.181:9444"]',
    );
    // master fallbacks round-trip too
    const fallback: CliConfig = {
      ...withAuth,
      master: { address: "10.0.0.1:9555", addresses: ["10.0.0.2:9555", "[fd7a::1]:9555"] },
    };
    writeCliConfig(out, fallback);
    expect(loadCliConfig(out).config.master).toEqual(fallback.master);
    expect(cliConfigToToml(fallback)).toContain('addresses = ["10.0.0.2:9555", "[fd7a::1]:9555"]');
    // node removal is a plain array edit
    const fewer = { ...withAuth, nodes: withAuth.nodes.filter((n) => n.name !== "rift") };
    writeCliConfig(out, fewer);
    expect(loadCliConfig(out).config.nodes.map((n) => n.name)).toEqual(["orion"]);
  });
  test("defaultCliConfigPath", () => {
    expect(defaultCliConfigPath({ MCP_CONFIG: "/etc/x.toml", HOME: "/h" })).toBe("/etc/x.toml");
    expect(defaultCliConfigPath({ HOME: "/h" })).toBe("/h/.config/mcp/mcp.toml");
    expect(defaultCliConfigPath({ MCP_CONFIG: "", HOME: "/h" })).toBe("/h/.config/mcp/mcp.toml");
  });
});
