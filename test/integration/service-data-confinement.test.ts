// Issue 16 finding 1 and the import limits, against real agents over real TLS gRPC with real
// files and real SQLite:
//  - a client reads ExportServiceData slowly: after the first message it pauses while the test,
//    acting as a container sharing the service directory, swaps a directory for a symlink to a
//    host directory holding a secret and swaps a database for a symlink to another service's
//    database; the rest of the archive carries neither secret (each swapped entry is skipped with
//    one warning line), and what was read before the swap is whole;
//  - imports over the limits (a ~50 KB tar.zst of a 1.5 GiB file of zeros against the default
//    limit, refused at its header; content, entry and compressed-size limits of a small agent,
//    tripped while streaming) are refused with one RESOURCE_EXHAUSTED line and leave nothing on
//    disk, an existing service directory included;
//  - imported modes are masked (no 0777, setuid, setgid or sticky);
//  - a symlink at the import target is replaced, never followed.
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { randomBytes } from "node:crypto";
import {
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import pino from "pino";
import { collectTree, extractTarZst, packTarZst } from "../../src/archive/index.ts";
import { entryHeaders } from "../../src/archive/tar.ts";
import { zstdCompressStream, zstdDecompressStream } from "../../src/archive/zstd.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { compressedLimit } from "../../src/roles/agent/service-data.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { testAgentSettings } from "../support/agent-context.ts";
import { testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

const token = generateToken();
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(token) },
]);
const SMALL = { importMaxBytes: 8 * 1024 * 1024, importMaxEntries: 50 };
const HOST_SECRET = `HOST-SECRET-${randomBytes(8).toString("hex")}`;
const OTHER_SECRET = `OTHER-SERVICE-SECRET-${randomBytes(8).toString("hex")}`;

interface Node {
  agent: RunningAgent;
  client: TypedClient<typeof McpAgent>;
  srv: string;
  warnings: string[];
}
let dir = "";
let caPem = "";
let pki: { certPem: string; keyPem: string };
const nodes: Node[] = [];
let plain: Node;
let small: Node;

async function agentIn(name: string, over: Partial<Parameters<typeof testAgentSettings>[2]> = {}) {
  const sub = mkdtempSync(join(dir, `${name}-`));
  const warnings: string[] = [];
  const logger = pino({ level: "warn" }, { write: (s: string) => warnings.push(JSON.parse(s).msg) });
  const agent = await startAgent(
    await testAgentSettings(sub, pki, { nodeName: name, validator, pullPolicy: "never", logger, ...over }),
  );
  const client = await connect(McpAgent, {
    addresses: [`127.0.0.1:${agent.port}`],
    caPem,
    token,
    defaultTimeoutMs: 60_000,
  });
  const node = { agent, client, srv: join(sub, "srv"), warnings };
  mkdirSync(node.srv, { recursive: true });
  nodes.push(node);
  return node;
}

async function* feed(service: string, chunks: AsyncIterable<Uint8Array> | Uint8Array[], force = false) {
  yield { serviceName: service, force, data: new Uint8Array() };
  for await (const data of chunks) yield { data };
}

async function collect(src: AsyncIterable<Uint8Array>): Promise<Buffer> {
  const parts: Uint8Array[] = [];
  for await (const c of src) parts.push(c);
  return Buffer.concat(parts);
}

/** A tar.zst of `dir` made by the project's own packer (collectTree: the test's private tree). */
async function packDir(d: string): Promise<Buffer> {
  return collect(packTarZst((await collectTree(d)).entries));
}

/** A tar.zst of hand-made entries (modes the packer would never produce from a real tree). */
async function packEntries(
  entries: { path: string; type: "file" | "dir"; mode: number; data?: Uint8Array }[],
): Promise<Buffer> {
  async function* tar() {
    for (const e of entries) {
      const data = e.data ?? new Uint8Array();
      yield* entryHeaders(e.path, e.type, e.mode, data.length, Date.now());
      if (data.length) {
        yield data;
        if (data.length % 512) yield new Uint8Array(512 - (data.length % 512));
      }
    }
    yield new Uint8Array(1024);
  }
  return collect(zstdCompressStream(tar()));
}

/** Everything left in a srv root besides `keep`: must be nothing after a refused import. */
const leftovers = (srv: string, keep: string[] = []) => readdirSync(srv).filter((n) => !keep.includes(n));

function sqliteWith(path: string, value: string): void {
  const db = new Database(path);
  try {
    db.run("PRAGMA journal_mode = WAL");
    db.run("CREATE TABLE t (v TEXT)");
    db.run("INSERT INTO t (v) VALUES (?)", [value]);
  } finally {
    db.close();
  }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "mcp-svcdata-conf-"));
  const { ca, leaf } = await testPki("svcdata-conf", { commonName: "agent", days: 2 });
  caPem = ca.certPem;
  pki = { certPem: leaf.chainPem, keyPem: leaf.keyPem };
  plain = await agentIn("plain");
  small = await agentIn("small", SMALL);
});

afterAll(async () => {
  for (const n of nodes) n.client.close();
  await Promise.all(nodes.map((n) => n.agent.close()));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("export walks by descriptor", () => {
  test("a directory and a database swapped for symlinks while the archive streams are not followed", async () => {
    const svc = join(plain.srv, "victim");
    mkdirSync(join(svc, "z-dir"), { recursive: true });
    // 16 MiB of incompressible data first: the agent cannot get past it while the client pauses.
    const big = randomBytes(16 * 1024 * 1024);
    writeFileSync(join(svc, "a-big.bin"), big);
    writeFileSync(join(svc, "z-dir", "note.txt"), "harmless\n");
    sqliteWith(join(svc, "z.db"), "victim row");
    // Outside the service directory: a host directory with a secret, another service's database.
    const outside = join(dir, "host-etc");
    mkdirSync(outside);
    writeFileSync(join(outside, "note.txt"), `${HOST_SECRET}\n`);
    mkdirSync(join(plain.srv, "other"));
    sqliteWith(join(plain.srv, "other", "z.db"), OTHER_SECRET);
    plain.agent.registry.upsertService({
      name: "victim",
      specJson: JSON.stringify({ name: "victim", snapshot: { method: "full", exclude: [] }, components: [] }),
    });

    const it = plain.client.exportServiceData({ serviceName: "victim" })[Symbol.asyncIterator]();
    const chunks: Uint8Array[] = [];
    const first = await it.next();
    expect(first.done).toBe(false);
    chunks.push(first.value!.data);
    await Bun.sleep(200); // the agent fills the flow-control window and waits
    // The container's move: each swap is a remove and a symlink in the shared directory.
    rmSync(join(svc, "z-dir"), { recursive: true });
    symlinkSync(outside, join(svc, "z-dir"));
    rmSync(join(svc, "z.db"));
    symlinkSync(join(plain.srv, "other", "z.db"), join(svc, "z.db"));
    for (let r = await it.next(); !r.done; r = await it.next()) chunks.push(r.value.data);

    const tar = await collect(
      zstdDecompressStream(
        (async function* () {
          yield* chunks;
        })(),
      ),
    );
    expect(tar.includes(HOST_SECRET)).toBe(false);
    expect(tar.includes(OTHER_SECRET)).toBe(false);
    const out = mkdtempSync(join(dir, "out-"));
    await extractTarZst(
      (async function* () {
        yield* chunks;
      })(),
      out,
    );
    // What was read before the swap is whole; the swapped entries are gone, each said once.
    expect(readFileSync(join(out, "a-big.bin")).equals(big)).toBe(true);
    expect(readdirSync(out).sort()).toEqual(["a-big.bin", "z-dir"]);
    expect(readdirSync(join(out, "z-dir"))).toEqual([]);
    expect(plain.warnings).toEqual([
      "service data export: z-dir/note.txt its directory changed since the walk; skipped, not followed",
      "service data export: z.db is now a symlink; not followed",
    ]);
  }, 60_000);
});

describe("import limits", () => {
  test("a ~50 KB tar.zst of a 1.5 GiB file of zeros is refused by the default limit at its header; nothing is left", async () => {
    // 1.5 GiB of zeros streamed through the compressor (never held, never written to disk).
    async function* zeros() {
      const size = 1.5 * 1024 ** 3;
      yield* entryHeaders("zeros.bin", "file", 0o644, size, Date.now());
      const z = new Uint8Array(4 * 1024 * 1024);
      for (let left = size; left > 0; left -= z.length) yield left >= z.length ? z : z.subarray(0, left);
      yield new Uint8Array(1024);
    }
    const archive = await collect(zstdCompressStream(zeros(), 1));
    expect(archive.length).toBeLessThan(256 * 1024);
    const before = readdirSync(tmpdir())
      .filter((n) => n.startsWith("mcp-"))
      .sort();

    const e = await failure(plain.client.importServiceData(feed("bomb", [archive])));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toBe(
      `service data for bomb refused: archive content exceeds ${1024 ** 3} bytes (entry "zeros.bin" declares ${1.5 * 1024 ** 3}); ` +
        `the node's limits are ${1024 ** 3} bytes ([agent] import_max_bytes) and 100000 entries ([agent] import_max_entries)`,
    );
    expect(leftovers(plain.srv, ["victim", "other"])).toEqual([]);
    expect(
      readdirSync(tmpdir())
        .filter((n) => n.startsWith("mcp-"))
        .sort(),
    ).toEqual(before);
  }, 60_000);

  test("content over the limit trips while streaming: files already written are removed, an existing dir is kept", async () => {
    const keep = join(small.srv, "svc");
    mkdirSync(keep);
    writeFileSync(join(keep, "old.toml"), "kept = true\n");
    const src = mkdtempSync(join(dir, "three-"));
    for (const n of ["1.bin", "2.bin", "3.bin"]) writeFileSync(join(src, n), randomBytes(3 * 1024 * 1024));
    const e = await failure(small.client.importServiceData(feed("svc", [await packDir(src)], true)));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toStartWith(
      `service data for svc refused: archive content exceeds ${SMALL.importMaxBytes} bytes (entry "3.bin" declares`,
    );
    expect(leftovers(small.srv)).toEqual(["svc"]);
    expect(readdirSync(keep)).toEqual(["old.toml"]);
    expect(readFileSync(join(keep, "old.toml"), "utf8")).toBe("kept = true\n");
  });

  test("more entries than the limit: refused, nothing left", async () => {
    const entries = Array.from({ length: SMALL.importMaxEntries + 1 }, (_, i) => ({
      path: `f${i}.txt`,
      type: "file" as const,
      mode: 0o644,
      data: new TextEncoder().encode(`${i}\n`),
    }));
    const e = await failure(small.client.importServiceData(feed("many", [await packEntries(entries)])));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toStartWith(
      `service data for many refused: archive has more than ${SMALL.importMaxEntries} entries;`,
    );
    expect(leftovers(small.srv, ["svc"])).toEqual([]);
  });

  test("directories a path implies count toward import_max_entries: refused in one line, nothing left", async () => {
    // Security review 16: 10 entries each 400 levels deep passed import_max_entries=20 and made
    // 4,011 directories. Here 5 files each 12 levels deep: 5 entries, 65 files and directories.
    const deepFile = (i: number) => ({
      path: `d${i}/${"a/".repeat(11)}f`,
      type: "file" as const,
      mode: 0o644,
      data: new TextEncoder().encode("x"),
    });
    const archive = await packEntries([0, 1, 2, 3, 4].map(deepFile));
    const e = await failure(small.client.importServiceData(feed("implied", [archive])));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toBe(
      `service data for implied refused: archive has more than ${SMALL.importMaxEntries} entries; ` +
        `the node's limits are ${SMALL.importMaxBytes} bytes ([agent] import_max_bytes) and ${SMALL.importMaxEntries} entries ([agent] import_max_entries)`,
    );
    expect(leftovers(small.srv, ["svc"])).toEqual([]);
    // Within the limit (3 × 13 = 39 of 50) the same shape is imported whole.
    await small.client.importServiceData(feed("implied", [await packEntries([0, 1, 2].map(deepFile))]));
    expect(readFileSync(join(small.srv, "implied", "d2", ...Array(11).fill("a"), "f"), "utf8")).toBe("x");
    rmSync(join(small.srv, "implied"), { recursive: true });
  });

  test("an entry deeper than 256 levels is refused at once in one line; 256 levels import in well under a second", async () => {
    // Security review 16: one entry 800 levels deep (a 128-byte .tar.zst) kept the agent busy 33 s.
    const file = (depth: number) => ({
      path: `${"a/".repeat(depth - 1)}f`,
      type: "file" as const,
      mode: 0o644,
      data: new TextEncoder().encode("deep"),
    });
    const archive = await packEntries([file(801)]);
    expect(archive.length).toBeLessThan(512);
    let t0 = performance.now();
    const e = await failure(plain.client.importServiceData(feed("deep", [archive])));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.details).toBe(
      `service data for deep: archive path "${"a/".repeat(20)}…" is 1601 bytes and 801 levels deep; ` +
        "at most 4096 bytes and 256 levels are allowed",
    );
    expect(leftovers(plain.srv, ["victim", "other"])).toEqual([]);
    // The bound itself: 255 directories and the file, made by descriptor one level at a time.
    t0 = performance.now();
    await plain.client.importServiceData(feed("deep", [await packEntries([file(256)])]));
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(readFileSync(join(plain.srv, "deep", ...Array(255).fill("a"), "f"), "utf8")).toBe("deep");
    rmSync(join(plain.srv, "deep"), { recursive: true });
  });

  test("a compressed stream past its cap is refused even when it expands to nothing (skippable frames)", async () => {
    const cap = compressedLimit({ maxBytes: SMALL.importMaxBytes, maxEntries: SMALL.importMaxEntries });
    // zstd skippable frames: magic 0x184D2A50, a 4-byte length, that many ignored bytes.
    const frame = Buffer.alloc(8 + 1024 * 1024);
    frame.writeUInt32LE(0x184d2a50, 0);
    frame.writeUInt32LE(1024 * 1024, 4);
    const frames = Array.from({ length: Math.ceil(cap / frame.length) + 1 }, () => frame);
    const e = await failure(small.client.importServiceData(feed("skippy", frames)));
    expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(e.details).toStartWith(
      `service data for skippy refused: compressed archive exceeds ${cap} bytes;`,
    );
    expect(leftovers(small.srv, ["svc"])).toEqual([]);
  });
});

describe("import hygiene", () => {
  test("modes are masked: no 0777, setuid, setgid, sticky, group or world write", async () => {
    const archive = await packEntries([
      { path: "open", type: "dir", mode: 0o1777 },
      { path: "open/world.sh", type: "file", mode: 0o777, data: new TextEncoder().encode("#!/bin/sh\n") },
      { path: "open/suid", type: "file", mode: 0o4755, data: new TextEncoder().encode("x") },
      { path: "shared", type: "dir", mode: 0o2775 },
      { path: "shared/conf.toml", type: "file", mode: 0o664, data: new TextEncoder().encode("a = 1\n") },
      { path: "private.pem", type: "file", mode: 0o600, data: new TextEncoder().encode("k") },
    ]);
    await plain.client.importServiceData(feed("modes", [archive]));
    const mode = (p: string) => (lstatSync(join(plain.srv, "modes", p)).mode & 0o7777).toString(8);
    expect({
      open: mode("open"),
      "open/world.sh": mode("open/world.sh"),
      "open/suid": mode("open/suid"),
      shared: mode("shared"),
      "shared/conf.toml": mode("shared/conf.toml"),
      "private.pem": mode("private.pem"),
    }).toEqual({
      open: "755",
      "open/world.sh": "755",
      "open/suid": "755",
      shared: "755",
      "shared/conf.toml": "644",
      "private.pem": "600",
    });
  });

  test("a symlink at the import target: refused without force, replaced with it, never written through", async () => {
    const outside = join(dir, "outside-target");
    mkdirSync(outside);
    writeFileSync(join(outside, "precious.txt"), "untouched\n");
    symlinkSync(outside, join(plain.srv, "linked"));
    const archive = await packEntries([
      { path: "precious.txt", type: "file", mode: 0o644, data: new TextEncoder().encode("overwritten\n") },
    ]);
    const e = await failure(plain.client.importServiceData(feed("linked", [archive])));
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toEndWith("exists and is not empty; use force to replace it");
    expect(lstatSync(join(plain.srv, "linked")).isSymbolicLink()).toBe(true);
    await plain.client.importServiceData(feed("linked", [archive], true));
    expect(readFileSync(join(outside, "precious.txt"), "utf8")).toBe("untouched\n");
    expect(readdirSync(outside)).toEqual(["precious.txt"]);
    expect(lstatSync(join(plain.srv, "linked")).isDirectory()).toBe(true);
    expect(readFileSync(join(plain.srv, "linked", "precious.txt"), "utf8")).toBe("overwritten\n");
  });
});
