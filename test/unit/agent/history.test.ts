// Spec history helpers: a registry record back to the definition it ran from (same keys, same
// order, so stored specs compare as text), the canonical component key, and which entry
// `mcp rollback` picks by default.
import { describe, expect, test } from "bun:test";
import { parse } from "smol-toml";
import { componentKey } from "../../../src/component/proto.ts";
import { recordToDef } from "../../../src/component/registry.ts";
import { parseServiceDef } from "../../../src/config/service.ts";
import type { ComponentRecord, HistoryRecord } from "../../../src/registry/types.ts";
import { imageSummary, previousEntry } from "../../../src/roles/agent/history.ts";

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
