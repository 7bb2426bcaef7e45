// e2e test of `mcp agent snapshot` (SPEC §5.9) through the COMPILED binary, next to a RUNNING
// real agent that has deployed a real podman service: the snapshot is a valid SQLite file
// (integrity_check ok) holding exactly the live registry's rows, table by table; --keep prunes
// only mcp-<stamp>.db files; the systemd units' form `mcp-agent snapshot --config …` (a symlink
// named mcp-agent) works; a bad config exits 2 and a missing database exits 1, one line each.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import {
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { mcpBinary, runMcp } from "../support/binary.ts";
import { busyboxImage, freePort } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const rand = () => Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `snap-${rand()}`;
const STAMPED = /^mcp-\d{8}T\d{6}Z\.db$/;

let agent: LocalAgent;
let liveDb = "";

interface SnapshotJson {
  path: string;
  bytes: number;
  database: string;
  schemaVersion: number;
  tables: Record<string, number>;
  pruned: string[];
}

/** Every row of every table, ordered, so two databases compare with toEqual. */
function dump(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true });
  try {
    const tables = db
      .query<{ name: string }, []>(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name",
      )
      .all();
    const out: Record<string, unknown[]> = {};
    for (const { name } of tables) out[name] = db.query(`SELECT * FROM "${name}" ORDER BY rowid`).all();
    return out;
  } finally {
    db.close();
  }
}

async function snapshot(args: string[], bin?: string) {
  return runMcp(["agent", "snapshot", "--config", agent.agentConfig, ...args], bin ? { bin } : {});
}

/** Waits until the wall-clock second changes, so the next snapshot gets a new file name. */
async function nextSecond(): Promise<void> {
  const s = Math.floor(Date.now() / 1000);
  for (let i = 0; i < 30 && Math.floor(Date.now() / 1000) === s; i++) await Bun.sleep(50);
}

beforeAll(async () => {
  const [a, image] = await Promise.all([startLocalAgent(), busyboxImage()]);
  agent = a;
  liveDb = join(agent.dir, "mcp.db");
  const port = await freePort();
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    [
      `name = "${SVC}"`,
      "",
      "[[components]]",
      'name = "web"',
      `image = "${image}"`,
      `ports = ["127.0.0.1:${port}:8080"]`,
      'env = ["GREETING=hi", "MODE=snapshot"]',
      "",
      "[[components]]",
      'name = "worker"',
      `image = "${image}"`,
      `cmd = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 600 & wait"]`,
      "",
    ].join("\n"),
  );
  const d = await agent.mcp(["deploy", SVC, "--pull", "never"], { timeoutMs: 60_000 });
  if (d.code !== 0) throw new Error(`deploy failed: ${d.stderr}${d.stdout}`);
  // Events: a stop/start pair on top of the deploy's own.
  for (const verb of ["stop", "start"]) {
    const r = await agent.mcp([verb, SVC], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new Error(`${verb} failed: ${r.stderr}`);
  }
}, 120_000);

afterAll(async () => {
  await removeContainers([`${SVC}-web`, `${SVC}-worker`]);
  await agent?.stop();
}, 30_000);

describe("mcp agent snapshot (compiled binary, running agent, real podman)", () => {
  test("while the agent runs: a valid SQLite file with the live registry's rows, table by table", async () => {
    let snap: SnapshotJson | null = null;
    let live: Record<string, unknown[]> = {};
    // The agent may write between our reads; a snapshot taken between two equal live reads
    // must equal them. Bounded: a quiet agent settles on the first try.
    for (let attempt = 0; attempt < 5 && snap === null; attempt++) {
      const before = dump(liveDb);
      await nextSecond();
      const r = await snapshot(["--json"]);
      expect(r.stderr).toBe("");
      expect(r.code).toBe(0);
      const after = dump(liveDb);
      if (JSON.stringify(before) === JSON.stringify(after)) {
        snap = JSON.parse(r.stdout) as SnapshotJson;
        live = after;
      }
    }
    expect(snap).not.toBeNull();
    const s = snap!;
    expect(s.path.startsWith(join(agent.dir, "backups") + "/")).toBe(true);
    expect(s.path.split("/").pop()).toMatch(STAMPED);
    expect(s.database).toBe(liveDb);
    expect(s.bytes).toBe(statSync(s.path).size);
    // Owner-only: the registry holds service env.
    expect(statSync(s.path).mode & 0o777).toBe(0o600);

    const db = new Database(s.path, { readonly: true });
    try {
      expect(db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").all()).toEqual([
        { integrity_check: "ok" },
      ]);
    } finally {
      db.close();
    }
    const copy = dump(s.path);
    expect(Object.keys(copy)).toEqual(Object.keys(live));
    for (const t of [
      "services",
      "components",
      "component_ports",
      "component_env",
      "component_cmd",
      "events",
    ]) {
      expect(live[t]?.length ?? 0).toBeGreaterThan(0); // the comparison below is not vacuous
    }
    for (const [table, rows] of Object.entries(live)) {
      expect({ table, rows: copy[table] }).toEqual({ table, rows });
      expect(s.tables[table]).toBe(rows.length);
    }
    expect(live.services).toContainEqual(expect.objectContaining({ name: SVC }));
  });

  test("taken while the agent is writing (a restart in flight): consistent, integrity ok", async () => {
    await nextSecond();
    const restart = agent.mcp(["restart", SVC], { timeoutMs: 60_000 });
    const r = await snapshot(["--json", "--dir", join(agent.dir, "during-restart")]);
    expect((await restart).code).toBe(0);
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as SnapshotJson;
    const db = new Database(j.path, { readonly: true });
    try {
      expect(db.query<{ integrity_check: string }, []>("PRAGMA integrity_check").all()).toEqual([
        { integrity_check: "ok" },
      ]);
      const q = db.query<{ n: number }, [string]>("SELECT count(*) AS n FROM components WHERE service = ?");
      expect(q.get(SVC)?.n).toBe(2);
    } finally {
      db.close();
    }
  });

  test("human output names the file, its size and rows per table", async () => {
    await nextSecond();
    const r = await snapshot([]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^snapshot \/\S+\/backups\/mcp-\d{8}T\d{6}Z\.db \(\d+(\.\d)?[KM]?i?B\) of /);
    expect(r.stdout).toMatch(/^TABLE +ROWS$/m);
    // The monitor may have discovered other containers on this machine (desired "ignore"):
    // compare with the file itself rather than fixed numbers.
    const file = /^snapshot (\S+) /.exec(r.stdout)![1]!;
    for (const [t, rows] of Object.entries(dump(file)))
      expect(r.stdout).toMatch(new RegExp(`^${t} +${rows.length}$`, "m"));
    expect(dump(file).components!.filter((c) => (c as { service: string }).service === SVC)).toHaveLength(2);
  });

  test("--keep 2 after 4 snapshots leaves the newest 2 and never touches other files", async () => {
    const dir = join(agent.dir, "keep-test");
    mkdirSync(dir);
    const foreign = ["notes.txt", "mcp-important.db", "mcp-20000101T000000Z.db.tmp-1"];
    for (const f of foreign) writeFileSync(join(dir, f), `keep me ${f}\n`);
    const written: string[] = [];
    for (let i = 0; i < 4; i++) {
      await nextSecond();
      const r = await snapshot(["--dir", dir, "--keep", "2", "--json"]);
      expect(r.code).toBe(0);
      const j = JSON.parse(r.stdout) as SnapshotJson;
      written.push(j.path);
      if (i >= 2) expect(j.pruned).toEqual([written[i - 2]!]);
      else expect(j.pruned).toEqual([]);
    }
    expect(new Set(written).size).toBe(4);
    const left = readdirSync(dir).sort();
    expect(left.filter((n) => STAMPED.test(n))).toEqual(written.slice(2).map((p) => p.split("/").pop()!));
    for (const f of foreign) expect(readFileSync(join(dir, f), "utf8")).toBe(`keep me ${f}\n`);
    expect(left).toHaveLength(2 + foreign.length);
  });

  test("as the systemd unit runs it: a symlink named mcp-agent, `snapshot --config …`", async () => {
    const link = join(agent.dir, "mcp-agent");
    symlinkSync(mcpBinary(), link);
    const dir = join(agent.dir, "via-symlink");
    const r = await runMcp(["snapshot", "--config", agent.agentConfig, "--dir", dir, "--json"], {
      bin: link,
    });
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const j = JSON.parse(r.stdout) as SnapshotJson;
    expect(j.path.startsWith(`${dir}/`)).toBe(true);
    expect(existsSync(j.path)).toBe(true);
    expect(dump(j.path).services).toContainEqual(expect.objectContaining({ name: SVC }));
  });

  test("a bad config is one line, exit 2; --keep 0 too", async () => {
    const bad = join(agent.dir, "bad-agent.toml");
    writeFileSync(bad, '[server]\ngrpc_addr = "127.0.0.1:1"\n[database]\npath = 5\n');
    for (const args of [
      ["agent", "snapshot", "--config", bad],
      ["agent", "snapshot", "--config", join(agent.dir, "nope.toml")],
      ["agent", "snapshot", "--config", agent.agentConfig, "--keep", "0"],
    ]) {
      const r = await runMcp(args);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trim().split("\n")).toHaveLength(1);
      expect(r.stderr).toStartWith("mcp: ");
      expect(r.stdout).toBe("");
    }
  });

  test("a missing database is one line, exit 1, and is not created", async () => {
    const cfg = join(agent.dir, "missing-db.toml");
    const text = readFileSync(agent.agentConfig, "utf8").replace(/^path = .*$/m, 'path = "gone/mcp.db"');
    writeFileSync(cfg, text);
    const r = await runMcp(["agent", "snapshot", "--config", cfg]);
    expect(r.code).toBe(1);
    expect(r.stderr).toBe(`mcp: registry database ${join(agent.dir, "gone", "mcp.db")} does not exist\n`);
    expect(existsSync(join(agent.dir, "gone"))).toBe(false);
  });
});
