// Registry benchmarks (src/registry used directly, no agent): the status query against a large event
// log, and pruning 500,000 events. No podman side exists here, so side B is the reference point
// that shows the cost: the same query on a small log, and one unbatched DELETE for the prune.
import { Database } from "bun:sqlite";
import { copyFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openRegistry, type Registry } from "../../src/registry/index.ts";
import { toDb } from "../../src/registry/types.ts";
import { applyPragmas } from "../../src/util/sqlite.ts";
import { abRounds, type Figure } from "./lib.ts";

const SERVICES = 50;
const COMPONENTS = 4;
const DAY_MS = 86_400_000;

/** Fills a fresh registry file with `count` events spread over the last 30 days. */
function buildRegistry(path: string, count: number): void {
  const reg = openRegistry(path);
  const now = Date.now();
  reg.withTransaction(() => {
    for (let i = 0; i < count; i++) {
      reg.insertEvent({
        service: `svc-${i % SERVICES}`,
        component: `c${(i >> 3) % COMPONENTS}`,
        prevState: i % 2 === 0 ? "running" : "stopped",
        newState: i % 2 === 0 ? "stopped" : "running",
        timestamp: new Date(now - 30 * DAY_MS + Math.floor((i / count) * 30 * DAY_MS)),
      });
    }
  });
  reg.close();
}

function statusQuery(reg: Registry): number {
  const t0 = performance.now();
  reg.recentEvents({ service: "svc-7", component: "c1", limit: 20 });
  reg.countTransitions("svc-7", "c1", new Date(Date.now() - 3_600_000));
  reg.recentEvents({ limit: 50 });
  return performance.now() - t0;
}

/** The sizes: the status query against 1,000,000 events, the prune of 500,000. */
export const STATUS_EVENTS = 1_000_000;
export const PRUNE_EVENTS = 500_000;

export async function registryBench(opts: {
  rounds: number;
  /** Events in the status-query registry (default STATUS_EVENTS). */
  events?: number;
  /** Events pruned (default PRUNE_EVENTS). */
  pruneEvents?: number;
}): Promise<Figure[]> {
  const events = opts.events ?? STATUS_EVENTS;
  const pruneEvents = opts.pruneEvents ?? PRUNE_EVENTS;
  const dir = mkdtempSync(join(tmpdir(), "mcpbench-registry-"));
  try {
    const big = join(dir, "big.db");
    const small = join(dir, "small.db");
    const prunable = join(dir, "prunable.db");
    buildRegistry(big, events);
    buildRegistry(small, 1000);
    buildRegistry(prunable, pruneEvents);
    const figures: Figure[] = [];
    const regBig = openRegistry(big);
    const regSmall = openRegistry(small);
    try {
      figures.push(
        await abRounds(
          "registry-status",
          { label: `status query, ${events} events`, run: async () => statusQuery(regBig) },
          { label: "status query, 1000 events", run: async () => statusQuery(regSmall) },
          {
            rounds: opts.rounds,
            perRound: 200,
            target: { of: "value", max: 20 },
            notes: "recentEvents(svc,comp,20) + countTransitions(1h) + recentEvents(50)",
          },
        ),
      );
    } finally {
      regBig.close();
      regSmall.close();
    }
    // Each prune runs on a fresh copy of the closed (checkpointed) template file.
    let n = 0;
    const cutoff = new Date(Date.now() + DAY_MS); // every event is older: all of them go
    figures.push(
      await abRounds(
        "registry-prune",
        {
          label: `Registry.pruneEvents (batched), ${pruneEvents} events`,
          run: async () => {
            const copy = join(dir, `prune-${n++}.db`);
            copyFileSync(prunable, copy);
            const reg = openRegistry(copy);
            const t0 = performance.now();
            const deleted = reg.pruneEvents(cutoff);
            const ms = performance.now() - t0;
            reg.close();
            rmSync(copy, { force: true });
            if (deleted !== pruneEvents) throw new Error(`pruned ${deleted} of ${pruneEvents} events`);
            return ms;
          },
        },
        {
          label: "one unbatched DELETE",
          run: async () => {
            const copy = join(dir, `prune-${n++}.db`);
            copyFileSync(prunable, copy);
            const db = new Database(copy, { strict: true });
            applyPragmas(db);
            const t0 = performance.now();
            db.run("DELETE FROM events WHERE timestamp < ?", [toDb(cutoff)]);
            const ms = performance.now() - t0;
            db.close();
            rmSync(copy, { force: true });
            return ms;
          },
        },
        {
          rounds: opts.rounds,
          perRound: 1,
          target: { of: "value", max: 2000 },
          notes: `${pruneEvents} events, all older than the cutoff`,
        },
      ),
    );
    return figures;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
