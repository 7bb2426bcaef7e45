// src/runtime/nanos/oci.ts against real podman (and a real docker engine started for the test): an image
// built `FROM scratch` from the host's busybox-static holds a static binary, a regular file, a symlink to
// /etc/hostname, a relative symlink, a hard link, and ENTRYPOINT/CMD/ENV/WORKDIR. imageConfig reads its
// ID and config; exportRootfs writes its filesystem into a new 0700 directory with the symlinks as
// symlinks (text as is, the host's /etc/hostname never copied) and the hard link's content present, and
// leaves no mcp-export-* container behind, also when the export fails (a limit, a missing image), in
// which case nothing is left in the destination's parent either.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  copyFileSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DockerRuntime } from "../../src/runtime/docker.ts";
import { type EngineCli, exportRootfs, imageConfig, OciError } from "../../src/runtime/nanos/oci.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import { dockerCli, startDockerd } from "../support/docker.ts";
import { podman, podmanEnv } from "../support/env.ts";

const tmp = mkdtempSync(join(tmpdir(), "mcp-nanos-oci-"));
const IMAGE = `localhost/mcp-test-nanos-oci:${randomBytes(4).toString("hex")}`;
const HOST_HOSTNAME = readFileSync("/etc/hostname", "utf8");
let engine: EngineCli;

const CONTAINERFILE = `FROM scratch
COPY busybox /bin/busybox
COPY hello.txt /www/hello.txt
RUN ["/bin/busybox", "sh", "-c", "/bin/busybox mkdir -p /etc /lib && /bin/busybox ln -s /etc/hostname /etc/hn-link && /bin/busybox ln -s ../www/hello.txt /lib/rel-link && /bin/busybox ln /www/hello.txt /www/hard.txt"]
ENV GREETING="hi there" MODE=test
WORKDIR /www
ENTRYPOINT ["/bin/busybox", "httpd"]
CMD ["-f", "-p", "8080"]
`;

beforeAll(async () => {
  const pe = await podmanEnv();
  // The engine's command line as the agent's runtime gives it.
  engine = new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env }).cli();
  expect(engine).toMatchObject({
    engine: "podman",
    binary: "podman",
    globalArgs: pe.globalArgs,
    env: pe.env,
  });
  const ctx = join(tmp, "context");
  mkdirSync(ctx);
  copyFileSync("/bin/busybox", join(ctx, "busybox"));
  writeFileSync(join(ctx, "hello.txt"), "hello from the image\n");
  writeFileSync(join(ctx, "Containerfile"), CONTAINERFILE);
  const b = await podman("build", "--quiet", "-t", IMAGE, "-f", join(ctx, "Containerfile"), ctx);
  if (b.code !== 0) throw new Error(`podman build failed: ${b.stderr}`);
}, 120_000);

afterAll(async () => {
  await podman("rmi", "-f", IMAGE);
  rmSync(tmp, { recursive: true, force: true });
});

/** Names of mcp-export-* containers the engine has right now. */
async function exportContainers(ps: () => Promise<string>): Promise<string[]> {
  return (await ps())
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l.startsWith("mcp-export-"));
}
const podmanExports = () =>
  exportContainers(
    async () => (await podman("ps", "-a", "--filter", "name=mcp-export-", "--format", "{{.Names}}")).stdout,
  );

function fresh(tag: string): string {
  const d = join(tmp, `${tag}-${randomBytes(3).toString("hex")}`);
  mkdirSync(d);
  return d;
}

/** The exported tree as the image built it; `label` names the engine in failures. */
function checkTree(root: string): void {
  expect(statSync(root).mode & 0o777).toBe(0o700);
  const bb = join(root, "bin", "busybox");
  expect(readFileSync(bb).equals(readFileSync("/bin/busybox"))).toBe(true);
  expect(statSync(bb).mode & 0o100).toBe(0o100); // still executable by its owner
  expect(statSync(bb).mode & 0o7022).toBe(0);
  expect(readFileSync(join(root, "www", "hello.txt"), "utf8")).toBe("hello from the image\n");
  expect(readFileSync(join(root, "www", "hard.txt"), "utf8")).toBe("hello from the image\n");
  const hn = lstatSync(join(root, "etc", "hn-link"));
  expect(hn.isSymbolicLink()).toBe(true);
  expect(readlinkSync(join(root, "etc", "hn-link"))).toBe("/etc/hostname");
  expect(lstatSync(join(root, "lib", "rel-link")).isSymbolicLink()).toBe(true);
  expect(readlinkSync(join(root, "lib", "rel-link"))).toBe("../www/hello.txt");
  // The host's /etc/hostname is in no regular file of the tree (a build may leave an empty
  // /etc/hostname mount point; never the host's content).
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else if (st.isFile() && st.size === Buffer.byteLength(HOST_HOSTNAME) && st.size > 0)
        expect(readFileSync(p, "utf8")).not.toBe(HOST_HOSTNAME);
    }
  };
  walk(root);
}

describe("podman", () => {
  test("imageConfig reads ID, platform, entrypoint, cmd, env and working directory", async () => {
    const cfg = await imageConfig(engine, IMAGE);
    const id = (await podman("image", "inspect", "--format", "{{.Id}}", IMAGE)).stdout;
    expect(cfg.id).toBe(id);
    expect(cfg.id).toMatch(/^[0-9a-f]{64}$/);
    expect(cfg.architecture).toBe("amd64");
    expect(cfg.os).toBe("linux");
    expect(cfg.entrypoint).toEqual(["/bin/busybox", "httpd"]);
    expect(cfg.cmd).toEqual(["-f", "-p", "8080"]);
    expect(cfg.env).toContain("GREETING=hi there");
    expect(cfg.env).toContain("MODE=test");
    expect(cfg.workingDir).toBe("/www");
  });

  test("a missing image is one clear line", async () => {
    const err = await imageConfig(engine, "localhost/mcp-no-such-image:nope").catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OciError);
    expect((err as Error).message).toBe(
      "image localhost/mcp-no-such-image:nope is not in the node's podman image store (pull it first)",
    );
    expect(await imageConfig(engine, "--help").catch((e: Error) => e.message)).toMatch(
      /invalid image reference/,
    );
  });

  test("exportRootfs writes the filesystem with links intact and leaves no container", async () => {
    const before = await podmanExports();
    const parent = fresh("ok");
    const dest = join(parent, "rootfs");
    const res = await exportRootfs(engine, IMAGE, dest);
    expect(res.files).toBeGreaterThanOrEqual(2);
    expect(res.symlinks).toBeGreaterThanOrEqual(2);
    expect(res.hardlinks).toBe(1); // www/hard.txt (or www/hello.txt, whichever the export lists second)
    checkTree(dest);
    expect(readdirSync(parent)).toEqual(["rootfs"]); // no temp sibling left
    expect(await podmanExports()).toEqual(before);

    // The destination exists now: refused, untouched.
    const err = await exportRootfs(engine, IMAGE, dest).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OciError);
    expect((err as Error).message).toMatch(/already exists/);
    expect(readdirSync(parent)).toEqual(["rootfs"]);
  }, 60_000);

  test("an image without CMD or ENTRYPOINT exports too (the container is created, never started)", async () => {
    const ctx = fresh("bare-ctx");
    writeFileSync(join(ctx, "only.txt"), "only\n");
    writeFileSync(join(ctx, "Containerfile"), "FROM scratch\nCOPY only.txt /only.txt\n");
    const bare = `${IMAGE}-bare`;
    const b = await podman("build", "--quiet", "-t", bare, "-f", join(ctx, "Containerfile"), ctx);
    expect(b.code).toBe(0);
    try {
      const cfg = await imageConfig(engine, bare);
      expect([cfg.entrypoint, cfg.cmd, cfg.workingDir]).toEqual([[], [], ""]);
      const dest = join(fresh("bare"), "rootfs");
      const res = await exportRootfs(engine, bare, dest);
      expect(res).toMatchObject({ files: 1, symlinks: 0, hardlinks: 0 });
      expect(readFileSync(join(dest, "only.txt"), "utf8")).toBe("only\n");
    } finally {
      await podman("rmi", "-f", bare);
    }
  }, 60_000);

  test("a failed export (a limit, a missing image) leaves no container and nothing in the parent", async () => {
    const before = await podmanExports();
    const parent = fresh("fail");
    const dest = join(parent, "rootfs");
    const err = await exportRootfs(engine, IMAGE, dest, { maxEntries: 3 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(OciError);
    expect((err as Error).message).toBe(`podman export of ${IMAGE} refused: archive has more than 3 entries`);
    expect(readdirSync(parent)).toEqual([]);

    const small = await exportRootfs(engine, IMAGE, dest, { maxBytes: 1000 }).catch((e: unknown) => e);
    expect((small as Error).message).toMatch(/refused: archive content exceeds 1000 bytes/);
    expect(readdirSync(parent)).toEqual([]);

    const missing = await exportRootfs(engine, "localhost/mcp-no-such-image:nope", dest).catch(
      (e: unknown) => e,
    );
    expect(missing).toBeInstanceOf(OciError);
    expect((missing as Error).message).toMatch(/is not in the node's podman image store/);
    expect(readdirSync(parent)).toEqual([]);
    expect(await podmanExports()).toEqual(before);
  }, 60_000);
});

describe("docker", () => {
  let docker: EngineCli;
  let dockerExports: () => Promise<string[]>;
  beforeAll(async () => {
    const d = await startDockerd();
    docker = new DockerRuntime({ binary: d.binary, globalArgs: d.globalArgs }).cli();
    expect(docker.engine).toBe("docker");
    dockerExports = () =>
      exportContainers(async () => {
        const r = await dockerCli(d, "ps", "-a", "--filter", "name=mcp-export-", "--format", "{{.Names}}");
        return r.stdout;
      });
    // The very image podman built, moved over as a docker archive.
    const archive = join(tmp, "image.tar");
    const s = await podman("save", "--format", "docker-archive", "-o", archive, IMAGE);
    if (s.code !== 0) throw new Error(`podman save failed: ${s.stderr}`);
    const l = await dockerCli(d, "load", "-i", archive);
    if (l.code !== 0) throw new Error(`docker load failed: ${l.stderr}`);
  }, 120_000);
  afterAll(async () => {
    await (await startDockerd()).stop();
  });

  test("imageConfig and exportRootfs through the docker CLI", async () => {
    const cfg = await imageConfig(docker, IMAGE);
    expect(cfg).toMatchObject({
      architecture: "amd64",
      os: "linux",
      entrypoint: ["/bin/busybox", "httpd"],
      cmd: ["-f", "-p", "8080"],
      workingDir: "/www",
    });
    expect(cfg.id).toMatch(/^[0-9a-f]{64}$/);
    expect(cfg.env).toContain("GREETING=hi there");
    const missing = await imageConfig(docker, "localhost/mcp-no-such-image:nope").catch((e: unknown) => e);
    expect((missing as Error).message).toMatch(/is not in the node's docker image store/);

    const parent = fresh("docker");
    await exportRootfs(docker, IMAGE, join(parent, "rootfs"));
    checkTree(join(parent, "rootfs"));
    const err = await exportRootfs(docker, IMAGE, join(parent, "again"), { maxEntries: 3 }).catch(
      (e: unknown) => e,
    );
    expect((err as Error).message).toMatch(/refused: archive has more than 3 entries/);
    expect(readdirSync(parent)).toEqual(["rootfs"]);
    expect(await dockerExports()).toEqual([]);
  }, 120_000);
});
