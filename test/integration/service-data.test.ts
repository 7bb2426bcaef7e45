// ExportServiceData / ImportServiceData on a real in-process agent (real TLS gRPC, real sqlite):
// a service dir with a live WAL-mode SQLite database (rows still in the -wal file, the writer
// connection open), a config .toml, a cert .pem, a big non-matching file and an excluded dir.
// The default method archives only toml/db/pem, the database from a VACUUM INTO copy that passes
// integrity_check with every row; "full" archives everything but the excludes; importing into
// another agent's srv root gives identical checksums; an existing dir is refused without force
// and replaced whole with it; a broken stream leaves neither a temp dir nor a changed target.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { createHash } from "node:crypto";
import { lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { extractTarZst } from "../../src/archive/index.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { CallError, connect, type TypedClient } from "../../src/rpc/client.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";

const SVC = "datasvc";
const ROWS = 500;
const token = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
]);
let dir = "";
let caPem = "";
const agents: RunningAgent[] = [];
const clients: TypedClient<typeof McpAgent>[] = [];
let src: { agent: RunningAgent; client: TypedClient<typeof McpAgent>; srv: string };
let dst: { agent: RunningAgent; client: TypedClient<typeof McpAgent>; srv: string };
let writer: Database;

async function agentIn(name: string, pki: { certPem: string; keyPem: string }) {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const srv = join(sub, "srv");
  const agent = await startAgent(
    await testAgentSettings(sub, pki, { nodeName: name, validator, pullPolicy: "never" }),
  );
  agents.push(agent);
  const client = await connect(McpAgent, {
    addresses: [`127.0.0.1:${agent.port}`],
    caPem,
    token,
    defaultTimeoutMs: 30_000,
  });
  clients.push(client);
  return { agent, client, srv };
}

/** rel path → "sha256 mode" for every file, "dir mode" for every directory. */
function checksums(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const n of readdirSync(d).sort()) {
      const abs = join(d, n);
      const r = rel ? `${rel}/${n}` : n;
      const st = lstatSync(abs);
      const mode = (st.mode & 0o777).toString(8);
      if (st.isDirectory()) {
        out[r] = `dir ${mode}`;
        walk(abs, r);
      } else out[r] = `${createHash("sha256").update(readFileSync(abs)).digest("hex")} ${mode}`;
    }
  };
  walk(root, "");
  return out;
}

async function exportTo(client: TypedClient<typeof McpAgent>, service: string): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  for await (const m of client.exportServiceData({ serviceName: service })) chunks.push(m.data);
  return chunks;
}

async function* feed(service: string, chunks: Uint8Array[], force = false) {
  yield { serviceName: service, force, data: new Uint8Array() };
  for (const data of chunks) yield { data };
}

async function extractChunks(chunks: Uint8Array[]): Promise<string> {
  const out = mkdtempSync(join(dir, "x-"));
  await extractTarZst(
    (async function* () {
      yield* chunks;
    })(),
    out,
  );
  return out;
}

async function codeOf(p: Promise<unknown>): Promise<{ code: number; message: string }> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CallError) return { code: err.code, message: err.details };
    throw err;
  }
  throw new Error("expected the call to fail");
}

function setSnapshot(agent: RunningAgent, snapshot: { method?: string; exclude: string[] } | undefined) {
  agent.registry.upsertService({
    name: SVC,
    specJson: JSON.stringify({ name: SVC, snapshot, components: [] }),
  });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-svcdata-test-"));
  const { ca, leaf } = await testPki("svcdata", { commonName: "agent", days: 2 });
  caPem = ca.certPem;
  const pki = { certPem: leaf.chainPem, keyPem: leaf.keyPem };
  src = await agentIn("src", pki);
  dst = await agentIn("dst", pki);

  const svcDir = join(src.srv, SVC);
  mkdirSync(join(svcDir, "data"), { recursive: true });
  mkdirSync(join(svcDir, "cache", "deep"), { recursive: true });
  mkdirSync(join(svcDir, "empty"));
  writeFileSync(join(svcDir, "config.toml"), 'name = "datasvc"\n', { mode: 0o640 });
  writeFileSync(join(svcDir, "data", "tls.pem"), "-----BEGIN CERTIFICATE-----\nxx\n", { mode: 0o600 });
  writeFileSync(join(svcDir, "data", "big.bin"), Buffer.alloc(3 * 1024 * 1024, 0x5a));
  writeFileSync(join(svcDir, "cache", "deep", "state.toml"), "cached = true\n");
  // A live WAL database: the writer stays open, so its rows sit in app.db-wal, not app.db.
  writer = new Database(join(svcDir, "data", "app.db"));
  writer.run("PRAGMA journal_mode = WAL");
  writer.run("PRAGMA wal_autocheckpoint = 0");
  writer.run("CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)");
  const ins = writer.prepare("INSERT INTO items (body) VALUES (?)");
  writer.transaction(() => {
    for (let i = 0; i < ROWS; i++) ins.run(`row ${i} ${"y".repeat(50)}`);
  })();
});

afterAll(async () => {
  writer?.close();
  for (const c of clients) c.close();
  await Promise.all(agents.map((a) => a.close()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("ExportServiceData", () => {
  test("default method: only *.toml, *.db, *.pem; the database is a consistent vacuumed copy", async () => {
    setSnapshot(src.agent, { exclude: ["cache/"] });
    expect(lstatSync(join(src.srv, SVC, "data", "app.db-wal")).size).toBeGreaterThan(0);
    const chunks = await exportTo(src.client, SVC);
    const out = await extractChunks(chunks);
    const sums = checksums(out);
    expect(Object.keys(sums).sort()).toEqual(["config.toml", "data", "data/app.db", "data/tls.pem"]);
    const orig = checksums(join(src.srv, SVC));
    expect(sums["config.toml"]).toBe(orig["config.toml"]!);
    expect(sums["data/tls.pem"]).toBe(orig["data/tls.pem"]!);
    const db = new Database(join(out, "data", "app.db"), { readonly: true });
    try {
      expect(db.query("PRAGMA integrity_check").get()).toEqual({ integrity_check: "ok" });
      expect(db.query("SELECT count(*) AS n FROM items").get()).toEqual({ n: ROWS });
      // Self-contained: not left in WAL mode needing a -wal file.
      expect(db.query("PRAGMA journal_mode").get()).toEqual({ journal_mode: "delete" });
    } finally {
      db.close();
    }
  });

  test("full method: everything except the excludes and the SQLite side files", async () => {
    setSnapshot(src.agent, { method: "full", exclude: ["cache/"] });
    const out = await extractChunks(await exportTo(src.client, SVC));
    const sums = checksums(out);
    expect(Object.keys(sums).sort()).toEqual([
      "config.toml",
      "data",
      "data/app.db",
      "data/big.bin",
      "data/tls.pem",
      "empty",
    ]);
    const orig = checksums(join(src.srv, SVC));
    for (const k of ["config.toml", "data/big.bin", "data/tls.pem", "empty", "data"])
      expect(sums[k]).toBe(orig[k]!);
  });

  test("an exec method runs only for a running container; none here, so it archives directly", async () => {
    setSnapshot(src.agent, { method: "exec: /bin/false", exclude: [] });
    const out = await extractChunks(await exportTo(src.client, SVC));
    expect(Object.keys(checksums(out))).toContain("cache/deep/state.toml");
  });

  test("unknown service: NOT_FOUND, one line", async () => {
    const e = await codeOf(exportTo(src.client, "nosuch"));
    expect(e.code).toBe(status.NOT_FOUND);
    expect(e.message).toBe("unknown service nosuch on node src");
  });
});

describe("ImportServiceData", () => {
  test("into another srv root: identical checksums; bytes_written counts the file bytes", async () => {
    setSnapshot(src.agent, { method: "full", exclude: ["cache/"] });
    const chunks = await exportTo(src.client, SVC);
    const r = await dst.client.importServiceData(feed(SVC, chunks));
    const got = checksums(join(dst.srv, SVC));
    const want = checksums(await extractChunks(chunks));
    expect(got).toEqual(want);
    const fileBytes = Object.keys(got)
      .filter((k) => !got[k]!.startsWith("dir"))
      .reduce((n, k) => n + lstatSync(join(dst.srv, SVC, k)).size, 0);
    expect(Number(r.bytesWritten)).toBe(fileBytes);
    expect(readdirSync(dst.srv).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("an existing non-empty dir is refused without force and replaced whole with it", async () => {
    writeFileSync(join(dst.srv, SVC, "local-only.txt"), "stays unless forced");
    setSnapshot(src.agent, undefined);
    const chunks = await exportTo(src.client, SVC);
    const e = await codeOf(dst.client.importServiceData(feed(SVC, chunks)));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.message).toContain("exists and is not empty; use force to replace it");
    expect(readFileSync(join(dst.srv, SVC, "local-only.txt"), "utf8")).toBe("stays unless forced");

    // The default method with no excludes: cache/deep/state.toml is a .toml too.
    await dst.client.importServiceData(feed(SVC, chunks, true));
    expect(Object.keys(checksums(join(dst.srv, SVC))).sort()).toEqual([
      "cache",
      "cache/deep",
      "cache/deep/state.toml",
      "config.toml",
      "data",
      "data/app.db",
      "data/tls.pem",
    ]);
    expect(readdirSync(dst.srv).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("a broken or truncated stream: INVALID_ARGUMENT, target untouched, no temp dir left", async () => {
    const before = checksums(join(dst.srv, SVC));
    const garbage = await codeOf(
      dst.client.importServiceData(feed(SVC, [new Uint8Array(4096).fill(7)], true)),
    );
    expect(garbage.code).toBe(status.INVALID_ARGUMENT);
    const chunks = await exportTo(src.client, SVC);
    const all = Buffer.concat(chunks);
    const cut = await codeOf(
      dst.client.importServiceData(feed(SVC, [all.subarray(0, all.length >> 1)], true)),
    );
    expect(cut.code).toBe(status.INVALID_ARGUMENT);
    expect(checksums(join(dst.srv, SVC))).toEqual(before);
    expect(readdirSync(dst.srv).filter((n) => n.startsWith("."))).toEqual([]);
  });

  test("the first message must name the service", async () => {
    const e = await codeOf(dst.client.importServiceData(feed("", [])));
    expect(e.code).toBe(status.INVALID_ARGUMENT);
  });
});
