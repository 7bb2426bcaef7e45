// Integration hooks: what the agent asks of mc-proxy (routes), Metacrypt (certs) and MCNS (DNS)
// when a component is deployed or stopped and when a service is undeployed. The use cases call
// these at fixed points; the integrations issue supplies an implementation that does the work.
// Without integrations the agent uses noIntegrations(): no steps, one info line, nothing fails.
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { ComponentDef, ServiceDef } from "../../config/service.ts";
import type { StepTimingSchema } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord, ServiceRecord } from "../../registry/types.ts";
import type { AgentContext } from "./context.ts";

/** One integration step ("route", "cert", "dns") and how it went. */
export interface HookStepResult {
  step: string;
  success: boolean;
  error?: string;
  durationMs?: number;
  /** What a successful step did ("web.example issued"), shown beside its timing. */
  detail?: string;
}

export interface IntegrationHooks {
  /**
   * Before a deploy touches anything (registry or containers): what must exist first, e.g. the
   * certificates of L7 routes. A failed step fails the deploy with nothing started or stopped.
   */
  prepareDeploy?(def: ServiceDef, component: ComponentDef): Promise<HookStepResult[]>;
  /** After a component's container is running: add its routes, cert, DNS record. */
  onDeployed(service: ServiceRecord, component: ComponentRecord): Promise<HookStepResult[]>;
  /** After a component's container was stopped: withdraw what points at it. */
  onStopped(service: ServiceRecord, component: ComponentRecord): Promise<HookStepResult[]>;
  /**
   * After every container of the service is gone, before its registry entry is deleted (the
   * record still carries routes and allocated host ports): remove routes, DNS, certs.
   */
  onUndeployed(service: ServiceRecord): Promise<HookStepResult[]>;
}

const SKIPPED = "no integrations configured (mc-proxy, Metacrypt, MCNS): route/cert/DNS steps skipped";

/** The hooks of a node without integrations: nothing to do, said once so the operator knows why. */
export function noIntegrations(logger: Logger): IntegrationHooks {
  let told = false;
  const none = async (): Promise<HookStepResult[]> => {
    if (!told) {
      told = true;
      logger.info(SKIPPED);
    }
    return [];
  };
  return { prepareDeploy: async () => [], onDeployed: none, onStopped: none, onUndeployed: none };
}

/** The first failed step as one line ("dns: <error>"), or null when every step succeeded. */
export function firstHookFailure(steps: HookStepResult[]): string | null {
  const bad = steps.find((s) => !s.success);
  return bad ? `${bad.step}: ${bad.error || "failed"}` : null;
}

type Step = MessageInitShape<typeof StepTimingSchema>;

/**
 * Runs a per-component hook for a component recorded in the registry, appends its steps to
 * `steps` (a deploy's step timings) and returns the first failure as one line, or null. A hook
 * that throws counts as one failed "integrations" step: hooks never crash a use case.
 */
export async function runComponentHook(
  ctx: AgentContext,
  hook: "onDeployed" | "onStopped",
  service: string,
  component: string,
  steps: Step[] = [],
): Promise<string | null> {
  const svc = ctx.registry.getService(service);
  const comp = svc?.components.find((c) => c.name === component);
  if (!svc || !comp) return null;
  let res: HookStepResult[];
  try {
    res = await ctx.hooks[hook](svc, comp);
  } catch (err) {
    res = [{ step: "integrations", success: false, error: (err as Error).message.split("\n")[0] }];
  }
  for (const s of res) steps.push(stepTiming(s));
  return firstHookFailure(res);
}

export function stepTiming(s: HookStepResult): Step {
  return {
    step: s.step,
    durationMs: BigInt(Math.round(s.durationMs ?? 0)),
    detail: s.success ? (s.detail ?? "") : (s.error ?? "failed"),
  };
}
