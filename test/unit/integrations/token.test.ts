// Token sources for the agent's own Metacrypt/MCNS calls: fileToken re-reads a rotated file and
// fails in one line; refreshingToken logs in once (against the real HTTPS fake MCIAS), shares a
// login between concurrent callers, refreshes before expiry and after invalidate().
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MciasClient } from "../../../src/auth/mcias.ts";
import { fileToken, refreshingToken, resolveToken, TokenError } from "../../../src/integrations/token.ts";
import { IntegrationError } from "../../../src/integrations/types.ts";
import { type FakeMcias, startFakeMcias } from "../../fakes/mcias.ts";

let dir: string;
let mcias: FakeMcias;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "token-test-"));
  mcias = await startFakeMcias({
    users: [{ username: "mcp-agent", password: "pw-agent", roles: ["user"], accountType: "system" }],
  });
});

afterAll(async () => {
  await mcias.stop();
  await rm(dir, { recursive: true, force: true });
});

async function rejection(p: Promise<unknown>): Promise<Error> {
  const e = await p.then(
    () => null,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(Error);
  return e as Error;
}

describe("fileToken", () => {
  test("reads, trims, and picks up a rotated token", async () => {
    const path = join(dir, "a.token");
    await writeFile(path, "first\n", { mode: 0o600 });
    const t = fileToken(path);
    expect(await t()).toBe("first");
    expect(await t()).toBe("first");
    await writeFile(path, "second-token\n");
    expect(await t()).toBe("second-token");
  });

  test("missing, empty and multi-line files are one-line errors", async () => {
    const path = join(dir, "b.token");
    const t = fileToken(path);
    const missing = await rejection(t());
    expect(missing).toBeInstanceOf(TokenError);
    expect(missing.message).toBe(`token file ${path} does not exist`);
    await writeFile(path, "  \n");
    expect((await rejection(t())).message).toBe(`token file ${path} is empty`);
    await writeFile(path, "a\nb\n");
    expect((await rejection(t())).message).toBe(`token file ${path} holds more than one line`);
  });

  test("resolveToken names the integration and keeps the message", async () => {
    const path = join(dir, "c.token");
    const e = await rejection(resolveToken(fileToken(path), "mcns"));
    expect(e).toBeInstanceOf(IntegrationError);
    expect(e.message).toBe(`mcns: token file ${path} does not exist`);
    expect((await rejection(resolveToken("", "metacrypt"))).message).toBe("metacrypt: no token configured");
    expect(await resolveToken("literal", "metacrypt")).toBe("literal");
  });
});

describe("refreshingToken over an MCIAS system-account login", () => {
  const client = () =>
    new MciasClient({ serverUrl: mcias.url, caCertPath: mcias.caCertPath, serviceName: "mcp" });

  test("one login for concurrent callers, reused until near expiry, again after invalidate", async () => {
    const c = client();
    let clock = Date.now();
    const t = refreshingToken(() => c.login("mcp-agent", "pw-agent"), { now: () => clock });
    const before = mcias.loginCalls();
    const [a, b] = await Promise.all([t(), t()]);
    expect(a).toBe(b);
    expect(mcias.loginCalls()).toBe(before + 1);
    expect((await c.validate(a)).name).toBe("mcp-agent");
    expect(await t()).toBe(a);
    expect(mcias.loginCalls()).toBe(before + 1);

    clock += 3_600_000; // the fake's tokens live 1 h: past expiry minus the margin
    const fresh = await t();
    expect(mcias.loginCalls()).toBe(before + 2);
    t.invalidate?.();
    expect(await t()).not.toBe(fresh);
    expect(mcias.loginCalls()).toBe(before + 3);
  });

  test("a failed login is one line and is retried on the next call", async () => {
    const c = client();
    const t = refreshingToken(() => c.login("mcp-agent", "wrong"));
    const e = await rejection(t());
    expect(e).toBeInstanceOf(TokenError);
    expect(e.message).toBe("system account login failed: invalid credentials");
    const before = mcias.loginCalls();
    await rejection(t());
    expect(mcias.loginCalls()).toBe(before + 1);
  });
});
