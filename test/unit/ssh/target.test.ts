// resolveTarget: the node's `ssh` field and ~/.ssh/config aliases, resolved like OpenSSH would.
import { afterAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SshError } from "../../../src/ssh/errors.ts";
import { hostLineMatches, parseSpec, resolveTarget, splitConfigLine } from "../../../src/ssh/target.ts";

const home = mkdtempSync(join(tmpdir(), "mcp-ssh-target-"));
afterAll(() => rmSync(home, { recursive: true, force: true }));
mkdirSync(join(home, ".ssh", "conf.d"), { recursive: true });

const config = join(home, ".ssh", "config");
writeFileSync(
  config,
  [
    "# operator's config",
    "Host web1",
    "  HostName 10.0.0.5",
    "  User deploy",
    "  Port 2200",
    "  IdentityFile ~/.ssh/web_key",
    "Host web*",
    "  User ignored-later-match",
    '  IdentityFile "%d/.ssh/key for %r@%h"',
    "Host *.example.com !bad.example.com",
    "  Port=2222",
    "Host db?",
    "  HostName %h.internal",
    "Host skipped",
    "  Include never.conf",
    "Host *",
    "  User fallback",
    "  IdentityFile ~/.ssh/common",
    "  Include conf.d/*.conf",
    "",
  ].join("\n"),
);
writeFileSync(join(home, ".ssh", "conf.d", "10-a.conf"), "Host alias2\n  HostName 192.0.2.7\n  Port 2022\n");
writeFileSync(join(home, ".ssh", "conf.d", "20-b.conf"), "Host alias2\n  Port 9999\n  User inc\n");
// Included only from the `Host skipped` block: its `Host *` must not reach other hosts.
writeFileSync(join(home, ".ssh", "never.conf"), "Host *\n  Port 1\n");

const resolve = (spec: string) => resolveTarget(spec, { home, localUser: "me" });
const ssh = (f: string) => join(home, ".ssh", f);

describe("parseSpec", () => {
  test("user@host:port forms", () => {
    expect(parseSpec("root@10.0.0.1:2222")).toEqual({ user: "root", host: "10.0.0.1", port: 2222 });
    expect(parseSpec("node1")).toEqual({ user: undefined, host: "node1", port: undefined });
    expect(parseSpec("node1:22")).toEqual({ user: undefined, host: "node1", port: 22 });
    expect(parseSpec("a@b@host")).toEqual({ user: "a@b", host: "host", port: undefined });
    expect(parseSpec("[::1]:2200")).toEqual({ user: undefined, host: "::1", port: 2200 });
    expect(parseSpec("ops@fe80::1")).toEqual({ user: "ops", host: "fe80::1", port: undefined });
  });

  test("bad specs are one-line SshErrors", () => {
    for (const [spec, msg] of [
      ["", "expected user@host[:port]"],
      ["a b", "expected user@host[:port]"],
      ["@host", "empty user"],
      ["host:0", "port '0' is not a number from 1 to 65535"],
      ["host:65536", "port '65536'"],
      ["host:ssh", "port 'ssh'"],
      ["root@", "missing or invalid host"],
      ["-oProxyCommand=x", "missing or invalid host"],
      ["[::1", "missing ']'"],
      ["[::1]x", "unexpected 'x'"],
    ] as const) {
      const e = (() => {
        try {
          parseSpec(spec);
        } catch (err) {
          return err;
        }
      })();
      expect(e).toBeInstanceOf(SshError);
      expect((e as Error).message).toContain(msg);
      expect((e as Error).message).not.toContain("\n");
    }
  });
});

describe("ssh_config lines and Host patterns", () => {
  test("keyword, `=` separator, quotes, comments", () => {
    expect(splitConfigLine("  HostName = foo  # note")).toEqual(["HostName", "foo"]);
    expect(splitConfigLine("Port=22")).toEqual(["Port", "22"]);
    expect(splitConfigLine('IdentityFile "~/my keys/id" other')).toEqual([
      "IdentityFile",
      "~/my keys/id",
      "other",
    ]);
    expect(splitConfigLine("# only a comment")).toEqual([]);
    expect(splitConfigLine("")).toEqual([]);
    expect(() => splitConfigLine('User "open')).toThrow("unterminated quote");
  });

  test("`*`, `?` and negation", () => {
    expect(hostLineMatches("web1", ["web*"])).toBe(true);
    expect(hostLineMatches("db1", ["db?"])).toBe(true);
    expect(hostLineMatches("db12", ["db?"])).toBe(false);
    expect(hostLineMatches("a.example.com", ["*.example.com", "!bad.example.com"])).toBe(true);
    expect(hostLineMatches("bad.example.com", ["*.example.com", "!bad.example.com"])).toBe(false);
    // A negation alone matches nothing (OpenSSH).
    expect(hostLineMatches("x", ["!y"])).toBe(false);
    // Regex metacharacters in patterns are literal.
    expect(hostLineMatches("10x0x0x5", ["10.0.0.5"])).toBe(false);
  });
});

describe("resolveTarget", () => {
  test("no config entry: current user, port 22, no identity files beyond Host *", () => {
    const t = resolveTarget("10.1.2.3", { home, localUser: "me", sshConfigPath: join(home, "missing") });
    expect(t).toEqual({
      spec: "10.1.2.3",
      alias: "10.1.2.3",
      host: "10.1.2.3",
      port: 22,
      user: "me",
      identityFiles: [],
    });
  });

  test("alias: first value wins per keyword, IdentityFile accumulates with tokens expanded", () => {
    const t = resolve("web1");
    expect(t.host).toBe("10.0.0.5");
    expect(t.user).toBe("deploy");
    expect(t.port).toBe(2200);
    expect(t.identityFiles).toEqual([ssh("web_key"), `${home}/.ssh/key for deploy@10.0.0.5`, ssh("common")]);
  });

  test("explicit user and port in the spec win over ssh_config", () => {
    const t = resolve("ops@web1:2300");
    expect(t).toMatchObject({ alias: "web1", host: "10.0.0.5", user: "ops", port: 2300 });
    expect(t.identityFiles[1]).toBe(`${home}/.ssh/key for ops@10.0.0.5`);
  });

  test("Host matching is case-insensitive, like OpenSSH lower-casing the host", () => {
    expect(resolve("WEB1").host).toBe("10.0.0.5");
  });

  test("patterns with negation and `?`; %h in HostName", () => {
    expect(resolve("a.example.com")).toMatchObject({ host: "a.example.com", port: 2222, user: "fallback" });
    expect(resolve("bad.example.com").port).toBe(22);
    expect(resolve("db1").host).toBe("db1.internal");
    expect(resolve("db12").host).toBe("db12");
  });

  test("Include: globbed files in order, first value wins; an Include inside a Host block applies only to that host", () => {
    const t = resolve("alias2");
    expect(t).toMatchObject({ host: "192.0.2.7", port: 2022, user: "fallback" });
    expect(resolve("skipped").port).toBe(1);
    expect(resolve("other").port).toBe(22);
  });

  test("a bad Port in ssh_config names the file and line", () => {
    const dir = mkdtempSync(join(home, "bad-"));
    const path = join(dir, "config");
    writeFileSync(path, "Host x\n  Port none\n");
    expect(() => resolveTarget("x", { home, sshConfigPath: path })).toThrow(
      `~/${path.slice(home.length + 1)} line 2: port 'none' is not a number from 1 to 65535`,
    );
  });

  test("an unknown %-token is refused", () => {
    const dir = mkdtempSync(join(home, "tok-"));
    const path = join(dir, "config");
    writeFileSync(path, "Host y\n  IdentityFile ~/.ssh/%Z\n");
    expect(() => resolveTarget("y", { home, sshConfigPath: path })).toThrow("unsupported token %Z");
  });
});
