/**
 * What the agent does for each env of its node, one reconcile at a time per
 * env: create on bind (after the spec and the node policy allow it),
 * supervise in this process, stop on deletion, `spec.stop`, a controller's
 * backstop end or a binding that went away, report the status with
 * server-side apply, release the finalizer after the verified teardown, and
 * record Events. It holds what the agent remembers per env ({@link Tracked});
 * the process wiring (informer, queue, registration, GC loop) is agent.ts.
 */
import type { Logger } from 'winston';
import { isTerminalPhase, NODE_LABEL } from '../../src/api/constants.js';
import { EnvSpecSchema, type EnvSpec } from '../../src/api/env.js';
import type { EventRecorder, EventType } from '../../src/controller/events.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import { FIELD_MANAGER as CONTROLLER_FIELD_MANAGER, ownedStatusOf, rfc3339, type EnvObject } from '../../src/controller/model.js';
import type { WorkQueue } from '../../src/controller/queue.js';
import { errorFields } from '../../src/log.js';
import { isFinished, outstanding, type EnvRecord } from '../journal.js';
import { usageFromStats } from '../lifecycle.js';
import type { NodeMetrics } from '../metrics.js';
import { PreflightError } from '../preflight.js';
import { CreateError, type Runtime } from '../runtime.js';
import { supervise } from '../supervisor.js';
import type { AgentConfig } from './config.js';
import { applyEnvStatus, releaseFinalizer } from './env-api.js';
import { agentStatus, agentStatusDiffers, type AgentStatus, type EnvFacts } from './env-status.js';
import { memoryOf, policyProblems, type Allocation } from './policy.js';
import { applyDefaultLimits, limitProblems, skippedText } from '../limits.js';
import { envIdForUid, keyOfTracked, track, type Tracked } from './tracked.js';

/** A Creating phase shorter than this is never written: Running follows at once (one write, not two). */
const CREATING_WRITE_DELAY_MS = 500;

/** Events the agent records at an env's end, by its reason (a clean exit has only Reclaimed). */
const FINISH_EVENTS: Partial<Record<string, EventType>> = {
  OOMKilled: 'Warning',
  DeadlineExceeded: 'Warning',
  IdleTimeout: 'Warning',
  ResourceExceeded: 'Warning',
  Error: 'Warning',
  Stopped: 'Normal',
  CreateFailed: 'Warning',
  PolicyDenied: 'Warning',
  InvalidSpec: 'Warning',
  HostStateLost: 'Warning',
};

/** What the driver needs from the agent process. */
export interface DriverContext {
  readonly config: AgentConfig;
  readonly client: KubeClient;
  readonly rt: Runtime;
  readonly metrics: NodeMetrics;
  readonly queue: WorkQueue;
  readonly logger: Logger;
  readonly events: EventRecorder | undefined;
  /** The env informer's cached object of a key. */
  readonly cached: (key: string) => EnvObject | undefined;
  /** Memory the node offers to envs. */
  readonly offeredMemory: () => number;
  /** True once the agent is stopping: no new supervision starts. */
  readonly stopping: () => boolean;
}

/** The per-env half of the agent. */
export class EnvDriver {
  readonly tracked = new Map<string, Tracked>();

  constructor(private readonly ctx: DriverContext) {}

  private get config(): AgentConfig {
    return this.ctx.config;
  }

  private get rt(): Runtime {
    return this.ctx.rt;
  }

  private get logger(): Logger {
    return this.ctx.logger;
  }

  /** Index an env found in the journal (adoption, at start). */
  remember(r: EnvRecord): boolean {
    if (r.source.kind !== 'kubernetes') return false;
    const t = track(r.id, r.source.uid, r.source.namespace, r.source.name, r.class);
    t.record = r;
    t.createBegun = Date.parse(r.createdAt);
    this.tracked.set(r.id, t);
    return true;
  }

  /** Re-read an env's record after adoption acted on it. */
  async refresh(id: string): Promise<void> {
    const t = this.tracked.get(id);
    if (t) t.record = (await this.rt.journal.read(id)) ?? t.record;
  }

  /** Supervise env `id` in this process (adoption found it running with no supervisor alive). */
  adopt(id: string): void {
    const t = this.tracked.get(id);
    if (t) this.superviseEnv(t);
  }

  private byKey(key: string): Tracked | undefined {
    let found: Tracked | undefined;
    for (const t of this.tracked.values()) if (keyOfTracked(t) === key && (!found || (t.createBegun ?? 0) > (found.createBegun ?? 0))) found = t;
    return found;
  }

  /** One reconcile of one env; returns "again after N ms" or undefined. */
  async reconcile(key: string): Promise<number | undefined> {
    const env = this.ctx.cached(key);
    if (!env) {
      // gone from the API, or no longer bound here: whatever still runs for it stops
      const t = this.byKey(key);
      if (t && t.record && !isFinished(t.record)) this.requestStop(t, 'the env is no longer in the API or no longer bound to this node');
      return undefined;
    }
    const uid = env.metadata.uid ?? '';
    if (env.status?.nodeName !== this.config.node || env.metadata.labels?.[NODE_LABEL] !== this.config.node || !uid) return undefined;
    const id = envIdForUid(uid);
    let t = this.tracked.get(id);
    // another object of the same name that ran here before is not this one
    const stale = this.byKey(key);
    if (stale && stale.uid !== uid && stale.record && !isFinished(stale.record)) this.requestStop(stale, 'the env was deleted and re-created');
    // a create in flight enqueues the key again when it is done
    if (t?.creating) return undefined;
    if (env.metadata.deletionTimestamp) return this.reconcileDeletion(env, t);
    if (!t) {
      const phase = env.status?.phase;
      if (phase === 'Scheduled') {
        t = track(id, uid, env.metadata.namespace ?? 'default', env.metadata.name, classOf(env));
        this.tracked.set(id, t);
        this.startCreate(t, env, key);
        return undefined;
      } else if (phase === 'Creating' || phase === 'Running' || phase === 'Terminating') {
        // started here once, but the node has no trace of it: report, never run it a second time
        t = track(id, uid, env.metadata.namespace ?? 'default', env.metadata.name, 'default');
        t.refusal = { phase: 'Failed', reason: 'HostStateLost', message: `the API shows it ${phase} on node ${this.config.node}, but the node has no record of it (its state dir was lost); it is not run again`, finishTime: rfc3339(Date.now()), reclaimed: true };
        this.tracked.set(id, t);
        this.event(env, t, 'Warning', 'HostStateLost', t.refusal.message ?? '');
      } else {
        return undefined;
      }
    }
    if (t.record && !isFinished(t.record)) {
      if (this.controllerEnded(env)) this.requestStop(t, `ended by the controller: ${env.status?.reason ?? ''} ${env.status?.message ?? ''}`.trim());
      else if ((env.spec as { stop?: unknown } | undefined)?.stop === true) this.requestStop(t, 'spec.stop is true');
      if (!t.supervision && t.record.phase !== 'Creating') this.superviseEnv(t);
    }
    return this.writeStatus(env, t);
  }

  /** True when the controller took the phase back to end the env by a backstop (docs/controller.md). */
  private controllerEnded(env: EnvObject): boolean {
    return isTerminalPhase(env.status?.phase) && ownedStatusOf(env.metadata.managedFields, CONTROLLER_FIELD_MANAGER).fields.has('phase');
  }

  private async reconcileDeletion(env: EnvObject, t: Tracked | undefined): Promise<number | undefined> {
    if (t?.record) {
      if (!isFinished(t.record)) {
        this.requestStop(t, 'the DisposableEnv was deleted');
        if (!t.supervision) this.superviseEnv(t);
        return undefined; // the end of the supervision enqueues the key again
      }
      if (outstanding(t.record).length) {
        // a teardown that left something: try again, and say so
        const leaks = await this.rt.teardown(t.id);
        t.record = (await this.rt.journal.read(t.id)) ?? t.record;
        if (leaks.length) {
          await this.writeStatus(env, t);
          return this.config.gcInterval;
        }
      }
    }
    if (t?.released) return undefined;
    if (await releaseFinalizer(this.ctx.client, env, this.ctx.metrics)) {
      if (t) {
        t.released = true;
        this.event(env, t, 'Normal', 'Reclaimed', 'every host resource of the env is gone; finalizer released');
      }
    }
    if (t) await this.forget(t);
    return undefined;
  }

  /** Drop an env the API no longer has: its journal record (nothing left on the host) and its metrics. */
  private async forget(t: Tracked): Promise<void> {
    if (t.record && (!isFinished(t.record) || outstanding(t.record).length)) return;
    if (t.record) await this.rt.journal.forget(t.id).catch(() => undefined);
    this.ctx.metrics.dropEnv({ namespace: t.namespace, name: t.name, class: t.klass });
    this.tracked.delete(t.id);
  }

  allocation(): Allocation {
    let envs = 0;
    let memoryBytes = 0;
    for (const t of this.tracked.values()) {
      // an env whose create passed the policy but has no journal record yet holds its room too
      const held = t.record ? !isFinished(t.record) : t.createBegun !== undefined && !t.refusal;
      if (!held) continue;
      envs++;
      memoryBytes += t.record ? memoryOf(t.record.spec) : (t.memoryMaxBytes ?? 0);
    }
    return { envs, memoryBytes };
  }

  /**
   * Run the create outside the worker: envs bound at once are created together (as many as the runtime
   * takes), and a slow create keeps no other env's write or deletion waiting. An unexpected error forgets
   * the attempt (the runtime rolled back what it made) and retries it with backoff.
   */
  private startCreate(t: Tracked, env: EnvObject, key: string): void {
    // the flag is cleared before the key is queued again: that reconcile must see the create as done
    const done = (retry: boolean): void => {
      t.creating = undefined;
      if (this.ctx.stopping()) return;
      if (retry) this.ctx.queue.addRateLimited(key);
      else this.ctx.queue.add(key);
    };
    t.creating = this.create(t, env).then(
      () => done(false),
      (err: unknown) => {
        this.logger.warn('create failed; retrying', { env: key, envId: t.id, ...errorFields(err) });
        if (!t.record) this.tracked.delete(t.id);
        done(true);
      },
    );
  }

  /** Wait for the creates in flight (the agent's stop: a create cut off mid-way would be rolled back by the next agent). */
  async settle(): Promise<void> {
    await Promise.allSettled([...this.tracked.values()].flatMap((t) => (t.creating ? [t.creating] : [])));
  }

  /** Validate, check policy, create on the host, start supervising. A refusal creates nothing. */
  private async create(t: Tracked, env: EnvObject): Promise<void> {
    const refuse = (reason: 'InvalidSpec' | 'PolicyDenied' | 'CreateFailed', message: string): void => {
      t.refusal = { phase: 'Failed', reason, message, finishTime: rfc3339(Date.now()), reclaimed: true };
      this.event(env, t, 'Warning', reason, message);
      this.logger.warn('env refused', { env: keyOfTracked(t), reason, message });
    };
    const parsed = EnvSpecSchema.safeParse(env.spec);
    if (!parsed.success) {
      refuse('InvalidSpec', `invalid spec: ${parsed.error.issues.map((i) => `spec.${i.path.join('.')}: ${i.message}`).join('; ')}`);
      return;
    }
    // the node's default limits fill what the env leaves unset, then its caps bound what it asks
    const defaulted = applyDefaultLimits(parsed.data, this.config.defaultLimits, await this.rt.unenforceableLimits(this.config.defaultLimits));
    const spec: EnvSpec = defaulted.spec;
    if (defaulted.skipped.length) this.logger.info('default limits skipped', { env: keyOfTracked(t), skipped: skippedText(defaulted.skipped) });
    const problems = [...limitProblems(spec, this.config.maxLimits), ...policyProblems(spec, { allowedHostPaths: this.config.allowedHostPaths, maxEnvs: this.config.maxEnvs, memoryBytes: this.ctx.offeredMemory() }, this.allocation())];
    if (problems.length) {
      refuse('PolicyDenied', `not allowed on node ${this.config.node} (nothing was created): ${problems.join('; ')}`);
      return;
    }
    t.createBegun = Date.now();
    t.memoryMaxBytes = memoryOf(spec) || undefined;
    const key = keyOfTracked(t);
    try {
      t.record = await this.rt.create(
        { id: t.id, name: env.metadata.name, spec, source: { kind: 'kubernetes', namespace: t.namespace, name: t.name, uid: t.uid } },
        (r) => {
          t.record = r;
          if (r.phase === 'Creating') this.ctx.queue.addAfter(key, CREATING_WRITE_DELAY_MS);
        },
      );
    } catch (err) {
      if (err instanceof PreflightError) {
        refuse('CreateFailed', `cannot run on node ${this.config.node} (nothing was created): ${err.problems.join('; ')}`);
        return;
      }
      if (err instanceof CreateError) {
        t.record = err.record ?? (await this.rt.journal.read(t.id)) ?? undefined;
        if (!t.record) refuse('CreateFailed', err.message);
        else this.event(env, t, 'Warning', 'CreateFailed', err.message);
        return;
      }
      throw err;
    }
    this.superviseEnv(t);
  }

  /** Supervise a running env in this process; when it ends, its key is reconciled again (final status, finalizer). */
  private superviseEnv(t: Tracked): void {
    if (t.supervision || this.ctx.stopping()) return;
    const key = keyOfTracked(t);
    t.supervision = supervise(this.rt, t.id, {
      intervalMs: this.config.sampleInterval,
      registerPid: true,
      stopRequested: () => t.stop,
      onPhase: (r) => {
        t.record = r;
        this.ctx.queue.add(key);
      },
      logger: this.logger,
    })
      .then((final) => {
        t.record = final;
        this.ctx.metrics.envsFinished.inc({ reason: final.reason ?? 'unknown' });
      })
      .catch((err: unknown) => void this.logger.error('supervision failed', { env: key, envId: t.id, ...errorFields(err) }))
      .finally(() => {
        t.supervision = undefined;
        if (!this.ctx.stopping()) this.ctx.queue.add(key);
      });
  }

  private requestStop(t: Tracked, message: string): void {
    if (t.stop) return;
    t.stop = { reason: 'Stopped', message };
    if (!t.supervision && t.record && !isFinished(t.record) && t.record.phase !== 'Creating') this.superviseEnv(t);
  }

  private factsOf(t: Tracked): EnvFacts | undefined {
    if (t.refusal) return t.refusal;
    const r = t.record;
    if (!r) return undefined;
    const done = isFinished(r);
    return {
      phase: r.phase,
      ...(r.reason !== undefined ? { reason: r.reason } : {}),
      ...(r.message !== undefined ? { message: r.message } : {}),
      cgroupPath: r.cgroupPath,
      ...(r.netns !== undefined ? { netns: r.netns } : {}),
      ...(r.startTime !== undefined ? { startTime: rfc3339(Date.parse(r.startTime)) } : {}),
      ...(r.finishTime !== undefined ? { finishTime: rfc3339(Date.parse(r.finishTime)) } : {}),
      ...(r.exitCode !== undefined ? { exitCode: r.exitCode } : {}),
      ...(done ? (r.usage ? { usage: r.usage } : {}) : t.usageWrittenAt && t.usage ? { usage: t.usage } : {}),
      ...(done && r.logTail ? { logTail: r.logTail } : {}),
      reclaimed: done && outstanding(r).length === 0,
      ...(r.leaks?.length ? { leaks: r.leaks } : {}),
    };
  }

  /** Apply the agent's status when it differs from what the API (or our last apply) shows. */
  private async writeStatus(env: EnvObject, t: Tracked): Promise<number | undefined> {
    const facts = this.factsOf(t);
    if (!facts) return undefined;
    if (facts.phase === 'Creating' && t.createBegun !== undefined) {
      const wait = t.createBegun + CREATING_WRITE_DELAY_MS - Date.now();
      if (wait > 0) return wait;
    }
    const current = env.status;
    const ctx = {
      current: t.appliedConditions ? { ...current, conditions: mergeConditions(current?.conditions, t.appliedConditions) } : current,
      generation: env.metadata.generation ?? 1,
      now: Date.now(),
      controllerEnded: this.controllerEnded(env),
    };
    const desired = agentStatus(facts, ctx);
    const key = statusKey(desired);
    if (key === t.appliedKey || (t.appliedKey === undefined && !agentStatusDiffers(current, desired))) {
      t.appliedKey = key;
      return undefined;
    }
    await applyEnvStatus(this.ctx.client, env, desired, this.ctx.metrics);
    t.appliedKey = key;
    t.appliedConditions = desired.conditions;
    this.afterWrite(env, t, facts);
    return undefined;
  }

  /** Events for what the write reported (each once per env). */
  private afterWrite(env: EnvObject, t: Tracked, f: EnvFacts): void {
    if (f.phase === 'Running' || (f.startTime && isTerminalPhase(f.phase))) {
      this.event(env, t, 'Normal', 'Started', `the workload started on node ${this.config.node} (cgroup ${f.cgroupPath ?? '?'})`);
    }
    if (!isTerminalPhase(f.phase) || t.refusal) return;
    const type = f.reason ? FINISH_EVENTS[f.reason] : undefined;
    if (type && f.reason) this.event(env, t, type, f.reason, f.message ?? f.reason);
    if (f.leaks?.length) this.event(env, t, 'Warning', 'Leaked', `teardown could not remove: ${f.leaks.map((l) => `${l.what}: ${l.detail}`).join('; ')}`);
    else if (f.reclaimed) this.event(env, t, 'Normal', 'Reclaimed', `${f.reason === 'Completed' ? `exit ${f.exitCode ?? 0}; ` : ''}every host resource of the env is gone (verified)`);
  }

  private event(env: EnvObject, t: Tracked, type: EventType, reason: string, note: string): void {
    if (t.events.has(reason)) return;
    t.events.add(reason);
    this.ctx.events?.record(env, type, reason, reason, note);
  }

  /** Sample every running env: metrics always, status.usage every --usage-interval or on a large change. */

  async sampleUsage(): Promise<void> {
    let running = 0;
    const now = Date.now();
    for (const t of this.tracked.values()) {
      const r = t.record;
      if (!r || r.phase !== 'Running') continue;
      running++;
      let s;
      try {
        s = await this.rt.sample(r);
      } catch {
        continue;
      }
      const usage = usageFromStats(s.stats);
      const prev = t.usage;
      if (!prev || (usage.cpuSeconds ?? 0) > (prev.cpuSeconds ?? 0) + 0.01 || (usage.pids ?? 0) !== (prev.pids ?? 0)) t.lastActivityMs = now;
      t.usage = usage;
      const labels = { namespace: t.namespace, name: t.name, class: t.klass };
      this.ctx.metrics.setEnv(labels, { ...usage, ...(t.memoryMaxBytes ? { memoryMaxBytes: t.memoryMaxBytes } : {}), ...(t.lastActivityMs ? { lastActivityMs: t.lastActivityMs } : {}) });
      const started = r.startTime ? Date.parse(r.startTime) : now;
      const due = now - Math.max(t.usageWrittenAt, started) >= this.config.usageInterval;
      const oom = (usage.oomKills ?? 0) > (prev?.oomKills ?? 0);
      const nearMax = t.memoryMaxBytes !== undefined && (usage.memoryCurrentBytes ?? 0) > t.memoryMaxBytes * 0.9 && (prev?.memoryCurrentBytes ?? 0) <= t.memoryMaxBytes * 0.9;
      if (due || oom || nearMax) {
        t.usageWrittenAt = now;
        this.ctx.queue.add(keyOfTracked(t));
      }
    }
    this.ctx.metrics.envsRunning.set(running);
  }


  /**
   * The API side of a GC pass: envs the node runs that the API no longer binds here are stopped, a teardown
   * that left something is tried again, and finished envs the API no longer lists are forgotten.
   * Returns the env ids still live on the node (for the runtime's orphan pass).
   */
  async sweep(liveUids: ReadonlySet<string>): Promise<string[]> {
    for (const t of [...this.tracked.values()]) {
      if (liveUids.has(t.uid)) continue;
      if (t.record && !isFinished(t.record)) this.requestStop(t, 'the env is no longer in the API or no longer bound to this node');
      else if (t.record && outstanding(t.record).length && !t.supervision) {
        await this.rt.teardown(t.id).catch((err: unknown) => void this.logger.warn('teardown retry failed', { envId: t.id, ...errorFields(err) }));
        t.record = (await this.rt.journal.read(t.id)) ?? t.record;
      } else if (!t.supervision) await this.forget(t);
    }
    return [...this.tracked.values()].filter((t) => t.record !== undefined && (!isFinished(t.record) || t.supervision !== undefined)).map((t) => t.id);
  }

  /** Envs not yet finished (for the agent's log at stop). */
  get running(): number {
    return [...this.tracked.values()].filter((t) => t.record && !isFinished(t.record)).length;
  }
}

function classOf(env: EnvObject): string {
  const c = (env.spec as { class?: unknown } | undefined)?.class;
  return typeof c === 'string' ? c : 'default';
}

/** The apply body without times that move on their own, to tell a real change from a repeat. */
function statusKey(s: AgentStatus): string {
  return JSON.stringify({ ...s, conditions: s.conditions.map(({ lastTransitionTime: _t, ...c }) => c) });
}

function mergeConditions<C extends { type: string }>(current: readonly C[] | undefined, applied: readonly C[]): C[] {
  const byType = new Map((current ?? []).map((c) => [c.type, c]));
  for (const c of applied) byType.set(c.type, c);
  return [...byType.values()];
}
