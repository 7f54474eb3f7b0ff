/**
 * The scheduler's in-memory view of what each node holds: envs bound to it and
 * not finished, and the sum of their memory.max. It is fed by the env informer
 * and, ahead of it, by the scheduler itself ("assumed" bindings, as kube-scheduler
 * does), so a burst of envs scheduled before the informer shows the first
 * binding is still spread correctly. An assumption ends when the informer shows
 * the env bound, when the bind fails, or when the env goes away.
 */

interface Entry {
  readonly node: string;
  readonly memory: number;
}

interface Usage {
  envs: number;
  memory: number;
}

/** Per-node env count and memory, updated incrementally (O(1) per change). */
export class AllocationView {
  private readonly observed = new Map<string, Entry>();
  private readonly assumed = new Map<string, Entry>();
  private readonly usage = new Map<string, Usage>();

  /**
   * Record what the informer shows for `key`: the node it is bound to (if any),
   * whether it still holds room there (bound and unfinished), and its memory.max.
   */
  observe(key: string, node: string | undefined, holding: boolean, memory: number): void {
    const before = this.effective(key);
    if (node !== undefined && holding) this.observed.set(key, { node, memory });
    else this.observed.delete(key);
    // Once the informer shows any binding, it has caught up with the assumption. An
    // unbound observation does not cancel one: the informer may simply lag the bind.
    if (node !== undefined) this.assumed.delete(key);
    this.move(before, this.effective(key));
  }

  /** The env went away (deleted): drop everything about it. */
  remove(key: string): void {
    const before = this.effective(key);
    this.observed.delete(key);
    this.assumed.delete(key);
    this.move(before, undefined);
  }

  /** The scheduler chose `node` for `key`; count it now, before the write lands. */
  assume(key: string, node: string, memory: number): void {
    const before = this.effective(key);
    this.assumed.set(key, { node, memory });
    this.move(before, this.effective(key));
  }

  /** The binding write failed: undo the assumption. */
  forget(key: string): void {
    if (!this.assumed.has(key)) return;
    const before = this.effective(key);
    this.assumed.delete(key);
    this.move(before, this.effective(key));
  }

  /** Envs and memory held on `node`. */
  usageOf(node: string): { envs: number; memory: number } {
    const u = this.usage.get(node);
    return u ? { envs: u.envs, memory: u.memory } : { envs: 0, memory: 0 };
  }

  /** Node the view counts `key` on, if any. */
  nodeOf(key: string): string | undefined {
    return this.effective(key)?.node;
  }

  private effective(key: string): Entry | undefined {
    return this.assumed.get(key) ?? this.observed.get(key);
  }

  private move(from: Entry | undefined, to: Entry | undefined): void {
    if (from === to || (from && to && from.node === to.node && from.memory === to.memory)) return;
    if (from) {
      const u = this.usage.get(from.node);
      if (u) {
        u.envs -= 1;
        u.memory -= from.memory;
        if (u.envs <= 0) this.usage.delete(from.node);
      }
    }
    if (to) {
      const u = this.usage.get(to.node) ?? { envs: 0, memory: 0 };
      u.envs += 1;
      u.memory += to.memory;
      this.usage.set(to.node, u);
    }
  }
}
