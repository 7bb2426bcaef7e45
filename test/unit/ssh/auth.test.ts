// planAuth: which keys are offered, in which order, and which are skipped with a note.
// Keys are made by the real ssh-keygen.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { planAuth } from "../../../src/ssh/auth.ts";

const root = mkdtempSync(join(tmpdir(), "mcp-ssh-auth-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

function keygen(path: string, type: string, passphrase = ""): void {
  const r = Bun.spawnSync(["ssh-keygen", "-q", "-t", type, "-N", passphrase, "-C", "t", "-f", path], {
    stdout: "pipe",
    stderr: "pipe",
  });
  if (r.exitCode !== 0) throw new Error(r.stderr.toString());
}

function home(name: string): string {
  const h = join(root, name);
  mkdirSync(join(h, ".ssh"), { recursive: true });
  return h;
}

describe("planAuth", () => {
  test("defaults: existing id_ed25519, id_ecdsa, id_rsa in that order; no agent when disabled", () => {
    const h = home("defaults");
    keygen(join(h, ".ssh", "id_rsa"), "rsa");
    keygen(join(h, ".ssh", "id_ed25519"), "ed25519");
    const plan = planAuth({ user: "root", home: h, identityFiles: [], agentSocket: null });
    expect(plan.offered).toEqual([join(h, ".ssh", "id_ed25519"), join(h, ".ssh", "id_rsa")]);
    expect(plan.methods.map((m) => m.type)).toEqual(["publickey", "publickey"]);
    expect(plan.methods.every((m) => m.username === "root")).toBe(true);
    expect(plan.notes).toEqual([]);
  });

  test("explicit identity files replace the defaults; missing, encrypted and non-key files are noted", () => {
    const h = home("explicit");
    keygen(join(h, ".ssh", "id_ed25519"), "ed25519");
    const good = join(h, "good");
    const enc = join(h, "encrypted");
    const junk = join(h, "junk");
    keygen(good, "ecdsa");
    keygen(enc, "ed25519", "secret passphrase");
    writeFileSync(junk, "not a key\n");
    const plan = planAuth({
      user: "ops",
      home: h,
      identityFiles: [enc, join(h, "missing"), junk, good],
      agentSocket: null,
    });
    expect(plan.offered).toEqual([good]);
    expect(plan.notes).toEqual([
      `skipped ${enc}: it is encrypted and there is no passphrase prompt (add it to ssh-agent)`,
      `identity file ${join(h, "missing")} does not exist`,
      expect.stringContaining(`skipped ${junk}: `),
    ]);
  });

  test("an agent socket comes first; a socket path that does not exist is noted, not offered", () => {
    const h = home("agent");
    keygen(join(h, ".ssh", "id_ecdsa"), "ecdsa");
    // Any existing path stands in for the socket here; the integration test uses a real ssh-agent.
    const sock = join(h, "agent.sock");
    writeFileSync(sock, "");
    const plan = planAuth({ user: "root", home: h, identityFiles: [], agentSocket: sock });
    expect(plan.offered).toEqual(["ssh-agent", join(h, ".ssh", "id_ecdsa")]);
    expect(plan.methods[0]).toEqual({ type: "agent", username: "root", agent: sock });
    const missing = planAuth({ user: "root", home: h, identityFiles: [], agentSocket: join(h, "gone.sock") });
    expect(missing.offered).toEqual([join(h, ".ssh", "id_ecdsa")]);
    expect(missing.notes).toEqual([`ssh-agent socket ${join(h, "gone.sock")} does not exist`]);
  });
});
