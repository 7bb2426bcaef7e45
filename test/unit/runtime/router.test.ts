// Routing logic of the runtime router, which is pure dispatch: small in-memory Runtime objects
// record which one was asked. What a real runtime does behind the router is covered with real
// podman in test/integration/runtime-router.test.ts.
import { describe, expect, test } from "bun:test";
import {
  RuntimeCapabilityError,
  RuntimeRouter,
  RuntimeUnavailableError,
} from "../../../src/runtime/router.ts";
import type {
  ContainerDetails,
  ContainerInfo,
  ContainerSpec,
  Engine,
  Runtime,
  RuntimeCapabilities,
  RuntimeKind,
} from "../../../src/runtime/runtime.ts";
import { bareSpec, runningInfo } from "../../support/containers.ts";

/** Records every call as "<method> <name or image>"; holds a fixed listing. */
class Recorder implements Runtime {
  calls: string[] = [];
  closed = 0;
  constructor(
    readonly kind: RuntimeKind,
    readonly engine: Engine,
    readonly capabilities: RuntimeCapabilities,
    private readonly listing: ContainerInfo[] = [],
  ) {}
  private note(s: string) {
    this.calls.push(s);
  }
  async version() {
    this.note("version");
    return `${this.engine}-1.0`;
  }
  async pull(image: string) {
    this.note(`pull ${image}`);
  }
  async imageExists(image: string) {
    this.note(`imageExists ${image}`);
    return true;
  }
  async run(spec: ContainerSpec) {
    this.note(`run ${spec.name}`);
    return "id";
  }
  describeRun(spec: ContainerSpec) {
    this.note(`describeRun ${spec.name}`);
    return [this.engine, "run", spec.name];
  }
  async start(name: string) {
    this.note(`start ${name}`);
  }
  async stop(name: string) {
    this.note(`stop ${name}`);
  }
  async restart(name: string) {
    this.note(`restart ${name}`);
  }
  async remove(name: string) {
    this.note(`remove ${name}`);
  }
  async stopAndRemove(name: string) {
    this.note(`stopAndRemove ${name}`);
    return true;
  }
  async inspect(name: string): Promise<ContainerDetails | null> {
    this.note(`inspect ${name}`);
    return null;
  }
  async list() {
    this.note("list");
    return this.listing;
  }
  async exec(name: string) {
    this.note(`exec ${name}`);
    return { code: 0, stdout: "", stderr: "" };
  }
  logs(name: string) {
    this.note(`logs ${name}`);
    return { lines: (async function* () {})(), kill() {} };
  }
  close() {
    this.closed++;
  }
}

const ALL: RuntimeCapabilities = { exec: true, logsFollow: true, logsSince: true };
const info = (name: string): ContainerInfo => runningInfo(name, "img");
const spec = (name: string, runtime?: string): ContainerSpec =>
  bareSpec(name, "img", runtime !== undefined ? { runtime } : {});

/** A node with a podman container runtime and (a stand-in for the later issue's) unikernel one. */
function twoKinds(kinds: Record<string, string> = {}) {
  const container = new Recorder("container", "podman", ALL, [info("web-app")]);
  const unikernel = new Recorder(
    "unikernel",
    "podman",
    { exec: false, logsFollow: false, logsSince: false },
    [info("vm-app")],
  );
  const router = new RuntimeRouter({
    runtimes: [unikernel, container],
    kindOf: (n) => kinds[n],
    node: "n1",
  });
  return { container, unikernel, router };
}

function containerOnly(kinds: Record<string, string> = {}) {
  const container = new Recorder("container", "docker", ALL, [info("web-app")]);
  return {
    container,
    router: new RuntimeRouter({ runtimes: [container], kindOf: (n) => kinds[n], node: "local" }),
  };
}

describe("what the node has", () => {
  test("kinds() lists every runtime, container first; has/capabilitiesOf/engineOf per kind", () => {
    const { router } = twoKinds();
    expect(router.kinds()).toEqual(["container", "unikernel"]);
    expect(router.has("container")).toBe(true);
    expect(router.has("podman")).toBe(true); // the legacy word for the kind
    expect(router.capabilitiesOf("unikernel")).toEqual({ exec: false, logsFollow: false, logsSince: false });
    expect(router.capabilitiesOf("container")).toEqual(ALL);
    const { router: one } = containerOnly();
    expect(one.kinds()).toEqual(["container"]);
    expect(one.has("unikernel")).toBe(false);
    expect(one.capabilitiesOf("unikernel")).toBeUndefined();
    expect(one.engineOf("container")).toBe("docker");
    expect(one.engineOf("unikernel")).toBeUndefined();
  });

  test("two runtimes of one kind are a configuration error", () => {
    const a = new Recorder("container", "podman", ALL);
    const b = new Recorder("container", "docker", ALL);
    expect(() => new RuntimeRouter({ runtimes: [a, b] })).toThrow('two runtimes of kind "container"');
  });

  test("unavailable() is one line naming the kind, the node and what it has", () => {
    const { router } = containerOnly();
    expect(router.unavailable("unikernel")).toBe(
      'runtime "unikernel" is not available on node local (has: container)',
    );
    expect(router.unavailable("container")).toBeNull();
    expect(router.unavailable("podman")).toBeNull();
    expect(new RuntimeRouter({ runtimes: [] }).unavailable("container")).toBe(
      'runtime "container" is not available on this node (has: none)',
    );
  });
});

describe("calls with a spec go by the spec's kind", () => {
  test("run and describeRun reach the runtime of the spec's kind; no kind = container", async () => {
    const { container, unikernel, router } = twoKinds();
    await router.run(spec("a", "unikernel"));
    await router.run(spec("b", "container"));
    await router.run(spec("c"));
    expect(router.describeRun(spec("d", "unikernel"))).toEqual(["podman", "run", "d"]);
    expect(unikernel.calls).toEqual(["run a", "describeRun d"]);
    expect(container.calls).toEqual(["run b", "run c"]);
  });

  test("a spec of a kind the node lacks is refused and nothing is called", async () => {
    const { container, router } = containerOnly();
    const e = await router.run(spec("vm", "unikernel")).catch((x) => x);
    expect(e).toBeInstanceOf(RuntimeUnavailableError);
    expect((e as Error).message).toBe('runtime "unikernel" is not available on node local (has: container)');
    expect(() => router.describeRun(spec("vm", "unikernel"))).toThrow(RuntimeUnavailableError);
    expect(container.calls).toEqual([]);
  });

  test("images go to the runtime of the kind asked (default container)", async () => {
    const { container, unikernel, router } = twoKinds();
    await router.pull("i1");
    await router.pull("i2", "unikernel");
    expect(await router.imageExists("i3", "unikernel")).toBe(true);
    expect(container.calls).toEqual(["pull i1"]);
    expect(unikernel.calls).toEqual(["pull i2", "imageExists i3"]);
  });
});

describe("name-only calls find the component's kind through the lookup", () => {
  const names = { "vm-app": "unikernel", "web-app": "container", "old-app": "podman" };
  test("every name-only call goes to the runtime of the name's component", async () => {
    const { container, unikernel, router } = twoKinds(names);
    for (const n of ["vm-app", "web-app", "old-app"]) {
      await router.start(n);
      await router.stop(n, 5);
      await router.restart(n);
      await router.remove(n, true);
      await router.stopAndRemove(n, 5);
      await router.inspect(n);
      router.logs(n, { follow: false });
    }
    await router.exec("web-app", ["true"], 1000);
    const each = (n: string) =>
      ["start", "stop", "restart", "remove", "stopAndRemove", "inspect", "logs"].map((m) => `${m} ${n}`);
    expect(unikernel.calls).toEqual(each("vm-app"));
    expect(container.calls).toEqual([...each("web-app"), ...each("old-app"), "exec web-app"]);
  });

  test("a name no component has (discovered, adopted) goes to the container runtime", async () => {
    const { container, unikernel, router } = twoKinds(names);
    await router.inspect("stranger");
    await router.stop("stranger");
    expect(container.calls).toEqual(["inspect stranger", "stop stranger"]);
    expect(unikernel.calls).toEqual([]);
    expect(router.kindOfContainer("stranger")).toBe("container");
    expect(router.kindOfContainer("old-app")).toBe("container");
    expect(router.kindOfContainer("vm-app")).toBe("unikernel");
  });

  test("a name whose component's kind the node lacks is refused, never sent to another runtime", async () => {
    const { container, router } = containerOnly({ "vm-app": "unikernel" });
    for (const call of [
      () => router.inspect("vm-app"),
      () => router.stop("vm-app"),
      () => router.stopAndRemove("vm-app"),
      () => router.exec("vm-app", ["true"], 1000),
    ]) {
      const e = await call().catch((x) => x);
      expect(e).toBeInstanceOf(RuntimeUnavailableError);
    }
    expect(() => router.logs("vm-app", { follow: true })).toThrow(RuntimeUnavailableError);
    expect(container.calls).toEqual([]);
  });
});

describe("capabilities are consulted, not assumed", () => {
  test("lacks() names the runtime and what it cannot do", () => {
    const { router } = twoKinds();
    expect(router.lacks("unikernel", "exec")).toBe(
      "the unikernel runtime (podman) cannot exec (run a command in it)",
    );
    expect(router.lacks("unikernel", "logsFollow")).toBe("the unikernel runtime (podman) cannot follow logs");
    expect(router.lacks("unikernel", "logsSince")).toBe(
      "the unikernel runtime (podman) cannot show logs since a time (its log lines carry no time)",
    );
    expect(router.lacks("container", "exec")).toBeNull();
    expect(router.lacks("absent", "exec")).toBeNull();
  });

  test("exec and logs -f on a runtime without the capability are refused without a call", async () => {
    const { unikernel, router } = twoKinds({ "vm-app": "unikernel" });
    const e = await router.exec("vm-app", ["true"], 1000).catch((x) => x);
    expect(e).toBeInstanceOf(RuntimeCapabilityError);
    expect((e as Error).message).toBe(
      "container vm-app: the unikernel runtime (podman) cannot exec (run a command in it)",
    );
    expect(() => router.logs("vm-app", { follow: true })).toThrow(RuntimeCapabilityError);
    router.logs("vm-app", { follow: false }); // plain logs need no capability
    expect(unikernel.calls).toEqual(["logs vm-app"]);
  });
});

describe("node-wide calls", () => {
  test("list() merges every runtime's listing, tagging kinds other than container", async () => {
    const { container, unikernel, router } = twoKinds();
    const all = await router.list();
    expect(all.map((c) => [c.name, c.runtime])).toEqual([
      ["web-app", undefined],
      ["vm-app", "unikernel"],
    ]);
    expect(container.calls).toEqual(["list"]);
    expect(unikernel.calls).toEqual(["list"]);
  });

  test("with one container runtime, list() is that runtime's listing as it is", async () => {
    const { router } = containerOnly();
    expect(await router.list()).toEqual([info("web-app")]);
  });

  test("version() asks the container runtime unless a kind is named; close() closes every runtime", async () => {
    const { container, unikernel, router } = twoKinds();
    expect(await router.version()).toBe("podman-1.0");
    expect(container.calls).toEqual(["version"]);
    await router.version("unikernel");
    expect(unikernel.calls).toEqual(["version"]);
    router.close();
    expect([container.closed, unikernel.closed]).toEqual([1, 1]);
  });
});
