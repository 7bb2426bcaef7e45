// Spec history helpers: a registry record back to the definition it ran from (same keys, same
// order, so stored specs compare as text), the canonical component key, which entry
// `mcp rollback` picks by default, and how a rollback row names (and finds again) what it restored.
import { describe, expect, test } from "bun:test";
import { parse } from "smol-toml";
import { componentKey } from "../../../src/component/proto.ts";
import { recordToDef } from "../../../src/component/registry.ts";
import { parseServiceDef } from "../../../src/config/service.ts";
import type { ComponentRecord, HistoryRecord } from "../../../src/registry/types.ts";
import {
  imageSummary,
  previousEntry,
  rollbackDetail,
  rollbackTarget,
  shownDetail,
} from "../../../src/roles/agent/history.ts";

const def = parseServiceDef(
  parse(`
name = "web"
[[components]]
name = "app"
image = "img:v1"
ports = ["127.0.0.1:18080:80"]
env = ["A=1"]
cmd = ["httpd", "-f"]
memory = "256m"
vcpus = 2
[[components.routes]]
name = "api"
port = 8443
mode = "l7"
hostname = "web.example.net"
[[components.routes]]
port = 9443
[components.health]
type = "http"
route = "api"
path = "/healthz"
[[components]]
name = "db"
image = "db:v2"
`),
  "web.toml",
).def;

function record(c: (typeof def.components)[number], hostPorts: number[]): ComponentRecord {
  return {
    service: "web",
    name: c.name,
    image: c.image,
    network: c.network,
    user: c.user,
    restart: c.restart,
    desiredState: "running",
    observedState: "running",
    version: "v1",
    ports: c.ports,
    volumes: c.volumes,
    cmd: c.cmd,
    env: c.env,
    routes: c.routes.map((r, i) => ({
      name: r.name ?? "",
      port: r.port,
      mode: r.mode,
      hostname: r.hostname ?? "",
      public: r.public,
      hostPort: hostPorts[i] ?? 0,
    })),
    runtime: c.runtime,
    memory: c.memory ?? "",
    vcpus: c.vcpus ?? 0,
    ...(c.health ? { health: c.health } : {}),
    createdAt: new Date(),
    updatedAt: new Date(),
  };
}

describe("recordToDef", () => {
  test("gives back the definition the record was written from, key order included", () => {
    for (const c of def.components) {
      const back = recordToDef(record(c, [10001, 10002]));
      expect(back).toEqual(c);
      expect(JSON.stringify(back)).toBe(JSON.stringify(c));
      expect(componentKey(back)).toBe(componentKey(c));
    }
  });

  test("componentKey tells different specs apart", () => {
    const app = def.components[0]!;
    expect(componentKey({ ...app, image: "img:v2" })).not.toBe(componentKey(app));
    expect(componentKey({ ...app, health: undefined })).not.toBe(componentKey(app));
    expect(imageSummary(def)).toBe("app=img:v1, db=db:v2");
  });
});

describe("previousEntry", () => {
  let id = 0;
  const entry = (specJson: string, kind: HistoryRecord["kind"]): HistoryRecord => ({
    id: ++id,
    service: "web",
    deployedAt: new Date(),
    caller: "alice",
    imageSummary: specJson,
    specJson,
    kind,
    detail: "",
  });

  test("the newest earlier entry that ran and differs from the current one", () => {
    expect(previousEntry([])).toBeNull();
    expect(previousEntry([entry("v1", "deploy")])).toBeNull();
    // After an automatic rollback: current v1, the failed v2, the v1 deploy → nothing differs.
    expect(previousEntry([entry("v1", "rollback"), entry("v2", "failed"), entry("v1", "deploy")])).toBeNull();
    const v1 = entry("v1", "deploy");
    expect(previousEntry([entry("v3", "deploy"), entry("v3", "rollback"), entry("v2", "failed"), v1])).toBe(
      v1,
    );
    // A --no-rollback failure is current: the previous is what ran before it.
    const v2 = entry("v2", "deploy");
    expect(previousEntry([entry("v4", "failed"), v2, v1])).toBe(v2);
  });
});

describe("a rollback row names the entry it restored", () => {
  const at = (s: string) => new Date(`2026-12-08T01:02:${s}Z`);
  const row = (
    id: number,
    specJson: string,
    kind: HistoryRecord["kind"],
    when: Date,
    detail = "",
  ): HistoryRecord => ({
    id,
    service: "web",
    deployedAt: when,
    caller: "alice",
    imageSummary: `app=img:${specJson}`,
    specJson,
    kind,
    detail,
  });

  test("by time (not by database id, not by K), found again among the rows; pruned: none", () => {
    const v1 = row(7, "v1", "deploy", at("03.456"));
    const v2 = row(8, "v2", "deploy", at("04.000"));
    const detail = rollbackDetail(v1);
    expect(detail).toBe("rollback to the spec deployed at 2026-12-08T01:02:03.456Z (app=img:v1)");
    expect(detail).not.toContain("7");
    const rb = row(9, "v1", "rollback", at("05.000"), detail);
    expect(rollbackTarget(rb, [rb, v2, v1])).toBe(v1);
    expect(rollbackTarget(rb, [rb, v2])).toBeNull(); // v1 pruned
    // Not a `mcp rollback` row: a deploy, an automatic rollback.
    expect(rollbackTarget(v2, [rb, v2, v1])).toBeNull();
    const auto = row(
      10,
      "v1",
      "rollback",
      at("06.000"),
      "automatic: app did not become healthy, rolled back to img:v1",
    );
    expect(rollbackTarget(auto, [auto, rb, v2, v1])).toBeNull();
    expect(rollbackDetail(row(3, "v3", "failed", at("01.000")))).toStartWith(
      "rollback to the spec attempted at ",
    );
    expect(rollbackDetail(rb)).toStartWith("rollback to the spec restored at ");
  });

  test("rows written in the same millisecond are told apart by the spec the rollback ran", () => {
    const same = at("03.000");
    const failed = row(4, "v2", "failed", same);
    const auto = row(5, "v1", "rollback", same, "automatic: …");
    const rb = row(6, "v2", "rollback", at("09.000"), rollbackDetail(failed));
    expect(rollbackTarget(rb, [rb, auto, failed])).toBe(failed);
  });

  test("an older agent's 'rollback to entry <id>' row is shown by time and still found by its id", () => {
    const v1 = row(1, "v1", "deploy", at("03.456"));
    const legacy = row(
      2,
      "v1",
      "rollback",
      at("05.000"),
      "rollback to entry 1 (app=img:v1, db=db:v2, deploy of 2026-12-08T01:02:03.456Z)",
    );
    expect(shownDetail(legacy)).toBe(
      "rollback to the spec deployed at 2026-12-08T01:02:03.456Z (app=img:v1, db=db:v2)",
    );
    expect(rollbackTarget(legacy, [legacy, v1])).toBe(v1);
    expect(shownDetail(v1)).toBe("");
  });
});
