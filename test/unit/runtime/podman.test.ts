// Pure parts of the podman runtime: argv builders (examples + properties) and the JSON parsers,
// fed with output captured from real podman 4.3.1 on this machine kind.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  DEFAULT_PATH,
  execArgs,
  imageExistsArgs,
  imageIdArgs,
  inspectArgs,
  logsArgs,
  PodmanRuntime,
  parseImageDefaults,
  parseInspect,
  parsePs,
  parseTime,
  psArgs,
  pullArgs,
  restartArgs,
  rmArgs,
  runArgs,
  startArgs,
  stopArgs,
  stopRmArgs,
} from "../../../src/runtime/podman.ts";
import type { ContainerSpec } from "../../../src/runtime/runtime.ts";
import { mapState } from "../../../src/runtime/runtime.ts";
import { bareSpec } from "../../support/containers.ts";

const spec: ContainerSpec = {
  name: "metacrypt-api",
  image: "mcr.svc:8443/metacrypt:v1.7.0",
  network: "mcpnet",
  user: "0:0",
  restart: "unless-stopped",
  memory: "",
  vcpus: 0,
  ports: ["127.0.0.1:18443:8443", "9443:9443"],
  volumes: ["/srv/metacrypt:/srv/metacrypt", "/srv/x:/x:ro"],
  env: ["FOO=bar baz", "EMPTY="],
  cmd: ["server", "--config", "/srv/metacrypt/metacrypt.toml"],
};

describe("argv builders", () => {
  test("execArgs: the container, then the argv as given; flag-like names and empty commands refused", () => {
    expect(execArgs("web-api", ["cat", "/ok file", "-n"])).toEqual([
      "exec",
      "web-api",
      "cat",
      "/ok file",
      "-n",
    ]);
    expect(() => execArgs("-web", ["true"])).toThrow('invalid container name "-web"');
    expect(() => execArgs("web", ["--privileged"])).toThrow('invalid command "--privileged"');
    expect(() => execArgs("web", [])).toThrow("exec needs a command");
  });

  test("runArgs maps every spec field onto its flag, image then cmd at the end", () => {
    expect(runArgs(spec)).toEqual([
      "run",
      "-d",
      "--name",
      "metacrypt-api",
      "--network",
      "mcpnet",
      "--user",
      "0:0",
      "--restart",
      "unless-stopped",
      "-p",
      "127.0.0.1:18443:8443",
      "-p",
      "9443:9443",
      "-v",
      "/srv/metacrypt:/srv/metacrypt",
      "-v",
      "/srv/x:/x:ro",
      "-e",
      "FOO=bar baz",
      "-e",
      "EMPTY=",
      "mcr.svc:8443/metacrypt:v1.7.0",
      "server",
      "--config",
      "/srv/metacrypt/metacrypt.toml",
    ]);
  });

  test("runArgs omits network/user/restart when empty", () => {
    const argv = runArgs(bareSpec(spec.name, spec.image));
    expect(argv).toEqual(["run", "-d", "--name", "metacrypt-api", "mcr.svc:8443/metacrypt:v1.7.0"]);
  });

  test("an owner becomes two labels right after the name; its values are never flags", () => {
    const owned = bareSpec("a-b-c", "img:v1", { owner: { service: "a", component: "b-c" } });
    expect(runArgs(owned)).toEqual([
      "run",
      "-d",
      "--name",
      "a-b-c",
      "--label",
      "mcp.service=a",
      "--label",
      "mcp.component=b-c",
      "img:v1",
    ]);
    expect(() => runArgs({ ...owned, owner: { service: "-x", component: "c" } })).toThrow(
      /invalid owner service "-x"/,
    );
  });

  test("a spec key becomes the mcp.spec label after the owner; inspect reads it and the image id back", () => {
    const keyed = bareSpec("a-b", "img:v1", { owner: { service: "a", component: "b" }, specKey: "0123abcd" });
    expect(runArgs(keyed).slice(4, 10)).toEqual([
      "--label",
      "mcp.service=a",
      "--label",
      "mcp.component=b",
      "--label",
      "mcp.spec=0123abcd",
    ]);
    expect(runArgs({ ...keyed, specKey: "" }).filter((a) => a.startsWith("mcp.spec="))).toEqual([]);
    const labels = { "mcp.service": "a", "mcp.component": "b", "mcp.spec": "0123abcd" };
    const d = parseInspect([
      { Id: "x", Name: "a-b", Image: "c".repeat(64), Config: { Image: "img:v1", Labels: labels }, State: {} },
    ]);
    expect(d.spec.specKey).toBe("0123abcd");
    expect(d.imageId).toBe(`sha256:${"c".repeat(64)}`);
    // Docker reports the prefixed id: the same form.
    expect(
      parseInspect([{ Id: "x", Name: "a-b", Image: `sha256:${"c".repeat(64)}`, State: {} }]).imageId,
    ).toBe(`sha256:${"c".repeat(64)}`);
    // No label, no image: neither field.
    const bare = parseInspect([{ Id: "x", Name: "a-b", Config: { Image: "i" }, State: {} }]);
    expect("specKey" in bare.spec).toBe(false);
    expect("imageId" in bare).toBe(false);
  });

  test("inspect and ps read the owner labels back; other labels, or none, give no owner", () => {
    const inspected = (labels: unknown) =>
      parseInspect([{ Id: "x", Name: "a-b-c", Config: { Image: "i", Labels: labels }, State: {} }]);
    const both = { "mcp.service": "a", "mcp.component": "b-c", "org.opencontainers.x": "y" };
    expect(inspected(both).owner).toEqual({ service: "a", component: "b-c" });
    expect(inspected(both).spec.owner).toEqual({ service: "a", component: "b-c" });
    for (const none of [null, {}, { "org.opencontainers.x": "y" }, { "mcp.service": "" }]) {
      expect(inspected(none).owner).toBeUndefined();
      expect("owner" in inspected(none).spec).toBe(false);
    }
    const ps = (labels: unknown) =>
      parsePs([{ Id: "x", Names: ["a-b-c"], State: "running", Labels: labels }]);
    expect(ps(both)[0]!.owner).toEqual({ service: "a", component: "b-c" });
    expect("owner" in ps(null)[0]!).toBe(false);
  });

  test("positional values that look like flags are refused with one clear line", () => {
    expect(() => runArgs({ ...spec, name: "--privileged" })).toThrow(/invalid container name "--privileged"/);
    expect(() => runArgs({ ...spec, image: "-x" })).toThrow(/invalid image/);
    expect(() => stopArgs("")).toThrow(/invalid container name/);
    expect(() => pullArgs("--all-tags")).toThrow(/invalid image/);
  });

  test("small builders", () => {
    expect(pullArgs("a/b:c")).toEqual(["pull", "--quiet", "a/b:c"]);
    expect(startArgs("x")).toEqual(["start", "x"]);
    expect(stopArgs("x")).toEqual(["stop", "-t", "10", "x"]);
    expect(stopArgs("x", 3)).toEqual(["stop", "-t", "3", "x"]);
    expect(restartArgs("x")).toEqual(["restart", "x"]);
    expect(rmArgs("x")).toEqual(["rm", "x"]);
    expect(rmArgs("x", true)).toEqual(["rm", "-f", "x"]);
    expect(stopRmArgs("x")).toEqual(["rm", "-f", "-t", "10", "--ignore", "x"]);
    expect(stopRmArgs("x", 1.7)).toEqual(["rm", "-f", "-t", "1", "--ignore", "x"]);
    expect(() => stopRmArgs("-x")).toThrow(/invalid container name/);
    expect(inspectArgs("x")).toEqual(["container", "inspect", "x"]);
    expect(imageExistsArgs("i:1")).toEqual(["image", "exists", "i:1"]);
    expect(imageIdArgs("i:1")).toEqual(["image", "inspect", "--format", "{{.Id}}", "i:1"]);
    expect(psArgs()).toEqual(["ps", "-a", "--format", "json"]);
    expect(logsArgs("x", { follow: false })).toEqual(["logs", "x"]);
    expect(logsArgs("x", { follow: true, tail: 50, since: "10m" })).toEqual([
      "logs",
      "--follow",
      "--tail",
      "50",
      "--since",
      "10m",
      "x",
    ]);
  });

  test("the class prepends binary and global args", () => {
    const rt = new PodmanRuntime({ binary: "/usr/bin/podman", globalArgs: ["--runtime", "runc"] });
    expect(rt.argv(psArgs())).toEqual([
      "/usr/bin/podman",
      "--runtime",
      "runc",
      "ps",
      "-a",
      "--format",
      "json",
    ]);
    expect(new PodmanRuntime({ globalArgs: [] }).argv(["ps"])).toEqual(["podman", "ps"]);
    expect(rt.describeRun(spec)).toEqual(["/usr/bin/podman", "--runtime", "runc", ...runArgs(spec)]);
  });
});

// Arbitrary strings including shell metacharacters and spaces: argv must carry them verbatim.
const word = fc.string({ minLength: 1, maxLength: 12 }).filter((s) => !s.startsWith("-"));
const anyStr = fc.string({ maxLength: 16 });
const specArb: fc.Arbitrary<ContainerSpec> = fc.record({
  name: word,
  image: word,
  network: fc.oneof(fc.constant(""), word),
  user: fc.oneof(fc.constant(""), word),
  restart: fc.oneof(fc.constant(""), word),
  memory: fc.constant(""),
  vcpus: fc.constant(0),
  ports: fc.array(anyStr, { maxLength: 4 }),
  volumes: fc.array(anyStr, { maxLength: 4 }),
  env: fc.array(anyStr, { maxLength: 4 }),
  cmd: fc.array(anyStr, { maxLength: 4 }),
});

describe("runArgs properties", () => {
  const runs = { numRuns: 1000 };
  const VALUE_FLAGS = ["--name", "--network", "--user", "--restart", "-p", "-v", "-e"];

  // Reads argv the way podman's flag parser does: a value flag consumes the next element, the
  // first other non-flag element is the image and everything after it is the command.
  function parse(argv: string[]) {
    const flags: [string, string][] = [];
    let i = 1;
    while (i < argv.length) {
      const a = argv[i]!;
      if (VALUE_FLAGS.includes(a)) {
        flags.push([a, argv[i + 1]!]);
        i += 2;
      } else if (a === "-d") i++;
      else break;
    }
    return { flags, image: argv[i], cmd: argv.slice(i + 1) };
  }

  test("every port, volume and env value is the value of its own flag, in order", () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const { flags } = parse(runArgs(s));
        const of = (flag: string) => flags.filter(([f]) => f === flag).map(([, v]) => v);
        expect(of("-p")).toEqual(s.ports);
        expect(of("-v")).toEqual(s.volumes);
        expect(of("-e")).toEqual(s.env);
        expect(of("--name")).toEqual([s.name]);
      }),
      runs,
    );
  });

  test("the image appears exactly once, right before the cmd, and cmd is the exact tail", () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const argv = runArgs(s);
        const parsed = parse(argv);
        expect(argv[0]).toBe("run");
        expect(parsed.image).toBe(s.image);
        expect(parsed.cmd).toEqual(s.cmd);
        expect(argv.slice(argv.length - s.cmd.length)).toEqual(s.cmd);
      }),
      runs,
    );
  });

  test("no element is ever joined with another (length is exactly the sum of parts)", () => {
    fc.assert(
      fc.property(specArb, (s) => {
        const argv = runArgs(s);
        const expected =
          4 +
          (s.network ? 2 : 0) +
          (s.user ? 2 : 0) +
          (s.restart ? 2 : 0) +
          2 * (s.ports.length + s.volumes.length + s.env.length) +
          1 +
          s.cmd.length;
        expect(argv.length).toBe(expected);
        // Every element is a builder literal or verbatim one spec value: nothing is concatenated,
        // quoted or wrapped in a shell.
        const literals = ["run", "-d", "--name", "--network", "--user", "--restart", "-p", "-v", "-e"];
        const values = [
          s.name,
          s.image,
          s.network,
          s.user,
          s.restart,
          ...s.ports,
          ...s.volumes,
          ...s.env,
          ...s.cmd,
        ];
        for (const a of argv) expect(literals.includes(a) || values.includes(a)).toBe(true);
      }),
      runs,
    );
  });
});

// Captured from `podman ps -a --format json` (podman 4.3.1), trimmed to the fields we read.
const PS_JSON = JSON.stringify([
  {
    Command: ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"],
    CreatedAt: "Less than a second ago",
    Exited: false,
    ExitedAt: -62135596800,
    ExitCode: 0,
    Id: "9c8b48afdf09f547cc8dd42575cb70123d534bbeb4c8a594fcc668272ccb7185",
    Image: "localhost/rtx:v1",
    Names: ["rtx1"],
    StartedAt: 1795237268,
    State: "running",
    Created: 1795237268,
  },
  {
    Exited: false,
    ExitedAt: -62135596800,
    ExitCode: 0,
    Id: "aa",
    Image: "localhost/rtx:v1",
    Names: ["rtx3"],
    StartedAt: -62135596800,
    State: "created",
    Created: 1795237306,
  },
  {
    Id: "bb",
    Image: "i",
    Names: ["gone"],
    StartedAt: 1795237000,
    State: "exited",
    ExitCode: 137,
    Created: 1,
  },
  { Id: "cc", Image: "i", Names: ["odd"], State: "removing", ExitCode: 0, Created: 1 },
]);

describe("parsePs", () => {
  test("maps names, states, times and exit codes", () => {
    const list = parsePs(PS_JSON);
    expect(list.map((c) => [c.name, c.state, c.exitCode])).toEqual([
      ["rtx1", "running", null],
      ["rtx3", "stopped", null],
      ["gone", "exited", 137],
      ["odd", "unknown", null],
    ]);
    expect(list[0]!.id).toBe("9c8b48afdf09f547cc8dd42575cb70123d534bbeb4c8a594fcc668272ccb7185");
    expect(list[0]!.image).toBe("localhost/rtx:v1");
    expect(list[0]!.startedAt?.getTime()).toBe(1795237268 * 1000);
    expect(list[1]!.startedAt).toBeNull(); // Go zero time
    expect(list[1]!.createdAt?.getTime()).toBe(1795237306 * 1000);
  });

  test("empty output is an empty list; garbage is one clear error", () => {
    expect(parsePs("")).toEqual([]);
    expect(parsePs("[]\n")).toEqual([]);
    expect(() => parsePs("Error: boom")).toThrow(/cannot parse ps output as JSON/);
    expect(() => parsePs("{}")).toThrow(/not a JSON array/);
  });

  test("state mapping", () => {
    expect(
      ["running", "exited", "stopped", "created", "configured", "paused", "what", ""].map(mapState),
    ).toEqual(["running", "exited", "exited", "stopped", "stopped", "stopped", "unknown", "unknown"]);
  });

  test("parseTime handles unix seconds, RFC 3339 and zero times", () => {
    expect(parseTime(10)?.getTime()).toBe(10_000);
    expect(parseTime(-62135596800)).toBeNull();
    expect(parseTime("0001-01-01T00:00:00Z")).toBeNull();
    expect(parseTime("2026-11-21T05:01:08.675396459Z")?.toISOString()).toBe("2026-11-21T05:01:08.675Z");
    expect(parseTime("nonsense")).toBeNull();
    expect(parseTime(undefined)).toBeNull();
  });
});

// Captured from `podman container inspect` (podman 4.3.1), trimmed to the fields we read.
const INSPECT = [
  {
    Id: "9c8b48afdf09f547cc8dd42575cb70123d534bbeb4c8a594fcc668272ccb7185",
    Created: "2026-11-21T05:01:08.497586482Z",
    Name: "rtx1",
    ImageName: "localhost/rtx:v1",
    Image: "c9e3a099e7ae2647279f0d54a29176a4b7572ec37c877e04ae4532967a3bd96e",
    State: {
      Status: "running",
      Running: true,
      ExitCode: 0,
      StartedAt: "2026-11-21T05:01:08.675396459Z",
      FinishedAt: "0001-01-01T00:00:00Z",
    },
    Mounts: [
      {
        Type: "bind",
        Source: "/tmp/rtx/vol",
        Destination: "/data",
        Options: ["rbind"],
        RW: false,
        Propagation: "rprivate",
      },
    ],
    Config: {
      Hostname: "9c8b48afdf09",
      User: "0:0",
      Env: [DEFAULT_PATH, "TERM=xterm", "container=podman", "FOO=bar", "PORT=8080", "HOSTNAME=9c8b48afdf09"],
      Cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"],
      Image: "localhost/rtx:v1",
      Entrypoint: "",
    },
    HostConfig: {
      Binds: [
        "/tmp/rtx/vol:/data:ro,rprivate,rbind",
        "named:/d2:rw,rprivate,nosuid,nodev,rbind",
        "/a:/b:rw,z,rbind",
      ],
      NetworkMode: "bridge",
      PortBindings: {
        "8080/tcp": [{ HostIp: "127.0.0.1", HostPort: "18099" }],
        "8081/tcp": [{ HostIp: "", HostPort: "18098" }],
        "53/udp": [{ HostIp: "::1", HostPort: "5353" }],
      },
      RestartPolicy: { Name: "unless-stopped", MaximumRetryCount: 0 },
    },
  },
];

describe("parseInspect", () => {
  test("reads the spec back in the same notation runArgs takes", () => {
    const d = parseInspect(JSON.stringify(INSPECT));
    expect(d.id).toBe(INSPECT[0]!.Id);
    expect(d.name).toBe("rtx1");
    expect(d.state).toBe("running");
    expect(d.exitCode).toBeNull();
    expect(d.startedAt?.toISOString()).toBe("2026-11-21T05:01:08.675Z");
    expect(d.createdAt?.toISOString()).toBe("2026-11-21T05:01:08.497Z");
    expect(d.spec).toEqual({
      name: "rtx1",
      image: "localhost/rtx:v1",
      network: "bridge",
      user: "0:0",
      restart: "unless-stopped",
      memory: "",
      vcpus: 0,
      runtime: "container",
      ports: ["127.0.0.1:18099:8080", "18098:8081", "[::1]:5353:53/udp"].sort(),
      volumes: ["/a:/b:z", "/tmp/rtx/vol:/data:ro", "named:/d2"],
      env: ["FOO=bar", "PORT=8080"],
      cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p 8080 -h /www & wait"],
    });
  });

  test("image defaults: image env is dropped, a cmd equal to the image's CMD reads back as []", () => {
    const image = parseImageDefaults(
      JSON.stringify([{ Config: { Env: ["FOO=bar", "LANG=C"], Cmd: INSPECT[0]!.Config.Cmd } }]),
    );
    const d = parseInspect(INSPECT, image);
    expect(d.spec.env).toEqual(["PORT=8080"]);
    expect(d.spec.cmd).toEqual([]);
  });

  test("exited containers carry their exit code; 'no' restart reads as empty; docker names lose '/'", () => {
    const c = structuredClone(INSPECT[0]!) as Record<string, unknown>;
    c["Name"] = "/rtx1";
    c["State"] = { Status: "exited", ExitCode: 3, StartedAt: "2026-11-21T05:01:08Z" };
    (c["HostConfig"] as Record<string, unknown>)["RestartPolicy"] = { Name: "no" };
    (c["HostConfig"] as Record<string, unknown>)["Binds"] = null;
    const d = parseInspect([c]);
    expect(d.name).toBe("rtx1");
    expect(d.state).toBe("exited");
    expect(d.exitCode).toBe(3);
    expect(d.spec.restart).toBe("");
    expect(d.spec.volumes).toEqual(["/tmp/rtx/vol:/data:ro"]); // rebuilt from Mounts
  });

  test("a user-set HOSTNAME or PATH survives; injected ones do not", () => {
    const c = structuredClone(INSPECT[0]!);
    c.Config.Env = ["PATH=/opt/bin", "HOSTNAME=web", "TERM=xterm"];
    expect(parseInspect([c]).spec.env).toEqual(["HOSTNAME=web", "PATH=/opt/bin"]);
  });

  test("empty or foreign JSON fails with one clear line", () => {
    expect(() => parseInspect("[]")).toThrow(/no container object/);
    expect(() => parseInspect("nope")).toThrow(/cannot parse inspect output/);
  });
});
