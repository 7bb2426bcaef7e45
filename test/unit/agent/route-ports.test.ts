// The route-port mapping recover uses (and deploy will): allocated host ports are published on
// loopback as host:host and handed to the container as $PORT / $PORT_<NAME>; unallocated (0) routes
// are skipped; MCP's value replaces a same-named env entry of the spec.
import { describe, expect, test } from "bun:test";
import {
  routeEnv,
  routeEnvName,
  routePublish,
  withRoutePorts,
} from "../../../src/roles/agent/route-ports.ts";
import type { ContainerSpec } from "../../../src/runtime/runtime.ts";

const spec: ContainerSpec = {
  name: "svc-api",
  image: "img:v1",
  network: "",
  user: "",
  restart: "",
  memory: "",
  vcpus: 0,
  ports: ["127.0.0.1:8443:8443"],
  volumes: ["/srv/svc:/srv/svc"],
  env: ["LOG=debug", "PORT=1"],
  cmd: ["server"],
};

describe("routeEnvName", () => {
  test("unnamed route is PORT, named routes are PORT_<NAME> in upper case with '-' as '_'", () => {
    expect(routeEnvName("")).toBe("PORT");
    expect(routeEnvName("rest")).toBe("PORT_REST");
    expect(routeEnvName("grpc-api_2")).toBe("PORT_GRPC_API_2");
  });
});

describe("routeEnv / routePublish", () => {
  test("a single unnamed route gives $PORT and one loopback host:host publish", () => {
    expect(routeEnv([{ name: "", hostPort: 12345 }])).toEqual(["PORT=12345"]);
    expect(routePublish([{ name: "", hostPort: 12345 }])).toEqual(["127.0.0.1:12345:12345"]);
  });

  test("named routes each get their own variable; routes without a host port are skipped", () => {
    const routes = [
      { name: "rest", hostPort: 20001 },
      { name: "grpc", hostPort: 20002 },
      { name: "admin", hostPort: 0 },
    ];
    expect(routeEnv(routes)).toEqual(["PORT_REST=20001", "PORT_GRPC=20002"]);
    expect(routePublish(routes, "0.0.0.0")).toEqual(["0.0.0.0:20001:20001", "0.0.0.0:20002:20002"]);
  });

  test("no routes, or none allocated: nothing", () => {
    expect(routeEnv([])).toEqual([]);
    expect(routePublish([{ name: "x", hostPort: 0 }])).toEqual([]);
  });

  test("a second unnamed route does not overwrite the first one's $PORT", () => {
    expect(
      routeEnv([
        { name: "", hostPort: 30001 },
        { name: "", hostPort: 30002 },
      ]),
    ).toEqual(["PORT=30001"]);
  });
});

describe("withRoutePorts", () => {
  test("adds the publish and replaces a same-named env entry, keeping everything else", () => {
    const out = withRoutePorts(spec, [{ name: "", hostPort: 12345 }]);
    expect(out.ports).toEqual(["127.0.0.1:8443:8443", "127.0.0.1:12345:12345"]);
    expect(out.env).toEqual(["LOG=debug", "PORT=12345"]);
    expect(out.volumes).toEqual(spec.volumes);
    expect(out.cmd).toEqual(spec.cmd);
    expect(spec.env).toEqual(["LOG=debug", "PORT=1"]); // input untouched
  });

  test("without allocated routes the spec is returned as it is", () => {
    expect(withRoutePorts(spec, [{ name: "rest", hostPort: 0 }])).toEqual(spec);
  });

  test("an already published host:host mapping is not published twice", () => {
    const s = { ...spec, ports: ["127.0.0.1:12345:12345"] };
    expect(withRoutePorts(s, [{ name: "", hostPort: 12345 }]).ports).toEqual(["127.0.0.1:12345:12345"]);
  });
});
