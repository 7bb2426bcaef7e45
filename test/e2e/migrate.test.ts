// Issue 9 "What must be shown" (migration) through the COMPILED binary: a master, its node
// (hub), two workers and an edge agent, real podman stores per node, the integration fakes.
//   - a service with a SQLite database and other files in /srv/<svc>/ and a public route moves
//     with `mcp migrate <svc> --to <other>`: row count, row content and file checksums are
//     identical on the destination; the destination's mc-proxy has the route and the source's
//     not; the A record exists and was rewritten (every fleet node has address 127.0.0.1, so the
//     record's VALUE cannot tell source from destination: the fake's write count shows it was
//     deleted by the source's teardown and set again by the destination); the edge route is
//     still there; no container is left on the source; `mcp status` shows the new placement;
//     the final snapshot is stored and listed (`mcp snapshot list`) as taken from the source
//   - an interrupted transfer leaves the service on the source: migrating back to the old node,
//     whose /srv/<svc>/ is still there (undeploy keeps data) and refused without --force, exits
//     non-zero saying the service is still on the source, where it runs again with its data;
//     --force then moves it
//   - bad requests (core service, edge target, same node, unknown service, --all without --from)
//     are one clear line and a non-zero exit; --all evacuates a node, skipping core
//   - a node that is down (SIGSTOP, marked unhealthy): its service is restored elsewhere from the
//     master's newest stored snapshot (`mcp snapshot create` taken before), data identical
// Tests run in file order: each step starts from the state the previous one left.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import { busyboxImage } from "../support/env.ts";
import { type LocalFleet, startLocalFleet, waitFor } from "../support/master.ts";

const SVC = "mig";
const HOST = "mig.metacircular.net";
const INTERNAL = `${SVC}.svc.mcp.metacircular.net`;
const CORE = "migcore";
const EXTRA = "migextra"; // moved by --all
const DR = "migdr"; // moved while its node is down, from a stored snapshot
const ROWS = 250;

let fleet: LocalFleet;
let image = "";
let source = "";
let dest = "";

interface StatusJson {
  services: { service: string; node: string; tier: string }[];
}
interface MigrateJson {
  success: boolean;
  steps: { step: string; success: boolean; error?: string }[];
}

function writeDef(name: string, extra: string[] = []): void {
  // No [snapshot] section: the default method keeps only *.toml, *.db, *.pem for snapshots, and a
  // migration must still carry every file (the master asks the source for all files).
  const lines = [`name = "${name}"`, ...extra];
  lines.push("", "[[components]]", 'name = "web"', `image = "${image}"`, 'restart = "no"');
  if (name === SVC)
    lines.push(
      "",
      "[[components.routes]]",
      "port = 443",
      'mode = "l7"',
      `hostname = "${HOST}"`,
      "public = true",
    );
  writeFileSync(join(fleet.servicesDir, `${name}.toml`), `${lines.join("\n")}\n`);
}

/** Every regular file under `dir` (relative path → sha256), the SQLite database excluded. */
function checksums(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && !e.name.startsWith("data.db"))
        out[relative(dir, p)] = createHash("sha256").update(readFileSync(p)).digest("hex");
    }
  };
  walk(dir);
  return out;
}

/** The database's row count and a digest of its rows (its bytes may differ after VACUUM INTO). */
function dbContent(file: string): { rows: number; digest: string; integrity: string } {
  const db = new Database(file, { readonly: true });
  try {
    const rows = db.query<{ id: number; body: string }, []>("SELECT id, body FROM items ORDER BY id").all();
    const integrity = db
      .query<{ integrity_check: string }, []>("PRAGMA integrity_check")
      .get()!.integrity_check;
    return {
      rows: rows.length,
      digest: createHash("sha256").update(JSON.stringify(rows)).digest("hex"),
      integrity,
    };
  } finally {
    db.close();
  }
}

function seedData(dir: string): void {
  mkdirSync(join(dir, "nested", "deeper"), { recursive: true });
  const db = new Database(join(dir, "data.db"), { create: true });
  db.run("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL)");
  const ins = db.prepare("INSERT INTO items (body) VALUES (?)");
  db.transaction(() => {
    for (let i = 0; i < ROWS; i++) ins.run(`row ${i} ${"x".repeat(i % 37)}`);
  })();
  db.close();
  writeFileSync(join(dir, "config.toml"), 'listen = ":8080"\n');
  writeFileSync(join(dir, "nested", "blob.bin"), crypto.getRandomValues(new Uint8Array(300_000)));
  writeFileSync(join(dir, "nested", "deeper", "note.txt"), "kept across nodes\n", { mode: 0o640 });
}

async function migrate(args: string[]): Promise<{ code: number; json: MigrateJson; stderr: string }> {
  const r = await fleet.mcp(["migrate", ...args, "--json"], { timeoutMs: 180_000 });
  let json: MigrateJson;
  try {
    json = JSON.parse(r.stdout) as MigrateJson;
  } catch {
    throw new Error(`mcp migrate ${args.join(" ")}: exit ${r.code}, no JSON; stderr: ${r.stderr.trim()}`);
  }
  return { code: r.code, json, stderr: r.stderr };
}

async function placement(name: string): Promise<string | undefined> {
  const r = await fleet.mcp(["status", "--json"], { timeoutMs: 60_000 });
  if (r.code !== 0) throw new Error(`status: ${r.stderr}`);
  return (JSON.parse(r.stdout) as StatusJson).services.find((s) => s.service === name)?.node;
}

async function running(node: string, container: string): Promise<boolean> {
  const r = await fleet.node(node).podman("inspect", "--format", "{{.State.Running}}", container);
  return r.code === 0 && r.stdout === "true";
}

const exists = async (node: string, container: string) =>
  (await fleet.node(node).podman("container", "exists", container)).code === 0;

const srvDir = (node: string, svc = SVC) => join(fleet.node(node).srvRoot, svc);

beforeAll(async () => {
  image = await busyboxImage("v1.0.0");
  fleet = await startLocalFleet({ workers: 2, edge: true, images: [image] });
  await waitFor(
    "every node healthy",
    async () => {
      const r = await fleet.mcp(["node", "list", "--json"], { timeoutMs: 30_000 });
      const nodes = (JSON.parse(r.stdout) as { nodes: { status: string }[] }).nodes;
      return nodes.length === fleet.nodes.length && nodes.every((n) => n.status === "healthy");
    },
    30_000,
    300,
  );
}, 180_000);

afterAll(async () => {
  if (!fleet) return;
  for (const n of fleet.nodes) n.resume();
  await fleet.removeContainers([`${SVC}-web`, `${CORE}-web`, `${EXTRA}-web`, `${DR}-web`]);
  await fleet.stop();
}, 120_000);

describe("mcp migrate between two agents", () => {
  test("a service with a SQLite database and a public route is deployed on one worker", async () => {
    // Where will it go? Both workers are empty: node-a wins the tie. Seed its data there first.
    writeDef(SVC);
    seedData(srvDir("node-a"));
    const r = await fleet.mcp(["deploy", SVC, "--json"], { timeoutMs: 120_000 });
    expect(r.code).toBe(0);
    source = (JSON.parse(r.stdout) as { node: string }).node;
    expect(source).toBe("node-a");
    dest = "node-b";
    expect(await running(source, `${SVC}-web`)).toBe(true);
    expect(
      fleet
        .node(source)
        .proxy.routes()
        .some((x) => x.hostname === INTERNAL),
    ).toBe(true);
    expect(
      fleet
        .node("edge")
        .proxy.routes()
        .some((x) => x.hostname === HOST),
    ).toBe(true);
    expect(fleet.mcns.records().filter((x) => x.name === SVC && x.type === "A").length).toBe(1);
  }, 120_000);

  test("bad requests are refused with one line before anything changes", async () => {
    writeDef(CORE, ['tier = "core"']);
    expect((await fleet.mcp(["deploy", CORE], { timeoutMs: 120_000 })).code).toBe(0);
    const cases: [string[], RegExp][] = [
      [[CORE, "--to", dest], /tier "core"/],
      [[SVC, "--to", "edge"], /edge node/],
      [[SVC, "--to", source], /already on node-a/],
      [["nosuch", "--to", dest], /not placed by the master/],
      [[SVC, "--to", "nowhere"], /"nowhere" is not known/],
      [["--all", "--to", dest], /--all needs --from/],
      [[SVC, "--all", "--from", source, "--to", dest], /give no service name/],
      [[SVC], /--to <node> is required/],
    ];
    for (const [args, msg] of cases) {
      const r = await fleet.mcp(["migrate", ...args], { timeoutMs: 60_000 });
      expect(r.code).not.toBe(0);
      expect(r.stderr).toMatch(msg);
      expect(r.stderr.trim().split("\n").length).toBe(1);
    }
    expect(await running(source, `${SVC}-web`)).toBe(true);
    expect(await placement(SVC)).toBe(source);
  }, 120_000);

  test("mcp migrate moves data, routes, DNS and placement; nothing is left on the source", async () => {
    const before = { files: checksums(srvDir(source)), db: dbContent(join(srvDir(source), "data.db")) };
    expect(before.db.rows).toBe(ROWS);
    const writes = fleet.mcns.writeCalls();
    const text = await fleet.mcp(["migrate", SVC, "--to", dest], { timeoutMs: 180_000 });
    expect(text.stderr).toBe("");
    expect(text.code).toBe(0);
    for (const step of ["stop on node-a", "snapshot from node-a", "restore on node-b", "deploy on node-b"])
      expect(text.stdout).toContain(step);
    expect(text.stdout).toContain(`${SVC}: migrated to ${dest}`);
    // The final snapshot is kept and listed like any other, taken from the source.
    const list = await fleet.mcp(["snapshot", "list", SVC, "--json"], { timeoutMs: 30_000 });
    const snaps = (JSON.parse(list.stdout) as { snapshots: { node: string; sizeBytes: number }[] }).snapshots;
    expect(snaps.length).toBe(1);
    expect(snaps[0]!.node).toBe(source);
    expect(snaps[0]!.sizeBytes).toBeGreaterThan(0);

    // Data identical on the destination.
    const after = { files: checksums(srvDir(dest)), db: dbContent(join(srvDir(dest), "data.db")) };
    expect(after.db.rows).toBe(ROWS);
    expect(after.db.digest).toBe(before.db.digest);
    expect(after.db.integrity).toBe("ok");
    expect(after.files).toEqual(before.files);
    expect(Object.keys(after.files).length).toBe(3);
    expect(statSync(join(srvDir(dest), "nested", "deeper", "note.txt")).mode & 0o777).toBe(0o640);

    // The destination runs it; the source has no container left (its data stays there).
    expect(await running(dest, `${SVC}-web`)).toBe(true);
    expect(await exists(source, `${SVC}-web`)).toBe(false);
    // Routes: on the destination's mc-proxy, gone from the source's; the edge route stays.
    expect(
      fleet
        .node(dest)
        .proxy.routes()
        .some((x) => x.hostname === INTERNAL),
    ).toBe(true);
    expect(
      fleet
        .node(source)
        .proxy.routes()
        .some((x) => x.hostname === INTERNAL),
    ).toBe(false);
    expect(
      fleet
        .node("edge")
        .proxy.routes()
        .some((x) => x.hostname === HOST),
    ).toBe(true);
    // DNS: one A record for the service, rewritten during the migration (see the header).
    const a = fleet.mcns.records().filter((x) => x.name === SVC && x.type === "A");
    expect(a.map((x) => x.value)).toEqual(["127.0.0.1"]);
    expect(fleet.mcns.writeCalls()).toBeGreaterThan(writes);
    // Placement.
    expect(await placement(SVC)).toBe(dest);
  }, 240_000);

  test("an interrupted transfer (destination refuses the data) leaves the service running on the source", async () => {
    // The old node still has /srv/mig/ (undeploy keeps data): without --force its import is refused.
    writeFileSync(join(srvDir(source), "stale.txt"), "left on the old node\n");
    const r = await migrate([SVC, "--to", source]);
    expect(r.code).not.toBe(0);
    expect(r.json.success).toBe(false);
    expect(r.stderr).toContain(`still on ${dest}`);
    const failedStep = r.json.steps.find((s) => !s.success);
    expect(failedStep?.step).toBe(`${SVC}: restore on ${source}`);
    expect(failedStep?.error ?? "").toMatch(/exists|force/i);
    // Running again on the source of this attempt, with its data; nothing deployed on the other.
    expect(await running(dest, `${SVC}-web`)).toBe(true);
    expect(await exists(source, `${SVC}-web`)).toBe(false);
    expect(dbContent(join(srvDir(dest), "data.db")).rows).toBe(ROWS);
    expect(readFileSync(join(srvDir(source), "stale.txt"), "utf8")).toBe("left on the old node\n");
    expect(
      fleet
        .node(dest)
        .proxy.routes()
        .some((x) => x.hostname === INTERNAL),
    ).toBe(true);
    expect(fleet.mcns.records().filter((x) => x.name === SVC && x.type === "A").length).toBe(1);
    expect(await placement(SVC)).toBe(dest);

    // --force overwrites the old directory: back on the first node, the stale file gone.
    const back = await migrate([SVC, "--to", source, "--force"]);
    expect(back.json.steps.filter((s) => !s.success)).toEqual([]);
    expect(back.code).toBe(0);
    expect(await running(source, `${SVC}-web`)).toBe(true);
    expect(await exists(dest, `${SVC}-web`)).toBe(false);
    expect(dbContent(join(srvDir(source), "data.db")).rows).toBe(ROWS);
    expect(() => statSync(join(srvDir(source), "stale.txt"))).toThrow();
    expect(await placement(SVC)).toBe(source);
  }, 300_000);

  test("--all --from evacuates a node's services one by one, skipping core", async () => {
    writeDef(EXTRA, [`node = "${source}"`]);
    mkdirSync(srvDir(source, EXTRA), { recursive: true });
    writeFileSync(join(srvDir(source, EXTRA), "state.json"), '{"n":1}\n');
    expect((await fleet.mcp(["deploy", EXTRA], { timeoutMs: 120_000 })).code).toBe(0);
    const r = await migrate(["--all", "--from", source, "--to", dest, "--force"]);
    expect(r.json.steps.filter((s) => !s.success)).toEqual([]);
    expect(r.code).toBe(0);
    const done = r.json.steps.map((s) => s.step).filter((s) => s.includes("migrated to"));
    expect(done.sort()).toEqual([`${SVC}: migrated to ${dest}`, `${EXTRA}: migrated to ${dest}`].sort());
    for (const s of [SVC, EXTRA]) {
      expect(await running(dest, `${s}-web`)).toBe(true);
      expect(await exists(source, `${s}-web`)).toBe(false);
      expect(await placement(s)).toBe(dest);
    }
    expect(readFileSync(join(srvDir(dest, EXTRA), "state.json"), "utf8")).toBe('{"n":1}\n');
    // The core service never moves: evacuating the master's node skips it.
    const hub = await migrate(["--all", "--from", "hub", "--to", dest]);
    expect(hub.code).toBe(0);
    expect(hub.json.steps.map((s) => s.step)).toEqual([
      `${CORE}: skipped (tier "core" stays on the master's node)`,
    ]);
    expect(await placement(CORE)).toBe("hub");
    expect(await running("hub", `${CORE}-web`)).toBe(true);
  }, 300_000);

  test("a node that is down: the service is restored on another node from the master's latest stored snapshot", async () => {
    const down = "node-a";
    // Restoring from a STORED snapshot brings back what the service's [snapshot] method selected
    // (the default keeps only *.toml/*.db/*.pem): this service opts into every file.
    writeDef(DR, [`node = "${down}"`, "", "[snapshot]", 'method = "full"']);
    seedData(srvDir(down, DR));
    expect((await fleet.mcp(["deploy", DR], { timeoutMs: 120_000 })).code).toBe(0);
    const before = { files: checksums(srvDir(down, DR)), db: dbContent(join(srvDir(down, DR), "data.db")) };
    // A stored snapshot (what the scheduled snapshots leave), taken before the node goes down.
    const snap = await fleet.mcp(["snapshot", "create", DR], { timeoutMs: 60_000 });
    expect(snap.stderr).toBe("");
    expect(snap.code).toBe(0);
    fleet.node(down).pause();
    await waitFor(
      `${down} unhealthy`,
      async () => {
        const r = await fleet.mcp(["node", "list", "--json"], { timeoutMs: 30_000 });
        return (JSON.parse(r.stdout) as { nodes: { name: string; status: string }[] }).nodes.some(
          (n) => n.name === down && n.status === "unhealthy",
        );
      },
      30_000,
      300,
    );
    const r = await migrate([DR, "--to", dest]);
    expect(r.json.steps.filter((s) => !s.success)).toEqual([]);
    expect(r.code).toBe(0);
    const steps = r.json.steps.map((s) => s.step);
    expect(steps).toContain(`${DR}: stop on ${down}: skipped (${down} is down)`);
    expect(steps.some((s) => s.includes("using the stored snapshot"))).toBe(true);
    expect(await running(dest, `${DR}-web`)).toBe(true);
    const after = { files: checksums(srvDir(dest, DR)), db: dbContent(join(srvDir(dest, DR), "data.db")) };
    expect(after.db.digest).toBe(before.db.digest);
    expect(after.files).toEqual(before.files);

    fleet.node(down).resume();
    expect(await placement(DR)).toBe(dest);
  }, 180_000);
});
