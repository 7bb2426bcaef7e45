// Reliability (issue 10), concurrency: 10 `mcp deploy` processes of the compiled CLI, started at
// the same time for one two-component service, each from its own definition file (-f) differing
// only in env REQ=<i>. The agent serializes deploys of a service (util/keyed-lock, FIFO) and has
// no notion of a superseded request, so all 10 must succeed, one after the other:
//   - the spec history holds 10 rows, one per request, each a whole request (both components REQ=i),
//   - they did not overlap: between two consecutive "deploy finished" log lines lies at least the
//     later deploy's own step time (as its CLI reported it),
//   - the final state is the request processed last (the newest history row): stored spec,
//     component rows and the env of the one container per component all say its REQ.
// Bounded: 10 deploys of busybox with --pull missing (~10-25 s on a quiet 2-core machine).
import { Database } from "bun:sqlite";
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { busyboxImage, podman } from "../support/env.ts";
import { type LocalAgent, removeContainers, startLocalAgent } from "../support/local-agent.ts";
import { recordSuite } from "../support/reliability.ts";

const N = 10;
const SVC = `rel-conc-${Math.random().toString(36).slice(2, 8).padEnd(6, "0")}`;
const COMPONENTS = ["api", "web"];
const CONTAINERS = COMPONENTS.map((c) => `${SVC}-${c}`);

let agent: LocalAgent;
let dbPath = "";
let image = "";

interface DeployJson {
  results: { component: string; success: boolean; error?: string; steps: { step: string; ms: number }[] }[];
}

function reqOf(env: string[]): string {
  return env.find((e) => e.startsWith("REQ="))?.slice(4) ?? "";
}

beforeAll(async () => {
  [agent, image] = await Promise.all([startLocalAgent(), busyboxImage("v1.0.0")]);
  const m = readFileSync(agent.agentConfig, "utf8").match(/^\[database\]\s*\npath = "([^"]+)"/m);
  if (!m?.[1]) throw new Error("no [database] path in the agent config");
  dbPath = m[1];
}, 60_000);

afterAll(async () => {
  await removeContainers(CONTAINERS);
  await agent?.stop();
}, 30_000);

describe("concurrent deploys of one service", () => {
  test(`${N} simultaneous deploys: all succeed, serialized, the last processed one is what runs`, async () => {
    const files = Array.from({ length: N }, (_, i) => {
      const file = join(agent.dir, `req-${i}.toml`);
      const lines = [`name = "${SVC}"`, "active = true", ""];
      for (const c of COMPONENTS)
        lines.push("[[components]]", `name = "${c}"`, `image = "${image}"`, `env = ["REQ=${i}"]`, "");
      writeFileSync(file, lines.join("\n"));
      return file;
    });
    const t0 = performance.now();
    const runs = await Promise.all(
      files.map((f) =>
        agent.mcp(["deploy", SVC, "-f", f, "--pull", "missing", "--json"], { timeoutMs: 120_000 }),
      ),
    );
    const wall = performance.now() - t0;
    for (const [i, r] of runs.entries()) expect(r.code, `request ${i}: ${r.stderr.trim()}`).toBe(0);
    const outs = runs.map((r) => JSON.parse(r.stdout) as DeployJson);
    for (const o of outs) expect(o.results.map((x) => x.success)).toEqual([true, true]);

    // The spec history: one whole request per row, each request exactly once, in processing order.
    const db = new Database(dbPath, { readonly: true });
    let order: number[];
    let stored: { spec: string | null; rows: { name: string; env: string }[] };
    try {
      const hist = db
        .query<{ spec_json: string }, [string]>(
          "SELECT spec_json FROM deploy_history WHERE service = ? ORDER BY id",
        )
        .all(SVC)
        .map((h) => JSON.parse(h.spec_json) as { components: { name: string; env: string[] }[] });
      expect(hist).toHaveLength(N);
      order = hist.map((h) => {
        const reqs = new Set(h.components.map((c) => reqOf(c.env)));
        expect(reqs.size).toBe(1); // never a mix of two requests
        return Number([...reqs][0]);
      });
      stored = {
        spec:
          db
            .query<{ s: string | null }, [string]>("SELECT spec_json AS s FROM services WHERE name = ?")
            .get(SVC)?.s ?? null,
        rows: db
          .query<{ name: string; env: string }, [string]>(
            "SELECT component AS name, group_concat(value) AS env FROM component_env WHERE service = ? GROUP BY component ORDER BY component",
          )
          .all(SVC),
      };
    } finally {
      db.close();
    }
    expect([...order].sort((a, b) => a - b)).toEqual(Array.from({ length: N }, (_, i) => i));
    const last = order.at(-1)!;

    // Serialized: each deploy's own work fits between the previous deploy's end and its own end.
    const finished = agent
      .log()
      .split("\n")
      .filter((l) => l.includes('"deploy finished"') && l.includes(SVC))
      .map((l) => Date.parse((JSON.parse(l) as { time: string }).time));
    expect(finished).toHaveLength(N);
    const work = (i: number) =>
      outs[i]!.results.reduce((a, r) => a + r.steps.reduce((b, s) => b + s.ms, 0), 0);
    for (let k = 1; k < N; k++) {
      const gap = finished[k]! - finished[k - 1]!;
      // 10 ms slack: every step and the log time are rounded to whole milliseconds.
      expect(gap + 10, `deploy ${k} (REQ=${order[k]}) overlapped the one before`).toBeGreaterThanOrEqual(
        work(order[k]!),
      );
    }

    // The final state is the last processed request, in the registry and in the one container per component.
    const spec = JSON.parse(stored.spec ?? "{}") as { components: { env: string[] }[] };
    expect(spec.components.map((c) => reqOf(c.env))).toEqual([String(last), String(last)]);
    expect(stored.rows).toEqual(COMPONENTS.map((name) => ({ name, env: `REQ=${last}` })));
    const ps = await podman("ps", "-a", "--format", "json", "--filter", `name=${SVC}`);
    expect(ps.code).toBe(0);
    const ctrs = (JSON.parse(ps.stdout || "[]") as { Names: string[]; State: string }[]).map((c) => [
      c.Names[0],
      c.State,
    ]);
    expect(ctrs.sort()).toEqual(CONTAINERS.map((n) => [n, "running"]));
    for (const name of CONTAINERS) {
      const env = await podman("inspect", "--format", "{{range .Config.Env}}{{println .}}{{end}}", name);
      expect(env.code).toBe(0);
      expect(env.stdout.split("\n").filter((e) => e.startsWith("REQ="))).toEqual([`REQ=${last}`]);
    }

    recordSuite({
      suite: "concurrency",
      cases: N,
      faults: 0,
      dataLost: 0,
      detail: `${N} simultaneous deploys serialized in ${Math.round(wall)} ms, order ${order.join(",")}, last REQ=${last}`,
    });
  }, 180_000);
});
