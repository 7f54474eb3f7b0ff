import { deadlineAt, finalizerReleaseAt, nextDeadline, reclaimedReleaseAt, nodeAlive, nodeLostAt, timeLeft, ttlExpiresAt } from '../../src/controller/backstops.js';
import type { LeaseObject } from '../../src/controller/model.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const at = (s: number): string => new Date(T0 + s * 1000).toISOString();
const lc = { timeoutSeconds: 60, gracePeriodSeconds: 10, ttlSecondsAfterFinished: 300 };
const lease = (renewedAt: number): LeaseObject => ({ metadata: { name: 'n1' }, spec: { renewTime: at(renewedAt) } });

describe('backstop timing (now as a parameter)', () => {
  it('deadline = start (or scheduled) + timeout + grace + slack', () => {
    expect(deadlineAt({ startTime: at(5), scheduledTime: at(0) }, lc, 30_000)).toBe(T0 + (5 + 60 + 10 + 30) * 1000);
    expect(deadlineAt({ scheduledTime: at(0) }, lc, 0)).toBe(T0 + 70_000);
    expect(deadlineAt({}, lc, 0)).toBeUndefined();
  });

  it('TTL counts from finishTime', () => {
    expect(ttlExpiresAt({ finishTime: at(100) }, lc)).toBe(T0 + 400_000);
    expect(ttlExpiresAt({ phase: 'Succeeded' }, lc)).toBeUndefined();
  });

  it('a node is lost once its Lease was not renewed for the timeout; without a Lease it always was', () => {
    expect(nodeLostAt(lease(0), 40_000)).toBe(T0 + 40_000);
    expect(nodeAlive(lease(0), 40_000, T0 + 39_999)).toBe(true);
    expect(nodeAlive(lease(0), 40_000, T0 + 40_000)).toBe(false);
    expect(nodeLostAt(undefined, 40_000)).toBe(0);
    expect(nodeLostAt({ metadata: { name: 'n', creationTimestamp: at(1) }, spec: {} }, 1000)).toBe(T0 + 2000);
  });

  it('releases finalizers a grace after the loss (or after deletion when there never was a Lease)', () => {
    expect(finalizerReleaseAt(T0 + 40_000, at(100), 60_000)).toBe(T0 + 100_000);
    expect(finalizerReleaseAt(0, at(100), 60_000)).toBe(T0 + 160_000);
  });

  it('leaves the release to an agent that reported Reclaimed=True for the grace, counted from the later of deletion and Reclaimed', () => {
    expect(reclaimedReleaseAt(at(100), at(40), 10_000)).toBe(T0 + 110_000);
    expect(reclaimedReleaseAt(at(100), at(130), 10_000)).toBe(T0 + 140_000);
    expect(reclaimedReleaseAt(at(100), undefined, 10_000)).toBe(T0 + 110_000);
  });

  it('picks the earliest future instant for the requeue', () => {
    expect(nextDeadline(T0, T0 + 5, undefined, T0 + 3, T0 - 1)).toBe(T0 + 3);
    expect(nextDeadline(T0, T0, undefined)).toBeUndefined();
    expect(timeLeft(T0, T0 + 50)).toBe(50);
    expect(timeLeft(T0, T0 - 50)).toBe(0);
  });
});
