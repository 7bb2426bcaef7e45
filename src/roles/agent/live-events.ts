import { normalizeRuntimeKind } from "../../config/runtime-kind.ts";
import type { Transition } from "../../monitor/evaluate.ts";
import type { ServiceRecord } from "../../registry/types.ts";
import type { ViewChange } from "../../runtime/live-view.ts";
import type { RuntimeKind } from "../../runtime/runtime.ts";
import type { AgentContext, ChangeRecorder } from "./context.ts";
import { reconcile } from "./reconcile.ts";

export interface RecorderOptions {
  /** How long changes gather before one write (default 20 ms). */
  windowMs?: number;
  /** Most changes per transaction (default 500). */
  maxBatch?: number;
  /** Judges the transitions written (the monitor's observe); absent = record only. */
  judge?: (transitions: Transition[], services: ServiceRecord[]) => Promise<unknown>;
}

export interface RecorderStats {
  changes: number;
  batches: number;
  transitions: number;
}

export class TransitionRecorder implements ChangeRecorder {
  private queue: { ch: ViewChange; kind: RuntimeKind }[] = [];
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly waitingFor = new Set<string>();
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;
  private readonly counters: RecorderStats = { changes: 0, batches: 0, transitions: 0 };

  constructor(
    private readonly ctx: AgentContext,
    private readonly opts: RecorderOptions = {},
  ) {}

  /** Who judges what is written from now on (the monitor, once it runs). */
  setJudge(judge: RecorderOptions["judge"]): void {
    this.opts.judge = judge;
  }

  get stats(): RecorderStats {
    return { ...this.counters };
  }

  /**
   * The listener a runtime of `kind` calls (LiveRuntime.onChange for "container",
   * UnikernelRuntime.onChange for "unikernel"). A change is about a component only when the
   * component runs under that kind: names are unique within one runtime, not across them, and
   * whoever can create containers can take a VM component's `<service>-<component>`.
   */
  listener(kind: RuntimeKind): (changes: ViewChange[]) => void {
    return (changes) => this.enqueue(changes, kind);
  }

  /** The container runtime's listener (listener("container")). */
  readonly push = (changes: ViewChange[]): void => this.enqueue(changes, "container");

  private enqueue(changes: ViewChange[], kind: RuntimeKind): void {
    if (this.closed || changes.length === 0) return;
    for (const ch of changes) this.queue.push({ ch, kind });
    this.counters.changes += changes.length;
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.flush();
      }, this.opts.windowMs ?? 20);
    }
  }

  /** Writes what is queued now; then waits until every judgment and late reconcile has ended. */
  async settle(): Promise<void> {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.flush();
    while (this.pending.size > 0) await Promise.all([...this.pending]);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.settle();
  }

  private track(p: Promise<unknown>): void {
    const t = p.catch((err: Error) =>
      this.ctx.logger.error({ err: err.message }, "recording runtime changes failed"),
    );
    this.pending.add(t);
    void t.finally(() => this.pending.delete(t));
  }

  private flush(): void {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.opts.maxBatch ?? 500);
      this.write(batch);
    }
  }

  private write(batch: { ch: ViewChange; kind: RuntimeKind }[]): void {
    const { registry, locks } = this.ctx;
    const transitions: Transition[] = [];
    const busy = new Set<string>();
    let services: ServiceRecord[] = [];
    try {
      registry.withTransaction(() => {
        // Looked up per change (not a listing of every service per batch): a burst on a node
        // with many services stays proportional to the changes.
        for (const { ch, kind } of batch) {
          // Not a component the registry has: it stays in the view only, and a reconcile (ps,
          // status, sync, the tick) discovers it as before. Recording every short-lived container
          // of the host as it appears would fill the registry with rows nobody asked for.
          const owners = registry.ownersOfContainer(ch.name);
          for (const o of owners) {
            const c = registry.getComponent(o.service, o.component);
            // Another runtime's namesake (a container named like a VM component): not this
            // component's state, nor a container to discover (a listing would not either).
            if (c === null || normalizeRuntimeKind(c.runtime) !== kind) continue;
            if (locks.isHeld(o.service)) {
              busy.add(o.service);
              continue;
            }
            const r = registry.setObservedState(o.service, o.component, ch.next);
            if (r.changed) transitions.push({ ...o, prev: r.prev, next: ch.next });
          }
        }
        // The desired states the judge needs: only the services that changed.
        services = [...new Set(transitions.map((t) => t.service))]
          .map((n) => registry.getService(n))
          .filter((x): x is ServiceRecord => x !== null);
      });
    } catch (err) {
      this.ctx.logger.error(
        { err: (err as Error).message, changes: batch.length },
        "recording runtime changes failed",
      );
      return;
    }
    this.counters.batches++;
    this.counters.transitions += transitions.length;
    if (transitions.length > 0 && this.opts.judge) this.track(this.opts.judge(transitions, services));
    for (const s of busy) this.afterOperation(s);
  }

  /**
   * A service's changes were left to an operation holding its lock: when it is done, reconcile
   * that service once from the runtime's listing (the operation's own record may predate a
   * change that happened meanwhile) and judge what that finds.
   */
  private afterOperation(service: string): void {
    if (this.waitingFor.has(service)) return;
    this.waitingFor.add(service);
    const late = async (): Promise<void> => {
      // Reconciled under the lock (after the operation), judged after it: the judge's confirm
      // step takes the same lock, which is not reentrant.
      const res = await this.ctx.locks.run(service, async () => {
        this.waitingFor.delete(service);
        if (this.closed) return null;
        return reconcile(this.ctx, { discoverUnknown: false, skipService: (s) => s !== service });
      });
      if (res && res.transitions.length > 0 && this.opts.judge)
        await this.opts.judge(res.transitions, res.services);
    };
    this.track(late().finally(() => this.waitingFor.delete(service)));
  }
}
