// Pure parts of boot sequencing: which port a component is health-checked on (published port,
// else a stored route host port, else "the container runs"), and image comparison for keeping
// containers that survived a reboot. The registry is a real sqlite file.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ComponentDef } from "../../../src/config/service.ts";
import { openRegistry } from "../../../src/registry/index.ts";
import { healthTarget, sameImage } from "../../../src/roles/agent/boot.ts";
import type { AgentContext } from "../../../src/roles/agent/context.ts";
import { containerComponent } from "../../support/agent-context.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-boot-unit-"));
const registry = openRegistry(join(dir, "mcp.db"));
const ctx = { registry } as unknown as AgentContext;

afterAll(() => {
  registry.close();
  rmSync(dir, { recursive: true, force: true });
});

function comp(over: Partial<ComponentDef>): ComponentDef {
  return containerComponent("web", "img:v1", { restart: "", ...over });
}

describe("healthTarget", () => {
  test("the first TCP published port, host ip defaulting to loopback", () => {
    expect(healthTarget(ctx, "s", comp({ ports: ["8080:80", "9090:90"] }))).toEqual({
      kind: "port",
      host: "127.0.0.1",
      port: 8080,
      from: "port",
    });
    expect(healthTarget(ctx, "s", comp({ ports: ["10.0.0.5:53:53/udp", "10.0.0.5:5353:53/tcp"] }))).toEqual({
      kind: "port",
      host: "10.0.0.5",
      port: 5353,
      from: "port",
    });
    expect(healthTarget(ctx, "s", comp({ ports: ["0.0.0.0:443:8443"] }))).toMatchObject({
      host: "127.0.0.1",
    });
    expect(healthTarget(ctx, "s", comp({ ports: ["[::]:443:8443"] }))).toMatchObject({ host: "::1" });
  });

  test("else the stored host port of a route; else the container running", () => {
    const c = comp({ routes: [{ name: "api", port: 8443, mode: "l7", public: false }] });
    expect(healthTarget(ctx, "svc", c)).toEqual({ kind: "running" });
    registry.upsertService({ name: "svc" });
    registry.upsertComponent("svc", {
      ...c,
      desiredState: "running",
      version: "v1",
      memory: "",
      vcpus: 0,
      routes: [
        { name: "", port: 80, mode: "l7", hostname: "", public: false, hostPort: 0 },
        { name: "api", port: 8443, mode: "l7", hostname: "", public: false, hostPort: 20123 },
      ],
    });
    expect(healthTarget(ctx, "svc", c)).toEqual({
      kind: "port",
      host: "127.0.0.1",
      port: 20123,
      from: "route",
    });
  });
});

describe("sameImage", () => {
  test("podman's defaults do not make an image different", () => {
    expect(sameImage("busybox", "docker.io/library/busybox:latest")).toBe(true);
    expect(sameImage("nginx:1.25", "docker.io/library/nginx:1.25")).toBe(true);
    expect(sameImage("docker.io/nginx:1.25", "docker.io/library/nginx:1.25")).toBe(true);
    expect(sameImage("localhost/mcp-test-busybox:v1.0.0", "localhost/mcp-test-busybox:v1.0.0")).toBe(true);
    expect(sameImage("mcr.example:5000/mcias:v1", "mcr.example:5000/mcias:v1")).toBe(true);
    expect(sameImage("mcr.example:5000/mcias", "mcr.example:5000/mcias:latest")).toBe(true);
  });

  test("a different tag, repository or registry is a different image", () => {
    expect(sameImage("nginx:1.25", "nginx:1.26")).toBe(false);
    expect(sameImage("mcr.example/mcias:v1", "mcr.other/mcias:v1")).toBe(false);
    expect(sameImage("localhost/a:v1", "localhost/b:v1")).toBe(false);
    expect(sameImage("img@sha256:aa", "img@sha256:bb")).toBe(false);
  });
});
