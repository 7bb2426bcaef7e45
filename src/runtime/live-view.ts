// The observed-state view: every container one runtime has, kept current by its event stream
// and confirmed in full by listings. Pure bookkeeping (no I/O): LiveRuntime feeds it listings
// and events and asks it whether it may answer.
//
// Ordering. A listing started at time L reflects every change before L. resync(list, L) replaces
// the view and remembers L; an event older than L is then already reflected and is skipped, a
// newer one is applied. Events that arrive while a listing runs are held by the caller and
// applied after it (hold/release), so a listing never overwrites a newer event.
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
   * Replaces the view with a listing that started at `startedAt`; answers what changed against
   * the view before it (the transitions a gap in the stream hid), in name order.
   */
  resync(list: readonly ContainerInfo[], startedAt: number): ViewChange[] {
    const changes: ViewChange[] = [];
    const prevView = new Map(this.byName);
    // A container caught mid-change (podman's "stopping", "removing": "unknown" here) keeps what
    // the events said: podman emits the death before it writes the state a listing reads.
    const next = new Map(
      list.map((c) => {
        const old = prevView.get(c.name);
        const keep = c.state === "unknown" && old !== undefined && old.id === c.id && old.state !== "unknown";
        return [c.name, keep ? old : c];
      }),
    );
    for (const [name, old] of this.byName) {
      if (!next.has(name))
        changes.push({ name, prev: old.state, next: "removed", info: null, at: startedAt, cause: "listing" });
    }
    for (const [name, c] of next) {
      const old = this.byName.get(name);
      const prev: ObservedState = old === undefined ? "removed" : old.id !== c.id ? "removed" : old.state;
      // A container replaced under the same name in the gap: it was removed, then created.
      if (old !== undefined && old.id !== c.id)
        changes.push({ name, prev: old.state, next: "removed", info: null, at: startedAt, cause: "listing" });
      if (prev !== c.state)
        changes.push({ name, prev, next: c.state, info: { ...c }, at: startedAt, cause: "listing" });
    }
    this.byName.clear();
    for (const [name, c] of next) {
      // The same run of the same container: keep the start time an event gave (listings round
      // it to seconds), so readers that key on it (the health watch) do not see a new start.
      const old = prevView.get(name);
      const sameRun =
        old !== undefined &&
        old.id === c.id &&
        old.state === c.state &&
        old.startedAt !== null &&
        c.startedAt !== null &&
        Math.abs(old.startedAt.getTime() - c.startedAt.getTime()) < 1000;
      this.byName.set(name, sameRun ? { ...c, startedAt: old.startedAt } : { ...c });
    }
    for (const name of this.health.keys()) if (!next.has(name)) this.health.delete(name);
    this.synced = startedAt;
    changes.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return changes;
  }

  /**
   * Applies one event; answers the observed-state change it made, or null (no change, older
   * than the last listing, not about observed state, or about a container this view no longer
   * has under that name).
   */
  apply(e: RuntimeEvent): ViewChange | null {
    if (this.synced !== null && e.time < this.synced) return null;
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
