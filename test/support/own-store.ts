// A podman store that belongs to one test file: its own root, runroot and tmpdir, file locks (the
// default SHM lock table is shared by every store on the machine, and a store with a fresh tmpdir
// would free all of it on its first start), and the test images copied in (podman save | load).
// An agent on it sees only what the test made there — nothing of other tests' containers in the
// machine's default store — so "nothing deployed" and drift counts are exact.
// The same recipe as recover.test.ts's disaster store (which shares podmanIn).
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { podmanEnv } from "./env.ts";

export interface OwnStore {
  base: string;
  /** For startLocalAgent's runtimeArgs and for podman() here. */
  globalArgs: string[];
  /** For startLocalAgent's env: CONTAINERS_CONF with file locks. */
  env: Record<string, string>;
  /** podman in this store; never throws on a non-zero exit (outputs trimmed). */
  podman(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** Removes the named containers (by name, as every test does), unmounts and deletes the store. */
  remove(containers: string[]): Promise<void>;
}

/** podman with a store's global flags and env; never throws on a non-zero exit (outputs trimmed). */
export async function podmanIn(
  p: { globalArgs: string[]; env: Record<string, string> },
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  const proc = Bun.spawn(["podman", ...p.globalArgs, ...args], {
    env: { ...process.env, ...p.env },
    stdin: "ignore",
    stdout: "pipe",
    stderr: "pipe",
  });
  const timer = setTimeout(() => proc.kill("SIGKILL"), 60_000);
  const [stdout, stderr, code] = await Promise.all([
    new Response(proc.stdout).text(),
    new Response(proc.stderr).text(),
    proc.exited,
  ]);
  clearTimeout(timer);
  return { code, stdout: stdout.trim(), stderr: stderr.trim() };
}

export async function ownPodmanStore(prefix: string, images: string[]): Promise<OwnStore> {
  const base = join(tmpdir(), `${prefix}-store-${Math.random().toString(36).slice(2, 8)}`);
  mkdirSync(base, { recursive: true });
  const conf = join(base, "containers.conf");
  writeFileSync(conf, '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\nlock_type = "file"\n');
  const pe = await podmanEnv();
  const globalArgs = [
    ...pe.globalArgs,
    "--root",
    join(base, "storage"),
    "--runroot",
    join(base, "run"),
    "--tmpdir",
    join(base, "tmp"),
  ];
  const env = { ...pe.env, CONTAINERS_CONF: conf };
  const podman = (...args: string[]) => podmanIn({ globalArgs, env }, ...args);
  for (const image of images) {
    const save = Bun.spawn(["podman", ...pe.globalArgs, "save", image], {
      env: { ...process.env, ...pe.env },
      stdout: "pipe",
      stderr: "pipe",
    });
    const load = Bun.spawn(["podman", ...globalArgs, "load"], {
      env: { ...process.env, ...env },
      stdin: save.stdout,
      stdout: "pipe",
      stderr: "pipe",
    });
    const [saveCode, loadCode, loadErr] = await Promise.all([
      save.exited,
      load.exited,
      new Response(load.stderr).text(),
    ]);
    if (saveCode !== 0 || loadCode !== 0)
      throw new Error(`podman save ${image} | load failed (${saveCode}/${loadCode}): ${loadErr.trim()}`);
  }
  return {
    base,
    globalArgs,
    env,
    podman,
    async remove(containers) {
      if (containers.length > 0) await podman("rm", "-f", "-t", "1", "--ignore", ...containers);
      const mounts = readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .map((l) => l.split(" ")[4] ?? "")
        .filter((m) => m.startsWith(base));
      for (const m of mounts.reverse()) Bun.spawnSync(["umount", m]);
      rmSync(base, { recursive: true, force: true });
    },
  };
}
