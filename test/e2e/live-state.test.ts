// Live state end to end: the compiled agent (its own `podman events` child, wrapped to die with
// it) with `monitor.interval = "60s"`. A container killed behind its back is alerted within 2 s
// and `mcp ps` says exited; the agent's event stream killed: `mcp agent status` says reads list,
// `mcp ps` still tells the truth, and once the stream is back a change made in the gap is in the
// registry's events. The agent stopped: its events child goes with it.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { chmodSync, existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { AgentStatusRow } from "../../src/roles/cli/agent-status.ts";
import { busyboxImage, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";

const RUN = Math.random().toString(36).slice(2, 8).padEnd(6, "0");
const SVC = `live-e2e-${RUN}`;
const NAME = `${SVC}-web`;
let agent: LocalAgent;
let alerts = "";

async function waitFor<T>(
  what: string,
  fn: () => Promise<T | undefined> | T | undefined,
  ms: number,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await Bun.sleep(25);
  }
}

async function json<T>(args: string[]): Promise<T> {
  const r = await agent.mcp([...args, "--json"], { timeoutMs: 30_000 });
  // ps and status exit 3 while something drifts (a killed container, here on purpose).
  const drift = r.code === 3 && (args[0] === "ps" || args[0] === "status");
  if (r.code !== 0 && !drift) throw new Error(`mcp ${args.join(" ")}: ${r.stderr.trim()}`);
  return JSON.parse(r.stdout) as T;
}

async function liveView(): Promise<NonNullable<AgentStatusRow["liveView"]>> {
  const s = await json<{ nodes: AgentStatusRow[] }>(["agent", "status"]);
  const l = s.nodes[0]?.liveView;
  if (!l) throw new Error("agent status has no liveView");
  return l;
}

async function observed(): Promise<string | undefined> {
  const rows = await json<{ containers: { service: string; observed: string }[] }>(["ps"]);
  return rows.containers.find((c) => c.service === SVC)?.observed;
}

/**
 * The agent's podman child whose argv has `word` ("service": its REST service, which the event
 * stream reads; "events": the `podman events` child it falls back to). setpriv execs podman.
 */
function podmanChild(agentPid: number, word: string): number | undefined {
  for (const e of readdirSync("/proc")) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      const argv = readFileSync(`/proc/${e}/cmdline`, "utf8").split("\0");
      if (ppid === agentPid && argv.includes(word)) return Number(e);
    } catch {
      // gone while we looked
    }
  }
  return undefined;
}

beforeAll(async () => {
  const image = await busyboxImage("v1.0.0");
  agent = await startLocalAgent();
  alerts = join(agent.dir, "alerts.log");
  const script = join(agent.dir, "alert.sh");
  writeFileSync(script, `#!/bin/bash\necho "$MCP_ALERT_TYPE $MCP_SERVICE $MCP_OBSERVED" >> "${alerts}"\n`);
  chmodSync(script, 0o755);
  await agent.stopAgent();
  writeFileSync(
    agent.agentConfig,
    `${readFileSync(agent.agentConfig, "utf8")}\n[monitor]\ninterval = "60s"\ncooldown = "1s"\nalert_command = ["${script}"]\n`,
  );
  await agent.startAgent();
  writeFileSync(
    join(agent.servicesDir, `${SVC}.toml`),
    `name = "${SVC}"\nactive = true\n\n[[components]]\nname = "web"\nimage = "${image}"\ncmd = ["sleep", "3600"]\n`,
  );
  const d = await agent.mcp(["deploy", SVC, "--pull", "never"], { timeoutMs: 120_000 });
  if (d.code !== 0) throw new Error(`deploy: ${d.stderr}`);
  await waitFor("the live view", async () => (await liveView()).current || undefined, 15_000);
}, 180_000);

afterAll(async () => {
  await removeContainers([NAME]);
  await agent?.stop();
}, 60_000);

const alertLines = () =>
  existsSync(alerts) ? readFileSync(alerts, "utf8").trim().split("\n").filter(Boolean) : [];

describe("live state with the compiled agent (monitor interval 60s)", () => {
  test("a container killed behind the agent's back: alerted within 2 s, ps says exited from the view", async () => {
    expect(await observed()).toBe("running");
    const listings = (await liveView()).listings;
    await podman("kill", NAME);
    await waitFor("the alert", () => alertLines().find((l) => l.startsWith(`drift ${SVC} `)), 2_000);
    expect(alertLines()).toEqual([`drift ${SVC} exited`]);
    expect(await observed()).toBe("exited");
    // Answered from the view: no listing since (ps, status and the kill's handling all read it).
    expect((await liveView()).listings).toBe(listings);
  }, 30_000);

  test("the event stream killed: noticed, ps stays true, the stream comes back and the gap's change is recorded", async () => {
    await podman("start", NAME);
    await waitFor("running again", async () => ((await observed()) === "running" ? true : undefined), 5_000);
    expect((await liveView()).via).toBe("api");
    const child = podmanChild(agent.pid()!, "service");
    expect(child).toBeGreaterThan(0);
    process.kill(child!, "SIGKILL");
    await podman("stop", "-t", "0", NAME); // in the gap (or just after: either way it must be recorded)
    expect(await observed()).toBe("exited");
    await waitFor("the stream back", async () => ((await liveView()).current ? true : undefined), 10_000);
    // Back through a `podman events` child while the REST service waits out its restart delay,
    // or through the restarted service when it was back first (a loaded machine's timing).
    const via = (await liveView()).via;
    expect(["child", "api"]).toContain(via as string);
    if (via === "child") expect(podmanChild(agent.pid()!, "events")).toBeGreaterThan(0);
    else expect(podmanChild(agent.pid()!, "service")).not.toBe(child);
    const status = await json<{ events: { prev: string; next: string }[] }>(["status", SVC]);
    expect(status.events.map((e) => `${e.prev}->${e.next}`).slice(0, 3)).toEqual([
      "running->exited",
      "exited->running",
      "running->exited",
    ]);
    expect(agent.log()).toContain("runtime event stream down");
  }, 30_000);

  test("the agent stopped: its podman children go with it", async () => {
    const pid = agent.pid()!;
    const children = ["events", "service"].map((w) => podmanChild(pid, w)).filter((c) => c !== undefined);
    expect(children.length).toBeGreaterThan(0);
    await agent.stopAgent();
    await waitFor(
      "the children gone",
      () => (children.some((c) => existsSync(`/proc/${c}`)) ? undefined : true),
      10_000,
    );
  }, 30_000);
});
