// The observed-state view: every container one runtime has, kept current by its event stream
// and confirmed in full by listings. Pure bookkeeping (no I/O): LiveRuntime feeds it listings
// and events and asks it whether it may answer.
//
// Ordering. A listing started at time L reflects every change before L. resync(list, L, during)
// replaces the view and remembers L; an event older than L is then already reflected and is
// skipped, a newer one is applied. Events keep being applied while a listing runs (readers see
// them at once); the caller also keeps them and gives them to resync, which applies them again
// on top of the listing, so a listing never overwrites a newer event.
import type { ObservedState } from "../component/state.ts";
import type { RuntimeEvent } from "./events.ts";
import { type ContainerInfo, ownerFromLabels } from "./runtime.ts";

/** One observed-state transition of one container, in the order it happened. */
export interface ViewChange {
  name: string;
  prev: ObservedState;
  next: ObservedState;
  /** The container after the change; null when it is gone (next = "removed"). */
  info: ContainerInfo | null;
  /** ms since the epoch: the event's time, or the listing's start for gaps a listing found. */
  at: number;
  /** What told us: an event's word ("died", "remove") or "listing". */
  cause: string;
}

export class LiveView {
  private readonly byName = new Map<string, ContainerInfo>();
  /** Health check results by container name (from health events). */
  private readonly health = new Map<string, string>();
  private synced: number | null = null;
  /**
   * Events at or before this time are already reflected (the last listing's start, or the last
   * event applied): a stream that comes back replays a few seconds, and those must not apply
   * twice. Kept when the view is invalidated, so the replay fills the gap exactly.
   */
  private floor = Number.NEGATIVE_INFINITY;

  /** When the last full listing started (ms since the epoch); null = never, or invalidated. */
  get confirmedAt(): number | null {
    return this.synced;
  }

  get size(): number {
    return this.byName.size;
  }

  /** Forget the confirmation (the stream went down): the view may not answer until a resync. */
  invalidate(): void {
    this.synced = null;
  }

  /** Every container, as a fresh array of copies (callers may keep them). */
  snapshot(): ContainerInfo[] {
    return [...this.byName.values()].map((c) => ({ ...c }));
  }

  get(name: string): ContainerInfo | undefined {
    const c = this.byName.get(name);
    return c ? { ...c } : undefined;
  }

  healthOf(name: string): string | undefined {
    return this.health.get(name);
  }

  /**
   * Replaces the view with a listing that started at `startedAt`, with `during` (the events read
   * while it ran, already applied one by one) applied again on top of it: the listing cannot
   * undo an event newer than itself. Answers the net changes against the view before (what
   * the stream missed: a gap), in name order.
   */
  resync(
    list: readonly ContainerInfo[],
    startedAt: number,
    during: readonly RuntimeEvent[] = [],
  ): ViewChange[] {
    const prevView = new Map(this.byName);
    const fresh = new LiveView();
    for (const c of list) {
      const old = prevView.get(c.name);
      // A container caught mid-change (podman's "stopping", "removing": "unknown" here) keeps
      // what the events said: podman emits the death before it writes the state a listing reads.
      const keep = c.state === "unknown" && old !== undefined && old.id === c.id && old.state !== "unknown";
      // The same run of the same container keeps the start time an event gave (listings round
      // it to seconds), so readers that key on it (the health watch) do not see a new start.
      const sameRun =
        old !== undefined &&
        old.id === c.id &&
        old.state === c.state &&
        old.startedAt !== null &&
        c.startedAt !== null &&
        Math.abs(old.startedAt.getTime() - c.startedAt.getTime()) < 1000;
      fresh.byName.set(c.name, keep ? { ...old } : sameRun ? { ...c, startedAt: old.startedAt } : { ...c });
    }
    for (const [name, h] of this.health) {
      const id = fresh.byName.get(name)?.id;
      if (id !== undefined && id === prevView.get(name)?.id) fresh.health.set(name, h);
    }
    fresh.synced = startedAt;
    fresh.floor = startedAt;
    for (const e of during) fresh.apply(e);

    const changes: ViewChange[] = [];
    for (const [name, old] of prevView) {
      if (!fresh.byName.has(name))
        changes.push({ name, prev: old.state, next: "removed", info: null, at: startedAt, cause: "listing" });
    }
    for (const [name, c] of fresh.byName) {
      const old = prevView.get(name);
      // A container replaced under the same name in the gap: it was removed, then created.
      if (old !== undefined && old.id !== c.id)
        changes.push({ name, prev: old.state, next: "removed", info: null, at: startedAt, cause: "listing" });
      const prev: ObservedState = old === undefined || old.id !== c.id ? "removed" : old.state;
      if (prev !== c.state)
        changes.push({ name, prev, next: c.state, info: { ...c }, at: startedAt, cause: "listing" });
    }
    this.byName.clear();
    for (const [name, c] of fresh.byName) this.byName.set(name, c);
    this.health.clear();
    for (const [name, h] of fresh.health) this.health.set(name, h);
    this.synced = startedAt;
    this.floor = Math.max(startedAt, fresh.floor);
    changes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return changes;
  }

  /**
   * Applies one event; answers the observed-state change it made, or null (no change, older
   * than the last listing, not about observed state, or about a container this view no longer
   * has under that name).
   */
  apply(e: RuntimeEvent): ViewChange | null {
    if (e.time <= this.floor) return null;
    this.floor = e.time;
    if (e.name === "") return null;
    const old = this.byName.get(e.name);
    // An event of an earlier container of the same name (replaced since) changes nothing.
    const same = old !== undefined && old.id === e.id;
    const prev: ObservedState = same ? old.state : "removed";
    if (e.action === "health") {
      if (same && e.health) this.health.set(e.name, e.health);
      return null;
    }
    let next: ObservedState;
    switch (e.action) {
      case "create":
        next = "stopped";
        break;
      case "start":
      case "unpause":
        next = "running";
        break;
      case "die":
        next = "exited";
        break;
      case "stop":
        // Docker sends stop after die; podman sends it for a container that was stopped.
        next = prev === "running" || prev === "removed" ? "exited" : prev;
        break;
      case "pause":
        next = "stopped";
        break;
      case "remove":
        if (!same) return null;
        this.byName.delete(e.name);
        this.health.delete(e.name);
        return { name: e.name, prev, next: "removed", info: null, at: e.time, cause: e.word };
      default:
        return null; // oom (a die follows), rename (LiveRuntime resyncs), other words
    }
    const owner = ownerFromLabels(e.labels);
    const base: ContainerInfo = same
      ? old
      : {
          id: e.id,
          name: e.name,
          image: e.image,
          state: "unknown",
          startedAt: null,
          createdAt: e.action === "create" ? new Date(Math.floor(e.time / 1000) * 1000) : null,
          exitCode: null,
          ...(owner ? { owner } : {}),
        };
    const info: ContainerInfo = {
      ...base,
      state: next,
      startedAt: next === "running" && e.action === "start" ? new Date(Math.floor(e.time)) : base.startedAt,
      exitCode: next === "exited" ? (e.exitCode ?? (e.action === "die" ? null : base.exitCode)) : null,
    };
    if (!same) this.health.delete(e.name);
    this.byName.set(e.name, info);
    if (prev === next && same) return null;
    return { name: e.name, prev, next, info: { ...info }, at: e.time, cause: e.word };
  }
}
