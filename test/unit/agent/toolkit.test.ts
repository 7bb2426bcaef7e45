// Pure parts of adopt, sync and service edit: component names from container names (the
// inverse of containerName), which containers adopt may claim, the definition read back from an
// inspected container, sync's change detection, and the editor argv.

import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import { componentFromContainer, containerName } from "../../../src/component/container.ts";
import type { ServiceDef } from "../../../src/config/service.ts";
import type { ComponentRecord, ServiceRecord } from "../../../src/registry/types.ts";
import { candidates, componentNameFor } from "../../../src/roles/agent/adopt.ts";
import { wouldChange } from "../../../src/roles/agent/sync.ts";
import { editorArgv } from "../../../src/roles/cli/service.ts";
import type { ContainerDetails, ContainerInfo } from "../../../src/runtime/runtime.ts";
import { containerComponent } from "../../support/agent-context.ts";
import { runningInfo } from "../../support/containers.ts";

const name = fc.stringMatching(/^[a-z0-9][a-z0-9-]{0,20}$/);

const info = (n: string): ContainerInfo => runningInfo(n, "img:v1");

const comp = (service: string, n: string, desired: ComponentRecord["desiredState"]): ComponentRecord =>
  ({ service, name: n, desiredState: desired }) as ComponentRecord;

describe("adopt", () => {
  test("componentNameFor inverts containerName (property)", () => {
    fc.assert(
      fc.property(name, name, (svc, c) => {
        expect(componentNameFor(svc, containerName(svc, c))).toBe(c);
      }),
      { numRuns: 2000 },
    );
  });

  test("componentNameFor rejects other services' containers and the bare prefix", () => {
    expect(componentNameFor("web", "webapp")).toBeNull();
    expect(componentNameFor("web", "web-")).toBeNull();
    expect(componentNameFor("web", "api-web")).toBeNull();
    expect(componentNameFor("web", "web")).toBe("web");
    expect(componentNameFor("web", "web-api-v2")).toBe("api-v2");
  });

  test("candidates skip containers another managed service owns, keep ignore entries", () => {
    const services = [
      { name: "mc-proxy", components: [comp("mc-proxy", "mc-proxy", "running")] },
      { name: "mc-web", components: [comp("mc-web", "mc-web", "ignore")] },
    ] as ServiceRecord[];
    const list = ["mc", "mc-api", "mc-proxy", "mc-web", "mcr-api", "other"].map(info);
    expect(candidates("mc", list, services)).toEqual([
      { container: "mc", component: "mc" },
      { container: "mc-api", component: "api" },
      { container: "mc-web", component: "web" },
    ]);
  });

  test("componentFromContainer keeps what podman run needs; runtime defaults become omissions", () => {
    const d: ContainerDetails = {
      ...info("svc-web"),
      spec: {
        name: "svc-web",
        image: "reg:5000/web:v1.2",
        network: "bridge",
        user: "1000:1000",
        restart: "",
        ports: ["127.0.0.1:8080:80"],
        volumes: ["/srv/svc:/data:ro"],
        env: ["A=1"],
        cmd: ["serve", "--port", "80"],
        memory: "",
        vcpus: 0,
      },
    };
    expect(componentFromContainer("web", d.spec)).toEqual({
      name: "web",
      image: "reg:5000/web:v1.2",
      network: "",
      user: "1000:1000",
      restart: "no",
      ports: ["127.0.0.1:8080:80"],
      volumes: ["/srv/svc:/data:ro"],
      cmd: ["serve", "--port", "80"],
      env: ["A=1"],
      runtime: "container",
      routes: [],
    });
    const custom = { ...d, spec: { ...d.spec, network: "mcp-net", restart: "always" } };
    expect(componentFromContainer("web", custom.spec)).toMatchObject({
      network: "mcp-net",
      restart: "always",
    });
  });
});

describe("sync change detection", () => {
  const def: ServiceDef = {
    name: "svc",
    tier: "worker",
    active: true,
    components: [containerComponent("web", "img:v1", { restart: "unless-stopped" })],
  };
  const rec = (over: Partial<ServiceRecord> = {}, desired: ComponentRecord["desiredState"] = "running") =>
    ({
      name: "svc",
      active: true,
      specJson: JSON.stringify(def),
      components: [comp("svc", "web", desired)],
      ...over,
    }) as ServiceRecord;

  test("unchanged only when spec, active and every desired state match", () => {
    expect(wouldChange(rec(), def)).toBe(false);
    expect(wouldChange(null, def)).toBe(true);
    expect(wouldChange(rec({ active: false }), def)).toBe(true);
    expect(wouldChange(rec({}, "stopped"), def)).toBe(true);
    expect(wouldChange(rec({ components: [] }), def)).toBe(true);
    expect(wouldChange(rec(), { ...def, components: [{ ...def.components[0]!, image: "img:v2" }] })).toBe(
      true,
    );
    const off = { ...def, active: false };
    expect(wouldChange(rec({ active: false, specJson: JSON.stringify(off) }, "stopped"), off)).toBe(false);
  });
});

describe("editor argv", () => {
  test("$VISUAL, else $EDITOR, else vi; split on whitespace only", () => {
    expect(editorArgv({ VISUAL: "code  --wait", EDITOR: "nano" })).toEqual(["code", "--wait"]);
    expect(editorArgv({ VISUAL: "  ", EDITOR: "emacs -nw" })).toEqual(["emacs", "-nw"]);
    expect(editorArgv({ EDITOR: "vim;rm -rf /" })).toEqual(["vim;rm", "-rf", "/"]); // never a shell
    expect(editorArgv({})).toEqual(["vi"]);
  });
});
