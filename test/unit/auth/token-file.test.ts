import { afterAll, describe, expect, test } from "bun:test";
import { chmod, mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AuthError } from "../../../src/auth/identity.ts";
import { readTokenFile, resolveToken, writeTokenFile } from "../../../src/auth/token-file.ts";

const dir = await mkdtemp(join(tmpdir(), "token-file-"));
afterAll(() => rm(dir, { recursive: true, force: true }));

describe("token file", () => {
  test("write is 0600, read trims, missing is undefined", async () => {
    const p = join(dir, "sub", "token");
    await writeTokenFile(p, "tok-1");
    expect((await stat(p)).mode & 0o777).toBe(0o600);
    expect(await readTokenFile(p)).toBe("tok-1");
    expect(await readTokenFile(join(dir, "missing"))).toBeUndefined();
    expect(await readdir(join(dir, "sub"))).toEqual(["token"]); // no temp files left
  });

  test("overwriting a world-readable file leaves it 0600", async () => {
    const p = join(dir, "wide");
    await writeFile(p, "old\n");
    await chmod(p, 0o644);
    await writeTokenFile(p, "tok-2");
    expect((await stat(p)).mode & 0o777).toBe(0o600);
    expect(await readTokenFile(p)).toBe("tok-2");
  });

  test("refuses empty or multi-line tokens", async () => {
    await expect(writeTokenFile(join(dir, "x"), "")).rejects.toThrow();
    await expect(writeTokenFile(join(dir, "x"), "a\nb")).rejects.toThrow();
  });
});

describe("resolveToken precedence", () => {
  const file = join(dir, "prec-token");
  let logins = 0;
  const login = async () => {
    logins++;
    return "from-login";
  };

  test("env, then file, then login, else unauthenticated", async () => {
    await writeTokenFile(file, "from-file");
    expect(await resolveToken({ envToken: "from-env", tokenPath: file, login })).toBe("from-env");
    expect(await resolveToken({ envToken: "", tokenPath: file, login })).toBe("from-file");
    expect(logins).toBe(0);
    expect(await resolveToken({ envToken: "", tokenPath: join(dir, "none"), login })).toBe("from-login");
    expect(logins).toBe(1);
    const e = await resolveToken({ envToken: "", tokenPath: join(dir, "none") }).catch((err: unknown) => err);
    expect(e).toBeInstanceOf(AuthError);
    expect((e as AuthError).code).toBe("unauthenticated");
  });

  test("defaults to process.env.MCP_TOKEN", async () => {
    const saved = process.env.MCP_TOKEN;
    process.env.MCP_TOKEN = "env-default";
    try {
      expect(await resolveToken({ tokenPath: file })).toBe("env-default");
    } finally {
      if (saved === undefined) delete process.env.MCP_TOKEN;
      else process.env.MCP_TOKEN = saved;
    }
  });
});
