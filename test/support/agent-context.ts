// Use-case level agent tests (no gRPC): an AgentContext around a real registry and a real runtime,
// and the plain container component those tests deploy.
import type { Logger } from "pino";
import pino from "pino";
import type { ComponentDef } from "../../src/config/service.ts";
import type { Registry } from "../../src/registry/index.ts";
import { type AgentContext, KeyedLock } from "../../src/roles/agent/context.ts";
import { type IntegrationHooks, noIntegrations } from "../../src/roles/agent/hooks.ts";
import { nodeRuntimes } from "../../src/roles/agent/runtimes.ts";
import type { Runtime } from "../../src/runtime/runtime.ts";

/**
 * An agent context on node "local" (pull policy "never") whose router holds `runtime` alone.
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
    settings: { nodeName: "local", pullPolicy: "never", ...opts.settings } as AgentContext["settings"],
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
