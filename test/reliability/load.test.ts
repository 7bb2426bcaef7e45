// Reliability (issue 10), load: a real local agent (the compiled binary, real podman) with three
// busybox services; for a 30 s window, 200 concurrent status RPCs in closed loops (ListServices,
// as `mcp ps` sends it) over 20 client channels, while 20 Deploys (a changed env, so each recreates its container) are spread over the
// same window. Every RPC must succeed; p50/p99 per RPC kind are printed and recorded; afterwards
// each service runs the spec of its last deploy.
// Bounded: a 30 s window (MCP_LOAD_SECONDS overrides), 60 s deadline per call, the test times out
// at 150 s; setup is one `mcp init`, the cached test image and three first deploys.
import { afterAll, beforeAll, expect, test } from "bun:test";
import { containerName } from "../../src/component/container.ts";
import { McpAgent } from "../../src/gen/mcp/v1/mcp_pb.ts";
import { connect, type TypedClient } from "../../src/rpc/client.ts";
import { busyboxImage } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";
import { recordSuite } from "../support/reliability.ts";

const WINDOW_MS = Number(process.env.MCP_LOAD_SECONDS ?? 30) * 1000;
const CONCURRENT = 200;
const CHANNELS = 20;
const DEPLOYS = 20;
// Above the window on purpose: on a loaded 2-core box one call of the first burst has been seen
// to wait ~28 s (served only as the window ends); the test prints the slowest call so that tail
// stays visible, and a call that never completes still fails.
const CALL_TIMEOUT_MS = 60_000;
const SERVICES = ["mcpload-a", "mcpload-b", "mcpload-c"];

let agent: LocalAgent;
let image: string;
const clients: TypedClient<typeof McpAgent>[] = [];

const client = async () => {
  const c = await connect(McpAgent, {
    addresses: [agent.address],
    caPem: agent.caPem,
    token: agent.token,
    defaultTimeoutMs: CALL_TIMEOUT_MS,
  });
  clients.push(c);
  return c;
};

const spec = (name: string, gen: number) => ({
  name,
  active: true,
  components: [{ name: "web", image, env: [`LOAD_GEN=${gen}`] }],
});

beforeAll(async () => {
  [agent, image] = await Promise.all([startLocalAgent({ node: "load" }), busyboxImage()]);
}, 60_000);

afterAll(async () => {
  for (const c of clients) c.close();
  await removeContainers(SERVICES.map((s) => containerName(s, "web")));
  await agent?.stop();
});

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}
const ms = (v: number) => `${v.toFixed(1)}ms`;

test(`${CONCURRENT} concurrent status RPCs and ${DEPLOYS} deploys over ${WINDOW_MS / 1000} s: no RPC fails`, async () => {
  const deployer = await client();
  for (const s of SERVICES) {
    const r = await deployer.deploy({ service: spec(s, 0), pullPolicy: "never" }, { timeoutMs: 60_000 });
    expect(r.results.map((x) => x.error)).toEqual([""]);
  }
  const channels = await Promise.all(Array.from({ length: CHANNELS }, () => client()));
  // Connect every channel (TLS handshake, token validation) before the window: it measures
  // steady-state RPCs, not 20 simultaneous handshakes.
  await Promise.all(channels.map((c) => c.listServices({})));

  const latency: Record<string, number[]> = { ListServices: [], Deploy: [] };
  const failures: string[] = [];
  const slowest = { ms: 0, kind: "", at: 0 };
  let started = performance.now();
  const timed = async (kind: string, fn: () => Promise<unknown>) => {
    const t0 = performance.now();
    try {
      await fn();
      const took = performance.now() - t0;
      latency[kind]!.push(took);
      if (took > slowest.ms) Object.assign(slowest, { ms: took, kind, at: t0 - started });
    } catch (err) {
      failures.push(`${kind}: ${(err as Error).message}`);
    }
  };

  started = performance.now();
  const end = started + WINDOW_MS;
  const perLoop = new Array<number>(CONCURRENT).fill(0);
  const loops = Array.from({ length: CONCURRENT }, async (_, i) => {
    const c = channels[i % CHANNELS]!;
    while (performance.now() < end) {
      await timed("ListServices", async () => {
        const r = await c.listServices({});
        // Other containers on this host may be listed too (unmanaged); ours must all be there.
        const names = new Set(r.services.map((x) => x.name));
        if (!SERVICES.every((x) => names.has(x))) throw new Error(`not all of ${SERVICES} listed`);
      });
      perLoop[i]!++;
    }
  });

  // Deploy k starts at k × window/DEPLOYS, round-robin over the services (one service's deploys
  // queue behind each other on the agent's per-service lock, as they would in production).
  const lastGen = new Map<string, number>();
  const deploys = Array.from({ length: DEPLOYS }, async (_, k) => {
    await Bun.sleep((k * WINDOW_MS) / DEPLOYS);
    const svc = SERVICES[k % SERVICES.length]!;
    lastGen.set(svc, k + 1);
    await timed("Deploy", async () => {
      const r = await deployer.deploy(
        { service: spec(svc, k + 1), pullPolicy: "never" },
        { timeoutMs: 60_000 },
      );
      const errs = r.results.filter((x) => !x.success).map((x) => `${x.name}: ${x.error}`);
      if (errs.length > 0) throw new Error(`deploy of ${svc} failed: ${errs.join("; ")}`);
    });
  });
  await Promise.all([...loops, ...deploys]);
  const elapsed = performance.now() - started;

  const lines: string[] = [];
  const figures: Record<string, { p50: number; p99: number; n: number }> = {};
  for (const [kind, xs] of Object.entries(latency)) {
    const sorted = [...xs].sort((a, b) => a - b);
    figures[kind] = { p50: pct(sorted, 50), p99: pct(sorted, 99), n: xs.length };
    lines.push(
      `  ${kind.padEnd(16)} n=${xs.length} p50=${ms(pct(sorted, 50))} p99=${ms(pct(sorted, 99))} max=${ms(sorted.at(-1) ?? Number.NaN)}`,
    );
  }
  const statusCalls = figures.ListServices!.n;
  console.log(
    `load: ${(elapsed / 1000).toFixed(1)} s, ${statusCalls} status RPCs (${((statusCalls * 1000) / elapsed).toFixed(0)}/s), ${failures.length} failed, slowest ${slowest.kind} ${ms(slowest.ms)} started at +${ms(slowest.at)}\n${lines.join("\n")}`,
  );
  expect(failures.slice(0, 10)).toEqual([]);
  expect(failures.length).toBe(0);
  expect(figures.Deploy!.n).toBe(DEPLOYS);
  expect(perLoop.every((n) => n >= 1)).toBe(true);

  // Every deploy took effect: each service now carries the env of its last deploy.
  for (const s of SERVICES) {
    const got = await deployer.getServiceSpec({ name: s });
    expect(got.service?.components[0]?.env).toEqual([`LOAD_GEN=${lastGen.get(s)}`]);
  }
  const st = await deployer.listServices({});
  for (const svc of st.services.filter((x) => SERVICES.includes(x.name)))
    expect(svc.components.map((c) => c.observedState)).toEqual(["running"]);

  const all = [...latency.ListServices!].sort((a, b) => a - b);
  recordSuite({
    suite: "load",
    cases: statusCalls + DEPLOYS,
    faults: 0,
    dataLost: 0,
    detail: `status p50=${ms(pct(all, 50))} p99=${ms(pct(all, 99))} (${statusCalls} RPCs, ${CONCURRENT} concurrent, ${(elapsed / 1000).toFixed(0)} s); deploy p50=${ms(figures.Deploy!.p50)} p99=${ms(figures.Deploy!.p99)} (${DEPLOYS}); 0 failed`,
  });
}, 150_000);
