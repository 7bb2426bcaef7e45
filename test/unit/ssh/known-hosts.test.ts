// known_hosts parsing, matching (plain, patterns, hashed by the real `ssh-keygen -H`), the trust
// decision, fingerprints compared with `ssh-keygen -lf`, and appending new entries.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  appendKnownHost,
  checkHostKey,
  entryMatchesHost,
  fingerprintSha256,
  hostKeyProblem,
  keyTypeLabel,
  keyTypeOfBlob,
  knownHostsName,
  parseKnownHosts,
  preferredHostKeyAlgorithms,
  readKnownHosts,
} from "../../../src/ssh/known-hosts.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-ssh-kh-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function sh(argv: string[]): string {
  const r = Bun.spawnSync(argv, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${argv.join(" ")}: ${r.stderr.toString()}`);
  return r.stdout.toString();
}

interface Key {
  type: string;
  b64: string;
  blob: Buffer;
  pubPath: string;
}

function genKey(type: "ed25519" | "ecdsa" | "rsa", name: string): Key {
  const path = join(dir, name);
  sh([
    "ssh-keygen",
    "-q",
    "-t",
    type,
    ...(type === "rsa" ? ["-b", "2048"] : []),
    "-N",
    "",
    "-C",
    name,
    "-f",
    path,
  ]);
  const [t, b64] = readFileSync(`${path}.pub`, "utf8").trim().split(/\s+/);
  return { type: t!, b64: b64!, blob: Buffer.from(b64!, "base64"), pubPath: `${path}.pub` };
}

const ed = genKey("ed25519", "ed");
const ec = genKey("ecdsa", "ec");
const rsa = genKey("rsa", "rsa");
const ed2 = genKey("ed25519", "ed2");

describe("fingerprints and key types", () => {
  test("SHA256 fingerprint and type label equal `ssh-keygen -lf` for ed25519, ecdsa, rsa", () => {
    for (const k of [ed, ec, rsa]) {
      // "256 SHA256:abc… comment (ED25519)"
      const m = /^\d+ (SHA256:\S+) \S+ \((\S+)\)$/.exec(sh(["ssh-keygen", "-lf", k.pubPath]).trim());
      expect(m).not.toBeNull();
      expect(fingerprintSha256(k.blob)).toBe(m![1]!);
      expect(keyTypeLabel(keyTypeOfBlob(k.blob))).toBe(m![2]!);
    }
  });

  test("keyTypeOfBlob reads the type from the blob; garbage gives ''", () => {
    expect(keyTypeOfBlob(ed.blob)).toBe("ssh-ed25519");
    expect(keyTypeOfBlob(ec.blob)).toBe("ecdsa-sha2-nistp256");
    expect(keyTypeOfBlob(rsa.blob)).toBe("ssh-rsa");
    expect(keyTypeOfBlob(Buffer.from([0, 0]))).toBe("");
    expect(keyTypeOfBlob(Buffer.from([0xff, 0xff, 0xff, 0xff, 1]))).toBe("");
  });
});

describe("parsing and matching", () => {
  test("knownHostsName: bare host on 22, [host]:port otherwise, lower-cased", () => {
    expect(knownHostsName("Node1", 22)).toBe("node1");
    expect(knownHostsName("127.0.0.1", 2222)).toBe("[127.0.0.1]:2222");
  });

  test("skips comments, blank, malformed and type-mismatched lines; keeps markers and line numbers", () => {
    const text = [
      "# comment",
      "",
      `node1,10.0.0.1 ${ed.type} ${ed.b64} root@node1`,
      "garbage-line",
      `node2 ssh-rsa ${ed.b64}`,
      `@revoked * ${ec.type} ${ec.b64}`,
      `@cert-authority *.example.com ${rsa.type} ${rsa.b64}`,
      `@bogus x ${ed.type} ${ed.b64}`,
      `[127.0.0.1]:2222 ${ed.type} not*base64`,
    ].join("\n");
    const entries = parseKnownHosts(text);
    expect(entries.map((e) => [e.line, e.marker, e.hosts, e.keyType])).toEqual([
      [3, undefined, "node1,10.0.0.1", "ssh-ed25519"],
      [6, "revoked", "*", "ecdsa-sha2-nistp256"],
      [7, "cert-authority", "*.example.com", "ssh-rsa"],
    ]);
  });

  test("host lists, wildcards, negation and [host]:port", () => {
    const m = (hosts: string, name: string) => entryMatchesHost({ hosts }, name);
    expect(m("node1,10.0.0.1", "10.0.0.1")).toBe(true);
    expect(m("node1,10.0.0.1", "node2")).toBe(false);
    expect(m("*.lan,!bad.lan", "a.lan")).toBe(true);
    expect(m("*.lan,!bad.lan", "bad.lan")).toBe(false);
    expect(m("[127.0.0.1]:2222", "[127.0.0.1]:2222")).toBe(true);
    // Port 22 entries never match another port.
    expect(m("127.0.0.1", "[127.0.0.1]:2222")).toBe(false);
    expect(m("[127.0.0.1]:2222", "127.0.0.1")).toBe(false);
    expect(m("NODE1", "node1")).toBe(true);
  });

  test("hashed entries written by the real `ssh-keygen -H` match exactly their names", () => {
    const path = join(dir, "hashed_known_hosts");
    writeFileSync(path, `[127.0.0.1]:2222 ${ed.type} ${ed.b64}\nnode1,10.0.0.1 ${ec.type} ${ec.b64}\n`);
    sh(["ssh-keygen", "-q", "-H", "-f", path]);
    const entries = readKnownHosts(path);
    expect(entries.length).toBe(3);
    expect(entries.every((e) => e.hosts.startsWith("|1|"))).toBe(true);
    const names = (e: (typeof entries)[number]) =>
      ["[127.0.0.1]:2222", "127.0.0.1", "node1", "10.0.0.1", "node2", "[node1]:2222"].filter((n) =>
        entryMatchesHost(e, n),
      );
    expect(entries.map(names)).toEqual([["[127.0.0.1]:2222"], ["node1"], ["10.0.0.1"]]);
    expect(checkHostKey(entries, "[127.0.0.1]:2222", ed.blob)).toEqual({ status: "known", line: 1 });
    expect(checkHostKey(entries, "10.0.0.1", ec.blob)).toEqual({ status: "known", line: 3 });
    // Malformed hashes never match.
    expect(entryMatchesHost({ hosts: "|1|bad" }, "node1")).toBe(false);
    expect(entryMatchesHost({ hosts: "|2|a|b" }, "node1")).toBe(false);
  });
});

describe("checkHostKey and the refusal messages", () => {
  const entries = parseKnownHosts(
    [
      `node1 ${ed.type} ${ed.b64}`,
      `node1 ${rsa.type} ${rsa.b64}`,
      `node3 ${ec.type} ${ec.b64}`,
      `@revoked * ${ed2.type} ${ed2.b64}`,
    ].join("\n"),
  );

  test("known, unknown, changed (same type), changed (other type only), revoked", () => {
    expect(checkHostKey(entries, "node1", ed.blob)).toEqual({ status: "known", line: 1 });
    expect(checkHostKey(entries, "node1", rsa.blob)).toEqual({ status: "known", line: 2 });
    expect(checkHostKey(entries, "node2", ec.blob)).toEqual({ status: "unknown" });
    const other = genKey("ed25519", "ed3");
    expect(checkHostKey(entries, "node1", other.blob)).toMatchObject({ status: "changed", line: 1 });
    // node3 only has an ecdsa entry: an ed25519 key there is not "new", it is a different key.
    expect(checkHostKey(entries, "node3", ed.blob)).toMatchObject({ status: "changed", line: 3 });
    expect(checkHostKey(entries, "anything", ed2.blob)).toEqual({ status: "revoked", line: 4 });
  });

  test("messages are one line with the fingerprints", () => {
    const name = "[127.0.0.1]:2222";
    const unknown = hostKeyProblem({ status: "unknown" }, name, ed.blob, "~/.ssh/known_hosts");
    expect(unknown).toBe(
      `host key for [127.0.0.1]:2222 is unknown (ED25519 ${fingerprintSha256(ed.blob)}); verify it and re-run with --accept-new-host-key`,
    );
    const changed = hostKeyProblem(
      { status: "changed", line: 7, knownKey: ec.blob },
      name,
      ed.blob,
      "~/.ssh/known_hosts",
    );
    expect(changed).toBe(
      `host key for [127.0.0.1]:2222 CHANGED (now ${fingerprintSha256(ed.blob)}, ~/.ssh/known_hosts line 7 has ${fingerprintSha256(ec.blob)}): possible man-in-the-middle; remove the old entry if the change is expected`,
    );
    expect(hostKeyProblem({ status: "revoked", line: 4 }, name, ed2.blob, "kh")).toContain(
      "@revoked in kh line 4",
    );
    expect(hostKeyProblem({ status: "known", line: 1 }, name, ed.blob, "kh")).toBeUndefined();
  });

  test("preferred host key algorithms list the known types for the host first", () => {
    expect(preferredHostKeyAlgorithms(entries, "node1")).toEqual([
      "ssh-ed25519",
      "rsa-sha2-512",
      "rsa-sha2-256",
      "ssh-rsa",
    ]);
    expect(preferredHostKeyAlgorithms(entries, "node3")).toEqual(["ecdsa-sha2-nistp256"]);
    // The @revoked line names "*" but says nothing about which types a host has.
    expect(preferredHostKeyAlgorithms(entries, "unknown")).toEqual([]);
  });
});

describe("appendKnownHost", () => {
  test("creates the directory 0700 and file 0600, adds a newline to a file lacking one, result parses as known", async () => {
    const path = join(dir, "new", ".ssh", "known_hosts");
    await appendKnownHost(path, "[127.0.0.1]:2222", ed.blob);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "new", ".ssh")).mode & 0o777).toBe(0o700);
    expect(readFileSync(path, "utf8")).toBe(`[127.0.0.1]:2222 ${ed.type} ${ed.b64}\n`);

    const other = join(dir, "no-newline");
    writeFileSync(other, `node1 ${ec.type} ${ec.b64}`);
    await appendKnownHost(other, "node2", rsa.blob);
    const entries = readKnownHosts(other);
    expect(entries.map((e) => e.hosts)).toEqual(["node1", "node2"]);
    expect(checkHostKey(entries, "node2", rsa.blob)).toEqual({ status: "known", line: 2 });
    // The real ssh-keygen agrees the entry is there.
    expect(sh(["ssh-keygen", "-F", "node2", "-f", other])).toContain(rsa.b64);
  });
});
