/**
 * One DisposableEnv reconcile, level-triggered and idempotent: it reads the env
 * from the cache by key and converges it, in the order STYLE.md gives —
 * fetch → finalize if deleting → validate → schedule (or keep the binding) →
 * backstops → compute the controller's status in one pure function → write only
 * what differs → TTL → return when to look again. Calling it twice in a row
 * writes nothing the second time.
 */
import type { Logger } from 'winston';
import { API_VERSION, ENV_KIND, ENV_PLURAL, FINALIZER, GROUP, NODE_LABEL, VERSION } from '../api/constants.js';
import type { EnvSpec } from '../api/env.js';
import { validateSpec } from '../api/validate.js';
import type { AllocationView } from './allocation.js';
import { deadlineAt, finalizerReleaseAt, nextDeadline, reclaimedReleaseAt, ttlExpiresAt, type LifecycleTimes } from './backstops.js';
import type { Strategy } from './config.js';
import { EVENT_REASONS, type EventType } from './events.js';
import type { WriteExpectations } from './expectations.js';
import { isNotFound, type KubeClient } from './kube-client.js';
import type { ControllerMetrics } from './metrics.js';
import {
  FIELD_MANAGER,
  boundNode,
  conditionOf,
  hasFinalizer,
  isFinished,
  keyOf,
  rfc3339,
  timeOf,
  visibleToAgent,
  type EnvObject,
  type OwnedStatus,
} from './model.js';
import type { NodeMonitor } from './nodes.js';
import { requestOf, schedule, type EnvRequest } from './scheduler.js';
import { desiredStatus, statusNeedsWrite, type ControllerStatus, type Verdict } from './status.js';

/** What the worker does after a reconcile. */
export interface Outcome {
  /** success: converged; requeue: a deadline is pending; waiting: for the cache or the agent; invalid: terminal spec error. */
  readonly result: 'success' | 'requeue' | 'waiting' | 'invalid';
  readonly requeueAfterMs?: number;
}

export interface ReconcilerOptions {
  readonly strategy: Strategy;
  readonly nodeLeaseTimeoutMs: number;
  readonly nodeLostFinalizerGraceMs: number;
  /** How long an agent that reported Reclaimed=True has to remove the finalizer itself before the controller does. */
  readonly reclaimedFinalizerGraceMs: number;
  readonly deadlineSlackMs: number;
}

/** Records Events (EventRecorder, or a test double that keeps them). */
export interface EventSink {
  record(regarding: EnvObject, type: EventType, reason: string, action: string, note: string): void;
}

export interface ReconcilerDeps {
  readonly client: KubeClient;
  readonly envs: { get(key: string): EnvObject | undefined };
  readonly nodes: NodeMonitor;
  readonly allocation: AllocationView;
  readonly expectations: WriteExpectations;
  readonly events: EventSink;
  readonly owned: (env: EnvObject) => OwnedStatus;
  /** Keys of envs waiting for a node; re-queued when nodes change. */
  readonly unschedulable: Set<string>;
  readonly metrics?: ControllerMetrics;
  readonly now?: () => number;
}

/**
 * What the controller keeps of a validated spec: only the facts it acts on, not
 * the defaulted spec itself (the informer already holds the raw object, and a
 * second full copy per env would double the cache's memory).
 */
export type SpecFacts =
  | { readonly ok: true; readonly lifecycle: LifecycleTimes; readonly request: EnvRequest; readonly stop: boolean }
  | { readonly ok: false; readonly problems: string[]; readonly lifecycle: LifecycleTimes };

/** Validates a spec with zod and keeps the facts the controller needs. */
export function specFacts(spec: unknown): SpecFacts {
  const v = validateSpec(spec);
  if (!v.ok) return { ok: false, problems: v.problems, lifecycle: lifecycleOf(spec, v) };
  const { timeoutSeconds, gracePeriodSeconds, ttlSecondsAfterFinished } = v.value.lifecycle;
  return { ok: true, lifecycle: { timeoutSeconds, gracePeriodSeconds, ttlSecondsAfterFinished }, request: requestOf(v.value), stop: v.value.stop };
}

/** Re-check a key whose own write the cache has not shown yet, in case the event never comes. */
const EXPECTATION_SAFETY_MS = 31_000;

/** Lifecycle defaults, used when an invalid spec has no usable values. */
const DEFAULT_LIFECYCLE: LifecycleTimes = { timeoutSeconds: 3600, gracePeriodSeconds: 30, ttlSecondsAfterFinished: 300 };

/** The lifecycle of a spec: validated values, or for an invalid spec whatever integers it has over the defaults. */
export function lifecycleOf(spec: unknown, validated: { ok: true; value: EnvSpec } | { ok: false }): LifecycleTimes {
  if (validated.ok) return validated.value.lifecycle;
  const raw = ((spec as { lifecycle?: Record<string, unknown> } | undefined)?.lifecycle ?? {});
  const pick = (k: keyof LifecycleTimes): number => (Number.isSafeInteger(raw[k]) && (raw[k] as number) >= 0 ? (raw[k] as number) : DEFAULT_LIFECYCLE[k]);
  return { timeoutSeconds: pick('timeoutSeconds'), gracePeriodSeconds: pick('gracePeriodSeconds'), ttlSecondsAfterFinished: pick('ttlSecondsAfterFinished') };
}

/** API path of one env (or its status subresource). */
export function envPath(namespace: string, name: string, sub?: 'status'): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${ENV_PLURAL}/${name}${sub ? `/${sub}` : ''}`;
}

/** Does one reconcile per call; holds the validated-spec cache. */
export class Reconciler {
  private readonly specs = new Map<string, { uid: string | undefined; generation: number | undefined; result: SpecFacts }>();

  constructor(
    private readonly deps: ReconcilerDeps,
    private readonly opts: ReconcilerOptions,
  ) {}

  private now(): number {
    return (this.deps.now ?? Date.now)();
  }

  /** Forget per-key state of an env that is gone. */
  forget(key: string): void {
    this.specs.delete(key);
    this.deps.unschedulable.delete(key);
    this.deps.allocation.remove(key);
    this.deps.expectations.clear(key);
  }

  /**
   * How a cached env counts in the allocation view: its node (label or
   * status.nodeName), whether it holds room there (bound and unfinished), and its
   * memory.max in bytes.
   */
  allocationOf(key: string, env: EnvObject): { node: string | undefined; holding: boolean; memory: number } {
    const node = boundNode(env);
    if (node === undefined) return { node, holding: false, memory: 0 };
    const v = this.validate(key, env);
    return { node, holding: !isFinished(env.status), memory: v.ok ? v.request.memoryBytes : 0 };
  }

  /** Validates an env's spec into the facts cache (the informer calls this before it drops the spec). */
  prime(key: string, env: EnvObject): void {
    this.validate(key, env);
  }

  /** zod validation, cached per uid and generation (the spec cannot change without a new generation). */
  private validate(key: string, env: EnvObject): SpecFacts {
    const hit = this.specs.get(key);
    if (hit && hit.uid === env.metadata.uid && hit.generation === env.metadata.generation) return hit.result;
    const result = specFacts(env.spec);
    this.specs.set(key, { uid: env.metadata.uid, generation: env.metadata.generation, result });
    return result;
  }

  /** Converge the env with this key. Throws on API errors (the worker retries with backoff). */
  async reconcile(key: string, log: Logger): Promise<Outcome> {
    const env = this.deps.envs.get(key);
    if (!env) {
      this.forget(key);
      return { result: 'success' };
    }
    const now = this.now();
    if (this.deps.expectations.waiting(key, env.metadata.resourceVersion, now)) {
      log.debug('waiting for the cache to show the last write');
      // The informer event carrying our write brings the key back; this requeue is only a safety net.
      return { result: 'waiting', requeueAfterMs: EXPECTATION_SAFETY_MS };
    }
    if (env.metadata.deletionTimestamp) return this.finalize(env, now, log);

    const validated = this.validate(key, env);
    const lifecycle = validated.lifecycle;
    const node = boundNode(env);
    let verdict: Verdict;
    if (node !== undefined) {
      verdict = { kind: 'bound', node, backstop: this.backstop(env, node, lifecycle, now) };
      if (!validated.ok) log.warn('bound env has an invalid spec; keeping its binding', { problems: validated.problems });
    } else if (!validated.ok) {
      verdict = { kind: 'invalid', problems: validated.problems };
    } else if (isFinished(env.status)) {
      // Ended by the controller before it was bound (InvalidSpec, Stopped): terminal, even if the spec is valid now.
      verdict = { kind: 'ended' };
    } else if (validated.stop) {
      verdict = { kind: 'stopped' };
    } else {
      verdict = this.place(key, env, validated.request, now);
    }

    const desired = desiredStatus(verdict, env.status, this.deps.owned(env), env.metadata.generation ?? 0, now);
    const wrote = await this.writeStatus(key, env, desired, log);
    this.announce(env, verdict, desired, wrote, now);

    if (verdict.kind === 'bound') {
      await this.ensureBinding(key, env, verdict.node, wrote, log);
    } else if (verdict.kind === 'unschedulable') {
      this.deps.unschedulable.add(key);
    }
    if (verdict.kind !== 'unschedulable') this.deps.unschedulable.delete(key);

    // TTL: a finished env is deleted ttlSecondsAfterFinished after its finishTime.
    const status = wrote ? { ...env.status, ...desired } : env.status;
    const ttlAt = isFinished(status) ? ttlExpiresAt(status, lifecycle) : undefined;
    if (ttlAt !== undefined && now >= ttlAt) {
      await this.deleteExpired(env, lifecycle, log);
      return { result: 'success' };
    }
    const deadline = verdict.kind === 'bound' && !isFinished(status) ? deadlineAt(status, lifecycle, this.opts.deadlineSlackMs) : undefined;
    const next = nextDeadline(now, ttlAt, deadline);
    // An invalid spec is terminal: nothing is retried, only the TTL (if any) brings the env back.
    const result = verdict.kind === 'invalid' ? 'invalid' : next === undefined ? 'success' : 'requeue';
    return next === undefined ? { result } : { result, requeueAfterMs: next - now };
  }

  /** A backstop that ends a bound, unfinished env even if its agent is gone. */
  private backstop(env: EnvObject, node: string, lc: LifecycleTimes, now: number): Extract<Verdict, { kind: 'bound' }>['backstop'] {
    if (isFinished(env.status)) return undefined;
    const lostAt = this.deps.nodes.lostAt(node);
    if (now >= lostAt) {
      const renewed = this.deps.nodes.lease(node)?.spec?.renewTime;
      return {
        reason: 'NodeLost',
        message: renewed
          ? `node ${node} is lost: its agent last renewed Lease ${node} at ${renewed} (timeout ${this.opts.nodeLeaseTimeoutMs / 1000}s)`
          : `node ${node} is lost: its agent has no Lease`,
      };
    }
    const deadline = deadlineAt(env.status, lc, this.opts.deadlineSlackMs);
    if (deadline !== undefined && now >= deadline) {
      return {
        reason: 'DeadlineExceeded',
        message: `the agent on node ${node} did not end the env within timeoutSeconds (${lc.timeoutSeconds}) + gracePeriodSeconds (${lc.gracePeriodSeconds}) + ${this.opts.deadlineSlackMs / 1000}s slack; ended by the controller`,
      };
    }
    return undefined;
  }

  /** Filter and score; on a fit, count the env on that node now (before the write lands). */
  private place(key: string, env: EnvObject, req: EnvRequest, now: number): Verdict {
    const placement = schedule(this.deps.nodes.infos(now), req, this.opts.strategy);
    const created = timeOf(env.metadata.creationTimestamp);
    if (!placement.ok) {
      this.deps.metrics?.schedulingAttempts.inc({ result: 'unschedulable' });
      return { kind: 'unschedulable', message: placement.message };
    }
    this.deps.allocation.assume(key, placement.node, req.memoryBytes);
    this.deps.metrics?.schedulingAttempts.inc({ result: 'scheduled' });
    if (created !== undefined) this.deps.metrics?.schedulingLatency.observe({ result: 'scheduled' }, Math.max(0, now - created) / 1000);
    return { kind: 'bound', node: placement.node };
  }

  /** Server-side apply of the controller's status fields, only when they differ. True when written. */
  private async writeStatus(key: string, env: EnvObject, desired: ControllerStatus, log: Logger): Promise<boolean> {
    if (!statusNeedsWrite(env.status, this.deps.owned(env), desired)) return false;
    const { name, namespace = '' } = env.metadata;
    const body = {
      apiVersion: API_VERSION,
      kind: ENV_KIND,
      // resourceVersion makes the apply conditional: decisions from a stale cache fail with 409 and are retried.
      metadata: { name, namespace, resourceVersion: env.metadata.resourceVersion },
      status: desired,
    };
    try {
      const out = await this.deps.client.apply<EnvObject>(envPath(namespace, name, 'status'), body, FIELD_MANAGER);
      this.deps.expectations.expect(key, out.metadata.resourceVersion, this.now());
      log.debug('status written', { phase: desired.phase, reason: desired.reason, node: desired.nodeName });
      return true;
    } catch (err) {
      this.deps.allocation.forget(key);
      throw new Error(`Status: unable to apply status of ${key}`, { cause: err });
    }
  }

  /** Label + finalizer, in one server-side apply, after the status names the node. */
  private async ensureBinding(key: string, env: EnvObject, node: string, statusWritten: boolean, log: Logger): Promise<void> {
    if (env.metadata.labels?.[NODE_LABEL] === node && hasFinalizer(env)) return;
    if (!statusWritten && env.status?.nodeName !== node) return;
    const { name, namespace = '' } = env.metadata;
    const body = { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace, labels: { [NODE_LABEL]: node }, finalizers: [FINALIZER] } };
    try {
      const out = await this.deps.client.apply<EnvObject>(envPath(namespace, name), body, FIELD_MANAGER);
      this.deps.expectations.expect(key, out.metadata.resourceVersion, this.now());
      log.debug('binding label and finalizer set', { node });
    } catch (err) {
      throw new Error(`Bind: unable to set the node label and finalizer of ${key}`, { cause: err });
    }
  }

  /** Events for what this reconcile changed (and for every failed scheduling attempt, folded into a series). */
  private announce(env: EnvObject, verdict: Verdict, desired: ControllerStatus, wrote: boolean, now: number): void {
    const before = env.status;
    const ev = this.deps.events;
    if (!wrote && verdict.kind !== 'unschedulable') return;
    switch (verdict.kind) {
      case 'bound':
        if (verdict.backstop && before?.reason !== verdict.backstop.reason) {
          const reason = verdict.backstop.reason === 'NodeLost' ? EVENT_REASONS.nodeLost : EVENT_REASONS.deadlineExceeded;
          ev.record(env, 'Warning', reason, 'Fail', verdict.backstop.message);
          this.deps.metrics?.backstops.inc({ action: verdict.backstop.reason === 'NodeLost' ? 'node_lost' : 'deadline_exceeded' });
        } else if (before?.nodeName !== verdict.node) {
          const created = timeOf(env.metadata.creationTimestamp);
          const took = created === undefined ? '' : ` (${Math.max(0, (now - created) / 1000).toFixed(1)}s after creation)`;
          ev.record(env, 'Normal', EVENT_REASONS.scheduled, 'Bind', `bound to node ${verdict.node}${took}`);
        }
        break;
      case 'unschedulable':
        ev.record(env, 'Warning', EVENT_REASONS.failedScheduling, 'Schedule', verdict.message);
        break;
      case 'invalid':
        if (desired.message && desired.message !== before?.message) ev.record(env, 'Warning', EVENT_REASONS.invalidSpec, 'Validate', desired.message);
        break;
      case 'stopped':
        if (before?.reason !== 'Stopped') ev.record(env, 'Normal', EVENT_REASONS.stopped, 'Stop', desired.message ?? 'stopped');
        break;
      case 'ended':
        break;
    }
  }

  /** Deletes an env whose TTL ran out (conditional on its uid: a recreated env of the same name is not touched). */
  private async deleteExpired(env: EnvObject, lc: LifecycleTimes, log: Logger): Promise<void> {
    const { name, namespace = '', uid } = env.metadata;
    try {
      const out = await this.deps.client.delete(envPath(namespace, name), uid ? { uid } : undefined);
      // Held by the finalizer: wait for the cache to show the deletion before looking again.
      if (typeof out === 'object') this.deps.expectations.expect(keyOf(env.metadata), out.metadata?.resourceVersion, this.now());
    } catch (err) {
      throw new Error(`TTL: unable to delete ${keyOf(env.metadata)}`, { cause: err });
    }
    this.deps.metrics?.backstops.inc({ action: 'ttl_deleted' });
    this.deps.events.record(env, 'Normal', EVENT_REASONS.ttlExpired, 'Delete', `deleted ${lc.ttlSecondsAfterFinished}s after it finished (ttlSecondsAfterFinished)`);
    log.info('deleted after its TTL', { ttlSecondsAfterFinished: lc.ttlSecondsAfterFinished });
  }

  /**
   * Deletion. The agent removes the finalizer of a bound env itself once it has
   * confirmed that every host resource is gone (as the kubelet finishes a Pod's
   * deletion), so the controller only releases it where the agent cannot: an env
   * no agent could see (at once), an env whose agent reported Reclaimed=True but
   * did not release it (after --reclaimed-finalizer-grace), and an env whose node
   * has been lost for --node-lost-finalizer-grace (the node's GC reclaims if it
   * comes back). So deletion never hangs on a missing agent.
   */
  private async finalize(env: EnvObject, now: number, log: Logger): Promise<Outcome> {
    if (!hasFinalizer(env)) return { result: 'success' };
    const node = visibleToAgent(env) ? env.metadata.labels?.[NODE_LABEL] : undefined;
    if (node === undefined) {
      await this.releaseFinalizer(env, 'unbound', log);
      return { result: 'success' };
    }
    const reclaimed = conditionOf(env.status, 'Reclaimed');
    if (reclaimed?.status === 'True') {
      const at = reclaimedReleaseAt(env.metadata.deletionTimestamp, reclaimed.lastTransitionTime, this.opts.reclaimedFinalizerGraceMs);
      if (now < at) return { result: 'requeue', requeueAfterMs: at - now };
      await this.releaseFinalizer(env, 'reclaimed', log);
      return { result: 'success' };
    }
    const lostAt = this.deps.nodes.lostAt(node);
    if (now < lostAt) return { result: 'waiting' }; // the agent is alive: its Reclaimed update (or the node's loss) brings us back
    const releaseAt = finalizerReleaseAt(lostAt, env.metadata.deletionTimestamp, this.opts.nodeLostFinalizerGraceMs);
    if (now < releaseAt) return { result: 'requeue', requeueAfterMs: releaseAt - now };
    await this.releaseFinalizer(env, 'node_lost', log);
    this.deps.events.record(
      env,
      'Warning',
      EVENT_REASONS.finalizerReleased,
      'Release',
      `node ${node} lost since ${rfc3339(lostAt)}; finalizer released after ${this.opts.nodeLostFinalizerGraceMs / 1000}s without Reclaimed=True (the node's GC reclaims its host resources if it returns)`,
    );
    return { result: 'success' };
  }

  /** Removes exactly our finalizer (JSON patch with a test, so a concurrent change of the list fails instead of clobbering). */
  private async releaseFinalizer(env: EnvObject, why: 'unbound' | 'reclaimed' | 'node_lost', log: Logger): Promise<void> {
    const i = env.metadata.finalizers?.indexOf(FINALIZER) ?? -1;
    if (i < 0) return;
    const { name, namespace = '' } = env.metadata;
    try {
      const out = await this.deps.client.jsonPatch<EnvObject>(envPath(namespace, name), [
        { op: 'test', path: `/metadata/finalizers/${i}`, value: FINALIZER },
        { op: 'remove', path: `/metadata/finalizers/${i}` },
      ]);
      // Until the cache shows this (usually: the object is gone), do not try again from the stale copy.
      this.deps.expectations.expect(keyOf(env.metadata), out?.metadata.resourceVersion, this.now());
    } catch (err) {
      if (isNotFound(err)) return; // already gone: nothing left to release
      throw new Error(`Finalizer: unable to remove ${FINALIZER} from ${keyOf(env.metadata)}`, { cause: err });
    }
    this.deps.metrics?.backstops.inc({ action: `finalizer_released_${why}` });
    log.info('finalizer released', { why });
  }
}
