/**
 * "Wait until the cache has seen my own write" (the ReplicaSet controller's
 * expectations, reduced to one resourceVersion per key). After the controller
 * writes an env, its informer still holds the older object for a moment; a
 * reconcile in that window would decide again from stale facts and either
 * conflict (wasting a write) or, worse, schedule twice. So a reconcile of a key
 * with an unmet expectation returns early, and the informer event carrying that
 * resourceVersion clears it and enqueues the key. Watch events arrive in order,
 * so the expected version is always delivered unless the informer relists
 * (which clears everything) or the object is deleted.
 */

const EXPIRY_MS = 30_000;

export class WriteExpectations {
  private readonly pending = new Map<string, { rv: string; at: number }>();

  /** The controller wrote `key`; the API server answered with `rv`. */
  expect(key: string, rv: string | undefined, now: number): void {
    if (rv) this.pending.set(key, { rv, at: now });
  }

  /** The informer delivered `key` at `rv`; true when that met the expectation. */
  observe(key: string, rv: string | undefined): boolean {
    const p = this.pending.get(key);
    if (!p || p.rv !== rv) return false;
    this.pending.delete(key);
    return true;
  }

  /** True while the cache has not yet shown the controller's last write (expires after 30 s, in case it never shows). */
  waiting(key: string, now: number): boolean {
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
}
