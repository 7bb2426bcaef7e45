import { describe, expect, test } from "bun:test";
import { AuthError, requireOperator } from "../../../src/auth/identity.ts";
import { generateToken, hashToken, LocalTokenValidator } from "../../../src/auth/local.ts";

describe("local tokens", () => {
  test("generateToken: prefixed base64url of 32 bytes, unique", () => {
    const a = generateToken();
    const b = generateToken();
    expect(a).toMatch(/^mcpl_[A-Za-z0-9_-]{43}$/);
    expect(Buffer.from(a.slice(5), "base64url").length).toBe(32);
    expect(a).not.toBe(b);
  });

  test("hashToken is SHA-256 hex", () => {
    expect(hashToken("abc")).toBe("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  });

  const admin = generateToken();
  const guest = generateToken();
  const old = generateToken();
  const svc = generateToken();
  let now = Date.parse("2030-01-01T00:00:00Z");
  const v = new LocalTokenValidator(
    [
      { name: "admin", role: "admin", accountType: "human", sha256: hashToken(admin) },
      { name: "visitor", role: "guest", accountType: "human", sha256: hashToken(guest) },
      {
        name: "old",
        role: "user",
        accountType: "human",
        sha256: hashToken(old),
        expires: "2029-12-31T00:00:00Z",
      },
      {
        name: "ci",
        role: "user",
        accountType: "system",
        sha256: hashToken(svc).toUpperCase(),
        expires: "2030-06-01T00:00:00Z",
      },
    ],
    { now: () => now },
  );

  test("good token returns identity with roles", async () => {
    expect(await v.validate(admin)).toEqual({ name: "admin", roles: ["admin"], accountType: "human" });
    expect(await v.validate(svc)).toEqual({
      name: "ci",
      roles: ["user"],
      accountType: "system",
      expiresAt: "2030-06-01T00:00:00Z",
    });
  });

  test("guest identity is returned, and is not an operator", async () => {
    const id = await v.validate(guest);
    expect(id).toEqual({ name: "visitor", roles: ["guest"], accountType: "human" });
    let e: unknown;
    try {
      requireOperator(id);
    } catch (err) {
      e = err;
    }
    expect(e).toBeInstanceOf(AuthError);
    expect((e as AuthError).code).toBe("permission_denied");
    expect(() => requireOperator({ name: "a", roles: ["admin"], accountType: "human" })).not.toThrow();
    // SPEC §5.2: a system account operates only when listed in [auth] operators.
    expect(() => requireOperator({ name: "s", roles: [], accountType: "system" })).toThrow(
      "[auth] operators",
    );
    expect(() =>
      requireOperator({ name: "s", roles: [], accountType: "system" }, new Set(["s"])),
    ).not.toThrow();
  });

  test("bad, empty and expired tokens are unauthenticated", async () => {
    for (const t of ["mcpl_nope", "", admin.slice(0, -1), hashToken(admin), old]) {
      const e = await v.validate(t).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(AuthError);
      expect((e as AuthError).code).toBe("unauthenticated");
    }
    now = Date.parse("2030-06-01T00:00:00Z"); // exactly at expiry
    const e = await v.validate(svc).catch((err: unknown) => err);
    expect((e as AuthError).message).toBe("token expired");
  });

  test("malformed entries are rejected at construction", () => {
    expect(
      () => new LocalTokenValidator([{ name: "x", role: "user", accountType: "human", sha256: "zz" }]),
    ).toThrow("sha256");
    expect(
      () =>
        new LocalTokenValidator([
          { name: "x", role: "user", accountType: "human", sha256: hashToken("a"), expires: "soon" },
        ]),
    ).toThrow("expires");
  });
});
