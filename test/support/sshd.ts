// Test support: a real OpenSSH sshd on 127.0.0.1 (no container), for the SSH layer's integration
// tests. It runs `/usr/sbin/sshd -D -e -f <cfg>` with its own host key, a client key in an
// AuthorizedKeysFile under a temp dir (StrictModes off: /tmp is world-writable), on a free port.
// It must run as root (sshd switches to the login user; the login user here is root). apt package
// openssh-server, installed by scripts/ci-deps.sh.
import { existsSync, mkdirSync } from "node:fs";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { createConnection, createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { localUserName } from "../../src/ssh/target.ts";

export const SSHD = "/usr/sbin/sshd";

export interface TestSshd {
  host: "127.0.0.1";
  port: number;
  /** known_hosts line for the current host key: `[127.0.0.1]:<port> ssh-ed25519 AAAA…`. */
  hostKeyLine: string;
  /** known_hosts line for the second host key (RSA), which sshd also offers. */
  rsaHostKeyLine: string;
  /** Path of the host public key file (for ssh-keygen -lf). */
  hostPubPath: string;
  /** Private key whose public half is authorized. */
  clientKeyPath: string;
  user: string;
  /** The temp directory holding keys, config and logs. */
  dir: string;
  /** PID of the listening sshd (its children are the per-connection processes). */
  pid(): number;
  /** sshd's stderr so far (for failure messages). */
  log(): string;
  /** Replaces the host key with a new one and restarts sshd on the same port. */
  regenerateHostKey(): Promise<void>;
  stop(): Promise<void>;
}

async function run(argv: string[]): Promise<string> {
  const p = Bun.spawn(argv, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  const [out, err, code] = await Promise.all([
    new Response(p.stdout).text(),
    new Response(p.stderr).text(),
    p.exited,
  ]);
  if (code !== 0) throw new Error(`${argv.join(" ")} exited ${code}: ${err.trim()}`);
  return out;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

async function keygen(path: string, comment: string, type = "ed25519"): Promise<void> {
  await rm(path, { force: true });
  await rm(`${path}.pub`, { force: true });
  await run(["ssh-keygen", "-q", "-t", type, "-N", "", "-C", comment, "-f", path]);
}

export async function startSshd(): Promise<TestSshd> {
  if (!existsSync(SSHD)) throw new Error(`${SSHD} missing: install openssh-server (scripts/ci-deps.sh)`);
  if (process.getuid?.() !== 0) throw new Error("the test sshd needs root (it logs in as root)");
  // Privilege separation directory; sshd refuses to start without it.
  mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
  const dir = await mkdtemp(join(tmpdir(), "mcp-sshd-"));
  const hostKey = join(dir, "host_ed25519");
  const clientKey = join(dir, "client_ed25519");
  await keygen(hostKey, "mcp-test-host");
  // A second host key type, so tests can show which type a client asks for (ed25519 is preferred).
  const rsaHostKey = join(dir, "host_rsa");
  await keygen(rsaHostKey, "mcp-test-host-rsa", "rsa");
  await keygen(clientKey, "mcp-test-client");
  await writeFile(join(dir, "authorized_keys"), await readFile(`${clientKey}.pub`));
  const user = localUserName();

  let port = 0;
  let proc: ReturnType<typeof Bun.spawn> | undefined;
  let stderr = "";

  const writeConfig = async (p: number) => {
    const cfg = [
      `Port ${p}`,
      "ListenAddress 127.0.0.1",
      `HostKey ${hostKey}`,
      `HostKey ${rsaHostKey}`,
      `PidFile ${join(dir, "sshd.pid")}`,
      `AuthorizedKeysFile ${join(dir, "authorized_keys")}`,
      "StrictModes no",
      "UsePAM no",
      "PubkeyAuthentication yes",
      "PasswordAuthentication no",
      "KbdInteractiveAuthentication no",
      "PermitRootLogin prohibit-password",
      `AllowUsers ${user}`,
      "Subsystem sftp internal-sftp",
      // Tests open many sessions and channels in parallel.
      "MaxStartups 100",
      "MaxSessions 64",
      process.env["MCP_SSHD_LOGLEVEL"] ? `LogLevel ${process.env["MCP_SSHD_LOGLEVEL"]}` : "LogLevel ERROR",
      "",
    ].join("\n");
    await writeFile(join(dir, "sshd_config"), cfg);
  };

  const launch = async (): Promise<void> => {
    // A free port can be taken between probing and binding: retry with another (bounded).
    for (let attempt = 0; attempt < 5; attempt++) {
      if (port === 0 || attempt > 0) port = await freePort();
      await writeConfig(port);
      stderr = "";
      const p = Bun.spawn([SSHD, "-D", "-e", "-f", join(dir, "sshd_config")], {
        stdin: "ignore",
        stdout: "ignore",
        stderr: "pipe",
      });
      proc = p;
      (async () => {
        const dec = new TextDecoder();
        for await (const chunk of p.stderr as ReadableStream<Uint8Array>) stderr += dec.decode(chunk);
      })().catch(() => {});
      for (let i = 0; i < 100; i++) {
        if (p.exitCode !== null) break;
        if (await canConnect(port)) return;
        await Bun.sleep(50);
      }
      p.kill("SIGKILL");
      await p.exited;
      if (!/Address already in use|Bind to port/.test(stderr)) {
        throw new Error(`sshd did not start on 127.0.0.1:${port}: ${stderr.trim()}`);
      }
    }
    throw new Error(`sshd could not bind a free port: ${stderr.trim()}`);
  };

  const halt = async () => {
    if (!proc) return;
    proc.kill("SIGTERM");
    await proc.exited;
    proc = undefined;
  };

  await launch();
  const hostLine = async (key = hostKey) => {
    const [type, b64] = (await readFile(`${key}.pub`, "utf8")).trim().split(/\s+/);
    return `[127.0.0.1]:${port} ${type} ${b64}`;
  };
  const sshd: TestSshd = {
    host: "127.0.0.1",
    port,
    hostKeyLine: await hostLine(),
    rsaHostKeyLine: await hostLine(rsaHostKey),
    hostPubPath: `${hostKey}.pub`,
    clientKeyPath: clientKey,
    user,
    dir,
    pid: () => proc?.pid ?? 0,
    log: () => stderr,
    async regenerateHostKey() {
      await halt();
      await keygen(hostKey, "mcp-test-host-2");
      // Same port: known_hosts entries are per [host]:port, so the new key must show up there.
      const keep = port;
      await writeConfig(keep);
      await launch();
      if (port !== keep) throw new Error(`sshd came back on port ${port}, not ${keep}`);
      sshd.hostKeyLine = await hostLine();
    },
    async stop() {
      await halt();
      await rm(dir, { recursive: true, force: true });
    },
  };
  return sshd;
}
