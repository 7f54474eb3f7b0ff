/**
 * "Wait until the cache has seen my own write" (the ReplicaSet controller's
 * expectations, reduced to one resourceVersion per key). After the controller
 * writes an env, its informer still holds the older object for a moment; a
 * reconcile in that window would decide again from stale facts and either
 * conflict (wasting a write) or, worse, schedule twice. So a reconcile of a key
 * whose cached object is older than the controller's last write returns early;
 * the informer event that carries the write (or anything newer) enqueues it again.
 *
 * "Older" compares resourceVersions as integers, which is what etcd-backed API
 * servers hand out (and what Kubernetes' comparable-resourceVersion work makes a
 * guarantee). A resourceVersion that is not an integer falls back to equality,
 * and every expectation expires after 30 s, so the controller can never wait forever.
 */

const EXPIRY_MS = 30_000;

/** -1, 0 or 1 when both are integers; undefined when they cannot be ordered. */
export function compareResourceVersions(a: string | undefined, b: string | undefined): number | undefined {
  if (a === undefined || b === undefined) return undefined;
  if (a === b) return 0;
  if (!/^[0-9]{1,30}$/.test(a) || !/^[0-9]{1,30}$/.test(b)) return undefined;
  const x = BigInt(a);
  const y = BigInt(b);
  return x < y ? -1 : x > y ? 1 : 0;
}

export class WriteExpectations {
  private readonly pending = new Map<string, { rv: string; at: number }>();

  /** The controller wrote `key`; the API server answered with `rv`. */
  expect(key: string, rv: string | undefined, now: number): void {
    if (!rv) return;
    const p = this.pending.get(key);
    if (p && (compareResourceVersions(p.rv, rv) ?? -1) > 0) return;
    this.pending.set(key, { rv, at: now });
  }

  /** The informer holds `key` at `rv`; clears the expectation when that is at least the written version. */
  observe(key: string, rv: string | undefined): void {
    const p = this.pending.get(key);
    if (p && (compareResourceVersions(rv, p.rv) ?? -1) >= 0) this.pending.delete(key);
  }

  /** True while the cached version (`cachedRv`) is older than the controller's last write (at most 30 s). */
  waiting(key: string, cachedRv: string | undefined, now: number): boolean {
    this.observe(key, cachedRv);
    const p = this.pending.get(key);
    if (!p) return false;
    if (now - p.at > EXPIRY_MS) {
      this.pending.delete(key);
      return false;
    }
    return true;
  }

  clear(key: string): void {
    this.pending.delete(key);
  }

  clearAll(): void {
    this.pending.clear();
  }

  get size(): number {
    return this.pending.size;
  }
}
