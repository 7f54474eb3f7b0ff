/**
 * List + watch into an in-memory cache, with handlers for add/update/delete.
 * What client-go's reflector does and client-node's ListWatch does not: the list
 * is paginated; a 410 Gone (in the response or as a watch ERROR event) clears
 * the resourceVersion and relists at once; any other failure restarts the loop
 * after a capped, jittered exponential backoff instead of stopping; watches ask
 * for bookmarks and are recycled by a server timeout; and a transform can slim
 * objects before they are cached (the controller drops managedFields).
 */
import type { Logger } from 'winston';
import { errorFields } from '../log.js';
import { backoffDelay } from './queue.js';
import { ApiError, isGone, type KubeClient, type WatchEvent } from './kube-client.js';
import { keyOf, type KubeObject } from './model.js';

export type Handler<T> = {
  add?(obj: T): void;
  update?(obj: T, old: T): void;
  delete?(obj: T): void;
};

export interface InformerOptions<T> {
  /** Short name for logs and metrics, e.g. `disposableenvs`. */
  readonly name: string;
  /** Collection path, e.g. `/apis/disposable.dev/v1alpha1/disposableenvs`. */
  readonly path: string;
  readonly labelSelector?: string;
  readonly fieldSelector?: string;
  /** Applied to every object before it is cached and handed to handlers. */
  readonly transform?: (obj: T) => T;
  readonly pageSize?: number;
  readonly backoffBaseMs?: number;
  readonly backoffCapMs?: number;
  /** Server-side watch timeout range; each watch picks a random value in it. */
  readonly watchTimeoutSeconds?: readonly [number, number];
  readonly logger: Logger;
  /** Called when the loop restarts after a failure (for metrics). */
  readonly onRestart?: (reason: 'gone' | 'error') => void;
  /** Called after each full list (the cache may have skipped versions). */
  readonly onRelist?: () => void;
}

/** A resilient informer for one resource. */
export class Informer<T extends KubeObject> {
  private readonly store = new Map<string, T>();
  private readonly handlers: Handler<T>[] = [];
  private resourceVersion = '';
  private synced = false;
  private readonly syncWaiters: (() => void)[] = [];
  private abort = new AbortController();
  private stopped = true;
  private loop: Promise<void> | undefined;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: InformerOptions<T>,
  ) {}

  /** Registers handlers; call before start(). */
  on(handler: Handler<T>): void {
    this.handlers.push(handler);
  }

  /** Starts the list/watch loop in the background. */
  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    this.abort = new AbortController();
    this.loop = this.run();
  }

  /** Stops the loop and waits for it to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.abort.abort();
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.loop;
  }

  /** True once the first full list is in the cache. */
  hasSynced(): boolean {
    return this.synced;
  }

  /** Resolves once the first list is in the cache. */
  async waitForSync(): Promise<void> {
    if (this.synced) return;
    await new Promise<void>((resolve) => this.syncWaiters.push(resolve));
  }

  get(key: string): T | undefined {
    return this.store.get(key);
  }

  list(): IterableIterator<T> {
    return this.store.values();
  }

  keys(): IterableIterator<string> {
    return this.store.keys();
  }

  get size(): number {
    return this.store.size;
  }

  private async run(): Promise<void> {
    let failures = 0;
    const [lo, hi] = this.opts.watchTimeoutSeconds ?? [300, 600];
    while (!this.stopped) {
      try {
        if (!this.resourceVersion) await this.relist();
        failures = 0;
        const timeoutSeconds = Math.floor(lo + Math.random() * (hi - lo + 1));
        await this.client.watch<T>(
          this.opts.path,
          { resourceVersion: this.resourceVersion, labelSelector: this.opts.labelSelector, fieldSelector: this.opts.fieldSelector, timeoutSeconds },
          (ev) => this.apply(ev),
          this.abort.signal,
        );
      } catch (err) {
        if (this.stopped) break;
        if (isGone(err)) {
          // Our resourceVersion is older than etcd's compaction window: start over from a fresh list.
          this.opts.logger.info('informer: resourceVersion expired, relisting', { informer: this.opts.name });
          this.resourceVersion = '';
          this.opts.onRestart?.('gone');
          continue;
        }
        failures++;
        const delay = backoffDelay(failures, this.opts.backoffBaseMs ?? 500, this.opts.backoffCapMs ?? 30_000, 0.5);
        this.opts.logger.warn('informer: list/watch failed, restarting', {
          informer: this.opts.name,
          retryInMs: Math.round(delay),
          failures,
          ...errorFields(new ApiError(`Informer ${this.opts.name}: list/watch failed`, err instanceof ApiError ? err.code : 0, undefined, { cause: err })),
        });
        this.opts.onRestart?.('error');
        await this.sleep(delay);
      }
    }
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
    this.wake = undefined;
  }

  /** Full list: replace the cache, firing add/update/delete for what changed since the last view. */
  private async relist(): Promise<void> {
    const { items, resourceVersion } = await this.client.list<T>(this.opts.path, {
      labelSelector: this.opts.labelSelector,
      fieldSelector: this.opts.fieldSelector,
      pageSize: this.opts.pageSize,
    });
    const seen = new Set<string>();
    for (const raw of items) {
      const obj = this.opts.transform ? this.opts.transform(raw) : raw;
      const key = keyOf(obj.metadata);
      seen.add(key);
      this.upsert(key, obj);
    }
    for (const [key, old] of this.store) {
      if (seen.has(key)) continue;
      this.store.delete(key);
      for (const h of this.handlers) h.delete?.(old);
    }
    this.resourceVersion = resourceVersion;
    this.opts.onRelist?.();
    if (!this.synced) {
      this.synced = true;
      for (const w of this.syncWaiters.splice(0)) w();
    }
  }

  private upsert(key: string, obj: T): void {
    const old = this.store.get(key);
    if (old && old.metadata.resourceVersion === obj.metadata.resourceVersion) return;
    this.store.set(key, obj);
    for (const h of this.handlers) {
      if (old) h.update?.(obj, old);
      else h.add?.(obj);
    }
  }

  private apply(ev: WatchEvent<T>): void {
    const rv = (ev.object as KubeObject | undefined)?.metadata?.resourceVersion;
    if (ev.type === 'BOOKMARK') {
      if (rv) this.resourceVersion = rv;
      return;
    }
    const obj = this.opts.transform ? this.opts.transform(ev.object) : ev.object;
    const key = keyOf(obj.metadata);
    if (ev.type === 'DELETED') {
      const old = this.store.get(key);
      this.store.delete(key);
      for (const h of this.handlers) h.delete?.(old ?? obj);
    } else {
      this.upsert(key, obj);
    }
    if (rv) this.resourceVersion = rv;
  }
}
