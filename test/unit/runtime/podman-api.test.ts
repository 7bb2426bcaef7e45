// The podman REST listing parses into the same ContainerInfo as `podman ps -a --format json`
// (fixtures: both captured from real podman 4.3.1 for the same four containers — running with a
// port and labels, exited 3, created, stopped), and the API service fails over to "use the CLI"
// (null) without throwing, logging once per state change, restarting at most once per backoff.
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { parsePs } from "../../../src/runtime/podman.ts";
import { PodmanService } from "../../../src/runtime/podman-service.ts";
import type { ContainerInfo } from "../../../src/runtime/runtime.ts";
import API from "./fixtures/podman-4.3.1-api-containers.json";
import PS from "./fixtures/podman-4.3.1-ps.json";

const byId = (l: ContainerInfo[]) => [...l].sort((a, b) => a.id.localeCompare(b.id));

describe("parsePs on the REST listing", () => {
  test("the API's objects and the CLI's map to identical ContainerInfo", () => {
    const cli = byId(parsePs(JSON.stringify(PS)));
    const api = byId(parsePs(API));
    expect(api).toHaveLength(4);
    expect(api).toEqual(cli);
    const states = Object.fromEntries(api.map((c) => [c.name, [c.state, c.exitCode]]));
    expect(states).toEqual({
      "hapi-run": ["running", null],
      "hapi-exit": ["exited", 3],
      "hapi-created": ["stopped", null],
      "hapi-stopped": ["exited", 137],
    });
  });

  test("the API's RFC 3339 Created is cut to whole seconds like the CLI's unix seconds", () => {
    const [c] = parsePs([{ Id: "x", Names: ["n"], State: "running", Created: "2026-11-21T07:55:34.9Z" }]);
    expect(c?.createdAt?.toISOString()).toBe("2026-11-21T07:55:34.000Z");
  });
});

describe("PodmanService failure handling (real processes)", () => {
  test("a binary that exits at once: null (use the CLI), one warning, no restart within the backoff", async () => {
    const logs: string[] = [];
    const svc = new PodmanService({
      binary: "/bin/false",
      globalArgs: [],
      logger: { info: (m) => logs.push(`info ${m}`), warn: (m) => logs.push(`warn ${m}`) },
      restartBackoffMs: 60_000,
    });
    try {
      expect(await svc.getJson("/_ping")).toBeNull();
      const t0 = performance.now();
      expect(await svc.getJson("/_ping")).toBeNull();
      expect(performance.now() - t0).toBeLessThan(50); // within the backoff: no new start, no wait
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/^warn podman API unavailable \(service exited at start/);
      expect(svc.pid).toBeUndefined();
    } finally {
      svc.close();
    }
  });

  test("a missing binary is a logged fallback, not a throw", async () => {
    const logs: string[] = [];
    const svc = new PodmanService({
      binary: "/nonexistent/podman",
      globalArgs: [],
      logger: { info: (m) => logs.push(m), warn: (m) => logs.push(m) },
    });
    try {
      expect(await svc.getJson("/_ping")).toBeNull();
      expect(logs).toHaveLength(1);
      expect(logs[0]).toMatch(/podman API unavailable/);
    } finally {
      svc.close();
    }
  });

  test("an unusable socket parent (missing dir) falls through to the next: a private dir elsewhere", async () => {
    const svc = new PodmanService({ binary: "/bin/false", globalArgs: [], dir: "/nonexistent-mcp-dir" });
    try {
      await svc.getJson("/_ping");
      const sock = svc.socketPath;
      expect(sock).not.toBeNull();
      expect(sock!.startsWith("/nonexistent-mcp-dir")).toBe(false);
      expect(statSync(dirname(sock!)).mode & 0o777).toBe(0o700);
    } finally {
      svc.close();
    }
  });

  test("a start removes socket dirs of owners that are gone (SIGKILLed agents), keeps live ones", async () => {
    const parent = mkdtempSync(join(tmpdir(), "mcp-sweep-"));
    const dead = Bun.spawn(["/bin/true"]);
    await dead.exited;
    const gone = join(parent, `mcp-podman-${dead.pid}-abc123`);
    const live = join(parent, `mcp-podman-${process.ppid}-def456`);
    mkdirSync(gone);
    mkdirSync(live);
    const svc = new PodmanService({ binary: "/bin/false", globalArgs: [], dir: parent });
    try {
      await svc.getJson("/_ping");
      expect(existsSync(gone)).toBe(false);
      expect(existsSync(live)).toBe(true);
      expect(dirname(svc.socketPath!)).toStartWith(join(parent, `mcp-podman-${process.pid}-`));
    } finally {
      svc.close();
      rmSync(parent, { recursive: true, force: true });
    }
  });

  test("after close() nothing starts and the socket directory is gone", async () => {
    const svc = new PodmanService({ binary: "/bin/false", globalArgs: [] });
    expect(await svc.getJson("/_ping")).toBeNull();
    svc.close();
    expect(svc.socketPath).toBeNull();
    expect(await svc.getJson("/_ping")).toBeNull();
    expect(svc.pid).toBeUndefined();
  });
});
