/**
 * The agent's GC schedule: adoption and one pass at start, then a pass every
 * interval (default 30 s). The live env ids are asked for on every pass, so
 * the agent can hand in its current view of the API; an error in one pass is
 * reported and the next pass runs anyway.
 */
import { recover, type RecoverOptions } from '../adopt.js';
import type { NodeMetrics } from '../metrics.js';
import type { Runtime } from '../runtime.js';
import { gcPass, type GcReport } from './pass.js';

/** Settings of the loop. */
export interface GcLoopOptions {
  /** Seconds between passes. Default 30. */
  readonly intervalSeconds?: number;
  readonly minAgeSeconds?: number;
  /** Env ids the API still knows (called before every pass). */
  readonly liveIds?: () => Promise<Iterable<string>> | Iterable<string>;
  readonly supervise: RecoverOptions['supervise'];
  readonly metrics?: NodeMetrics;
  readonly onReport?: (r: GcReport) => void;
  readonly onError?: (err: unknown) => void;
  /** Stops the loop. */
  readonly signal: AbortSignal;
}

/** Run adoption once, then GC passes until `signal` aborts. Resolves when stopped. */
export async function runGcLoop(rt: Runtime, o: GcLoopOptions): Promise<void> {
  const interval = (o.intervalSeconds ?? 30) * 1000;
  await recover(rt, { supervise: o.supervise, ...(o.metrics ? { metrics: o.metrics } : {}) }).catch((e: unknown) => o.onError?.(e));
  while (!o.signal.aborted) {
    try {
      const live = o.liveIds ? await o.liveIds() : [];
      const report = await gcPass(rt, { liveIds: live, ...(o.minAgeSeconds !== undefined ? { minAgeSeconds: o.minAgeSeconds } : {}), ...(o.metrics ? { metrics: o.metrics } : {}) });
      o.onReport?.(report);
    } catch (err) {
      o.onError?.(err);
    }
    await new Promise<void>((res) => {
      const t = setTimeout(res, interval);
      o.signal.addEventListener('abort', () => (clearTimeout(t), res()), { once: true });
    });
  }
}
