// Whether a deploy has anything to do for a component (deploy-plan.ts): the spec key written on
// every container the agent creates (stable, and changed by anything the container or the
// definition would change), and the decision from what runs and what the pull left locally.
import { describe, expect, test } from "bun:test";
import { planComponent, shortImageId, specKeyOf } from "../../../src/roles/agent/deploy-plan.ts";
import { runSpec } from "../../../src/roles/agent/host-ports.ts";
import { normalizeImageId } from "../../../src/runtime/runtime.ts";
import { containerComponent } from "../../support/agent-context.ts";

const A = `sha256:${"a".repeat(64)}`;
const B = `sha256:${"b".repeat(64)}`;
const web = containerComponent("web", "reg/web:v1", { env: ["A=1"], ports: ["127.0.0.1:9000:8080"] });
const route = { name: "", port: 443, mode: "l7" as const, hostname: "", public: false };
const key = (c = web, ports = [{ name: "", hostPort: 10001 }], address = "127.0.0.1") =>
  runSpec({ nodeAddress: address }, "svc", c, ports).specKey!;

describe("specKeyOf / runSpec's key", () => {
  test("the same definition, ports and address give the same key; runSpec puts it on the spec", () => {
    expect(key()).toMatch(/^[0-9a-f]{16}$/);
    expect(key()).toBe(key(structuredClone(web)));
    const spec = runSpec({ nodeAddress: "127.0.0.1" }, "svc", web, []);
    expect(spec.specKey).toBe(specKeyOf(web, spec));
    // The owner and the key itself are not part of it.
    expect(specKeyOf(web, { ...spec, owner: { service: "x", component: "y" }, specKey: "z" })).toBe(
      spec.specKey ?? "",
    );
  });

  test("anything the container or the definition would change changes the key", () => {
    const k = key();
    const changed = [
      key({ ...web, image: "reg/web:v2" }),
      key({ ...web, env: ["A=2"] }),
      key({ ...web, ports: ["127.0.0.1:9001:8080"] }),
      key({ ...web, cmd: ["sleep", "1"] }),
      key({ ...web, memory: "64m" }),
      key({ ...web, routes: [route] }), // a route only the proxy sees: still a new definition
      key(web, [{ name: "", hostPort: 10002 }]), // another host port
      key(web, [{ name: "", hostPort: 10001 }], "10.0.0.5"), // another node address
    ];
    for (const c of changed) expect(c).not.toBe(k);
    expect(new Set(changed).size).toBe(changed.length);
  });
});

describe("planComponent", () => {
  const running = { state: "running" as const, specKey: "k1", imageId: A };
  const plan = (over: Partial<Parameters<typeof planComponent>[0]> = {}) =>
    planComponent({ running, wantKey: "k1", imageId: A, ...over });

  test("same key, same image, running: unchanged, and says which image", () => {
    expect(plan()).toEqual({ unchanged: true, reason: `same spec and image sha256:${"a".repeat(12)}…` });
  });

  test("the tag resolves to another image now: redeployed, saying old -> new", () => {
    expect(plan({ imageId: B })).toEqual({
      unchanged: false,
      reason: `image digest changed: sha256:${"a".repeat(12)}… -> sha256:${"b".repeat(12)}…`,
    });
  });

  test("no container, another key, no key, not running, or an image not known: redeployed, nothing to explain", () => {
    const cases = [
      plan({ running: null }),
      plan({ wantKey: "k2" }),
      plan({ running: { ...running, specKey: undefined } }),
      plan({ running: { ...running, state: "exited" } }),
      plan({ running: { ...running, state: "stopped" } }),
      plan({ imageId: null }),
      plan({ imageId: undefined }),
      plan({ running: { ...running, imageId: undefined } }),
      plan({ running: { ...running, imageId: "" } }),
    ];
    for (const c of cases) expect(c).toEqual({ unchanged: false, reason: "" });
  });
});

describe("image ids", () => {
  test("podman's bare hex and docker's prefixed form are one id; short form for the operator", () => {
    expect(normalizeImageId("a".repeat(64))).toBe(A);
    expect(normalizeImageId(A)).toBe(A);
    expect(normalizeImageId(` ${"a".repeat(64)}\n`)).toBe(A);
    expect(normalizeImageId("")).toBe("");
    expect(normalizeImageId("not-an-id")).toBe("not-an-id");
    expect(shortImageId(A)).toBe(`sha256:${"a".repeat(12)}…`);
    expect(shortImageId("a".repeat(64))).toBe(`sha256:${"a".repeat(12)}…`);
    expect(shortImageId("odd")).toBe("odd");
  });
});
