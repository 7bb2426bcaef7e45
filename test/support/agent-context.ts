// In-process agents for integration tests: the settings of a real agent (startAgent) on a random
// 127.0.0.1 port with the test podman environment; for use-case level tests (no gRPC), an
// AgentContext around a real registry and a real runtime; and the plain container component both
// kinds of tests deploy.
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Logger } from "pino";
import pino from "pino";
import type { ComponentDef } from "../../src/config/service.ts";
import type { Registry } from "../../src/registry/index.ts";
import type { AgentSettings } from "../../src/roles/agent/context.ts";
import { type AgentContext, KeyedLock } from "../../src/roles/agent/context.ts";
import { type IntegrationHooks, noIntegrations } from "../../src/roles/agent/hooks.ts";
import { nodeRuntimes } from "../../src/roles/agent/runtimes.ts";
import { PodmanRuntime } from "../../src/runtime/podman.ts";
import type { Runtime } from "../../src/runtime/runtime.ts";
import { podmanEnv } from "./env.ts";

/**
 * Settings of an agent listening on 127.0.0.1:0 with `tls`, its database (mcp.db) and srv root
 * under `dir`, host ports 20000-20100, podman with the test environment, a silent logger and
 * version 0.0.0-test; `over` names the node, the validator and the pull policy, and replaces any of
 * the rest.
 */
export async function testAgentSettings(
  dir: string,
  tls: { certPem: string; keyPem: string },
  over: Pick<AgentSettings, "nodeName" | "validator" | "pullPolicy"> & Partial<AgentSettings>,
): Promise<AgentSettings> {
  const pe = await podmanEnv();
  return {
    grpcAddr: "127.0.0.1:0",
    allowAnyAddr: false,
    tlsCertPem: tls.certPem,
    tlsKeyPem: tls.keyPem,
    dbPath: join(dir, "mcp.db"),
    runtime: new PodmanRuntime({ globalArgs: pe.globalArgs, env: pe.env }),
    srvRoot: join(dir, "srv"),
    portRange: [20000, 20100],
    logger: pino({ level: "silent" }),
    version: "0.0.0-test",
    ...over,
  };
}

/**
 * An agent context on node "local" (pull policy "never", srv_root <tmp>/mcp-test-srv) whose router
 * holds `runtime` alone.
 * `settings` is merged over those two; `hooks` defaults to no integrations, the logger to silent.
 */
export function testAgentContext(opts: {
  runtime: Runtime;
  registry: Registry;
  hooks?: IntegrationHooks;
  logger?: Logger;
  settings?: Partial<AgentContext["settings"]>;
}): AgentContext {
  const logger = opts.logger ?? pino({ level: "silent" });
  return {
    settings: {
      nodeName: "local",
      pullPolicy: "never",
      // A real agent always has one; nothing is created there unless a test's own settings say so.
      srvRoot: join(tmpdir(), "mcp-test-srv"),
      ...opts.settings,
    } as AgentContext["settings"],
    registry: opts.registry,
    runtime: nodeRuntimes({ runtime: opts.runtime, nodeName: "local" }, opts.registry),
    logger,
    locks: new KeyedLock(),
    shutdown: new AbortController().signal,
    startedAt: new Date(),
    hooks: opts.hooks ?? noIntegrations(logger),
  };
}

/** A container component of `image` with nothing else set (restart "no": a kill stays dead). */
export function containerComponent(
  name: string,
  image: string,
  over: Partial<ComponentDef> = {},
): ComponentDef {
  return {
    name,
    image,
    network: "",
    user: "",
    restart: "no",
    ports: [],
    volumes: [],
    cmd: [],
    env: [],
    runtime: "container",
    routes: [],
    ...over,
  };
}
