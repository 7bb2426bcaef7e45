// Issue 9 "What must be shown" (snapshots) through the COMPILED binary: a master and one worker
// (own podman store), [snapshots] retain = 2. A deployed service whose /srv/<svc>/ holds a live
// WAL-mode SQLite database (a writer connection open, rows still in the -wal file), config,
// nested files and an excluded cache dir:
//   - `mcp snapshot create` stores <snapshots dir>/<svc>/<UTC timestamp>.tar.zst, and
//     `mcp snapshot list` shows it (text and --json) with the node and size
//   - the archive extracts (our reader) to the same files (checksums and modes), without the
//     excluded dir and the -wal/-shm files, and its SQLite copy passes integrity_check with every
//     row; GNU tar reads the same file
//   - three snapshots with retain = 2 leave the newest two, on disk and in the list
//   - unknown service and --direct are one clear line and a non-zero exit
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { extractTarZst } from "../../src/archive/index.ts";
import { busyboxImage } from "../support/env.ts";
import { type LocalFleet, startLocalFleet, waitFor } from "../support/master.ts";

const SVC = `snapsvc-${Math.random().toString(36).slice(2, 7)}`;
const ROWS = 300;
const STAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3})?Z\.tar\.zst$/;

let fleet: LocalFleet;
let image = "";
let writer: Database | undefined;
const srv = () => join(fleet.node("node-a").srvRoot, SVC);
const snapDir = () => join(fleet.dir, "master", "snapshots", SVC);

interface ListJson {
  service: string;
  snapshots: { filename: string; node: string; sizeBytes: number; createdAt: string }[];
}

/** rel path → "sha256 mode" for files, "dir" for directories. */
function checksums(root: string, skip: (rel: string) => boolean = () => false): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d).sort()) {
      const r = rel ? `${rel}/${n}` : n;
      if (skip(r)) continue;
      const abs = join(d, n);
      const st = lstatSync(abs);
      if (st.isDirectory()) {
        out[r] = "dir";
        walk(abs, r);
      } else
        out[r] =
          `${createHash("sha256").update(readFileSync(abs)).digest("hex")} ${(st.mode & 0o777).toString(8)}`;
    }
  };
  walk(root, "");
  return out;
}

async function list(): Promise<ListJson> {
  const r = await fleet.mcp(["snapshot", "list", SVC, "--json"], { timeoutMs: 60_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as ListJson;
}

async function create(): Promise<{ filename: string; sizeBytes: number }> {
  const r = await fleet.mcp(["snapshot", "create", SVC, "--json"], { timeoutMs: 120_000 });
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
  return JSON.parse(r.stdout) as { filename: string; sizeBytes: number };
}

beforeAll(async () => {
  image = await busyboxImage("v1.0.0");
  fleet = await startLocalFleet({
    workers: 1,
    edge: false,
    masterNode: false,
    images: [image],
    snapshots: { retain: 2 },
  });
  await waitFor(
    "the worker is healthy",
    async () => {
      const r = await fleet.mcp(["node", "list", "--json"], { timeoutMs: 30_000 });
      const nodes = (JSON.parse(r.stdout) as { nodes: { status: string }[] }).nodes;
      return nodes.length === 1 && nodes[0]!.status === "healthy";
    },
    30_000,
    300,
  );
}, 180_000);

afterAll(async () => {
  writer?.close();
  if (!fleet) return;
  await fleet.removeContainers([`${SVC}-web`]);
  await fleet.stop();
}, 120_000);

describe("mcp snapshot", () => {
  test("a service with a live SQLite database is deployed", async () => {
    const dir = srv();
    mkdirSync(join(dir, "nested", "deeper"), { recursive: true });
    mkdirSync(join(dir, "cache"), { recursive: true });
    writeFileSync(join(dir, "config.toml"), 'listen = ":8080"\n', { mode: 0o640 });
    writeFileSync(join(dir, "nested", "blob.bin"), crypto.getRandomValues(new Uint8Array(200_000)));
    writeFileSync(join(dir, "nested", "deeper", "note.txt"), "kept\n", { mode: 0o600 });
    writeFileSync(join(dir, "cache", "junk.bin"), new Uint8Array(50_000));
    writer = new Database(join(dir, "data.db"), { create: true });
    writer.run("PRAGMA journal_mode = WAL");
    writer.run("PRAGMA wal_autocheckpoint = 0");
    writer.run("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
    const ins = writer.prepare("INSERT INTO items (body) VALUES (?)");
    writer.transaction(() => {
      for (let i = 0; i < ROWS; i++) ins.run(`row ${i} ${"x".repeat(i % 41)}`);
    })();
    const def = [
      `name = "${SVC}"`,
      "",
      "[snapshot]",
      'method = "full"',
      'exclude = ["cache/"]',
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      'restart = "no"',
      `volumes = ["${dir}:/data"]`,
    ];
    writeFileSync(join(fleet.servicesDir, `${SVC}.toml`), `${def.join("\n")}\n`);
    const r = await fleet.mcp(["deploy", SVC, "--json"], { timeoutMs: 120_000 });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(readdirSync(dir)).toContain("data.db-wal");
  }, 120_000);

  test("snapshot create stores a tar.zst under the master's snapshots dir; list shows it", async () => {
    const made = await create();
    expect(made.filename).toMatch(STAMP);
    const file = join(snapDir(), made.filename);
    expect(lstatSync(file).size).toBe(made.sizeBytes);
    const l = await list();
    expect(l.snapshots.map((s) => [s.filename, s.node, s.sizeBytes])).toEqual([
      [made.filename, "node-a", made.sizeBytes],
    ]);
    const text = await fleet.mcp(["snapshot", "list", SVC], { timeoutMs: 60_000 });
    expect(text.code).toBe(0);
    expect(text.stdout).toContain(made.filename);
    expect(text.stdout).toContain("node-a");
  }, 120_000);

  test("the archive extracts to the same files and a database that passes integrity_check", async () => {
    const [snap] = (await list()).snapshots;
    const file = join(snapDir(), snap!.filename);
    const out = mkdtempSync(join(fleet.dir, "extract-"));
    await extractTarZst(Bun.file(file).stream(), out);
    const skip = (r: string) => r === "cache" || r.startsWith("data.db");
    expect(checksums(out, (r) => r.startsWith("data.db"))).toEqual(checksums(srv(), skip));
    expect(readdirSync(out).filter((n) => n.startsWith("data.db"))).toEqual(["data.db"]);
    const db = new Database(join(out, "data.db"), { readonly: true });
    try {
      expect(db.query("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      const rows = db.query("SELECT id, body FROM items ORDER BY id").all();
      expect(rows).toEqual(writer!.query("SELECT id, body FROM items ORDER BY id").all());
      expect(rows.length).toBe(ROWS);
    } finally {
      db.close();
    }
    // The standard tool reads it too.
    const gnu = mkdtempSync(join(fleet.dir, "gnu-"));
    const t = Bun.spawnSync(["tar", "--zstd", "-xf", file, "-C", gnu]);
    expect(t.exitCode).toBe(0);
    expect(checksums(gnu)).toEqual(checksums(out));
  }, 60_000);

  test("retain = 2: after three snapshots the newest two are kept, on disk and in the list", async () => {
    const first = (await list()).snapshots[0]!.filename;
    const second = await create();
    const third = await create();
    const l = await list();
    expect(l.snapshots.map((s) => s.filename)).toEqual([third.filename, second.filename]);
    expect(readdirSync(snapDir()).sort()).toEqual([second.filename, third.filename].sort());
    expect(readdirSync(snapDir())).not.toContain(first);
  }, 180_000);

  test("bad input: unknown service and --direct are one line and a non-zero exit", async () => {
    const r = await fleet.mcp(["snapshot", "create", "nosuch"], { timeoutMs: 60_000 });
    expect(r.code).not.toBe(0);
    expect(r.stderr.trim().split("\n")).toHaveLength(1);
    expect(r.stderr).toContain("nosuch has no placement");
    const d = await fleet.mcp(["snapshot", "list", SVC, "--direct"], { timeoutMs: 60_000 });
    expect(d.code).toBe(2);
    expect(d.stderr.trim()).toBe(
      "mcp: snapshots need a master: configure [master] in the CLI config (and do not pass --direct)",
    );
  }, 60_000);
});
