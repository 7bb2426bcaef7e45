// Pure parts of the docker runtime: argv builders and the parsers, fed with output captured from
// a real Docker engine (Debian docker.io 20.10.24, driven by its own 20.10 client and by a 28.2
// client) on this machine kind. Inspect captures are trimmed to the fields the parsers read.
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: captured shell commands contain ${PORT:-8080}
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseAgentConfig } from "../../../src/config/agent.ts";
import { buildRuntime } from "../../../src/roles/agent/daemon.ts";
import {
  cleanDockerStderr,
  DockerRuntime,
  dockerImageExistsArgs,
  dockerPsArgs,
  dockerPullArgs,
  dockerStartTimesArgs,
  dockerVersionArgs,
  parseDockerInspect,
  parseDockerPs,
  parseDockerTime,
  parseStartTimes,
} from "../../../src/runtime/docker.ts";
import { PodmanRuntime, parseImageDefaults, runArgs } from "../../../src/runtime/podman.ts";
import type { ContainerInfo, ContainerSpec } from "../../../src/runtime/runtime.ts";

// `docker ps -a --no-trunc --format '{{json .}}'` (20.10 client): one object per line.
const PS_2010 = [
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"91a3d9fd1b226262100b9b47f1f9728606cf0dc494a21a9196d0d78827e49333","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-link","Networks":"bridge","Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up Less than a second"}',
  '{"Command":"\\"/bin/sh -c \'exit 3\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"155b67b9f40b27c0c2a6333c94e70a0cf61d48cdb0e1aed62ad7f7accb0f0dff","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-exit","Networks":"bridge","Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"exited","Status":"Exited (3) Less than a second ago"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"8c3e26989ad62e979157b54213fa2065f2a9da858bbe7d265dfe65762987900e","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-created","Networks":"bridge","Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"created","Status":"Created"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"6f9e729edfbd38d00b7c87733f9dea964a4d6e2630559f91b3658fcb3e823288","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-def,cap-link/alias","Networks":"bridge","Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up 1 second"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; sleep 100 \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:47 +0000 UTC","ID":"433cde0d3bba61703419c7f853202dfa77a624a1d745d111545d6ed717b2b589","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"1","Mounts":"/tmp,capvol","Names":"cap-web","Networks":"bridge","Ports":"0.0.0.0:9443-\\u003e9443/udp, :::9443-\\u003e9443/udp, 127.0.0.1:18443-\\u003e8080/tcp","RunningFor":"2 seconds ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up 1 second"}',
].join("\n");
// The same containers through the 28.2 client (adds "Platform", brackets IPv6 in Ports).
const PS_28 = [
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"91a3d9fd1b226262100b9b47f1f9728606cf0dc494a21a9196d0d78827e49333","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-link","Networks":"bridge","Platform":null,"Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up Less than a second"}',
  '{"Command":"\\"/bin/sh -c \'exit 3\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"155b67b9f40b27c0c2a6333c94e70a0cf61d48cdb0e1aed62ad7f7accb0f0dff","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-exit","Networks":"bridge","Platform":null,"Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"exited","Status":"Exited (3) Less than a second ago"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"8c3e26989ad62e979157b54213fa2065f2a9da858bbe7d265dfe65762987900e","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-created","Networks":"bridge","Platform":null,"Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"created","Status":"Created"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; httpd -f -p ${PORT:-8080} -h /www \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:48 +0000 UTC","ID":"6f9e729edfbd38d00b7c87733f9dea964a4d6e2630559f91b3658fcb3e823288","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"0","Mounts":"","Names":"cap-def,cap-link/alias","Networks":"bridge","Platform":null,"Ports":"","RunningFor":"1 second ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up 1 second"}',
  '{"Command":"\\"/bin/sh -c \'trap \'exit 0\' TERM; sleep 100 \\u0026 wait\'\\"","CreatedAt":"2026-11-21 05:39:47 +0000 UTC","ID":"433cde0d3bba61703419c7f853202dfa77a624a1d745d111545d6ed717b2b589","Image":"localhost/mcp-test-busybox:v1.0.0","Labels":"","LocalVolumes":"1","Mounts":"/tmp,capvol","Names":"cap-web","Networks":"bridge","Platform":null,"Ports":"0.0.0.0:9443-\\u003e9443/udp, [::]:9443-\\u003e9443/udp, 127.0.0.1:18443-\\u003e8080/tcp","RunningFor":"2 seconds ago","Size":"0B (virtual 1.98MB)","State":"running","Status":"Up 1 second"}',
].join("\n");
// `docker container inspect --format '{{.Id}} {{.State.StartedAt}}' <running ids>`
const TIMES = `91a3d9fd1b226262100b9b47f1f9728606cf0dc494a21a9196d0d78827e49333 2026-11-21T05:39:48.864132756Z
6f9e729edfbd38d00b7c87733f9dea964a4d6e2630559f91b3658fcb3e823288 2026-11-21T05:39:48.254934742Z
433cde0d3bba61703419c7f853202dfa77a624a1d745d111545d6ed717b2b589 2026-11-21T05:39:48.036252345Z
`;

const INSPECT_WEB = [
  {
    Id: "433cde0d3bba61703419c7f853202dfa77a624a1d745d111545d6ed717b2b589",
    Created: "2026-11-21T05:39:47.831032997Z",
    State: {
      Status: "running",
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 20536,
      ExitCode: 0,
      Error: "",
      StartedAt: "2026-11-21T05:39:48.036252345Z",
      FinishedAt: "0001-01-01T00:00:00Z",
    },
    Image: "sha256:359535f88f4220c762544e008d95ef689477e5a906f79dfd09e49740d541084a",
    Name: "/cap-web",
    Config: {
      Hostname: "433cde0d3bba",
      User: "0:0",
      Env: ["FOO=bar baz", "EMPTY="],
      Cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100 & wait"],
      Image: "localhost/mcp-test-busybox:v1.0.0",
      Entrypoint: null,
    },
    HostConfig: {
      Binds: ["/tmp:/data:ro", "capvol:/nv"],
      NetworkMode: "default",
      PortBindings: {
        "8080/tcp": [
          {
            HostIp: "127.0.0.1",
            HostPort: "18443",
          },
        ],
        "9443/udp": [
          {
            HostIp: "",
            HostPort: "9443",
          },
        ],
      },
      RestartPolicy: {
        Name: "unless-stopped",
        MaximumRetryCount: 0,
      },
    },
    Mounts: [
      {
        Type: "bind",
        Source: "/tmp",
        Destination: "/data",
        Mode: "ro",
        RW: false,
        Propagation: "rslave",
      },
      {
        Type: "volume",
        Name: "capvol",
        Source: "/tmp/mcp-dockerd-vhFTDP/data/volumes/capvol/_data",
        Destination: "/nv",
        Driver: "local",
        Mode: "z",
        RW: true,
        Propagation: "",
      },
    ],
  },
];
const INSPECT_DEFAULT = [
  {
    Id: "6f9e729edfbd38d00b7c87733f9dea964a4d6e2630559f91b3658fcb3e823288",
    Created: "2026-11-21T05:39:48.069122043Z",
    State: {
      Status: "running",
      Running: true,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 20603,
      ExitCode: 0,
      Error: "",
      StartedAt: "2026-11-21T05:39:48.254934742Z",
      FinishedAt: "0001-01-01T00:00:00Z",
    },
    Image: "sha256:359535f88f4220c762544e008d95ef689477e5a906f79dfd09e49740d541084a",
    Name: "/cap-def",
    Config: {
      Hostname: "6f9e729edfbd",
      User: "",
      Env: null,
      Cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT:-8080} -h /www & wait"],
      Image: "localhost/mcp-test-busybox:v1.0.0",
      Entrypoint: null,
    },
    HostConfig: {
      Binds: null,
      NetworkMode: "default",
      PortBindings: {},
      RestartPolicy: {
        Name: "no",
        MaximumRetryCount: 0,
      },
    },
    Mounts: [],
  },
];
const INSPECT_EXITED = [
  {
    Id: "155b67b9f40b27c0c2a6333c94e70a0cf61d48cdb0e1aed62ad7f7accb0f0dff",
    Created: "2026-11-21T05:39:48.310569639Z",
    State: {
      Status: "exited",
      Running: false,
      Paused: false,
      Restarting: false,
      OOMKilled: false,
      Dead: false,
      Pid: 0,
      ExitCode: 3,
      Error: "",
      StartedAt: "2026-11-21T05:39:48.483950844Z",
      FinishedAt: "2026-11-21T05:39:48.48329323Z",
    },
    Image: "sha256:359535f88f4220c762544e008d95ef689477e5a906f79dfd09e49740d541084a",
    Name: "/cap-exit",
    Config: {
      Hostname: "155b67b9f40b",
      User: "",
      Env: null,
      Cmd: ["/bin/sh", "-c", "exit 3"],
      Image: "localhost/mcp-test-busybox:v1.0.0",
      Entrypoint: null,
    },
    HostConfig: {
      Binds: null,
      NetworkMode: "default",
      PortBindings: {},
      RestartPolicy: {
        Name: "no",
        MaximumRetryCount: 0,
      },
    },
    Mounts: [],
  },
];
const IMAGE = [
  {
    Id: "sha256:359535f88f4220c762544e008d95ef689477e5a906f79dfd09e49740d541084a",
    Config: {
      Env: null,
      Cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; httpd -f -p ${PORT:-8080} -h /www & wait"],
    },
  },
];

const IDS = {
  link: "91a3d9fd1b226262100b9b47f1f9728606cf0dc494a21a9196d0d78827e49333",
  exit: "155b67b9f40b27c0c2a6333c94e70a0cf61d48cdb0e1aed62ad7f7accb0f0dff",
  created: "8c3e26989ad62e979157b54213fa2065f2a9da858bbe7d265dfe65762987900e",
  def: "6f9e729edfbd38d00b7c87733f9dea964a4d6e2630559f91b3658fcb3e823288",
  web: "433cde0d3bba61703419c7f853202dfa77a624a1d745d111545d6ed717b2b589",
};
const IMG = "localhost/mcp-test-busybox:v1.0.0";

describe("argv builders", () => {
  test("ps lists every container, full ids, one JSON object per line and the owner labels as JSON strings", () => {
    expect(dockerPsArgs()).toEqual([
      "ps",
      "-a",
      "--no-trunc",
      "--format",
      '{{json .}}\t{{json (.Label "mcp.service")}}\t{{json (.Label "mcp.component")}}',
    ]);
  });
  test("start times: one container inspect over all ids", () => {
    expect(dockerStartTimesArgs(["a", "b"])).toEqual([
      "container",
      "inspect",
      "--format",
      "{{.Id}} {{.State.StartedAt}}",
      "a",
      "b",
    ]);
  });
  test("image exists, pull, version", () => {
    expect(dockerImageExistsArgs("x:1")).toEqual(["image", "inspect", "--format", "{{.Id}}", "x:1"]);
    expect(dockerPullArgs("x:1")).toEqual(["pull", "-q", "x:1"]);
    expect(dockerVersionArgs()).toEqual(["version", "--format", "{{.Server.Version}}"]);
  });
  test("values that would read as flags are refused", () => {
    expect(() => dockerPullArgs("--all-tags")).toThrow(/must be non-empty and not start with "-"/);
    expect(() => dockerImageExistsArgs("")).toThrow(/must be non-empty/);
    expect(() => dockerStartTimesArgs(["-f"])).toThrow(/container id/);
  });
  test("run uses the podman argv shape, prefixed with the docker binary and its global flags", () => {
    const rt = new DockerRuntime({ binary: "/usr/bin/docker", globalArgs: ["-H", "unix:///d.sock"] });
    const spec: ContainerSpec = {
      name: "svc-web",
      image: IMG,
      network: "mcpnet",
      user: "0:0",
      restart: "unless-stopped",
      memory: "",
      vcpus: 0,
      ports: ["127.0.0.1:18443:8443"],
      volumes: ["/srv/svc:/srv/svc"],
      env: ["A=b"],
      cmd: ["serve"],
    };
    expect(rt.engine).toBe("docker");
    expect(rt.describeRun(spec)).toEqual(["/usr/bin/docker", "-H", "unix:///d.sock", ...runArgs(spec)]);
  });
});

describe("parseDockerTime", () => {
  test("ps's Go time.String form and RFC 3339 both parse", () => {
    expect(parseDockerTime("2026-11-21 05:39:48 +0000 UTC")?.toISOString()).toBe("2026-11-21T05:39:48.000Z");
    expect(parseDockerTime("2026-11-21 07:39:48 +0200 CEST")?.toISOString()).toBe("2026-11-21T05:39:48.000Z");
    expect(parseDockerTime("2026-11-21 05:39:48.123456 -0130 X")?.toISOString()).toBe(
      "2026-11-21T07:09:48.123Z",
    );
    expect(parseDockerTime("2026-11-21T05:39:48.864132756Z")?.toISOString()).toBe("2026-11-21T05:39:48.864Z");
  });
  test("empty, zero and garbage are null", () => {
    expect(parseDockerTime("")).toBeNull();
    expect(parseDockerTime("0001-01-01T00:00:00Z")).toBeNull();
    expect(parseDockerTime("yesterday")).toBeNull();
    expect(parseDockerTime(undefined)).toBeNull();
  });
  test("any ps-style time round-trips to the same instant (property)", () => {
    fc.assert(
      fc.property(
        fc.date({
          min: new Date("1971-01-01T00:00:00Z"),
          max: new Date("2200-01-01T00:00:00Z"),
          noInvalidDate: true,
        }),
        fc.integer({ min: -14 * 60, max: 14 * 60 }),
        (d, offMin) => {
          const whole = new Date(Math.floor(d.getTime() / 1000) * 1000);
          const local = new Date(whole.getTime() + offMin * 60_000).toISOString();
          const sign = offMin < 0 ? "-" : "+";
          const abs = Math.abs(offMin);
          const off = `${sign}${String(Math.floor(abs / 60)).padStart(2, "0")}${String(abs % 60).padStart(2, "0")}`;
          const s = `${local.slice(0, 10)} ${local.slice(11, 19)} ${off} ZZZ`;
          expect(parseDockerTime(s)?.getTime()).toBe(whole.getTime());
        },
      ),
      { numRuns: 500 },
    );
  });
});

describe("parseDockerPs", () => {
  const expected: Pick<ContainerInfo, "id" | "name" | "state" | "exitCode">[] = [
    { id: IDS.link, name: "cap-link", state: "running", exitCode: null },
    { id: IDS.exit, name: "cap-exit", state: "exited", exitCode: 3 },
    { id: IDS.created, name: "cap-created", state: "stopped", exitCode: null },
    // Linked: Names is "cap-def,cap-link/alias"; the alias entry is not a name.
    { id: IDS.def, name: "cap-def", state: "running", exitCode: null },
    { id: IDS.web, name: "cap-web", state: "running", exitCode: null },
  ];
  for (const [label, out] of [
    ["20.10 client", PS_2010],
    ["28.2 client", PS_28],
  ] as const) {
    test(`real output (${label}) maps onto ContainerInfo`, () => {
      const list = parseDockerPs(out);
      expect(list.map((c) => ({ id: c.id, name: c.name, state: c.state, exitCode: c.exitCode }))).toEqual(
        expected,
      );
      expect(list.every((c) => c.image === IMG)).toBe(true);
      expect(list.every((c) => c.startedAt === null)).toBe(true); // filled in by list()
      expect(list[4]!.createdAt?.toISOString()).toBe("2026-11-21T05:39:47.000Z");
      expect(list[0]!.createdAt?.toISOString()).toBe("2026-11-21T05:39:48.000Z");
    });
  }
  test("no containers is an empty list; trailing newlines are fine", () => {
    expect(parseDockerPs("")).toEqual([]);
    expect(parseDockerPs("\n\n")).toEqual([]);
    expect(parseDockerPs(`${PS_2010}\n`)).toHaveLength(5);
  });
  test("owner labels come from their own .Label fields, never from the Labels list (k=v,k=v); none, no owner", () => {
    const line = (labels: string, service?: string, component?: string) =>
      [
        JSON.stringify({ ID: "x", Names: "a-b-c", Image: "i", State: "running", Labels: labels }),
        ...(service === undefined ? [] : [JSON.stringify(service), JSON.stringify(component)]),
      ].join("\t");
    expect(parseDockerPs(line("x=1,mcp.component=b-c,mcp.service=a", "a", "b-c"))[0]!.owner).toEqual({
      service: "a",
      component: "b-c",
    });
    expect("owner" in parseDockerPs(line("", "", ""))[0]!).toBe(false);
    expect("owner" in parseDockerPs(line("maintainer=x", "", ""))[0]!).toBe(false);
    // Security review 16: a label value "a,mcp.service=victim" is not a second owner label.
    expect("owner" in parseDockerPs(line("x=a,mcp.service=victim", "", ""))[0]!).toBe(false);
    expect(parseDockerPs(line("x=a,mcp.service=victim,mcp.service=mine", "mine", "api"))[0]!.owner).toEqual({
      service: "mine",
      component: "api",
    });
    // The row alone (no label fields) has no owner, whatever its Labels string says.
    expect("owner" in parseDockerPs(line("mcp.service=a,mcp.component=b"))[0]!).toBe(false);
    expect(() => parseDockerPs(`${line("", "a", "b")}\t"c"`)).toThrow(/4 tab-separated fields/);
    expect(() => parseDockerPs(`${line("")}\tnull\t""`)).toThrow(/bad label field/);
  });
  test("non-JSON or an array fails with one clear line", () => {
    expect(() => parseDockerPs("Cannot connect to the Docker daemon")).toThrow(
      /cannot parse docker ps output as JSON/,
    );
    expect(() => parseDockerPs("[]")).toThrow(/not a JSON object per line/);
  });
  test("exit codes come from Status only for exited containers", () => {
    const line = (state: string, status: string) =>
      JSON.stringify({ ID: "x", Names: "n", Image: "i", State: state, Status: status, CreatedAt: "" });
    expect(parseDockerPs(line("exited", "Exited (137) 3 seconds ago"))[0]!.exitCode).toBe(137);
    expect(parseDockerPs(line("exited", "Exited (0) About a minute ago"))[0]!.exitCode).toBe(0);
    expect(parseDockerPs(line("running", "Up 3 seconds"))[0]!.exitCode).toBeNull();
    expect(parseDockerPs(line("paused", "Up 3 seconds (Paused)"))[0]!.state).toBe("stopped");
    expect(parseDockerPs(line("restarting", "Restarting (1) 2 seconds ago"))[0]!.state).toBe("unknown");
  });
});

describe("parseStartTimes", () => {
  test("real output maps id → start time", () => {
    const t = parseStartTimes(TIMES);
    expect([...t.keys()]).toEqual([IDS.link, IDS.def, IDS.web]);
    expect(t.get(IDS.web)?.toISOString()).toBe("2026-11-21T05:39:48.036Z");
  });
  test("empty output is an empty map; a zero time is null", () => {
    expect(parseStartTimes("").size).toBe(0);
    expect(parseStartTimes("abc 0001-01-01T00:00:00Z\n").get("abc")).toBeNull();
  });
});

describe("parseDockerInspect", () => {
  const image = parseImageDefaults(JSON.stringify(IMAGE));
  test("the operator's spec reads back: ports, binds, env, cmd, user, restart; no --network is ''", () => {
    const d = parseDockerInspect(JSON.stringify(INSPECT_WEB), image);
    expect(d).toEqual({
      id: IDS.web,
      name: "cap-web",
      image: IMG,
      // The id of the image it was created from, as docker reports it (already sha256:-prefixed).
      imageId: "sha256:359535f88f4220c762544e008d95ef689477e5a906f79dfd09e49740d541084a",
      state: "running",
      startedAt: new Date("2026-11-21T05:39:48.036Z"),
      createdAt: new Date("2026-11-21T05:39:47.831Z"),
      exitCode: null,
      spec: {
        name: "cap-web",
        image: IMG,
        network: "",
        user: "0:0",
        restart: "unless-stopped",
        memory: "",
        vcpus: 0,
        runtime: "container",
        ports: ["127.0.0.1:18443:8080", "9443:9443/udp"],
        volumes: ["/tmp:/data:ro", "capvol:/nv"],
        env: ["EMPTY=", "FOO=bar baz"],
        cmd: ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 100 & wait"],
      },
    });
  });
  test("the image's own CMD reads back as [], restart 'no' as ''", () => {
    const d = parseDockerInspect(INSPECT_DEFAULT, image);
    expect(d.spec).toEqual({
      name: "cap-def",
      image: IMG,
      network: "",
      user: "",
      restart: "",
      memory: "",
      vcpus: 0,
      runtime: "container",
      ports: [],
      volumes: [],
      env: [],
      cmd: [],
    });
  });
  test("an exited container carries its exit code; an explicit network is kept", () => {
    const d = parseDockerInspect(INSPECT_EXITED, image);
    expect(d.state).toBe("exited");
    expect(d.exitCode).toBe(3);
    const bridged = structuredClone(INSPECT_EXITED);
    bridged[0]!.HostConfig.NetworkMode = "bridge";
    expect(parseDockerInspect(bridged).spec.network).toBe("bridge");
  });
  test("empty inspect output fails clearly", () => {
    expect(() => parseDockerInspect("[]")).toThrow(/no container object/);
  });
});

describe("cleanDockerStderr", () => {
  test("a run conflict reads as the engine's one line", () => {
    const raw =
      'docker: Error response from daemon: Conflict. The container name "/cap-web" is already in use by container "433c". You have to remove (or rename) that container to be able to reuse that name.\nSee \'docker run --help\'.\n';
    expect(cleanDockerStderr(raw).trim()).toBe(
      'Error: Conflict. The container name "/cap-web" is already in use by container "433c". You have to remove (or rename) that container to be able to reuse that name.',
    );
  });
  test("start of a missing container keeps the reason, not the echo", () => {
    const raw =
      "Error response from daemon: No such container: nope\nError: failed to start containers: nope\n";
    expect(cleanDockerStderr(raw).trim()).toBe("Error: No such container: nope");
    expect(cleanDockerStderr("Error: failed to start containers: x\n").trim()).toBe(
      "Error: failed to start containers: x",
    );
  });
  test("other output passes through", () => {
    expect(cleanDockerStderr("Error: No such image: nope:1\n")).toBe("Error: No such image: nope:1\n");
    expect(cleanDockerStderr("")).toBe("");
  });
});

describe("buildRuntime (agent config → runtime)", () => {
  const cfg = (agent: Record<string, unknown>) =>
    parseAgentConfig(
      {
        server: { grpc_addr: "127.0.0.1:9444", tls_cert: "/c.pem", tls_key: "/k.pem" },
        auth: {
          mode: "local",
          tokens: [{ name: "admin", role: "admin", account_type: "human", sha256: "a".repeat(64) }],
        },
        agent,
      },
      "mcp-agent.toml",
    ).config;
  const spec: ContainerSpec = {
    name: "a",
    image: "i",
    network: "",
    user: "",
    restart: "",
    memory: "",
    vcpus: 0,
    ports: [],
    volumes: [],
    env: [],
    cmd: [],
  };

  test('container_runtime = "docker" drives the docker binary with runtime_args as global flags', () => {
    const rt = buildRuntime(cfg({ container_runtime: "docker", runtime_args: ["-H", "unix:///run/d.sock"] }));
    expect(rt).toBeInstanceOf(DockerRuntime);
    expect(rt.engine).toBe("docker");
    expect(rt.describeRun(spec)).toEqual([
      "docker",
      "-H",
      "unix:///run/d.sock",
      "run",
      "-d",
      "--name",
      "a",
      "i",
    ]);
  });
  test("podman stays the default", () => {
    const rt = buildRuntime(cfg({ runtime_args: ["--runtime", "runc"] }));
    expect(rt).toBeInstanceOf(PodmanRuntime);
    expect(rt).not.toBeInstanceOf(DockerRuntime);
    expect(rt.engine).toBe("podman");
    expect(rt.describeRun(spec)).toEqual(["podman", "--runtime", "runc", "run", "-d", "--name", "a", "i"]);
  });
});
