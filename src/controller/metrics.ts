/**
 * Every controller metric, in one prom-client Registry owned by this module
 * (not the global one, so tests and a co-hosted agent never collide), each
 * named `disposable_env_…`.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PREFIX = 'disposable_env_';

/** Buckets from 1 ms to ~1 min, for reconcile, queue and API latencies. */
const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

/** The controller's metrics. `envCounts` is filled at scrape time from the cache. */
export class ControllerMetrics {
  readonly registry = new Registry();
  readonly reconciles: Counter<'result'>;
  readonly reconcileDuration: Histogram<'result'>;
  readonly queueDepth: Gauge;
  readonly queueAdds: Counter;
  readonly queueLatency: Histogram;
  readonly queueRetries: Counter;
  readonly envs: Gauge<'phase' | 'reason'>;
  readonly schedulingLatency: Histogram<'result'>;
  readonly schedulingAttempts: Counter<'result'>;
  readonly apiRequests: Counter<'verb' | 'resource' | 'code'>;
  readonly apiErrors: Counter<'verb' | 'resource' | 'code'>;
  readonly apiLatency: Histogram<'verb'>;
  readonly informerRestarts: Counter<'informer' | 'reason'>;
  readonly isLeader: Gauge;
  readonly leaderTransitions: Counter;
  readonly events: Counter<'result'>;
  readonly backstops: Counter<'action'>;

  constructor(envCounts: () => Map<string, number> = () => new Map(), processMetrics = true) {
    const registers = [this.registry];
    // Process figures (RSS, heap, event-loop lag, GC) under the same prefix.
    if (processMetrics) collectDefaultMetrics({ register: this.registry, prefix: PREFIX });
    this.reconciles = new Counter({
      name: `${PREFIX}reconciles_total`,
      help: 'Reconciles by result: success, requeue (a deadline is pending), conflict (stale cache, retried), error (retried with backoff), invalid (terminal).',
      labelNames: ['result'],
      registers,
    });
    this.reconcileDuration = new Histogram({
      name: `${PREFIX}reconcile_duration_seconds`,
      help: 'Time one reconcile took, by result.',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueDepth = new Gauge({ name: `${PREFIX}workqueue_depth`, help: 'Keys waiting in the work queue.', registers });
    this.queueAdds = new Counter({ name: `${PREFIX}workqueue_adds_total`, help: 'Keys added to the work queue.', registers });
    this.queueLatency = new Histogram({
      name: `${PREFIX}workqueue_queue_duration_seconds`,
      help: 'How long a key waited in the queue before a worker took it.',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.queueRetries = new Counter({ name: `${PREFIX}workqueue_retries_total`, help: 'Keys re-queued with backoff after a failed reconcile.', registers });
    this.envs = new Gauge({
      name: `${PREFIX}envs`,
      help: 'DisposableEnvs in the cache, by phase and reason.',
      labelNames: ['phase', 'reason'],
      registers,
      collect(): void {
        this.reset();
        for (const [k, n] of envCounts()) {
          const [phase = '', reason = ''] = k.split('\u0000');
          this.set({ phase, reason }, n);
        }
      },
    });
    this.schedulingLatency = new Histogram({
      name: `${PREFIX}scheduling_duration_seconds`,
      help: 'From the creation of an env to its binding (result=scheduled), or to the Unschedulable verdict.',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.schedulingAttempts = new Counter({
      name: `${PREFIX}scheduling_attempts_total`,
      help: 'Scheduling decisions by result: scheduled, unschedulable.',
      labelNames: ['result'],
      registers,
    });
    this.apiRequests = new Counter({
      name: `${PREFIX}api_requests_total`,
      help: 'Requests to the API server by verb (get, list, watch, create, update, patch, apply, delete), resource and HTTP code (0: no response).',
      labelNames: ['verb', 'resource', 'code'],
      registers,
    });
    this.apiErrors = new Counter({
      name: `${PREFIX}api_errors_total`,
      help: 'Requests to the API server that failed (code 0 or ≥ 400), by verb, resource and code.',
      labelNames: ['verb', 'resource', 'code'],
      registers,
    });
    this.apiLatency = new Histogram({
      name: `${PREFIX}api_request_duration_seconds`,
      help: 'API request latency by verb (watches excluded).',
      labelNames: ['verb'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.informerRestarts = new Counter({
      name: `${PREFIX}informer_restarts_total`,
      help: 'List/watch restarts by informer and reason (gone: 410 relist, error: backoff).',
      labelNames: ['informer', 'reason'],
      registers,
    });
    this.isLeader = new Gauge({ name: `${PREFIX}leader`, help: '1 while this replica is the leader.', registers });
    this.leaderTransitions = new Counter({ name: `${PREFIX}leader_acquisitions_total`, help: 'Times this replica became leader.', registers });
    this.events = new Counter({
      name: `${PREFIX}events_total`,
      help: 'Kubernetes Events by result: created, series (repeat folded into an existing Event), dropped (queue full), failed.',
      labelNames: ['result'],
      registers,
    });
    this.backstops = new Counter({
      name: `${PREFIX}backstop_actions_total`,
      help: 'Actions taken by the backstops: node_lost, deadline_exceeded, ttl_deleted, finalizer_released_reclaimed, finalizer_released_node_lost, finalizer_released_unbound.',
      labelNames: ['action'],
      registers,
    });
  }

  /** The request observer for KubeClient. */
  observeRequest = (verb: string, resource: string, code: number, seconds: number): void => {
    this.apiRequests.inc({ verb, resource, code: String(code) });
    if (code === 0 || code >= 400) this.apiErrors.inc({ verb, resource, code: String(code) });
    if (verb !== 'watch') this.apiLatency.observe({ verb }, seconds);
  };
}
