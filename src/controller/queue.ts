/**
 * The work queue between informers and reconcilers, shaped like client-go's:
 * a key is queued at most once however often it is added (dirty set), is never
 * handed to two workers at once (processing set: an add while it is processed
 * re-queues it after `done`), failures back off exponentially per key, and
 * `addAfter` keeps only the earliest pending deadline per key, so requeueing at
 * the next deadline replaces polling. Two lanes, FIFO each: `urgent` keys (envs
 * waiting for a node) are handed out before the rest (TTL deletes, finalizer
 * releases, resyncs), so a burst of new envs is not queued behind the lifecycle
 * work of earlier ones, the way kube-scheduler's active queue is kept apart.
 * While urgent keys wait or are in flight, at most `normalWhileUrgent` normal keys
 * are in flight: their API writes would compete with the bindings at the API
 * server, which is what bounds a burst.
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
  /** Normal keys in flight at most while urgent ones wait or are in flight. Default: no limit. */
  readonly normalWhileUrgent?: number;
  /** Clock, for tests. */
  readonly now?: () => number;
}

/** Lane of a waiting key: 0 urgent, 1 normal. */
type Lane = 0 | 1;

/** A FIFO of keys with a moving head (no O(n) shift). */
class Fifo {
  private items: string[] = [];
  private head = 0;
  push(key: string): void {
    this.items.push(key);
  }
  shift(): string | undefined {
    if (this.head >= this.items.length) return undefined;
    const key = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return key;
  }
}

/** A deduplicating, per-key-serial, rate-limited, two-lane work queue of string keys. */
export class WorkQueue {
  private readonly lanes: [Fifo, Fifo] = [new Fifo(), new Fifo()];
  /** Keys waiting in a lane, and which lane is current (an entry in the other lane is stale). */
  private readonly waiting = new Map<string, Lane>();
  private readonly dirty = new Set<string>();
  /** Keys being reconciled, with the lane each was handed out from. */
  private readonly processing = new Map<string, Lane>();
  private urgentWaiting = 0;
  private urgentInFlight = 0;
  private readonly normalWhileUrgent: number;
  /** Lane for keys added while they were being processed (queued again at `done`). */
  private readonly laneAfterDone = new Map<string, Lane>();
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
    this.normalWhileUrgent = opts.normalWhileUrgent ?? Infinity;
    this.now = opts.now ?? Date.now;
  }

  /** Keys waiting to be handed out (not counting delayed ones or those in flight). */
  get length(): number {
    return this.waiting.size;
  }

  /** Keys being reconciled right now. */
  get inFlight(): number {
    return this.processing.size;
  }

  /** Keys waiting for a delayed add. */
  get delayedCount(): number {
    return this.delayed.size;
  }

  /** True while `key` is being reconciled. */
  isProcessing(key: string): boolean {
    return this.processing.has(key);
  }

  /**
   * Queue `key` now; a no-op if it is already waiting (except that an urgent add
   * moves a key waiting in the normal lane to the urgent one).
   */
  add(key: string, urgent = false): void {
    if (this.shuttingDown) return;
    const lane: Lane = urgent ? 0 : 1;
    if (this.dirty.has(key)) {
      if (!urgent) return;
      if (this.waiting.get(key) === 1) {
        this.waiting.set(key, 0);
        this.urgentWaiting++;
        this.lanes[0].push(key);
        this.dispatch();
      } else if (this.processing.has(key)) {
        this.laneAfterDone.set(key, 0);
      }
      return;
    }
    this.dirty.add(key);
    this.addedAt.set(key, this.now());
    this.obs.added?.();
    if (this.processing.has(key)) {
      this.laneAfterDone.set(key, lane);
      return;
    }
    this.push(key, lane);
  }

  /** Queue `key` after `delayMs` (normal lane); an earlier pending deadline for the same key wins. */
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

  /** Marks `key` finished; if it was added meanwhile, it is queued again (in the lane it was added to). */
  done(key: string): void {
    const was = this.processing.get(key);
    if (was === undefined) return;
    this.processing.delete(key);
    if (was === 0) this.urgentInFlight--;
    const lane = this.laneAfterDone.get(key) ?? 1;
    this.laneAfterDone.delete(key);
    if (this.dirty.has(key)) this.push(key, lane);
    else this.dispatch(); // a slot for normal keys may have opened
  }

  /** Stops handing out keys: pending and future `get()` calls resolve undefined; delayed adds are dropped. */
  shutDown(): void {
    this.shuttingDown = true;
    for (const { timer } of this.delayed.values()) clearTimeout(timer);
    this.delayed.clear();
    for (const w of this.waiters.splice(0)) w(undefined);
  }

  private push(key: string, lane: Lane): void {
    this.lanes[lane].push(key);
    this.waiting.set(key, lane);
    if (lane === 0) this.urgentWaiting++;
    this.obs.depth?.(this.length);
    this.dispatch();
  }

  /** Hands waiting keys to idle workers, as far as the lanes allow. */
  private dispatch(): void {
    while (this.waiters.length > 0) {
      const key = this.take();
      if (key === undefined) return;
      this.waiters.shift()!(key);
    }
  }

  private take(): string | undefined {
    if (this.shuttingDown) return undefined;
    for (const lane of [0, 1] as const) {
      if (lane === 1 && this.urgentWaiting + this.urgentInFlight > 0 && this.processing.size - this.urgentInFlight >= this.normalWhileUrgent) return undefined;
      for (let key = this.lanes[lane].shift(); key !== undefined; key = this.lanes[lane].shift()) {
        if (this.waiting.get(key) !== lane) continue; // moved to the urgent lane, or already handed out
        this.waiting.delete(key);
        this.obs.depth?.(this.length);
        this.start(key, lane);
        return key;
      }
    }
    return undefined;
  }

  private start(key: string, lane: Lane): void {
    if (lane === 0) {
      this.urgentWaiting--;
      this.urgentInFlight++;
    }
    this.dirty.delete(key);
    this.processing.set(key, lane);
    const at = this.addedAt.get(key);
    this.addedAt.delete(key);
    if (at !== undefined) this.obs.started?.(this.now() - at);
  }
}
