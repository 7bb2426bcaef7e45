// The real-Debian-node test infrastructure itself (test/support/debian-node.ts): two nodes boot in
// parallel with systemd as PID 1, sshd takes the node key as root with strict host key checking,
// `deploy` has passwordless sudo, every node has its own host key, a regenerated key is refused by
// the old known_hosts line, rootless podman answers in a podman-variant node and a privileged one
// runs nested containers (root and rootless). Nodes are removed by name afterwards.

import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { run } from "../../src/runtime/exec.ts";
import {
  containerExists,
  type DebianNode,
  ensureDebianNodeImage,
  startDebianNode,
} from "../support/debian-node.ts";
import { busyboxImage } from "../support/env.ts";

// A cold machine debootstraps (~45 s) and apt-installs podman (~25 s); cached it is ~1 s.
const BUILD_TIMEOUT_MS = 300_000;

/** Runs a fixed remote command line through the real OpenSSH client. */
async function ssh(node: DebianNode, user: string, command: string) {
  return run([...node.sshArgv(user), command], { timeoutMs: 30_000 });
}

describe("debian test nodes", () => {
  const nodes: DebianNode[] = [];

  beforeAll(async () => {
    for (const v of ["bare", "podman"] as const) {
      const r = await ensureDebianNodeImage(v);
      console.log(`debian-node image ${r.ref}: ${r.how} in ${r.ms} ms`);
    }
  }, BUILD_TIMEOUT_MS);

  afterAll(async () => {
    for (const n of nodes) await n.stop();
  }, 60_000);

  test("two nodes boot in parallel; ssh as root and sudo as deploy work", async () => {
    const started = Date.now();
    const [a, b] = await Promise.all([startDebianNode({ name: "alpha" }), startDebianNode({ name: "beta" })]);
    nodes.push(a, b);
    console.log(`two debian nodes booted (systemd up, sshd answering) in ${Date.now() - started} ms`);

    for (const n of [a, b]) {
      const state = (await n.exec(["systemctl", "is-system-running"])).stdout.trim();
      expect(["running", "degraded"]).toContain(state);
      expect((await n.exec(["systemctl", "is-active", "ssh"])).stdout.trim()).toBe("active");
      expect(n.knownHostsLine).toMatch(
        new RegExp(`^\\[127\\.0\\.0\\.1\\]:${n.sshPort} ssh-ed25519 AAAA\\S+$`),
      );

      const root = await ssh(n, "root", "id -u; hostname");
      expect(root.stderr).toBe("");
      expect(root.stdout.split("\n").slice(0, 2)).toEqual(["0", n.name]);

      const sudo = await ssh(n, "deploy", "id -un; sudo -n id -u");
      expect(sudo.code).toBe(0);
      expect(sudo.stdout.split("\n").slice(0, 2)).toEqual(["deploy", "0"]);
    }
    expect(a.sshPort).not.toBe(b.sshPort);
    expect(a.agentPort).not.toBe(b.agentPort);
    // Host keys are generated per node at first boot, as on real machines.
    expect(a.hostKeyFingerprint).not.toBe(b.hostKeyFingerprint);
  }, 90_000);

  test("a regenerated host key is refused by the old known_hosts line", async () => {
    const a = nodes[0]!;
    const oldLine = a.knownHostsLine;
    const oldArgv = a.sshArgv("root");
    const oldKnownHosts = `${a.knownHostsPath}.old`;
    await Bun.write(oldKnownHosts, `${oldLine}\n`);
    const newLine = await a.regenerateHostKeys();
    expect(newLine).not.toBe(oldLine);

    const withOld = oldArgv.map((arg) =>
      arg.startsWith("UserKnownHostsFile=") ? `UserKnownHostsFile=${oldKnownHosts}` : arg,
    );
    const refused = await run([...withOld, "true"], { timeoutMs: 30_000 });
    expect(refused.code).toBe(255);
    expect(refused.stderr).toContain("REMOTE HOST IDENTIFICATION HAS CHANGED");

    expect((await ssh(a, "root", "true")).code).toBe(0);
  }, 60_000);

  test("podman nodes: rootless podman answers; a privileged node runs nested containers", async () => {
    const img = await busyboxImage();
    const [g, p] = await Promise.all([
      startDebianNode({ name: "gamma", image: "podman" }),
      startDebianNode({ name: "delta", image: "podman", privileged: true }),
    ]);
    nodes.push(g, p);
    // What NodeStatus needs from the agent's rootless user in an ordinary (unprivileged) node.
    const rl = await g.exec([
      "sh",
      "-c",
      "set -e; useradd -m -s /bin/sh u1; loginctl enable-linger u1; cd /tmp; " +
        "i=0; while [ ! -d /run/user/$(id -u u1) ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; " +
        "runuser -u u1 -- env XDG_RUNTIME_DIR=/run/user/$(id -u u1) podman version --format '{{.Client.Version}}'",
    ]);
    expect(rl.stderr).not.toContain("Error");
    expect(rl.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    const version = await ssh(p, "root", "podman version --format '{{.Client.Version}}'");
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);

    await p.loadImage(img);
    const nested = await p.exec(["podman", "run", "--rm", img, "echo", "nested ok"]);
    expect(nested.stderr).not.toContain("Error");
    expect(nested.stdout.trim()).toBe("nested ok");

    // Rootless, as the agent's `mcp` user will run it (subuids, which useradd allocates for a
    // regular user, linger, slirp4netns networking, a published port).
    const rootless = await p.exec([
      "sh",
      "-c",
      "set -e; useradd -m -s /bin/sh nest; grep -q ^nest: /etc/subuid; " +
        "loginctl enable-linger nest; i=0; while [ ! -d /run/user/$(id -u nest) ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done; " +
        "podman save -o /tmp/img.tar $1; chmod 644 /tmp/img.tar; cd /tmp; " +
        'runuser -u nest -- env XDG_RUNTIME_DIR=/run/user/$(id -u nest) sh -c "podman load -q -i /tmp/img.tar >/dev/null && podman run --rm -p 8080 $1 echo rootless ok"',
      "sh",
      img,
    ]);
    expect(rootless.stderr).not.toContain("Error");
    expect(rootless.stdout.trim()).toBe("rootless ok");
  }, 120_000);

  test("stop removes the node containers by name", async () => {
    const names = nodes.map((n) => n.container);
    expect(names.length).toBe(4);
    for (const n of nodes.splice(0)) await n.stop();
    for (const c of names) expect(await containerExists(c)).toBe(false);
  }, 60_000);
});
