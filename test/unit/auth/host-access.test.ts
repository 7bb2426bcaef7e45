// Issue 16 finding 7: which definition fields are host-level (hostLevelFields over a table,
// including ".." and prefix tricks) and who may deploy them (requireHostAccess).
import { describe, expect, test } from "bun:test";
import {
  hostLevelFields,
  hostPathConfined,
  networkIsConfined,
  requireHostAccess,
} from "../../../src/auth/host-access.ts";
import { AuthError } from "../../../src/auth/identity.ts";
import { parseServiceDef } from "../../../src/config/service.ts";

const def = (component: Record<string, unknown>) =>
  parseServiceDef({ name: "web", components: [{ name: "app", image: "x:v1", ...component }] }, "t").def;

describe("hostLevelFields", () => {
  const SRV = "/srv";
  const table: [string, Record<string, unknown>, string[]][] = [
    // The seed format: an operator's ordinary definition.
    [
      "seed format",
      {
        network: "mcpnet",
        user: "0:0",
        ports: ["127.0.0.1:8443:8443"],
        volumes: ["/srv/web:/srv/web"],
      },
      [],
    ],
    ["default network", { network: "" }, []],
    ["named network", { network: "podman" }, []],
    ["host network", { network: "host" }, ['component app: network = "host"']],
    [
      "another container's namespace",
      { network: "container:db" },
      ['component app: network = "container:db"'],
    ],
    ["a namespace path", { network: "ns:/proc/1/ns/net" }, ['component app: network = "ns:/proc/1/ns/net"']],
    [
      "slirp4netns with host loopback",
      { network: "slirp4netns:allow_host_loopback=true" },
      ['component app: network = "slirp4netns:allow_host_loopback=true"'],
    ],
    ["sub-directory", { volumes: ["/srv/web/data:/data:ro", "/srv/web/:/x"] }, []],
    ["normalised inside", { volumes: ["/srv//web/./data:/data"] }, []],
    ["the root", { volumes: ["/:/host"] }, ['component app: volume "/:/host" (host path outside /srv/web/)']],
    [
      "srv_root itself",
      { volumes: ["/srv:/srv"] },
      ['component app: volume "/srv:/srv" (host path outside /srv/web/)'],
    ],
    [
      "a sibling sharing the prefix",
      { volumes: ["/srv/web2:/d"] },
      ['component app: volume "/srv/web2:/d" (host path outside /srv/web/)'],
    ],
    [
      ".. out",
      { volumes: ["/srv/web/../mcp:/d"] },
      ['component app: volume "/srv/web/../mcp:/d" (host path outside /srv/web/)'],
    ],
    [
      ".. that stays inside lexically (a symlink `a` would make a/.. leave)",
      { volumes: ["/srv/web/a/../b:/d"] },
      ['component app: volume "/srv/web/a/../b:/d" (host path outside /srv/web/)'],
    ],
    [
      "named volume",
      { volumes: ["pgdata:/var/lib/pg"] },
      ['component app: volume "pgdata:/var/lib/pg" (a named volume, not under <srv_root>/web/)'],
    ],
    ["loopback ports", { ports: ["127.0.0.1:8080:80", "[::1]:8081:80/udp"] }, []],
    ["a named interface address", { ports: ["100.64.0.5:8080:80"] }, []],
    [
      "no bind address",
      { ports: ["8080:80"] },
      ['component app: port "8080:80" (no bind address: every interface)'],
    ],
    [
      "wildcard bind addresses",
      { ports: ["0.0.0.0:8080:80", "[::]:8081:80"] },
      [
        'component app: port "0.0.0.0:8080:80" (no bind address: every interface)',
        'component app: port "[::]:8081:80" (no bind address: every interface)',
      ],
    ],
    [
      "0.0.0.0 mapped into IPv6 (podman binds every interface)",
      { ports: ["[::ffff:0:0]:8080:80", "[0:0:0:0:0:ffff:0:0]:8081:80"] },
      [
        'component app: port "[::ffff:0:0]:8080:80" (no bind address: every interface)',
        'component app: port "[0:0:0:0:0:ffff:0:0]:8081:80" (no bind address: every interface)',
      ],
    ],
  ];
  for (const [name, comp, want] of table) {
    test(name, () => {
      expect(hostLevelFields(def(comp), SRV)).toEqual(want);
    });
  }

  test("every field of every component, in file order", () => {
    const d = parseServiceDef(
      {
        name: "web",
        components: [
          { name: "a", image: "x:v1", network: "host", volumes: ["/etc:/etc"] },
          { name: "b", image: "x:v1", ports: ["9000:9000"] },
        ],
      },
      "t",
    ).def;
    expect(hostLevelFields(d, "/srv/")).toEqual([
      'component a: network = "host"',
      'component a: volume "/etc:/etc" (host path outside /srv/web/)',
      'component b: port "9000:9000" (no bind address: every interface)',
    ]);
  });

  test("the service directory follows srv_root", () => {
    expect(hostLevelFields(def({ volumes: ["/data/srv/web/x:/x"] }), "/data/srv")).toEqual([]);
    expect(hostLevelFields(def({ volumes: ["/srv/web:/x"] }), "/data/srv")).toHaveLength(1);
  });

  test("helpers", () => {
    expect(networkIsConfined("host")).toBe(false);
    expect(networkIsConfined("mcpnet")).toBe(true);
    expect(hostPathConfined("/srv/web", "/srv", "web")).toBe(true);
    expect(hostPathConfined("/srv/web/..", "/srv", "web")).toBe(false);
    expect(hostPathConfined("/srv/webx", "/srv", "web")).toBe(false);
  });
});

describe("requireHostAccess", () => {
  const fields = ['component app: network = "host"'];
  const user = { name: "bob", roles: ["user"] };
  const admin = { name: "alice", roles: ["admin"] };

  test("a user is refused with one line naming the field; an admin passes", () => {
    let err: unknown;
    try {
      requireHostAccess(user, "web", fields);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(AuthError);
    expect((err as AuthError).code).toBe("permission_denied");
    expect((err as AuthError).message).toBe(
      'service web: component app: network = "host": host-level access needs an admin (bob is not one; or [auth] host_access = "operators" in the config)',
    );
    expect((err as AuthError).message).not.toContain("\n");
    expect(() => requireHostAccess(admin, "web", fields)).not.toThrow();
  });

  test('host_access = "operators" lets a user; no fields need nothing', () => {
    expect(() => requireHostAccess(user, "web", fields, "operators")).not.toThrow();
    expect(() => requireHostAccess(user, "web", [])).not.toThrow();
  });
});
