// Pure parts of `mcp build` and `mcp logs`: the repository name of an image, build planning (workspace,
// path, Dockerfile and tag resolution), runtime flags, the podman build/push argv builders, the
// registry manifest URL, and the agent's --since check.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { parseImageRef } from "../../../src/config/image.ts";
import type { ServiceDef } from "../../../src/config/service.ts";
import { validSince } from "../../../src/roles/agent/logs.ts";
import { buildSettings, contextDir, manifestUrl, planBuild, repoName } from "../../../src/roles/cli/build.ts";
import { buildArgs, pushArgs } from "../../../src/runtime/podman.ts";
import { containerComponent } from "../../support/agent-context.ts";

function def(over: Partial<ServiceDef> & { images?: string[] } = {}): ServiceDef {
  const { images = ["mcr.svc.mcp.metacircular.net:8443/myservice:v1.0.0"], ...rest } = over;
  return {
    name: "myservice",
    tier: "worker",
    active: true,
    build: { images: { myservice: "Dockerfile.api" } },
    components: images.map((image, i) => containerComponent(`c${i}`, image, { restart: "unless-stopped" })),
    ...rest,
  };
}

describe("repoName", () => {
  test("repoName is the repository's last segment, never the port or tag", () => {
    expect(repoName("mcr.svc.mcp.metacircular.net:8443/myservice:v1.0.0")).toBe("myservice");
    expect(repoName("127.0.0.1:5000/a/b/myservice-web:v1")).toBe("myservice-web");
    expect(repoName("registry:5000/myservice")).toBe("myservice");
  });

  test("property: repoName of host:port/path/name:tag is name", () => {
    const seg = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,10}$/);
    fc.assert(
      fc.property(
        seg,
        fc.integer({ min: 1, max: 65535 }),
        fc.array(seg, { maxLength: 3 }),
        seg,
        fc.stringMatching(/^v[0-9]\.[0-9]{1,2}\.[0-9]$/),
        (host, port, path, name, tag) => {
          const ref = `${host}.example:${port}/${[...path, name].join("/")}:${tag}`;
          expect(repoName(ref)).toBe(name);
          expect(parseImageRef(ref).tag).toBe(tag);
        },
      ),
    );
  });
});

describe("planBuild", () => {
  test("context = <definition dir>/<service name> by default; Dockerfile relative to it", () => {
    const plans = planBuild(def(), "/home/op/.config/mcp/services/myservice.toml");
    expect(plans).toEqual([
      {
        service: "myservice",
        key: "myservice",
        refs: ["mcr.svc.mcp.metacircular.net:8443/myservice:v1.0.0"],
        dockerfile: "/home/op/.config/mcp/services/myservice/Dockerfile.api",
        context: "/home/op/.config/mcp/services/myservice",
      },
    ]);
  });

  test("workspace absolute or relative to the definition file; path overrides the name", () => {
    const abs = def({ build: { workspace: "/src/mc", path: "my-svc", images: { myservice: "Dockerfile" } } });
    expect(contextDir(abs, "/defs/myservice.toml")).toBe("/src/mc/my-svc");
    const rel = def({ build: { workspace: "../src", images: { myservice: "Dockerfile" } } });
    expect(contextDir(rel, "/ops/defs/myservice.toml")).toBe("/ops/src/myservice");
    expect(contextDir(rel, "defs/myservice.toml", "/cwd")).toBe("/cwd/src/myservice");
    const home = def({ build: { workspace: "~/src", images: { myservice: "Dockerfile" } } });
    expect(contextDir(home, "/x/y.toml").endsWith("/src/myservice")).toBe(true);
    expect(contextDir(home, "/x/y.toml").startsWith("/x")).toBe(false);
    const absDockerfile = def({ build: { images: { myservice: "/elsewhere/Containerfile" } } });
    expect(planBuild(absDockerfile, "/d/m.toml")[0]?.dockerfile).toBe("/elsewhere/Containerfile");
  });

  test("every component with the matching repository is a tag (deduplicated); other repositories are not", () => {
    const d = def({
      images: ["r:1/myservice:v1", "r:1/myservice:v1", "r:1/myservice:v1-debug", "r:1/myservice-web:v1"],
      build: { images: { myservice: "Dockerfile.api", "myservice-web": "Dockerfile.web" } },
    });
    const plans = planBuild(d, "/d/myservice.toml");
    expect(plans.map((p) => [p.key, p.refs])).toEqual([
      ["myservice", ["r:1/myservice:v1", "r:1/myservice:v1-debug"]],
      ["myservice-web", ["r:1/myservice-web:v1"]],
    ]);
  });

  test("no [build.images] and an unmatched key are one-line CliErrors (exit 2) naming the problem", () => {
    const none = def({ build: undefined });
    expect(() => planBuild(none, "/d/m.toml")).toThrow(
      "/d/m.toml: service myservice has no [build.images] entries: nothing to build",
    );
    const bad = def({ build: { images: { other: "Dockerfile" } } });
    try {
      planBuild(bad, "/d/m.toml");
      throw new Error("expected a throw");
    } catch (err) {
      expect((err as Error).name).toBe("CliError");
      expect((err as { code: number }).code).toBe(2);
      expect((err as Error).message).toBe(
        '/d/m.toml: [build.images] other: no component image has the repository name "other" (component images: myservice)',
      );
    }
  });
});

describe("runtime flags and argv", () => {
  test("buildSettings: $MCP_RUNTIME_ARGS then --runtime-arg, push unless --no-push", () => {
    expect(
      buildSettings({ runtimeArg: ["--log-level", "error"] }, { MCP_RUNTIME_ARGS: " --runtime  runc " }),
    ).toEqual({
      binary: "podman",
      runtimeArgs: ["--runtime", "runc", "--log-level", "error"],
      push: true,
    });
    expect(buildSettings({ runtimeArg: "--x", push: false }, { MCP_BUILD_RUNTIME: "docker" })).toEqual({
      binary: "docker",
      runtimeArgs: ["--x"],
      push: false,
    });
  });

  test("buildArgs / pushArgs", () => {
    expect(
      buildArgs({ dockerfile: "/w/s/Dockerfile", tags: ["r/a:v1", "r/a:v1-x"], context: "/w/s" }),
    ).toEqual(["build", "-f", "/w/s/Dockerfile", "-t", "r/a:v1", "-t", "r/a:v1-x", "/w/s"]);
    expect(pushArgs("127.0.0.1:5000/a:v1")).toEqual(["push", "--quiet", "127.0.0.1:5000/a:v1"]);
    expect(() => buildArgs({ dockerfile: "/d", tags: [], context: "/c" })).toThrow("at least one image tag");
    expect(() => buildArgs({ dockerfile: "/d", tags: ["--rm"], context: "/c" })).toThrow("image tag");
    expect(() => buildArgs({ dockerfile: "-x", tags: ["a"], context: "/c" })).toThrow("Dockerfile path");
    expect(() => pushArgs("-q")).toThrow("image");
  });

  test("manifestUrl: http for loopback registries, https otherwise; docker.io maps to its API host", () => {
    expect(manifestUrl(parseImageRef("127.0.0.1:5000/a/b:v1"))).toBe(
      "http://127.0.0.1:5000/v2/a/b/manifests/v1",
    );
    expect(manifestUrl(parseImageRef("localhost:5000/a:v1"))).toBe("http://localhost:5000/v2/a/manifests/v1");
    expect(manifestUrl(parseImageRef("mcr.example:8443/a:v1"))).toBe(
      "https://mcr.example:8443/v2/a/manifests/v1",
    );
    expect(manifestUrl(parseImageRef("busybox:1"))).toBe(
      "https://registry-1.docker.io/v2/library/busybox/manifests/1",
    );
  });
});

describe("logs --since check (agent)", () => {
  test("durations, unix times and RFC 3339 times pass; anything else does not", () => {
    for (const ok of [
      "",
      "10m",
      "1h30m",
      "2.5s",
      "1700000000",
      "1700000000.5",
      "2024-01-02",
      "2024-01-02T15:04:05Z",
      "2024-01-02T15:04:05.123+01:00",
    ])
      expect({ ok, valid: validSince(ok) }).toEqual({ ok, valid: true });
    for (const bad of ["yesterday", "-5m", "10 m", "--follow", "2024-01-02T", "1d", "10m;rm"])
      expect({ bad, valid: validSince(bad) }).toEqual({ bad, valid: false });
  });
});
