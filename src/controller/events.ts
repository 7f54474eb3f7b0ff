/**
 * Kubernetes Events (events.k8s.io/v1) for every transition the controller
 * makes. Recording never blocks a reconcile: events go to a bounded queue
 * written by two background senders, which hold back (up to 5 s) while the
 * controller is busy (keys waiting, reconciles in flight), so a burst of binds
 * is not slowed by its own Events;
 * when the queue is full, new Events are dropped (and counted). Repeats of the same event (same object, reason and note) within 30
 * minutes are folded into one Event's `series` instead of creating new ones, the
 * way client-go's events recorder does, and the series is written at most every
 * 30 s per event.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { errorFields } from '../log.js';
import type { KubeClient } from './kube-client.js';
import type { ControllerMetrics } from './metrics.js';
import { REPORTING_CONTROLLER, microTime, type KubeObject } from './model.js';

export type EventType = 'Normal' | 'Warning';

/** Reasons of the controller's Events. */
export const EVENT_REASONS = {
  scheduled: 'Scheduled',
  failedScheduling: 'FailedScheduling',
  invalidSpec: 'InvalidSpec',
  nodeLost: 'NodeLost',
  deadlineExceeded: 'DeadlineExceeded',
  ttlExpired: 'TTLExpired',
  finalizerReleased: 'FinalizerReleased',
  stopped: 'Stopped',
} as const;

const SERIES_WINDOW_MS = 30 * 60_000;
const SERIES_WRITE_INTERVAL_MS = 30_000;
const MAX_REMEMBERED = 10_000;
const SENDERS = 2;

interface Remembered {
  name: string;
  namespace: string;
  count: number;
  first: number;
  lastWrite: number;
  created: boolean;
}

type Job = ({ kind: 'create'; body: Record<string, unknown>; memo: Remembered } | { kind: 'series'; memo: Remembered; at: number }) & { queuedAt: number };

/** While reconciles are waiting, Events wait too (at most this long): binding first, telling about it second. */
const MAX_DEFER_MS = 5_000;

/** Records Events about DisposableEnvs. */
export class EventRecorder {
  private readonly jobs: Job[] = [];
  private readonly memo = new Map<string, Remembered>();
  private running = 0;
  private idle: (() => void)[] = [];

  constructor(
    private readonly client: KubeClient,
    private readonly opts: {
      readonly identity: string;
      /** reportingController of the Events (default the controller's). */
      readonly reportingController?: string;
      readonly queueSize: number;
      readonly metrics?: ControllerMetrics;
      readonly logger: Logger;
      readonly now?: () => number;
      /** True while the controller has more urgent API work (keys waiting in its queue). */
      readonly busy?: () => boolean;
    },
  ) {}

  /** Queue an Event about `regarding`; returns at once. */
  record(regarding: KubeObject, type: EventType, reason: string, action: string, note: string): void {
    const now = (this.opts.now ?? Date.now)();
    const ns = regarding.metadata.namespace ?? 'default';
    const dedupKey = `${regarding.metadata.uid ?? regarding.metadata.name}\u0000${reason}\u0000${note}`;
    const seen = this.memo.get(dedupKey);
    if (seen && now - seen.first < SERIES_WINDOW_MS) {
      seen.count++;
      if (seen.created && now - seen.lastWrite >= SERIES_WRITE_INTERVAL_MS) {
        seen.lastWrite = now;
        this.enqueue({ kind: 'series', memo: seen, at: now, queuedAt: now });
      } else {
        this.opts.metrics?.events.inc({ result: 'series' });
      }
      return;
    }
    const name = `${regarding.metadata.name}.${now.toString(16)}${randomBytes(2).toString('hex')}`;
    const memo: Remembered = { name, namespace: ns, count: 1, first: now, lastWrite: now, created: false };
    this.memo.delete(dedupKey);
    this.memo.set(dedupKey, memo);
    if (this.memo.size > MAX_REMEMBERED) this.memo.delete(this.memo.keys().next().value as string);
    const body = {
      apiVersion: 'events.k8s.io/v1',
      kind: 'Event',
      metadata: { name, namespace: ns },
      eventTime: microTime(now),
      reportingController: this.opts.reportingController ?? REPORTING_CONTROLLER,
      reportingInstance: this.opts.identity,
      action,
      reason,
      type,
      note: note.slice(0, 1024),
      regarding: {
        apiVersion: regarding.apiVersion,
        kind: regarding.kind,
        name: regarding.metadata.name,
        namespace: regarding.metadata.namespace,
        uid: regarding.metadata.uid,
        resourceVersion: regarding.metadata.resourceVersion,
      },
    };
    this.enqueue({ kind: 'create', body, memo, queuedAt: now });
  }

  /** Waits until queued Events are written (or `timeoutMs` passes). */
  async flush(timeoutMs: number): Promise<void> {
    if (this.jobs.length === 0 && this.running === 0) return;
    await Promise.race([
      new Promise<void>((resolve) => this.idle.push(resolve)),
      new Promise<void>((resolve) => setTimeout(resolve, timeoutMs).unref()),
    ]);
  }

  private enqueue(job: Job): void {
    if (this.jobs.length >= this.opts.queueSize) {
      this.opts.metrics?.events.inc({ result: 'dropped' });
      return;
    }
    this.jobs.push(job);
    if (this.running < SENDERS) {
      this.running++;
      void this.drain();
    }
  }

  private async drain(): Promise<void> {
    for (let job = this.jobs.shift(); job; job = this.jobs.shift()) {
      while (this.opts.busy?.() && (this.opts.now ?? Date.now)() - job.queuedAt < MAX_DEFER_MS) {
        await new Promise((r) => setTimeout(r, 25));
      }
      try {
        if (job.kind === 'create') {
          await this.client.create(`/apis/events.k8s.io/v1/namespaces/${job.memo.namespace}/events`, job.body);
          job.memo.created = true;
          this.opts.metrics?.events.inc({ result: 'created' });
        } else {
          await this.client.mergePatch(`/apis/events.k8s.io/v1/namespaces/${job.memo.namespace}/events/${job.memo.name}`, {
            series: { count: job.memo.count, lastObservedTime: microTime(job.at) },
          });
          this.opts.metrics?.events.inc({ result: 'series' });
        }
      } catch (err) {
        // Events are best effort (e.g. the namespace is terminating): count and move on.
        this.opts.metrics?.events.inc({ result: 'failed' });
        this.opts.logger.debug('event not written', { event: job.memo.name, ...errorFields(err) });
      }
    }
    this.running--;
    if (this.running === 0) for (const w of this.idle.splice(0)) w();
  }
}
