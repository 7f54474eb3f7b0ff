/**
 * The controller's clocks, as pure functions of `now` and object fields: when an
 * env's deadline passes even if its agent is gone, when a node counts as lost,
 * when a finished env's TTL runs out, and when a lost node's finalizers may be
 * released. The reconciler turns the earliest future instant into a requeue.
 */
import type { EnvStatus } from '../api/env.js';
import type { LeaseObject } from './model.js';
import { timeOf } from './model.js';

/** The lifecycle fields the backstops read (validated spec values, in seconds). */
export interface LifecycleTimes {
  readonly timeoutSeconds: number;
  readonly gracePeriodSeconds: number;
  readonly ttlSecondsAfterFinished: number;
}

/**
 * When the controller fails a bound, unfinished env itself: the agent should have
 * ended it at start + timeout + grace; `slackMs` more covers clock skew and a slow
 * teardown. Counted from startTime, or scheduledTime if the agent never started it.
 */
export function deadlineAt(status: EnvStatus | undefined, lc: LifecycleTimes, slackMs: number): number | undefined {
  const base = timeOf(status?.startTime) ?? timeOf(status?.scheduledTime);
  if (base === undefined) return undefined;
  return base + (lc.timeoutSeconds + lc.gracePeriodSeconds) * 1000 + slackMs;
}

/** When a finished env is to be deleted; undefined until it has a finishTime. */
export function ttlExpiresAt(status: EnvStatus | undefined, lc: LifecycleTimes): number | undefined {
  const finished = timeOf(status?.finishTime);
  return finished === undefined ? undefined : finished + lc.ttlSecondsAfterFinished * 1000;
}

/** The last time the node's agent proved it was alive: the Lease's renewTime (else acquireTime, else creation). */
export function lastRenewal(lease: LeaseObject | undefined): number | undefined {
  if (!lease) return undefined;
  return timeOf(lease.spec?.renewTime) ?? timeOf(lease.spec?.acquireTime) ?? timeOf(lease.metadata.creationTimestamp);
}

/** The instant a node becomes lost: last renewal + timeout. A node without a Lease has always been lost (0). */
export function nodeLostAt(lease: LeaseObject | undefined, timeoutMs: number): number {
  const renewed = lastRenewal(lease);
  return renewed === undefined ? 0 : renewed + timeoutMs;
}

/** True when the node's agent is alive at `now`. */
export function nodeAlive(lease: LeaseObject | undefined, timeoutMs: number, now: number): boolean {
  return now < nodeLostAt(lease, timeoutMs);
}

/**
 * When a deleted env bound to a lost node loses its finalizer: `graceMs` after the
 * node was lost (the agent's GC reclaims the host if it ever returns). When the
 * node never had a Lease, the grace counts from the env's deletion.
 */
export function finalizerReleaseAt(lostAt: number, deletionTimestamp: string | undefined, graceMs: number): number {
  const base = lostAt > 0 ? lostAt : (timeOf(deletionTimestamp) ?? 0);
  return base + graceMs;
}

/**
 * When the controller removes the finalizer of a deleted env whose agent reported
 * Reclaimed=True but has not removed the finalizer itself (an agent that only
 * reports): `graceMs` after the later of the deletion and the Reclaimed transition.
 * The grace leaves the release to the agent, whose own patch normally lands first.
 */
export function reclaimedReleaseAt(deletionTimestamp: string | undefined, reclaimedAt: string | undefined, graceMs: number): number {
  return Math.max(timeOf(deletionTimestamp) ?? 0, timeOf(reclaimedAt) ?? 0) + graceMs;
}

/** Milliseconds from `now` until `at` (≥ 0); undefined stays undefined. */
export function timeLeft(now: number, at: number | undefined): number | undefined {
  return at === undefined ? undefined : Math.max(0, at - now);
}

/** The earliest of several optional instants that is still in the future (undefined if none). */
export function nextDeadline(now: number, ...instants: (number | undefined)[]): number | undefined {
  let best: number | undefined;
  for (const t of instants) {
    if (t === undefined || t <= now) continue;
    if (best === undefined || t < best) best = t;
  }
  return best;
}
