// What the agent does once its gRPC server is up, in order: recreate what the runtime lost
// (recover_on_start), bring up the [[boot.sequence]] stages, then start the monitor loop and
// the link to mcp-master ([master]: register, heartbeat).
// Each step returns what must be stopped at shutdown. The server already answers meanwhile,
// so an operator can watch a slow boot with `mcp status`.
import { runBootSequence } from "./boot.ts";
import type { AgentContext } from "./context.ts";
import { startMasterLink } from "./master-link.ts";
import { startMonitor } from "./monitor.ts";
import { recoverOnStart } from "./recover.ts";

export interface Background {
  stop(): Promise<void>;
}

export async function runStartup(ctx: AgentContext): Promise<Background[]> {
  const running: Background[] = [];
  await recoverOnStart(ctx);
  await runBootSequence(ctx);
  void ctx;
  if (ctx.settings.monitor && !ctx.shutdown.aborted) running.push(startMonitor(ctx, ctx.settings.monitor));
  running.push(...[startMasterLink(ctx)].filter((l) => l !== null));
  return running;
}
