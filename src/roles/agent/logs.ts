// The Logs RPC: streams a service's container logs from the runtime (`podman logs`) to the caller.
// One runtime log process per component; with several components and follow, their lines are
// merged as they arrive. Every log process dies with the call: when the client cancels or
// disconnects (ctx.signal) and when the stream ends for any other reason.
//
// LogsRequest.tail: 0 = all lines (proto default); a negative value asks for no old lines (the
// CLI's `--tail 0`, useful with follow).

import { containerName } from "../../component/container.ts";
import type { McpAgent } from "../../gen/mcp/v1/mcp_pb.ts";
import type { ComponentRecord } from "../../registry/types.ts";
import { failedPrecondition, invalidArgument, notFound } from "../../rpc/errors.ts";
import type { Handlers } from "../../rpc/service.ts";
import type { LogOptions } from "../../runtime/runtime.ts";
import type { AgentContext } from "./context.ts";
import { capabilityRefusal, runtimeRefusal } from "./runtimes.ts";

// What podman/docker accept for --since: a Go duration ("10m", "1h30m"), a unix time, or an
// RFC 3339 date/time. Checked here so a typo is INVALID_ARGUMENT, not a runtime error line.
const DURATION = /^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/;
const UNIX_TIME = /^\d+(\.\d+)?$/;
const DATE_TIME = /^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/;

export function validSince(since: string): boolean {
  return since === "" || DURATION.test(since) || UNIX_TIME.test(since) || DATE_TIME.test(since);
}

interface Line {
  component: string;
  line: string;
}

/** Resolves an abort signal into a promise, so a send blocked on a dead peer never hangs the handler. */
function aborted(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve();
    else signal.addEventListener("abort", () => resolve(), { once: true });
  });
}

export function logsHandlers(ctx: AgentContext): Partial<Handlers<typeof McpAgent>> {
  return {
    async logs(req, call, send) {
      if (!req.service) throw invalidArgument("service name is required");
      if (!validSince(req.since))
        throw invalidArgument(
          `since: expected a duration (10m, 1h30m), a unix time or an RFC 3339 time, got "${req.since}"`,
        );
      const svc = ctx.registry.getService(req.service);
      if (!svc) throw notFound(`unknown service "${req.service}" on node ${ctx.settings.nodeName}`);
      let comps: ComponentRecord[] = svc.components;
      if (req.component) {
        const c = svc.components.find((x) => x.name === req.component);
        if (!c) throw notFound(`service ${req.service} has no component "${req.component}"`);
        comps = [c];
      }
      // Ask only runtimes this node has, and follow only where the runtime can (capabilities).
      for (const c of comps) {
        const why =
          runtimeRefusal(ctx, req.service, c) ??
          (req.follow ? capabilityRefusal(ctx, req.service, c, "logsFollow") : null) ??
          (req.since ? capabilityRefusal(ctx, req.service, c, "logsSince") : null);
        if (why) throw failedPrecondition(why);
      }
      // Only containers that exist have logs; a missing one would make podman print its error
      // as if it were a log line.
      const present: ComponentRecord[] = [];
      for (const c of comps) {
        if (await ctx.runtime.inspect(containerName(req.service, c.name))) present.push(c);
      }
      if (present.length === 0) {
        const what = req.component ? `component ${req.service}/${req.component}` : `service ${req.service}`;
        throw notFound(`${what} has no container on node ${ctx.settings.nodeName}`);
      }

      const opts: LogOptions = {
        follow: req.follow,
        tail: req.tail > 0 ? req.tail : req.tail < 0 ? 0 : undefined,
        since: req.since || undefined,
      };
      const gone = aborted(call.signal);
      const deliver = async (l: Line): Promise<boolean> => {
        if (call.signal.aborted) return false;
        await Promise.race([send(l), gone]);
        return !call.signal.aborted;
      };

      if (!req.follow) {
        // Component after component: a readable history, and one log process at a time.
        for (const c of present) {
          const s = ctx.runtime.logs(containerName(req.service, c.name), opts);
          const stop = () => s.kill();
          call.signal.addEventListener("abort", stop, { once: true });
          try {
            for await (const line of s.lines) if (!(await deliver({ component: c.name, line }))) break;
          } finally {
            call.signal.removeEventListener("abort", stop);
            s.kill();
          }
          if (call.signal.aborted) return;
        }
        return;
      }

      // Follow: one follower per component, lines merged in arrival order.
      const streams = present.map((c) => ({
        component: c.name,
        s: ctx.runtime.logs(containerName(req.service, c.name), opts),
      }));
      const killAll = () => {
        for (const x of streams) x.s.kill();
      };
      call.signal.addEventListener("abort", killAll, { once: true });
      const queue: Line[] = [];
      let wake: (() => void) | null = null;
      const notify = () => {
        const w = wake;
        wake = null;
        w?.();
      };
      let open = streams.length;
      for (const x of streams) {
        void (async () => {
          try {
            for await (const line of x.s.lines) {
              queue.push({ component: x.component, line });
              notify();
            }
          } finally {
            open--;
            notify();
          }
        })();
      }
      try {
        while (!call.signal.aborted) {
          const next = queue.shift();
          if (next !== undefined) {
            if (!(await deliver(next))) break;
            continue;
          }
          if (open === 0) break;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      } finally {
        call.signal.removeEventListener("abort", killAll);
        killAll();
        ctx.logger.debug({ service: req.service, cancelled: call.signal.aborted }, "logs stream ended");
      }
    },
  };
}
