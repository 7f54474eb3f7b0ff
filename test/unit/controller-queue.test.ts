import { jest } from '@jest/globals';
import { WorkQueue, backoffDelay } from '../../src/controller/queue.js';

describe('backoffDelay', () => {
  it('doubles from the base and stops at the cap', () => {
    expect([0, 1, 2, 3, 4].map((n) => backoffDelay(n, 100, 1000))).toEqual([0, 100, 200, 400, 800]);
    expect(backoffDelay(5, 100, 1000)).toBe(1000);
    expect(backoffDelay(500, 100, 1000)).toBe(1000);
  });

  it('adds jitter up to the given fraction, never above the cap', () => {
    expect(backoffDelay(2, 100, 1000, 0.5, () => 1)).toBe(300);
    expect(backoffDelay(2, 100, 1000, 0.5, () => 0)).toBe(200);
    expect(backoffDelay(10, 100, 1000, 0.5, () => 1)).toBe(1000);
  });
});

describe('WorkQueue', () => {
  it('hands out urgent keys (envs waiting for a node) before the rest, FIFO within each lane', async () => {
    const q = new WorkQueue();
    q.add('ttl-1');
    q.add('new-1', true);
    q.add('ttl-2');
    q.add('new-2', true);
    expect(q.length).toBe(4);
    expect([await q.get(), await q.get(), await q.get(), await q.get()]).toEqual(['new-1', 'new-2', 'ttl-1', 'ttl-2']);
    expect(q.length).toBe(0);
  });

  it('moves a waiting key to the urgent lane when it is added as urgent, once', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('b', true);
    q.add('b', true);
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('b');
    expect(await q.get()).toBe('a');
    expect(q.length).toBe(0);
    q.add('c');
    expect(await q.get()).toBe('c');
  });

  it('re-queues a key added as urgent during its reconcile in the urgent lane', async () => {
    const q = new WorkQueue();
    q.add('a');
    expect(await q.get()).toBe('a');
    expect(q.inFlight).toBe(1);
    q.add('a', true);
    q.add('b');
    q.done('a');
    expect(q.inFlight).toBe(0);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
  });

  it('keeps at most normalWhileUrgent normal keys in flight while urgent keys wait or are in flight', async () => {
    const flush = (): Promise<void> => new Promise((r) => setImmediate(r));
    const q = new WorkQueue({ normalWhileUrgent: 1 });
    for (const k of ['ttl-1', 'ttl-2', 'ttl-3']) q.add(k);
    q.add('new-1', true);
    expect(await q.get()).toBe('new-1');
    expect(await q.get()).toBe('ttl-1'); // one normal slot
    // new-1 is still in flight: a third worker waits instead of taking ttl-2
    let third: string | undefined | null = null;
    void q.get().then((k) => (third = k));
    await flush();
    expect(third).toBeNull();
    q.add('new-2', true);
    await flush();
    expect(third).toBe('new-2'); // urgent work is never held back
    let fourth: string | undefined | null = null;
    void q.get().then((k) => (fourth = k));
    q.done('new-1');
    await flush();
    expect(fourth).toBeNull(); // new-2 is in flight and ttl-1 holds the normal slot
    q.done('ttl-1');
    await flush();
    expect(fourth).toBe('ttl-2'); // the slot it left
    let fifth: string | undefined | null = null;
    void q.get().then((k) => (fifth = k));
    await flush();
    expect(fifth).toBeNull();
    q.done('new-2');
    await flush();
    expect(fifth).toBe('ttl-3'); // nothing urgent left: normal keys are no longer limited
    expect(q.inFlight).toBe(2);
  });

  it('deduplicates keys that are waiting', async () => {
    const q = new WorkQueue();
    q.add('a');
    q.add('b');
    q.add('a');
    expect(q.length).toBe(2);
    expect(await q.get()).toBe('a');
    expect(await q.get()).toBe('b');
    expect(q.length).toBe(0);
  });

  it('never hands one key to two workers: an add during processing re-queues it after done', async () => {
    const q = new WorkQueue();
    q.add('a');
    const k = await q.get();
    expect(k).toBe('a');
    q.add('a');
    q.add('a');
    expect(q.length).toBe(0);
    expect(q.isProcessing('a')).toBe(true);
    q.done('a');
    expect(q.length).toBe(1);
    expect(await q.get()).toBe('a');
    q.done('a');
    expect(q.length).toBe(0);
  });

  it('wakes a waiting worker on add', async () => {
    const q = new WorkQueue();
    const got = q.get();
    q.add('x');
    await expect(got).resolves.toBe('x');
  });

  it('addAfter keeps only the earliest deadline per key', () => {
    jest.useFakeTimers();
    try {
      let now = 0;
      const q = new WorkQueue({ now: () => now });
      q.addAfter('a', 1000);
      q.addAfter('a', 5000);
      q.addAfter('a', 300);
      expect(q.delayedCount).toBe(1);
      now = 300;
      jest.advanceTimersByTime(300);
      expect(q.length).toBe(1);
      expect(q.delayedCount).toBe(0);
      jest.advanceTimersByTime(5000);
      expect(q.length).toBe(1);
    } finally {
      jest.useRealTimers();
    }
  });

  it('backs off per key on failure and forgets on success', () => {
    jest.useFakeTimers();
    try {
      const q = new WorkQueue({ baseDelayMs: 100, maxDelayMs: 1000 });
      const d1 = q.addRateLimited('a');
      const d2 = q.addRateLimited('a');
      expect(d1).toBeGreaterThanOrEqual(100);
      expect(d1).toBeLessThanOrEqual(110);
      expect(d2).toBeGreaterThanOrEqual(200);
      expect(q.retries('a')).toBe(2);
      q.forget('a');
      expect(q.retries('a')).toBe(0);
      jest.advanceTimersByTime(d1 + 1);
      expect(q.length).toBe(1);
    } finally {
      jest.useRealTimers();
    }
  });

  it('reports depth and queue latency to its observer', async () => {
    let now = 0;
    const depths: number[] = [];
    const waits: number[] = [];
    const q = new WorkQueue({ now: () => now, observer: { depth: (n) => depths.push(n), started: (ms) => waits.push(ms) } });
    q.add('a');
    q.add('b');
    now = 40;
    await q.get();
    expect(depths).toEqual([1, 2, 1]);
    expect(waits).toEqual([40]);
  });

  it('shutDown releases waiting workers and ignores later adds', async () => {
    const q = new WorkQueue();
    const w = q.get();
    q.addAfter('later', 10_000);
    q.shutDown();
    await expect(w).resolves.toBeUndefined();
    q.add('a');
    await expect(q.get()).resolves.toBeUndefined();
    expect(q.delayedCount).toBe(0);
  });
});
