// e2e test of `mcp build` through the COMPILED binary: a temp workspace with a Dockerfile on top
// of the local busybox test image, a definition with `[build.images]`, a real local registry.
// `mcp build` builds with real podman, tags with the component's image reference and pushes; the
// local copy is then removed so `mcp deploy` (pull always) must fetch the built image from the
// registry, and the container serves the workspace's index.html over HTTP. Bad definitions give
// one clear line.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { busyboxImage, freePort, podman, type Registry, startRegistry } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `build-${rand()}`;
const KEY = `bimg-${rand()}`;
const TAG = `v1.${Math.floor(Math.random() * 1000)}.0`;
const CONTAINER = `${SVC}-web`;
const BODY = `built by mcp ${rand()}\n`;
const RUNTIME_ARGS = ["--runtime-arg=--runtime", "--runtime-arg=runc"];

let agent: LocalAgent;
let registry: Registry;
let ws = "";
let ref = ""; // 127.0.0.1:<port>/bimg-<rand>:v1.N.0
let port = 0;
const refsToRemove: string[] = [];

async function httpGet(p: number): Promise<{ status: number; body: string }> {
  let last: unknown;
  for (let i = 0; i < 40; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${p}/`, { signal: AbortSignal.timeout(1000) });
      return { status: res.status, body: await res.text() };
    } catch (err) {
      last = err;
      await Bun.sleep(50);
    }
  }
  throw new Error(`no HTTP answer on 127.0.0.1:${p}: ${String(last)}`);
}

/** Status of a HEAD on the registry's manifest of `repo:tag` (200 present, 404 missing). */
async function manifestStatus(repo: string, tag: string): Promise<number> {
  const res = await fetch(`http://${registry.address}/v2/${repo}/manifests/${tag}`, {
    method: "HEAD",
    headers: {
      Accept:
        "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json",
    },
  });
  return res.status;
}

function writeDef(name: string, lines: string[]): string {
  const file = join(agent.servicesDir, `${name}.toml`);
  writeFileSync(file, `${lines.join("\n")}\n`);
  return file;
}

beforeAll(async () => {
  const [a, r, base] = await Promise.all([startLocalAgent(), startRegistry(), busyboxImage()]);
  agent = a;
  registry = r;
  ref = `${registry.address}/${KEY}:${TAG}`;
  refsToRemove.push(ref);
  port = await freePort();
  // Workspace layout: <ws>/src-dir/{Dockerfile.web,index.html}; `path` names the directory.
  ws = mkdtempSync(join(tmpdir(), "mcp-build-ws-"));
  const src = join(ws, "src-dir");
  mkdirSync(src);
  writeFileSync(join(src, "Dockerfile.web"), `FROM ${base}\nCOPY index.html /www/index.html\n`);
  writeFileSync(join(src, "index.html"), BODY);
  writeDef(SVC, [
    `name = "${SVC}"`,
    "",
    "[build]",
    `workspace = "${ws}"`,
    'path = "src-dir"',
    "",
    "[build.images]",
    `${KEY} = "Dockerfile.web"`,
    "",
    "[[components]]",
    'name = "web"',
    `image = "${ref}"`,
    `ports = ["127.0.0.1:${port}:8080"]`,
  ]);
}, 60_000);

afterAll(async () => {
  await removeContainers([CONTAINER]);
  for (const r of refsToRemove) await podman("rmi", "--force", "--ignore", r);
  await registry?.stop();
  await agent?.stop();
  if (ws) rmSync(ws, { recursive: true, force: true });
}, 30_000);

describe("mcp build (compiled binary, real podman, real registry)", () => {
  test("the image is in neither the registry nor the local store before the build", async () => {
    expect(await manifestStatus(KEY, TAG)).toBe(404);
    expect((await podman("image", "exists", ref)).code).toBe(1);
  });

  test("build tags the image with the component reference and pushes it; one line with timings", async () => {
    const r = await agent.mcp(["build", SVC, ...RUNTIME_ARGS], { timeoutMs: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^ok {3}${SVC}: ${KEY} ${ref.replace(/[.]/g, "\\.")} {2}build \\d+ms, push \\d+ms$`),
    );
    expect(await manifestStatus(KEY, TAG)).toBe(200);
    expect((await podman("image", "exists", ref)).code).toBe(0);
  }, 120_000);

  test("deploy (pull always) of the built image, with the local copy removed, serves the workspace's index.html", async () => {
    const rmi = await podman("rmi", ref);
    expect(rmi.code).toBe(0);
    expect((await podman("image", "exists", ref)).code).toBe(1);

    const r = await agent.mcp(["deploy", SVC], { timeoutMs: 120_000 });
    expect(r.code).toBe(0);
    const got = await httpGet(port);
    expect(got.status).toBe(200);
    expect(got.body).toBe(BODY);
    // It really came from the registry: the image is back in the local store under that name.
    expect((await podman("image", "exists", ref)).code).toBe(0);
  }, 120_000);

  test("--no-push --json builds and tags only, and says so", async () => {
    const tag2 = `${TAG}-local`;
    const ref2 = `${registry.address}/${KEY}:${tag2}`;
    refsToRemove.push(ref2);
    const file = join(ws, "nopush.toml");
    writeFileSync(
      file,
      [
        `name = "${SVC}"`,
        "[build]",
        `workspace = "${ws}"`,
        'path = "src-dir"',
        "[build.images]",
        `${KEY} = "Dockerfile.web"`,
        "[[components]]",
        'name = "web"',
        `image = "${ref2}"`,
        "",
      ].join("\n"),
    );
    const r = await agent.mcp(["build", SVC, "-f", file, "--no-push", "--json", ...RUNTIME_ARGS], {
      timeoutMs: 120_000,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as { service: string; images: Record<string, unknown>[] };
    expect(out.service).toBe(SVC);
    expect(out.images).toHaveLength(1);
    expect(out.images[0]).toMatchObject({
      image: KEY,
      refs: [ref2],
      status: "built",
      pushed: false,
      push_ms: 0,
    });
    expect((await podman("image", "exists", ref2)).code).toBe(0);
    expect(await manifestStatus(KEY, tag2)).toBe(404);
  }, 120_000);

  test("a failing Dockerfile step: a FAIL line with podman's error, exit 1", async () => {
    const name = `buildfail-${rand()}`;
    const failRef = `${registry.address}/${name}:v1.0.0`;
    refsToRemove.push(failRef);
    const dir = join(ws, name);
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), `FROM ${await busyboxImage()}\nRUN exit 3\n`);
    writeDef(name, [
      `name = "${name}"`,
      "[build]",
      `workspace = "${ws}"`,
      "[build.images]",
      `${name} = "Dockerfile"`,
      "[[components]]",
      'name = "app"',
      `image = "${failRef}"`,
    ]);
    const r = await agent.mcp(["build", name, ...RUNTIME_ARGS], { timeoutMs: 120_000 });
    expect(r.code).toBe(1);
    const lines = r.stdout.trimEnd().split("\n");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(
      new RegExp(`^FAIL ${name}: ${name} .*: podman build ${name} failed \\(exit \\d+\\): .*Error`),
    );
    expect(r.stderr.trimEnd()).toBe(`mcp: build of ${name} failed for ${name}`);
    expect(await manifestStatus(name, "v1.0.0")).toBe(404);
  }, 120_000);

  test("bad definitions: no [build], a key no component matches, a missing context → one line, non-zero", async () => {
    const plain = `plain-${rand()}`;
    const plainFile = writeDef(plain, [
      `name = "${plain}"`,
      "[[components]]",
      'name = "app"',
      `image = "${registry.address}/${plain}:v1.0.0"`,
    ]);
    const nomatch = `nomatch-${rand()}`;
    const nomatchFile = writeDef(nomatch, [
      `name = "${nomatch}"`,
      "[build.images]",
      'other = "Dockerfile"',
      "[[components]]",
      'name = "app"',
      `image = "${registry.address}/${nomatch}:v1.0.0"`,
    ]);
    const nodir = `nodir-${rand()}`;
    writeDef(nodir, [
      `name = "${nodir}"`,
      "[build]",
      `workspace = "${join(ws, "does-not-exist")}"`,
      "[build.images]",
      `${nodir} = "Dockerfile"`,
      "[[components]]",
      'name = "app"',
      `image = "${registry.address}/${nodir}:v1.0.0"`,
    ]);
    const cases: [string[], RegExp, number, "stdout" | "stderr"][] = [
      [
        ["build", plain],
        new RegExp(
          `^mcp: ${plainFile}: service ${plain} has no \\[build\\.images\\] entries: nothing to build$`,
        ),
        2,
        "stderr",
      ],
      [
        ["build", nomatch],
        new RegExp(
          `^mcp: ${nomatchFile}: \\[build\\.images\\] other: no component image has the repository name "other" \\(component images: ${nomatch}\\)$`,
        ),
        2,
        "stderr",
      ],
      [
        ["build", `missing-${rand()}`],
        /^mcp: no definition for service "missing-\w+": .* not found$/,
        2,
        "stderr",
      ],
      [
        ["build", nodir],
        new RegExp(`^FAIL ${nodir}: ${nodir} .*: build context .* is not a directory`),
        1,
        "stdout",
      ],
    ];
    for (const [args, re, code, stream] of cases) {
      const r = await agent.mcp(args);
      expect({ args, code: r.code }).toEqual({ args, code });
      const lines = r[stream].trimEnd().split("\n");
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(re);
    }
  }, 30_000);
});

describe("mcp sync --build (compiled binary)", () => {
  let agent2: LocalAgent;
  const svc = `sb-${rand()}`;
  const syncRef = () => `${registry.address}/${svc}:v1.0.0`;

  beforeAll(async () => {
    agent2 = await startLocalAgent();
    refsToRemove.push(syncRef());
    const dir = join(ws, svc);
    mkdirSync(dir);
    writeFileSync(join(dir, "Dockerfile"), `FROM ${await busyboxImage()}\nCOPY index.html /www/index.html\n`);
    writeFileSync(join(dir, "index.html"), "synced\n");
    writeFileSync(
      join(agent2.servicesDir, `${svc}.toml`),
      [
        `name = "${svc}"`,
        "[build]",
        `workspace = "${ws}"`,
        "[build.images]",
        `${svc} = "Dockerfile"`,
        "[[components]]",
        'name = "app"',
        `image = "${syncRef()}"`,
        "",
      ].join("\n"),
    );
  }, 30_000);

  afterAll(async () => {
    await agent2?.stop();
  }, 30_000);

  test("builds and pushes the image missing from the registry, then leaves it alone once present", async () => {
    expect(await manifestStatus(svc, "v1.0.0")).toBe(404);
    const first = await agent2.mcp(["sync", "--build", ...RUNTIME_ARGS], { timeoutMs: 120_000 });
    expect(first.stderr).toBe("");
    expect(first.code).toBe(0);
    const ref = syncRef().replace(/[.]/g, "\\.");
    expect(first.stdout).toMatch(
      new RegExp(`^ok {3}${svc}: ${svc} ${ref} {2}build \\d+ms, push \\d+ms$`, "m"),
    );
    expect(await manifestStatus(svc, "v1.0.0")).toBe(200);

    const second = await agent2.mcp(["sync", "--build", "--json", ...RUNTIME_ARGS], { timeoutMs: 60_000 });
    expect(second.code).toBe(0);
    const out = JSON.parse(second.stdout) as { builds: Record<string, unknown>[] };
    expect(out.builds).toEqual([
      {
        service: svc,
        image: svc,
        refs: [syncRef()],
        status: "present",
        pushed: false,
        build_ms: 0,
        push_ms: 0,
      },
    ]);
  }, 180_000);
});
