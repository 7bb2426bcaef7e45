// Drift: the pure rule against the reference table (exhaustively and as a
// property), and Registry.drift() over real rows.

import { afterAll, describe, expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type { DesiredState, ObservedState } from "../../../src/registry/index.ts";
import { DESIRED_STATES, isDrift, OBSERVED_STATES, openRegistry } from "../../../src/registry/index.ts";

const dir = mkdtempSync(join(tmpdir(), "mcp-reg-drift-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// The reference design's table, row by row ("ignore | (any)" expanded).
const REFERENCE: [DesiredState, ObservedState, boolean][] = [
  ["running", "running", false],
  ["running", "stopped", true],
  ["running", "exited", true],
  ["running", "removed", true],
  ["stopped", "stopped", false],
  ["stopped", "removed", false],
  ["stopped", "running", true],
  ...OBSERVED_STATES.map((o): [DesiredState, ObservedState, boolean] => ["ignore", o, false]),
];

describe("isDrift", () => {
  test.each(REFERENCE)("desired %s, observed %s → drift %p", (d, o, want) => {
    expect(isDrift(d, o)).toBe(want);
  });

  test("matches the rule on every pair, including pairs the table leaves out", () => {
    fc.assert(
      fc.property(fc.constantFrom(...DESIRED_STATES), fc.constantFrom(...OBSERVED_STATES), (d, o) => {
        const row = REFERENCE.find(([rd, ro]) => rd === d && ro === o);
        if (row) return isDrift(d, o) === row[2];
        // Not in the table: running drifts unless running; stopped only when running.
        const want = d === "running" ? o !== "running" : d === "stopped" ? o === "running" : false;
        return isDrift(d, o) === want;
      }),
      { numRuns: 200 },
    );
  });

  test("ignore never drifts and running/running never drifts", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...OBSERVED_STATES),
        (o) => !isDrift("ignore", o) && !isDrift("running", "running"),
      ),
    );
  });
});

describe("Registry.drift", () => {
  test("lists exactly the drifting components, optionally for one service", () => {
    const reg = openRegistry(join(dir, "drift.db"));
    const base = {
      image: "img",
      network: "bridge",
      user: "",
      restart: "unless-stopped",
      version: "",
      ports: [],
      volumes: [],
      cmd: [],
      env: [],
      routes: [],
      runtime: "container",
      memory: "",
      vcpus: 0,
    };
    const want: { service: string; component: string; desired: DesiredState; observed: ObservedState }[] = [];
    for (const svc of ["a", "b"]) {
      reg.upsertService({ name: svc });
      for (const d of DESIRED_STATES) {
        for (const o of OBSERVED_STATES) {
          const name = `${d}-${o}`;
          reg.upsertComponent(svc, { ...base, name, desiredState: d, observedState: o });
          if (isDrift(d, o)) want.push({ service: svc, component: name, desired: d, observed: o });
        }
      }
    }
    want.sort((x, y) => (x.service + x.component < y.service + y.component ? -1 : 1));
    expect(reg.drift()).toEqual(want);
    expect(reg.drift("b")).toEqual(want.filter((w) => w.service === "b"));
    expect(want).toHaveLength(2 * 5); // per service: running x 4 other states, stopped x running
    expect(reg.drift("none")).toEqual([]);
    reg.setObservedState("a", "running-exited", "running");
    expect(reg.drift("a").map((d) => d.component)).not.toContain("running-exited");
    reg.close();
  });
});
