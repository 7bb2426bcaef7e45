// Integration test of buildMissingImages (the `mcp sync --build` step) with real podman and a real
// registry: an image missing from the registry is built and pushed, one already there is left
// alone, a registry that cannot be asked still gets a build attempt (with the reason noted),
// definitions without [build.images] are skipped, and an unplannable one is a failed result.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { ServiceDef } from "../../src/config/service.ts";
import { type BuildSettings, buildMissingImages, imagePresence } from "../../src/roles/cli/build.ts";
import { run } from "../../src/runtime/exec.ts";
import { containerComponent } from "../support/agent-context.ts";
import { busyboxImage, freePort, podmanEnv, type Registry, startRegistry } from "../support/env.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
let registry: Registry;
let ws = "";
let settings: BuildSettings;
const refs: string[] = [];

function def(name: string, image: string, images: Record<string, string> | null): ServiceDef {
  return {
    name,
    tier: "worker",
    active: true,
    ...(images ? { build: { images } } : {}),
    components: [containerComponent("app", image, { restart: "unless-stopped" })],
  };
}

/** A service source dir <ws>/<name>/Dockerfile; returns the definition file path beside it. */
async function source(name: string): Promise<string> {
  mkdirSync(join(ws, name));
  writeFileSync(join(ws, name, "Dockerfile"), `FROM ${await busyboxImage()}\nCOPY x /x\n`);
  writeFileSync(join(ws, name, "x"), `${name}\n`);
  return join(ws, `${name}.toml`);
}

beforeAll(async () => {
  const pe = await podmanEnv();
  registry = await startRegistry();
  ws = mkdtempSync(join(tmpdir(), "mcp-buildmissing-"));
  settings = { binary: "podman", runtimeArgs: pe.globalArgs, push: true, env: pe.env };
}, 60_000);

afterAll(async () => {
  const pe = await podmanEnv();
  for (const r of refs)
    await run(["podman", ...pe.globalArgs, "rmi", "--force", "--ignore", r], { env: pe.env });
  await registry?.stop();
  if (ws) rmSync(ws, { recursive: true, force: true });
}, 30_000);

describe("buildMissingImages (real podman, real registry)", () => {
  test("missing → built and pushed; then present → left alone; no [build] → skipped", async () => {
    const name = `miss-${rand()}`;
    const ref = `${registry.address}/${name}:v1.0.0`;
    refs.push(ref);
    const file = await source(name);
    const d = def(name, ref, { [name]: "Dockerfile" });
    const skipped = def(`plain-${rand()}`, `${registry.address}/plain:v1`, null);

    expect(await imagePresence(ref)).toEqual({ state: "missing" });
    const first = await buildMissingImages(
      { json: true },
      [
        { def: d, file },
        { def: skipped, file: null },
      ],
      settings,
    );
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ service: name, key: name, refs: [ref], status: "built", pushed: true });
    expect(first[0]?.note).toBeUndefined();
    expect(await imagePresence(ref)).toEqual({ state: "present" });

    const second = await buildMissingImages({ json: true }, [{ def: d, file }], settings);
    expect(second).toEqual([
      { service: name, key: name, refs: [ref], status: "present", pushed: false, buildMs: 0, pushMs: 0 },
    ]);
  }, 120_000);

  test("a registry that does not answer: unknown presence, build attempted, the push error and the reason reported", async () => {
    const name = `down-${rand()}`;
    const ref = `127.0.0.1:${await freePort()}/${name}:v1.0.0`;
    refs.push(ref);
    const file = await source(name);
    const presence = await imagePresence(ref);
    expect(presence.state).toBe("unknown");
    const [r] = await buildMissingImages(
      { json: true },
      [{ def: def(name, ref, { [name]: "Dockerfile" }), file }],
      settings,
    );
    expect(r?.status).toBe("failed");
    expect(r?.buildMs).toBeGreaterThan(0);
    expect(r?.error).toMatch(
      new RegExp(`^podman push ${ref.replace(/[.]/g, "\\.")} failed \\(exit \\d+\\): .*connection refused`),
    );
    expect(r?.note).toMatch(/^registry check inconclusive: HEAD http:\/\/127\.0\.0\.1:\d+\/v2\/.*: /);
  }, 120_000);

  test("a definition whose images cannot be planned is one failed result, the others still run", async () => {
    const good = `good-${rand()}`;
    const ref = `${registry.address}/${good}:v1.0.0`;
    refs.push(ref);
    const file = await source(good);
    const bad = def(`bad-${rand()}`, `${registry.address}/bad:v1`, { nomatch: "Dockerfile" });
    const res = await buildMissingImages(
      { json: true },
      [
        { def: bad, file: join(ws, "bad.toml") },
        { def: def(good, ref, { [good]: "Dockerfile" }), file },
      ],
      settings,
    );
    expect(res.map((r) => [r.service, r.status])).toEqual([
      [bad.name, "failed"],
      [good, "built"],
    ]);
    expect(res[0]?.error).toContain(
      '[build.images] nomatch: no component image has the repository name "nomatch"',
    );
  }, 120_000);
});
