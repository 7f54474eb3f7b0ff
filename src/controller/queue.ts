/**
 * The work queue between informers and reconcilers, shaped like client-go's:
 * a key is queued at most once however often it is added (dirty set), is never
 * handed to two workers at once (processing set: an add while it is processed
 * re-queues it after `done`), failures back off exponentially per key, and
 * `addAfter` keeps only the earliest pending deadline per key, so requeueing at
 * the next deadline replaces polling.
 */

/** Observer hooks, so metrics stay out of this module. */
export interface QueueObserver {
  /** Depth changed (number of keys waiting, not counting delayed ones). */
  depth?(n: number): void;
  /** A key was added (immediately, not delayed). */
  added?(): void;
  /** A key was handed to a worker after waiting `waitedMs`. */
  started?(waitedMs: number): void;
  /** A key was re-added after a failure. */
  retried?(): void;
}

/** Per-key exponential backoff: `base · 2^(failures-1)`, capped, with up to `jitter` (0–1) added. */
export function backoffDelay(failures: number, baseMs: number, capMs: number, jitter = 0, random: () => number = Math.random): number {
  if (failures <= 0) return 0;
  const exp = Math.min(capMs, baseMs * 2 ** Math.min(failures - 1, 52));
  return Math.min(capMs, exp * (1 + jitter * random()));
}

export interface WorkQueueOptions {
  /** First retry delay after a failure. Default 100 ms. */
  readonly baseDelayMs?: number;
  /** Longest retry delay. Default 5 min. */
  readonly maxDelayMs?: number;
  readonly observer?: QueueObserver;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** A deduplicating, per-key-serial, rate-limited work queue of string keys. */
export class WorkQueue {
  private readonly queue: string[] = [];
  private head = 0;
  private readonly dirty = new Set<string>();
  private readonly processing = new Set<string>();
  private readonly addedAt = new Map<string, number>();
  private readonly failures = new Map<string, number>();
  private readonly delayed = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private readonly waiters: ((key: string | undefined) => void)[] = [];
  private shuttingDown = false;
  private readonly base: number;
  private readonly cap: number;
  private readonly obs: QueueObserver;
  private readonly now: () => number;

  constructor(opts: WorkQueueOptions = {}) {
    this.base = opts.baseDelayMs ?? 100;
    this.cap = opts.maxDelayMs ?? 300_000;
    this.obs = opts.observer ?? {};
    this.now = opts.now ?? Date.now;
  }

  /** Keys waiting to be handed out (not counting delayed ones or those in flight). */
  get length(): number {
    return this.queue.length - this.head;
  }

  /** Keys waiting for a delayed add. */
  get delayedCount(): number {
    return this.delayed.size;
  }

  /** True while `key` is being reconciled. */
  isProcessing(key: string): boolean {
    return this.processing.has(key);
  }

  /** Queue `key` now; a no-op if it is already waiting. */
  add(key: string): void {
    if (this.shuttingDown || this.dirty.has(key)) return;
    this.dirty.add(key);
    this.addedAt.set(key, this.now());
    this.obs.added?.();
    if (this.processing.has(key)) return;
    this.push(key);
  }

  /** Queue `key` after `delayMs`; an earlier pending deadline for the same key wins. */
  addAfter(key: string, delayMs: number): void {
    if (this.shuttingDown) return;
    if (delayMs <= 0) {
      this.add(key);
      return;
    }
    const at = this.now() + delayMs;
    const pending = this.delayed.get(key);
    if (pending && pending.at <= at) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.delayed.delete(key);
      this.add(key);
    }, delayMs);
    timer.unref?.();
    this.delayed.set(key, { at, timer });
  }

  /** Re-queue `key` after its next backoff delay (a failed reconcile). */
  addRateLimited(key: string): number {
    const n = (this.failures.get(key) ?? 0) + 1;
    this.failures.set(key, n);
    const delay = backoffDelay(n, this.base, this.cap, 0.1);
    this.obs.retried?.();
    this.addAfter(key, delay);
    return delay;
  }

  /** Clears the failure count of `key` (a reconcile succeeded or gave up). */
  forget(key: string): void {
    this.failures.delete(key);
  }

  /** How many times `key` failed in a row. */
  retries(key: string): number {
    return this.failures.get(key) ?? 0;
  }

  /** Waits for the next key; undefined once the queue is shut down and drained of waiters. */
  async get(): Promise<string | undefined> {
    const key = this.take();
    if (key !== undefined || this.shuttingDown) return key;
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Marks `key` finished; if it was added meanwhile, it is queued again. */
  done(key: string): void {
    this.processing.delete(key);
    if (this.dirty.has(key)) this.push(key);
  }

  /** Stops handing out keys: pending and future `get()` calls resolve undefined; delayed adds are dropped. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private push(key: string): void {
    const waiter = this.waiters.shift();
    if (waiter) {
      this.start(key);
      waiter(key);
      return;
    }
    this.queue.push(key);
    this.obs.depth?.(this.length);
  }

  private take(): string | undefined {
    if (this.shuttingDown || this.head >= this.queue.length) return undefined;
    const key = this.queue[this.head++] as string;
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head);
      this.head = 0;
    }
    this.obs.depth?.(this.length);
    this.start(key);
    return key;
  }

  private start(key: string): void {
    this.dirty.delete(key);
    this.processing.add(key);
    const at = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (at !== undefined) this.obs.started?.(this.now() - at);
  }
}
