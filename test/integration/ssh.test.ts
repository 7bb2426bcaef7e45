// The SSH layer against a real OpenSSH sshd on 127.0.0.1 (test/support/sshd.ts): host key trust
// (unknown refused, accept-new records it, changed refused), key auth from files, ssh-agent and
// ssh_config aliases, exec with hostile argv, timeouts, SFTP upload with progress, atomic rename,
// chmod, uploadAsRoot, one-line connection errors, and the same code inside a compiled binary.
import { afterAll, beforeAll, describe, expect, setDefaultTimeout, test } from "bun:test";
import { createHash, randomBytes } from "node:crypto";
import {
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { stubNativeAddons } from "../../scripts/build.ts";
import {
  type ConnectOptions,
  connectSsh,
  fingerprintSha256,
  resolveTarget,
  SshError,
  type SshSession,
} from "../../src/ssh/index.ts";
import { freePort, startSshd, type TestSshd } from "../support/sshd.ts";

// Each remote command starts the login user's shell; on a machine whose root .bashrc is slow
// (pyenv init: ~100 ms per exec here) the exec tests need more than bun's 5 s default.
setDefaultTimeout(60_000);

let sshd: TestSshd;
let work: string;
// The login user's home must not leak keys or a known_hosts into the tests: a private empty one.
let home: string;
let knownHosts: string;
const sessions: SshSession[] = [];

beforeAll(async () => {
  sshd = await startSshd();
  work = mkdtempSync(join(tmpdir(), "mcp-ssh-it-"));
  home = join(work, "home");
  mkdirSync(home);
  knownHosts = join(work, "known_hosts");
  writeFileSync(knownHosts, `${sshd.hostKeyLine}\n`);
});

afterAll(async () => {
  for (const s of sessions) await s.close();
  await sshd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

function target(spec = `${sshd.user}@127.0.0.1:${sshd.port}`) {
  return resolveTarget(spec, { home, sshConfigPath: join(home, "no-config") });
}

async function connect(opts: Partial<ConnectOptions> = {}): Promise<SshSession> {
  const s = await connectSsh({
    target: target(),
    knownHostsPath: knownHosts,
    identityFiles: [sshd.clientKeyPath],
    agentSocket: null,
    home,
    timeoutMs: 10_000,
    ...opts,
  });
  sessions.push(s);
  return s;
}

async function failure(p: Promise<unknown>): Promise<SshError> {
  const e = await p.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SshError);
  expect((e as Error).message).not.toContain("\n");
  return e as SshError;
}

function keygenFingerprint(pubPath: string): string {
  const out = Bun.spawnSync(["ssh-keygen", "-lf", pubPath], { stdout: "pipe" }).stdout.toString();
  return out.split(" ")[1]!;
}

describe("host keys", () => {
  test("unknown host is refused with its fingerprint; known_hosts is not created", async () => {
    const kh = join(work, "unknown", "known_hosts");
    const e = await failure(connect({ knownHostsPath: kh }));
    expect(e.message).toBe(
      `host key for [127.0.0.1]:${sshd.port} is unknown (ED25519 ${keygenFingerprint(sshd.hostPubPath)}); verify it and re-run with --accept-new-host-key`,
    );
    expect(existsSync(kh)).toBe(false);
  });

  test("acceptNewHostKey records the key, connects, and the next connect needs no flag", async () => {
    const kh = join(work, "accept", "known_hosts");
    const s = await connect({ knownHostsPath: kh, acceptNewHostKey: true });
    expect(readFileSync(kh, "utf8")).toBe(`${sshd.hostKeyLine}\n`);
    expect(s.notes.some((n) => n.includes(`added host key ${keygenFingerprint(sshd.hostPubPath)}`))).toBe(
      true,
    );
    expect((await s.exec(["true"])).code).toBe(0);
    const again = await connect({ knownHostsPath: kh });
    expect(again.notes).toEqual([]);
    // Accepting again does not add a duplicate line.
    await connect({ knownHostsPath: kh, acceptNewHostKey: true });
    expect(readFileSync(kh, "utf8").trim().split("\n").length).toBe(1);
  });

  test("with only the server's RSA key recorded, the client asks for RSA (not ed25519) and connects", async () => {
    const kh = join(work, "rsa_known_hosts");
    writeFileSync(kh, `${sshd.rsaHostKeyLine}\n`);
    const s = await connect({ knownHostsPath: kh });
    expect((await s.exec(["true"])).code).toBe(0);
    // Control: the server presents ed25519 to a client that expresses no preference.
    const unknown = await failure(connect({ knownHostsPath: join(work, "none_known_hosts") }));
    expect(unknown.message).toContain("(ED25519 SHA256:");
  });

  test("a hashed known_hosts entry is accepted", async () => {
    const kh = join(work, "hashed_known_hosts");
    writeFileSync(kh, `${sshd.hostKeyLine}\n`);
    expect(Bun.spawnSync(["ssh-keygen", "-q", "-H", "-f", kh]).exitCode).toBe(0);
    expect(readFileSync(kh, "utf8").startsWith("|1|")).toBe(true);
    const s = await connect({ knownHostsPath: kh });
    expect((await s.exec(["true"])).code).toBe(0);
  });
});

describe("authentication and targets", () => {
  test("keys from a real ssh-agent", async () => {
    const sock = join(work, "agent.sock");
    const agent = Bun.spawn(["ssh-agent", "-D", "-a", sock], { stdout: "ignore", stderr: "pipe" });
    try {
      for (let i = 0; i < 100 && !existsSync(sock); i++) await Bun.sleep(20);
      const add = Bun.spawnSync(["ssh-add", sshd.clientKeyPath], {
        env: { SSH_AUTH_SOCK: sock },
        stderr: "pipe",
      });
      expect(add.exitCode).toBe(0);
      // No identity files anywhere (empty home): only the agent can authenticate.
      const s = await connect({ identityFiles: [], agentSocket: sock });
      expect((await s.exec(["id", "-u"])).stdout).toBe("0\n");
    } finally {
      agent.kill();
      await agent.exited;
    }
  });

  test("an ssh_config alias supplies HostName, Port, User and IdentityFile", async () => {
    const cfg = join(work, "ssh_config");
    writeFileSync(
      cfg,
      `Host testnode\n  HostName 127.0.0.1\n  Port ${sshd.port}\n  User ${sshd.user}\n  IdentityFile ${sshd.clientKeyPath}\n`,
    );
    const t = resolveTarget("testnode", { home, sshConfigPath: cfg });
    const s = await connect({ target: t, identityFiles: undefined });
    expect((await s.exec(["hostname"])).code).toBe(0);
  });

  test("a wrong key fails authentication in one line naming what was offered; encrypted keys are noted", async () => {
    const wrong = join(work, "wrong_key");
    const enc = join(work, "enc_key");
    Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", wrong]);
    Bun.spawnSync(["ssh-keygen", "-q", "-t", "ed25519", "-N", "pw", "-f", enc]);
    const e = await failure(connect({ identityFiles: [enc, wrong] }));
    expect(e.message).toBe(
      `ssh ${sshd.user}@127.0.0.1:${sshd.port}: authentication failed (offered: ${wrong}); skipped ${enc}: it is encrypted and there is no passphrase prompt (add it to ssh-agent)`,
    );
    // The encrypted key is skipped, the next one is used.
    const ok = await connect({ identityFiles: [enc, sshd.clientKeyPath] });
    expect(ok.notes[0]).toContain(`skipped ${enc}`);
  });

  test("connection refused is one line", async () => {
    const port = await freePort();
    const t = resolveTarget(`root@127.0.0.1:${port}`, { home });
    const e = await failure(connect({ target: t }));
    expect(e.message).toBe(`ssh root@127.0.0.1:${port}: connection refused`);
  });

  test("a server that never answers times out in one line", async () => {
    // A listening socket that accepts and stays silent: no SSH banner ever arrives.
    const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
    try {
      const t = resolveTarget(`root@127.0.0.1:${server.port}`, { home });
      const started = performance.now();
      const e = await failure(connect({ target: t, timeoutMs: 400 }));
      expect(e.message).toBe(`ssh root@127.0.0.1:${server.port}: no answer within 400 ms`);
      expect(performance.now() - started).toBeLessThan(3000);
    } finally {
      server.stop(true);
    }
  });
});

describe("exec", () => {
  let s: SshSession;
  beforeAll(async () => {
    s = await connect();
    console.log(`ssh connect: ${s.connectMs.toFixed(1)} ms`);
  });

  const printfArgv = async (argv: string[]) => {
    const r = await s.exec(["printf", "%s\\0", ...argv]);
    expect(r.code).toBe(0);
    return r.stdout.slice(0, -1).split("\0");
  };

  test("hostile argv round-trips exactly through the remote login shell", async () => {
    const argv = [
      "",
      " ",
      "it's",
      "'\\''",
      '"$HOME"',
      "`id`",
      "$(touch /tmp/pwned)",
      "a\nb",
      ";reboot",
      "|&",
      "*",
      "-n",
      "é🙂",
      "~root",
      "=cat",
    ];
    expect(await printfArgv(argv)).toEqual(argv);
    await fc.assert(
      fc.asyncProperty(
        fc.array(
          fc.string({ unit: "binary", maxLength: 10 }).filter((x) => !x.includes("\0")),
          { minLength: 1, maxLength: 5 },
        ),
        async (a) => {
          expect(await printfArgv(a)).toEqual(a);
        },
      ),
      { numRuns: 25 },
    );
  });

  test("exit codes, stderr and stdin", async () => {
    const r = await s.exec(["sh", "-c", 'echo out; echo err >&2; exit "$1"', "sh", "7"]);
    expect(r).toEqual({ code: 7, stdout: "out\n", stderr: "err\n" });
    expect((await s.exec(["cat"], { input: "to stdin\n" })).stdout).toBe("to stdin\n");
    // Without input, stdin is closed at once (cat would otherwise wait forever).
    expect((await s.exec(["cat"], { timeoutMs: 5000 })).stdout).toBe("");
    const failed = await failure(s.execOk(["ls", "/nonexistent-mcp"]));
    expect(failed.code).toBe(2);
    expect(failed.message).toContain("ls /nonexistent-mcp exited with 2: ls: cannot access");
  });

  test("sudo as root runs the command without a sudo prefix", async () => {
    expect(await s.isRoot()).toBe(true);
    expect((await s.exec(["id", "-u"], { sudo: true })).stdout).toBe("0\n");
  });

  test("a command past its timeout is killed on the server and fails with code -1", async () => {
    const marker = `${Date.now() % 100000}.4242`;
    const started = performance.now();
    const e = await failure(s.exec(["sleep", marker], { timeoutMs: 300 }));
    expect(e.code).toBe(-1);
    expect(e.message).toBe(`ssh ${sshd.user}@127.0.0.1:${sshd.port}: sleep ${marker} timed out after 300 ms`);
    expect(performance.now() - started).toBeLessThan(2000);
    // Gone within the node-side limit (timeout + 0.5 s, rounded up to whole seconds).
    let alive = true;
    for (let i = 0; i < 40 && alive; i++) {
      alive = (await s.exec(["pgrep", "-f", `sleep ${marker}`])).code === 0;
      if (alive) await Bun.sleep(50);
    }
    expect(alive).toBe(false);
    // The session is still usable.
    expect((await s.exec(["echo", "ok"])).stdout).toBe("ok\n");
  });
});

describe("sftp", () => {
  let s: SshSession;
  let dir: string;
  beforeAll(async () => {
    s = await connect();
    dir = join(work, "remote");
    mkdirSync(dir);
  });

  test("5 MiB upload with progress; content and mode exact", async () => {
    const data = randomBytes(5 * 1024 * 1024);
    const dest = join(dir, "blob.bin");
    const progress: [number, number][] = [];
    const started = performance.now();
    await s.upload(data, dest, { mode: 0o750, onProgress: (sent, total) => progress.push([sent, total]) });
    console.log(`sftp upload 5 MiB (buffer): ${(performance.now() - started).toFixed(1)} ms`);
    expect(createHash("sha256").update(readFileSync(dest)).digest("hex")).toBe(
      createHash("sha256").update(data).digest("hex"),
    );
    // Exactly the mode asked for, whatever sshd's umask (0o750 survives a 022 umask anyway; 0o777 would not).
    expect(statSync(dest).mode & 0o777).toBe(0o750);
    expect(progress.length).toBe(160);
    expect(progress.at(-1)).toEqual([data.length, data.length]);
    for (let i = 1; i < progress.length; i++) expect(progress[i]![0]).toBeGreaterThan(progress[i - 1]![0]);

    // From a local file, into a mode a umask would clip.
    const local = join(work, "local.bin");
    writeFileSync(local, data);
    const t2 = performance.now();
    await s.upload(local, join(dir, "from-file.bin"), { mode: 0o777 });
    console.log(`sftp upload 5 MiB (file): ${(performance.now() - t2).toFixed(1)} ms`);
    expect(readFileSync(join(dir, "from-file.bin")).equals(data)).toBe(true);
    expect(statSync(join(dir, "from-file.bin")).mode & 0o777).toBe(0o777);
  });

  test("empty upload, stat, chmod, missing path", async () => {
    const p = join(dir, "empty");
    const progress: number[] = [];
    await s.upload(new Uint8Array(0), p, { onProgress: (sent) => progress.push(sent) });
    expect(progress).toEqual([0]);
    await s.chmod(p, 0o600);
    expect(await s.stat(p)).toMatchObject({ size: 0, mode: 0o600, isFile: true, isDirectory: false, uid: 0 });
    expect(await s.stat(join(dir, "nope"))).toBeUndefined();
    expect((await s.stat(dir))?.isDirectory).toBe(true);
    const e = await failure(s.upload(join(work, "no-such-local"), join(dir, "x")));
    expect(e.message).toContain("cannot read");
    const e2 = await failure(s.upload(Buffer.from("x"), join(dir, "no-dir", "x")));
    expect(e2.message).toContain(`sftp open ${join(dir, "no-dir", "x")}: No such file`);
  });

  test("rename replaces an existing file atomically (plain SFTP rename refuses)", async () => {
    const final = join(dir, "agent");
    writeFileSync(final, "v0".repeat(50_000));
    await s.upload(Buffer.from("v1".repeat(50_000)), `${final}.tmp`);
    const tmpIno = statSync(`${final}.tmp`).ino;
    await s.rename(`${final}.tmp`, final);
    // rename(2) moved the inode: no copy, no window with a half-written file.
    expect(statSync(final).ino).toBe(tmpIno);
    expect(readFileSync(final, "utf8")).toBe("v1".repeat(50_000));
    expect(existsSync(`${final}.tmp`)).toBe(false);

    // Readers racing 20 replacements only ever see a complete version.
    const versions = new Set(Array.from({ length: 21 }, (_, i) => `v${i}`.repeat(50_000)));
    let reading = true;
    let reads = 0;
    const reader = (async () => {
      while (reading && reads < 100_000) {
        const got = readFileSync(final, "utf8");
        expect(versions.has(got)).toBe(true);
        reads++;
        await Bun.sleep(0);
      }
    })();
    for (let i = 2; i <= 20; i++) {
      await s.upload(Buffer.from(`v${i}`.repeat(50_000)), `${final}.tmp`);
      await s.rename(`${final}.tmp`, final);
    }
    reading = false;
    await reader;
    expect(reads).toBeGreaterThan(0);
    expect(readFileSync(final, "utf8")).toBe("v20".repeat(50_000));

    // Control: why ext_openssh_rename is used.
    await s.upload(Buffer.from("x"), `${final}.tmp`);
    const sftp = await (
      s as unknown as { sftp(): Promise<{ rename(a: string, b: string, cb: (e?: Error) => void): void }> }
    ).sftp();
    const plain = await new Promise<Error | undefined>((r) => sftp.rename(`${final}.tmp`, final, r));
    expect(plain).toBeInstanceOf(Error);
  });

  test("uploadAsRoot installs atomically with mode and owner and leaves no temp files", async () => {
    const sub = join(dir, "srv");
    mkdirSync(sub);
    const final = join(sub, "mcp-agent");
    writeFileSync(final, "old");
    await s.uploadAsRoot(Buffer.from("new binary"), final, { mode: 0o755, owner: "root:root" });
    expect(readFileSync(final, "utf8")).toBe("new binary");
    expect(statSync(final).mode & 0o777).toBe(0o755);
    expect(readdirSync(sub)).toEqual(["mcp-agent"]);
    // A failure (bad owner) leaves the old file and no temp file.
    const e = await failure(s.uploadAsRoot(Buffer.from("newer"), final, { owner: "no-such-user-mcp" }));
    expect(e.message).toContain("chown");
    expect(readFileSync(final, "utf8")).toBe("new binary");
    expect(readdirSync(sub)).toEqual(["mcp-agent"]);
    // A directory another account may change (here: owned by nobody) is refused before anything
    // is written: root writing by name there could be redirected through a planted link.
    const theirs = join(dir, "theirs");
    mkdirSync(join(theirs, "certs"), { recursive: true });
    chownSync(theirs, 65534, 65534);
    const e2 = await failure(s.uploadAsRoot(Buffer.from("key"), join(theirs, "certs", "key.pem")));
    expect(e2.message).toEndWith(
      `: refusing to write ${join(theirs, "certs", "key.pem")} as root: ${theirs} is not a directory only root can change`,
    );
    expect(readdirSync(join(theirs, "certs"))).toEqual([]);
  });
});

describe("connection lost", () => {
  test("an upload and an exec cut off mid-way fail in one line; the session then refuses work", async () => {
    const s = await connect();
    const dest = join(work, "cut.bin");
    let cut = false;
    const upload = s.upload(Buffer.alloc(256 * 1024 * 1024, 3), dest, {
      onProgress: (sent) => {
        if (cut || sent < 4 * 1024 * 1024) return;
        cut = true;
        // Kill the per-connection sshd processes: children of this test's own sshd only.
        Bun.spawnSync(["pkill", "-KILL", "-P", String(sshd.pid())]);
      },
    });
    const e = await failure(upload);
    expect(cut).toBe(true);
    expect(e.message).toContain(`ssh ${sshd.user}@127.0.0.1:${sshd.port}: `);
    expect(statSync(dest).size).toBeLessThan(256 * 1024 * 1024);
    const e2 = await failure(s.exec(["true"]));
    expect(e2.message).toBe(`ssh ${sshd.user}@127.0.0.1:${sshd.port}: connection is closed (running true)`);
  });
});

describe("compiled binary", () => {
  test("connect, exec and upload work from a compiled executable built with the release plugin", async () => {
    const dir = mkdtempSync(join(work, "compiled-"));
    const entry = join(dir, "entry.ts");
    const src = join(import.meta.dir, "..", "..", "src", "ssh", "index.ts");
    symlinkSync(join(import.meta.dir, "..", "..", "node_modules"), join(dir, "node_modules"));
    writeFileSync(
      entry,
      [
        `import { connectSsh, resolveTarget } from ${JSON.stringify(src)};`,
        "async function main() {",
        "  const [spec, kh, key, dest] = process.argv.slice(2);",
        "  const target = resolveTarget(spec!, { sshConfigPath: '/nonexistent' });",
        "  const s = await connectSsh({ target, knownHostsPath: kh!, identityFiles: [key!], agentSocket: null });",
        "  const r = await s.exec(['printf', '%s|', 'a b', \"it's\"]);",
        "  await s.upload(Buffer.alloc(1 << 20, 1), dest! + '.tmp', { mode: 0o755 });",
        "  await s.rename(dest! + '.tmp', dest!);",
        "  console.log(r.stdout + ' ' + s.connectMs.toFixed(0));",
        "  await s.close();",
        "}",
        "main().catch((e) => { console.error(e.message); process.exit(1); });",
      ].join("\n"),
    );
    const outfile = join(dir, "ssh-probe");
    const build = await Bun.build({
      entrypoints: [entry],
      target: "bun",
      minify: true,
      bytecode: true,
      plugins: [stubNativeAddons],
      compile: { target: "bun-linux-x64", outfile, autoloadDotenv: false, autoloadBunfig: false },
    });
    expect(build.success).toBe(true);
    const dest = join(dir, "uploaded");
    const scratch = mkdtempSync(join(dir, "tmp-"));
    const p = Bun.spawn(
      [outfile, `${sshd.user}@127.0.0.1:${sshd.port}`, knownHosts, sshd.clientKeyPath, dest],
      {
        stdout: "pipe",
        stderr: "pipe",
        env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin", HOME: home, TMPDIR: scratch },
      },
    );
    const [out, err, code] = await Promise.all([
      new Response(p.stdout).text(),
      new Response(p.stderr).text(),
      p.exited,
    ]);
    expect(err).toBe("");
    expect(code).toBe(0);
    expect(out).toMatch(/^a b\|it's\| \d+\n$/);
    expect(statSync(dest).size).toBe(1 << 20);
    expect(statSync(dest).mode & 0o777).toBe(0o755);
    // The stub kept ssh2's native addons out: nothing extracted into TMPDIR.
    expect(readdirSync(scratch)).toEqual([]);
  });
});

// Last: it replaces the server's host key.
describe("changed host key", () => {
  test("refused, with both fingerprints and the line, even with acceptNewHostKey", async () => {
    const kh = join(work, "changed_known_hosts");
    const before = `# first line\n${sshd.hostKeyLine}\n`;
    writeFileSync(kh, before);
    const oldFp = fingerprintSha256(Buffer.from(sshd.hostKeyLine.split(" ")[2]!, "base64"));
    expect((await connect({ knownHostsPath: kh })).connectMs).toBeGreaterThan(0);
    await sshd.regenerateHostKey();
    const newFp = keygenFingerprint(sshd.hostPubPath);
    expect(newFp).not.toBe(oldFp);
    const want = `host key for [127.0.0.1]:${sshd.port} CHANGED (now ${newFp}, ${kh} line 2 has ${oldFp}): possible man-in-the-middle; remove the old entry if the change is expected`;
    expect((await failure(connect({ knownHostsPath: kh }))).message).toBe(want);
    expect((await failure(connect({ knownHostsPath: kh, acceptNewHostKey: true }))).message).toBe(want);
    // Nothing was appended.
    expect(readFileSync(kh, "utf8")).toBe(before);
  });
});
