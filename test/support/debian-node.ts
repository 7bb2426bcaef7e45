// Real Debian nodes for SSH provision/upgrade tests: containers of the debootstrapped bookworm image
// (scripts/testenv/debian-node.ts) with systemd as PID 1 and sshd, ports published on 127.0.0.1, a
// per-node ed25519 key authorized for root and `deploy` (passwordless sudo), and the node's own host
// key as a known_hosts line. Containers are named mcptest-node-<name>-<rand> and removed by name.
//
// Capabilities (measured on this host: podman 4.3.1 rootful, runc, cgroup v1):
// - systemd as PID 1 and sshd need nothing beyond `--systemd=always`.
// - Every node gets `--cap-add SYS_ADMIN`: without it newuidmap cannot write uid_map, so ROOTLESS
//   podman (the agent's `mcp` user) fails even `podman version`, which NodeStatus runs. It also makes
//   systemd apply a unit's namespacing (ProtectSystem=…) as on a real machine instead of skipping it.
// - To RUN containers inside a node, start it with `privileged: true`: --privileged (mounts,
//   /dev/fuse for fuse-overlayfs, /dev/net/tun) and --cgroupns=private (otherwise the nested runc
//   looks for its cgroup under the outer container's host path and fails; cgroupns in the node's
//   containers.conf is ignored on cgroup v1). /dev/net/tun and /dev/fuse are then made 0666 inside
//   the node, as udev does on real Debian, so rootless slirp4netns works; the node's /dev is its
//   own tmpfs, the host's devices stay 0600.

import { createHash } from "node:crypto";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DebianNodeVariant, ensureDebianNodeImage } from "../../scripts/testenv/debian-node.ts";
import { type RunResult, run, runOk } from "../../src/runtime/exec.ts";
import { REPO_ROOT } from "./binary.ts";
import { freePort, podmanEnv } from "./env.ts";

export interface DebianNodeOptions {
  /** Hostname inside the node and part of the container name; [a-z0-9-]. */
  name: string;
  /** "bare" (default): only systemd/sshd/sudo; "podman": podman, runc, uidmap, slirp4netns installed. */
  image?: DebianNodeVariant;
  /** More container ports to publish on 127.0.0.1 (see DebianNode.ports). */
  extraPorts?: number[];
  /** --privileged --cgroupns=private, so the node can run containers itself (see the module comment). */
  privileged?: boolean;
}

export interface DebianNode {
  name: string;
  container: string;
  host: "127.0.0.1";
  /** Host port published for the node's sshd (22). */
  sshPort: number;
  /** Host port published for the node's 9444 (the agent's gRPC port). */
  agentPort: number;
  /** Container port → host port for 22, 9444 and every extraPort. */
  ports: Record<number, number>;
  /** Private ed25519 key authorized for root and deploy. */
  keyPath: string;
  /** `[127.0.0.1]:<sshPort> ssh-ed25519 AAAA…` (the node's own host key). */
  knownHostsLine: string;
  /** A file holding knownHostsLine, for `ssh -o UserKnownHostsFile=…`. */
  knownHostsPath: string;
  /** SHA256:… fingerprint of the host key, as OpenSSH prints it. */
  hostKeyFingerprint: string;
  /** `user@127.0.0.1:<sshPort>`, the form a node's `ssh` config field takes. */
  sshSpec(user?: string): string;
  /** OpenSSH client argv (strict host key checking, this node's key) up to and including the destination. */
  sshArgv(user?: string): string[];
  /** Runs argv inside the node as root (podman exec); a non-zero exit is returned, not thrown. */
  exec(argv: string[], opts?: { input?: string | Uint8Array; timeoutMs?: number }): Promise<RunResult>;
  /** Copies a host image into the node's root podman (`podman save | podman exec -i … podman load`). */
  loadImage(ref: string): Promise<void>;
  /** New host keys + sshd restart (a "changed host key"); returns and stores the new known_hosts line. */
  regenerateHostKeys(): Promise<string>;
  /** Removes the container (by name) and the key directory. Safe to call twice. */
  stop(): Promise<void>;
}

const BOOT_TIMEOUT_MS = 30_000;
const live = new Set<string>();
process.on("exit", () => {
  // A crashed test run must not leave nodes behind; exit handlers cannot await, so spawnSync.
  for (const c of live) Bun.spawnSync(["podman", "--runtime", "runc", "rm", "-f", "-t", "0", c]);
});

async function podman(timeoutMs: number, ...sub: string[]): Promise<RunResult> {
  const pe = await podmanEnv();
  return run(["podman", ...pe.globalArgs, ...sub], { env: pe.env, timeoutMs });
}

/** True once a TCP connection to host:port gets an SSH banner (a published port may accept earlier). */
function sshBanner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = connect({ host: "127.0.0.1", port });
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(2000, () => done(false));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      if (buf.includes("\n")) done(buf.startsWith("SSH-2.0-"));
    });
    sock.on("error", () => done(false));
    sock.on("close", () => done(false));
  });
}

function fingerprint(base64Key: string): string {
  const digest = createHash("sha256").update(Buffer.from(base64Key, "base64")).digest("base64");
  return `SHA256:${digest.replace(/=+$/, "")}`;
}

// authorized_keys for root and deploy from stdin; a fixed script, the key travels as data.
const INSTALL_KEY =
  "set -e; k=$(cat); for h in /root /home/deploy; do install -d -m 700 $h/.ssh; " +
  'printf "%s\\n" "$k" > $h/.ssh/authorized_keys; chmod 600 $h/.ssh/authorized_keys; done; ' +
  "chown -R deploy:deploy /home/deploy/.ssh";

/** Boots a Debian node and returns once systemd is up and sshd accepts the node's key. */
export async function startDebianNode(opts: DebianNodeOptions): Promise<DebianNode> {
  if (!/^[a-z0-9][a-z0-9-]{0,30}$/.test(opts.name)) throw new Error(`bad node name: ${opts.name}`);
  const image = (await ensureDebianNodeImage(opts.image ?? "bare")).ref;
  const container = `mcptest-node-${opts.name}-${Math.random().toString(36).slice(2, 8)}`;
  const containerPorts = [22, 9444, ...(opts.extraPorts ?? [])];

  // A free port can be taken between freePort() and podman's bind: retry a few times.
  let ports: Record<number, number> = {};
  let lastErr = "";
  for (let attempt = 0; attempt < 3; attempt++) {
    ports = {};
    const publish: string[] = [];
    for (const cp of containerPorts) {
      const hp = await freePort();
      ports[cp] = hp;
      publish.push("-p", `127.0.0.1:${hp}:${cp}`);
    }
    live.add(container);
    const res = await podman(
      60_000,
      "run",
      "-d",
      "--systemd=always",
      ...(opts.privileged ? ["--privileged", "--cgroupns=private"] : ["--cap-add", "SYS_ADMIN"]),
      "--name",
      container,
      "--hostname",
      opts.name,
      ...publish,
      image,
    );
    if (res.code === 0) {
      lastErr = "";
      break;
    }
    lastErr = res.stderr.trim().split("\n").slice(-1).join("");
    await podman(60_000, "rm", "-f", "-t", "0", container);
    live.delete(container);
    if (!/address already in use|bind/i.test(lastErr)) break;
  }
  if (lastErr !== "") throw new Error(`starting node ${opts.name} failed: ${lastErr}`);

  const keyDir = await mkdtemp(join(tmpdir(), `mcp-node-${opts.name}-`));
  const stop = async () => {
    // A failed removal is retried, and otherwise stays in `live` for the exit handler: a CI run
    // once left two provision nodes running after a green afterAll.
    for (let attempt = 1; attempt <= 3; attempt++) {
      const r = await podman(60_000, "rm", "-f", "-t", "0", container);
      if (r.code === 0) {
        live.delete(container);
        break;
      }
      if (attempt === 3)
        console.error(`debian node ${container}: podman rm failed: ${r.stderr.trim().split("\n").pop()}`);
      else await Bun.sleep(500);
    }
    await rm(keyDir, { recursive: true, force: true });
  };

  try {
    const exec = async (argv: string[], o?: { input?: string | Uint8Array; timeoutMs?: number }) => {
      const pe = await podmanEnv();
      const interactive = o?.input !== undefined ? ["-i"] : [];
      return run(["podman", ...pe.globalArgs, "exec", ...interactive, container, ...argv], {
        env: pe.env,
        timeoutMs: o?.timeoutMs ?? 60_000,
        ...(o?.input !== undefined ? { input: o.input } : {}),
      });
    };

    // systemd: "running" or "degraded" (Debian's podman.service fails at boot in a container).
    const deadline = Date.now() + BOOT_TIMEOUT_MS;
    let state = "";
    while (Date.now() < deadline) {
      state = (await exec(["systemctl", "is-system-running"], { timeoutMs: 10_000 })).stdout.trim();
      if (state === "running" || state === "degraded") break;
      await Bun.sleep(100);
    }
    if (state !== "running" && state !== "degraded") {
      throw new Error(`node ${opts.name}: systemd not up after ${BOOT_TIMEOUT_MS} ms (state "${state}")`);
    }

    const keyPath = join(keyDir, "id_ed25519");
    await runOk(
      ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", `mcp-test@${opts.name}`, "-f", keyPath],
      {
        timeoutMs: 10_000,
      },
    );
    const pub = (await Bun.file(`${keyPath}.pub`).text()).trim();
    const inst = await exec(["sh", "-c", INSTALL_KEY], { input: pub });
    if (inst.code !== 0)
      throw new Error(`node ${opts.name}: installing the key failed: ${inst.stderr.trim()}`);

    if (opts.privileged) {
      const devs = await exec(["chmod", "0666", "/dev/net/tun", "/dev/fuse"]);
      if (devs.code !== 0) throw new Error(`node ${opts.name}: chmod of /dev/net/tun: ${devs.stderr.trim()}`);
    }

    const sshPort = ports[22]!;
    while (!(await sshBanner(sshPort))) {
      if (Date.now() > deadline)
        throw new Error(`node ${opts.name}: sshd not answering on 127.0.0.1:${sshPort}`);
      await Bun.sleep(100);
    }

    const knownHostsPath = join(keyDir, "known_hosts");
    const readHostKey = async (): Promise<string> => {
      const res = await exec(["cat", "/etc/ssh/ssh_host_ed25519_key.pub"]);
      const [type, b64] = res.stdout.trim().split(/\s+/);
      if (res.code !== 0 || type !== "ssh-ed25519" || !b64) {
        throw new Error(`node ${opts.name}: no ed25519 host key: ${res.stderr.trim()}`);
      }
      node.knownHostsLine = `[127.0.0.1]:${sshPort} ${type} ${b64}`;
      node.hostKeyFingerprint = fingerprint(b64);
      await writeFile(knownHostsPath, `${node.knownHostsLine}\n`);
      return node.knownHostsLine;
    };

    const node: DebianNode = {
      name: opts.name,
      container,
      host: "127.0.0.1",
      sshPort,
      agentPort: ports[9444]!,
      ports,
      keyPath,
      knownHostsLine: "",
      knownHostsPath,
      hostKeyFingerprint: "",
      sshSpec: (user = "root") => `${user}@127.0.0.1:${sshPort}`,
      sshArgv: (user = "root") => [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        `UserKnownHostsFile=${knownHostsPath}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "ConnectTimeout=10",
        "-i",
        keyPath,
        "-p",
        String(sshPort),
        `${user}@127.0.0.1`,
      ],
      exec,
      loadImage: async (ref) => {
        const pe = await podmanEnv();
        const env = { ...process.env, ...pe.env };
        const save = Bun.spawn(["podman", ...pe.globalArgs, "save", ref], {
          env,
          stdout: "pipe",
          stderr: "pipe",
        });
        const load = Bun.spawn(
          ["podman", ...pe.globalArgs, "exec", "-i", container, "podman", "load", "-q"],
          {
            env,
            stdin: save.stdout,
            stdout: "pipe",
            stderr: "pipe",
          },
        );
        const [sc, se, lc, le] = await Promise.all([
          save.exited,
          new Response(save.stderr).text(),
          load.exited,
          new Response(load.stderr).text(),
        ]);
        if (sc !== 0) throw new Error(`podman save ${ref} failed (exit ${sc}): ${se.trim()}`);
        if (lc !== 0) throw new Error(`podman load in node ${opts.name} failed (exit ${lc}): ${le.trim()}`);
      },
      regenerateHostKeys: async () => {
        const res = await exec([
          "sh",
          "-c",
          "rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub && ssh-keygen -A && systemctl restart ssh",
        ]);
        if (res.code !== 0) throw new Error(`node ${opts.name}: new host keys failed: ${res.stderr.trim()}`);
        return readHostKey();
      },
      stop,
    };
    await readHostKey();
    return node;
  } catch (e) {
    await stop();
    throw e;
  }
}

/** Image build helper re-exported so a test's beforeAll can build (and time) images up front. */
export { ensureDebianNodeImage };

/** Whether a container of that name exists on the host (for cleanup assertions). */
export async function containerExists(container: string): Promise<boolean> {
  return (await podman(30_000, "container", "exists", container)).code === 0;
}

/** Runs a script in the node as root; throws naming the node and script on failure. */
export async function nodeSh(node: DebianNode, script: string, input?: string): Promise<void> {
  const r = await node.exec(["sh", "-c", script], input === undefined ? {} : { input });
  if (r.code !== 0) throw new Error(`${node.name}: ${script}: ${r.stderr.trim()}`);
}

/** Copies a host file into the node container. */
export async function copyToNode(src: string, node: DebianNode, dest: string): Promise<void> {
  const pe = await podmanEnv();
  await runOk(["podman", ...pe.globalArgs, "cp", src, `${node.container}:${dest}`], {
    env: pe.env,
    timeoutMs: 60_000,
  });
}

/**
 * Installs an agent by hand, the way provision would (without depending on it): mcp user (uid
 * 850, subuids, linger), /srv/mcp dirs, binary, cert, config, the hardened unit, enable --now.
 * The agent binds the container's own IP, which podman publishes as 127.0.0.1:<agentPort>.
 */
export async function installAgent(
  node: DebianNode,
  binary: string,
  tls: { cert: string; key: string },
  /** SHA-256 of the admin token the agent accepts (local auth). */
  tokenSha256: string,
): Promise<void> {
  const pe = await podmanEnv();
  const ip = (
    await runOk(
      ["podman", ...pe.globalArgs, "inspect", "-f", "{{.NetworkSettings.IPAddress}}", node.container],
      { env: pe.env, timeoutMs: 30_000 },
    )
  ).stdout.trim();
  if (!/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw new Error(`${node.name}: no container IP (got "${ip}")`);
  await nodeSh(
    node,
    "set -e; useradd --system --uid 850 --user-group --home-dir /srv/mcp --no-create-home --shell /usr/sbin/nologin mcp; " +
      "usermod --add-subuids 100000-165535 --add-subgids 100000-165535 mcp; " +
      "install -d -o mcp -g mcp -m 0750 /srv/mcp /srv/mcp/certs /srv/mcp/backups; loginctl enable-linger mcp",
  );
  await copyToNode(binary, node, "/srv/mcp/mcp-agent");
  await nodeSh(node, "chown root:root /srv/mcp/mcp-agent && chmod 0755 /srv/mcp/mcp-agent");
  await nodeSh(node, "cat > /srv/mcp/certs/agent.pem && chown mcp:mcp /srv/mcp/certs/agent.pem", tls.cert);
  await nodeSh(
    node,
    "umask 077; cat > /srv/mcp/certs/agent.key && chown mcp:mcp /srv/mcp/certs/agent.key",
    tls.key,
  );
  const config = `[server]
grpc_addr = "${ip}:9444"
tls_cert = "/srv/mcp/certs/agent.pem"
tls_key = "/srv/mcp/certs/agent.key"

[database]
path = "/srv/mcp/mcp.db"

[auth]
mode = "local"

[[auth.tokens]]
name = "admin"
role = "admin"
account_type = "human"
sha256 = "${tokenSha256}"

[agent]
node_name = "${node.name}"
runtime_args = ["--runtime", "runc"]
`;
  await nodeSh(
    node,
    "umask 077; cat > /srv/mcp/mcp-agent.toml && chown mcp:mcp /srv/mcp/mcp-agent.toml",
    config,
  );
  const unit = readFileSync(join(REPO_ROOT, "deploy", "systemd", "mcp-agent.service"), "utf8");
  await nodeSh(node, "cat > /etc/systemd/system/mcp-agent.service", unit);
  await nodeSh(node, "systemctl daemon-reload && systemctl enable --now mcp-agent");
}
