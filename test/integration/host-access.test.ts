// Issue 16 finding 7: host-level access is an admin decision. Before the fix any non-guest caller
// could deploy network = "host", "container:<other>", volumes such as "/:/host" and ports on every
// interface. Here a "user" caller is refused each field with one line naming it (PERMISSION_DENIED,
// nothing recorded, no container), through Deploy, SyncDesiredState and the master; an admin
// deploys host network with a read-only directory from outside srv_root for real; an agent with
// [auth] host_access = "operators" lets the user; the seed format passes for the user; a symlink
// under <srv_root>/<service>/ leading out is refused. Real in-process agents and master, real TLS
// gRPC, real SQLite, real podman.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pino from "pino";
import { generateToken, hashToken, LocalTokenValidator } from "../../src/auth/local.ts";
import { containerName } from "../../src/component/container.ts";
import { defToSpec } from "../../src/component/proto.ts";
import type { ComponentDef, ServiceDef } from "../../src/config/service.ts";
import { McpAgent, McpMasterService } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { type RunningAgent, startAgent } from "../../src/roles/agent/agent.ts";
import { type RunningMaster, startMaster } from "../../src/roles/master/master.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { Code } from "../../src/rpc/wire.ts";
import { containerComponent, testAgentSettings } from "../support/agent-context.ts";
import { busyboxImage, freePort, podman } from "../support/env.ts";
import { removeContainers } from "../support/local-agent.ts";
import { testMasterSettings } from "../support/master-settings.ts";
import { testPki } from "../support/pki.ts";
import { failure } from "../support/scripted-server.ts";

const tokens = { admin: generateToken(), user: generateToken() };
const validator = new LocalTokenValidator([
  { name: "alice", role: "admin", accountType: "human", sha256: hashToken(tokens.admin) },
  { name: "bob", role: "user", accountType: "human", sha256: hashToken(tokens.user) },
]);
const tag = Math.random().toString(36).slice(2, 8);
const svc = (s: string) => `ha${tag}-${s}`;
const SLEEP = ["/bin/sh", "-c", "trap 'exit 0' TERM; sleep 300 & wait"];
const created: string[] = [];
let dir = "";
let outside = "";
let image = "";
let strict: RunningAgent; // host_access = "admin" (the default)
let lenient: RunningAgent; // host_access = "operators"
let master: RunningMaster;
let caPem = "";
const clients: { close(): void }[] = [];

let masterCert: { certPem: string; keyPem: string };

/** A client of agent `a` with an operator's token, or as the master (its client certificate). */
async function agentClient(a: RunningAgent, token: string | "master"): Promise<TypedClient<typeof McpAgent>> {
  const c = await connect(McpAgent, {
    addresses: [`127.0.0.1:${a.port}`],
    caPem,
    ...(token === "master" ? { clientCert: masterCert } : { token }),
    defaultTimeoutMs: 60_000,
  });
  clients.push(c);
  return c;
}

function def(name: string, over: Partial<ComponentDef>): ServiceDef {
  return {
    name,
    tier: "worker",
    active: true,
    components: [containerComponent("app", image, { cmd: SLEEP, ...over })],
  };
}

const exists = async (name: string) => (await podman("container", "exists", name)).code === 0;

beforeAll(async () => {
  image = await busyboxImage();
  dir = mkdtempSync(join(tmpdir(), "mcp-host-access-"));
  outside = join(dir, "outside");
  mkdirSync(outside);
  writeFileSync(join(outside, "marker"), "from the host\n");
  const pki = await testPki("host access");
  caPem = pki.caPem;
  masterCert = pki.masterClient;
  const logger = pino({ level: "silent" });
  const settings = async (name: string) =>
    testAgentSettings(join(dir, name), pki, {
      nodeName: name,
      validator,
      pullPolicy: "never",
      logger,
      // The master (its client certificate) is not an admin: the agent skips its role check for
      // the master, which checked its own caller.
      masterCaPem: pki.caPem,
    });
  strict = await startAgent(await settings("strict"));
  lenient = await startAgent({ ...(await settings("lenient")), hostAccess: "operators" });
  master = await startMaster(
    testMasterSettings(join(dir, "master"), pki, {
      validator,
      logger,
      caPem: pki.caPem,
      clientCert: pki.masterClient,
      timeouts: { deployMs: 60_000, edgeRouteMs: 10_000, healthCheckMs: 5_000, undeployMs: 60_000 },
      bootstrapNodes: [
        { name: "strict", role: "worker", address: `127.0.0.1:${strict.port}`, arch: "amd64" },
      ],
      nodeSrvRoot: strict.ctx.settings.srvRoot,
    }),
  );
  master.ctx.store.setNodeStatus("strict", "healthy");
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await master?.close();
  await strict?.close();
  await lenient?.close();
  await removeContainers(created);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

const tail = '(bob is not one; or [auth] host_access = "operators" in the config)';

describe("host-level fields need an admin", () => {
  test("a user is refused each host-level field with one line naming it; nothing recorded or created", async () => {
    const bob = await agentClient(strict, tokens.user);
    const srv = strict.ctx.settings.srvRoot;
    const cases: [Partial<ComponentDef>, string][] = [
      [{ network: "host" }, 'component app: network = "host"'],
      [{ network: "container:other" }, 'component app: network = "container:other"'],
      [{ volumes: ["/:/host"] }, 'component app: volume "/:/host" (host path outside'],
      [{ volumes: [`${outside}:/o:ro`] }, `component app: volume "${outside}:/o:ro" (host path outside`],
      [{ volumes: ["somevol:/v"] }, 'component app: volume "somevol:/v" (a named volume'],
      [
        { volumes: [`${srv}/NAME/../mcp:/m`] },
        `component app: volume "${srv}/NAME/../mcp:/m" (host path outside ${srv}/NAME/)`,
      ],
      [{ ports: ["18080:80"] }, 'component app: port "18080:80" (no bind address: every interface)'],
      [{ ports: ["0.0.0.0:18081:80"] }, 'component app: port "0.0.0.0:18081:80" (no bind address'],
    ];
    let i = 0;
    for (const [over, field] of cases) {
      const name = svc(`u${i++}`);
      const volumes = over.volumes?.map((v) => v.replace("NAME", name));
      const d = def(name, { ...over, ...(volumes ? { volumes } : {}) });
      for (const call of [
        () => bob.deploy({ service: defToSpec(d) }),
        () => bob.deploy({ service: defToSpec(d), dryRun: true }),
        () => bob.syncDesiredState({ services: [defToSpec(d)] }),
      ]) {
        const e = await failure(call());
        expect(e.code).toBe(Code.PERMISSION_DENIED);
        expect(e.details).toContain(`service ${name}: ${field.replaceAll("NAME", name)}`);
        expect(e.details).toEndWith(`host-level access needs an admin ${tail}`);
        expect(e.details).not.toContain("\n");
      }
      expect(strict.registry.getService(name)).toBeNull();
      expect(await exists(containerName(name, "app"))).toBe(false);
    }
  }, 60_000);

  test("a symlink under <srv_root>/<service>/ leading out is refused, also through the master", async () => {
    const name = svc("link");
    const sdir = join(strict.ctx.settings.srvRoot, name);
    mkdirSync(sdir, { recursive: true });
    symlinkSync(outside, join(sdir, "data"));
    symlinkSync(join(dir, "nowhere"), join(sdir, "dangling"));
    for (const vol of [`${sdir}/data:/d`, `${sdir}/data/sub:/d`, `${sdir}/dangling:/d`]) {
      const d = def(name, { volumes: [vol] });
      const bob = await agentClient(strict, tokens.user);
      const e = await failure(bob.deploy({ service: defToSpec(d) }));
      expect(e.code).toBe(Code.PERMISSION_DENIED);
      expect(e.details).toContain(`volume "${vol}" (host path leads out of ${sdir}/ through a symlink`);
      // The agent does not know the operator behind the master: refused for it whatever the role.
      const viaMaster = await agentClient(strict, "master");
      const m = await failure(viaMaster.deploy({ service: defToSpec(d), dryRun: true }));
      expect(m.code).toBe(Code.PERMISSION_DENIED);
      expect(m.details).toContain("refused for a deploy through the master");
    }
    expect(strict.registry.getService(name)).toBeNull();
  }, 30_000);

  test("a directory swapped for a symlink after a confined deploy is not mounted by restart, start, recover or rollback", async () => {
    // Security review of issue 16: the symlink check ran only at Deploy/Sync, so a user whose
    // container shares <srv_root>/<svc> swapped a checked directory for a symlink to a host path
    // and a RestartService mounted it (before the fix: Restart succeeded, /data/secret was read).
    const bob = await agentClient(strict, tokens.user);
    const name = svc("swap");
    const cname = containerName(name, "app");
    created.push(cname);
    const home = join(strict.ctx.settings.srvRoot, name);
    mkdirSync(join(home, "data"), { recursive: true });
    writeFileSync(join(outside, "secret"), "host secret\n");
    const d = defToSpec(def(name, { volumes: [`${home}/data:/data`] }));
    expect((await bob.deploy({ service: d })).results.map((r) => [r.success, r.error])).toEqual([[true, ""]]);
    const first = (
      await bob.deploy({ service: defToSpec(def(name, { volumes: [`${home}/data:/data`], env: ["V=2"] })) })
    ).results;
    expect(first.map((r) => r.success)).toEqual([true]);
    // What a container sharing the service directory can do at any time.
    renameSync(join(home, "data"), join(home, "data.old"));
    symlinkSync(outside, join(home, "data"));
    const restart = (await bob.restartService({ name })).results;
    expect(restart.map((r) => r.success)).toEqual([false]);
    expect(restart[0]!.error).toContain("through a symlink");
    await podman("stop", "-t", "1", cname);
    const start = (await bob.startService({ name })).results;
    expect(start.map((r) => r.success)).toEqual([false]);
    await podman("rm", "-f", cname);
    const recovered = await bob.recover({});
    expect(recovered.results.find((r) => r.service === name)?.success).toBe(false);
    const back = await failure(bob.rollback({ service: name }));
    expect(back.code).toBe(Code.PERMISSION_DENIED);
    expect(back.details).toContain("through a symlink");
    // The container never saw the host file: it was not recreated through the symlink.
    expect((await podman("container", "exists", cname)).code).not.toBe(0);
  }, 90_000);

  test("rollback to an admin's host-level entry needs an admin now", async () => {
    const alice = await agentClient(strict, tokens.admin);
    const bob = await agentClient(strict, tokens.user);
    const name = svc("retired");
    created.push(containerName(name, "app"));
    const hostNet = defToSpec(def(name, { network: "host" }));
    expect((await alice.deploy({ service: hostNet })).results.map((r) => r.success)).toEqual([true]);
    expect((await alice.deploy({ service: defToSpec(def(name, {})) })).results.map((r) => r.success)).toEqual(
      [true],
    );
    const e = await failure(bob.rollback({ service: name }));
    expect(e.code).toBe(Code.PERMISSION_DENIED);
    expect(e.details).toContain('network = "host"');
    expect((await alice.rollback({ service: name })).results.map((r) => r.success)).toEqual([true]);
  }, 90_000);

  test("an admin deploys host network with a read-only directory from outside srv_root", async () => {
    const alice = await agentClient(strict, tokens.admin);
    const name = svc("admin");
    const cname = containerName(name, "app");
    created.push(cname);
    const res = await alice.deploy({
      service: defToSpec(def(name, { network: "host", volumes: [`${outside}:/hostdir:ro`] })),
    });
    expect(res.results.map((r) => [r.name, r.success, r.error])).toEqual([["app", true, ""]]);
    const seen = await podman("exec", cname, "cat", "/hostdir/marker");
    expect(seen.stdout).toBe("from the host");
    const mode = await podman("inspect", "--format", "{{.HostConfig.NetworkMode}}", cname);
    expect(mode.stdout).toBe("host");
    expect(strict.registry.getService(name)?.components[0]?.network).toBe("host");
  }, 60_000);

  test("the seed format passes for a user", async () => {
    const bob = await agentClient(strict, tokens.user);
    const name = svc("seed");
    const cname = containerName(name, "app");
    created.push(cname);
    const home = join(strict.ctx.settings.srvRoot, name);
    mkdirSync(home, { recursive: true });
    const port = await freePort();
    const res = await bob.deploy({
      service: defToSpec(def(name, { volumes: [`${home}:/srv/${name}`], ports: [`127.0.0.1:${port}:8080`] })),
    });
    expect(res.results.map((r) => [r.name, r.success, r.error])).toEqual([["app", true, ""]]);
    expect(await exists(cname)).toBe(true);
  }, 60_000);

  test('[auth] host_access = "operators" lets a user deploy a host-level field', async () => {
    const bob = await agentClient(lenient, tokens.user);
    const name = svc("ops");
    const cname = containerName(name, "app");
    created.push(cname);
    const res = await bob.deploy({ service: defToSpec(def(name, { volumes: [`${outside}:/hostdir:ro`] })) });
    expect(res.results.map((r) => [r.name, r.success, r.error])).toEqual([["app", true, ""]]);
    expect((await podman("exec", cname, "cat", "/hostdir/marker")).stdout).toBe("from the host");
  }, 60_000);

  test("through the master: a user is refused host network (Deploy and Sync), nothing placed", async () => {
    const bob = await connect(McpMasterService, {
      addresses: [`127.0.0.1:${master.port}`],
      caPem,
      token: tokens.user,
      defaultTimeoutMs: 60_000,
    });
    clients.push(bob);
    const name = svc("m");
    const spec = defToSpec(def(name, { network: "host" }));
    for (const call of [
      () => bob.deploy({ service: spec }),
      () => bob.sync({ services: [spec] }),
      () => bob.sync({ services: [spec], dryRun: true }),
    ]) {
      const e = await failure(call());
      expect(e.code).toBe(Code.PERMISSION_DENIED);
      expect(e.details).toBe(
        `service ${name}: component app: network = "host": host-level access needs an admin ${tail}`,
      );
    }
    expect(master.ctx.store.getPlacement(name)).toBeNull();
    expect(strict.registry.getService(name)).toBeNull();
    // The seed format, confined to [master] node_srv_root, passes the master's check.
    const seed = defToSpec(
      def(name, {
        volumes: [`${strict.ctx.settings.srvRoot}/${name}:/srv/${name}`],
        ports: ["127.0.0.1:1:80"],
      }),
    );
    const plan = await bob.sync({ services: [seed], dryRun: true });
    expect(plan.results.map((r) => [r.step, r.success])).toEqual([[`${name}: would deploy`, true]]);
    // The master deploys what its admin asks for: the agent takes it from the master.
    const alice = await connect(McpMasterService, {
      addresses: [`127.0.0.1:${master.port}`],
      caPem,
      token: tokens.admin,
      defaultTimeoutMs: 60_000,
    });
    clients.push(alice);
    created.push(containerName(name, "app"));
    const res = await alice.deploy({ service: spec });
    expect(res.error).toBe("");
    expect(res.success).toBe(true);
    expect(strict.registry.getService(name)?.components[0]?.network).toBe("host");
  }, 60_000);
});
