// Per-key serialization of async work, shared by the agent (one deploy/lifecycle change per
// service at a time) and the master (one deploy/undeploy per service across the fleet).

/** Serializes async work per key (service name); different keys run in parallel. */
export class KeyedLock {
  private tails = new Map<string, Promise<void>>();

  /** Whether work for `key` is running or queued (the monitor leaves such services alone). */
  isHeld(key: string): boolean {
    return this.tails.has(key);
  }

  /** The keys whose work is running or queued now. */
  heldKeys(): string[] {
    return [...this.tails.keys()];
  }

  async run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((r) => {
      release = r;
    });
    const tail = prev.then(() => mine);
    this.tails.set(key, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}
