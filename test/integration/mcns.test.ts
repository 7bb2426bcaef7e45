// MCNS adapter against the fake MCNS over real HTTPS (issue 5 items 4 and 6): upsert creates the
// A record, a new address replaces it (one record left), delete removes it and is idempotent, and
// auth/input errors come back as one-line IntegrationErrors with the HTTP status.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { McnsClient, type McnsOptions } from "../../src/integrations/mcns.ts";
import { fileToken } from "../../src/integrations/token.ts";
import { IntegrationError } from "../../src/integrations/types.ts";
import { type FakeMcns, startFakeMcns } from "../fakes/mcns.ts";

const TOKEN = "mcns-agent-token";
const ZONE = "svc.mcp.metacircular.net";

let fake: FakeMcns;
let dir: string;

beforeAll(async () => {
  fake = await startFakeMcns({ tokens: [TOKEN], zone: ZONE });
  dir = await mkdtemp(join(tmpdir(), "mcns-test-"));
});

afterAll(async () => {
  await fake.stop();
  await rm(dir, { recursive: true, force: true });
});

function client(extra: Partial<McnsOptions> = {}): McnsClient {
  return new McnsClient({ serverUrl: fake.url, caCertPath: fake.caCertPath, token: TOKEN, ...extra });
}

async function failure(p: Promise<unknown>): Promise<IntegrationError> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(IntegrationError);
  return e as IntegrationError;
}

const aRecords = (name: string) => fake.records().filter((r) => r.name === name && r.type === "A");

describe("A records", () => {
  test("upsert creates, is a no-op when unchanged, and a new value replaces the old one", async () => {
    const c = client();
    expect(c.zone).toBe(ZONE);
    await c.upsertA("metacrypt", "10.0.0.5");
    expect(aRecords("metacrypt")).toEqual([
      { id: expect.any(Number), name: "metacrypt", type: "A", value: "10.0.0.5", ttl: 300 },
    ]);
    const writes = fake.writeCalls();
    await c.upsertA("metacrypt", "10.0.0.5");
    expect(fake.writeCalls()).toBe(writes);
    expect(aRecords("metacrypt").length).toBe(1);

    await c.upsertA("metacrypt", "10.0.0.9");
    expect(aRecords("metacrypt").map((r) => r.value)).toEqual(["10.0.0.9"]);
    expect(await c.listRecords()).toContainEqual({
      name: "metacrypt",
      type: "A",
      value: "10.0.0.9",
      ttl: 300,
    });
  });

  test("an FQDN name is the same record as the zone-relative one", async () => {
    const c = client();
    await c.upsertA(`fqdn.${ZONE}`, "10.0.1.1");
    expect(aRecords("fqdn").map((r) => r.value)).toEqual(["10.0.1.1"]);
    await c.deleteA("fqdn");
    expect(aRecords("fqdn")).toEqual([]);
  });

  test("delete removes only that name's A records; deleting a missing record is fine", async () => {
    const c = client();
    await c.upsertA("keep", "10.0.2.1");
    await c.upsertA("gone", "10.0.2.2");
    await c.deleteA("gone");
    expect(aRecords("gone")).toEqual([]);
    expect(aRecords("keep").length).toBe(1);
    const writes = fake.writeCalls();
    await c.deleteA("gone");
    await c.deleteA("never-existed");
    expect(fake.writeCalls()).toBe(writes);
  });

  test("delete with a value removes only the record with that address (a migrated service's new record stays)", async () => {
    const c = client();
    await c.upsertA("moved", "10.0.4.2"); // the destination's record
    const writes = fake.writeCalls();
    await c.deleteA("moved", "10.0.4.1"); // the source tears down: not its address, nothing to do
    expect(aRecords("moved").map((r) => r.value)).toEqual(["10.0.4.2"]);
    expect(fake.writeCalls()).toBe(writes);
    await c.deleteA("moved", "10.0.4.2");
    expect(aRecords("moved")).toEqual([]);
  });

  test("stale duplicates left by an earlier run are cleaned up by upsert", async () => {
    const c = client();
    // Two A records for one name (MCNS allows it); upsert to a third value leaves exactly one.
    await c.upsertA("dup", "10.0.3.1");
    const raw = await fetch(`${fake.url}/v1/zones/${ZONE}/records`, {
      method: "POST",
      headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
      body: JSON.stringify({ name: "dup", type: "A", value: "10.0.3.2", ttl: 300 }),
      tls: { ca: fake.caCertPem },
    });
    expect(raw.status).toBe(201);
    expect(aRecords("dup").length).toBe(2);
    await c.upsertA("dup", "10.0.3.2");
    expect(aRecords("dup").map((r) => r.value)).toEqual(["10.0.3.2"]);
  });
});

describe("errors", () => {
  test("bad token → 401 IntegrationError, nothing changed", async () => {
    const before = fake.records();
    const e = await failure(client({ token: "nope" }).upsertA("x", "10.0.0.1"));
    expect(e.integration).toBe("mcns");
    expect(e.status).toBe(401);
    expect(e.message).toBe(`mcns: list records of ${ZONE}: 401: invalid token`);
    expect((await failure(client({ token: "nope" }).deleteA("keep"))).status).toBe(401);
    expect(fake.records()).toEqual(before);
  });

  test("an unknown zone is a 404 from the service", async () => {
    const e = await failure(client({ zone: "other.example" }).listRecords());
    expect(e.status).toBe(404);
    expect(e.message).toBe("mcns: list records of other.example: 404: zone not found");
  });

  test("bad names and values are refused before any request", async () => {
    const writes = fake.writeCalls();
    expect((await failure(client().upsertA("x", "not-an-ip"))).message).toContain("IPv4");
    expect((await failure(client().upsertA("x", "::1"))).message).toContain("IPv4");
    expect((await failure(client().upsertA("../x", "10.0.0.1"))).message).toContain("invalid record name");
    expect((await failure(client().deleteA(""))).message).toContain("invalid record name");
    expect(fake.writeCalls()).toBe(writes);
  });

  test("the fake rejects bad input with its error shape (400)", async () => {
    const post = (body: string) =>
      fetch(`${fake.url}/v1/zones/${ZONE}/records`, {
        method: "POST",
        headers: { authorization: `Bearer ${TOKEN}`, "content-type": "application/json" },
        body,
        tls: { ca: fake.caCertPem },
      });
    const bad = await post("{nope");
    expect(bad.status).toBe(400);
    expect(await bad.json()).toEqual({ error: "invalid JSON body" });
    const badA = await post(JSON.stringify({ name: "y", type: "A", value: "hello" }));
    expect(badA.status).toBe(400);
    expect(await badA.json()).toEqual({ error: "A record value must be an IPv4 address" });
  });

  test("token file: missing is one line, rotation is picked up", async () => {
    const path = join(dir, "mcns.token");
    const c = client({ token: fileToken(path) });
    expect((await failure(c.listRecords())).message).toBe(`mcns: token file ${path} does not exist`);
    await writeFile(path, "", { mode: 0o600 });
    expect((await failure(c.listRecords())).message).toBe(`mcns: token file ${path} is empty`);
    await writeFile(path, "stale\n", { mode: 0o600 });
    expect((await failure(c.listRecords())).status).toBe(401);
    await writeFile(path, `${TOKEN}\n`, { mode: 0o600 });
    expect(Array.isArray(await c.listRecords())).toBe(true);
  });

  test("without the CA file the fake's certificate is not trusted", async () => {
    const e = await failure(client({ caCertPath: undefined }).listRecords());
    expect(e.message).toStartWith(`mcns: cannot reach ${fake.url}:`);
  });
});
