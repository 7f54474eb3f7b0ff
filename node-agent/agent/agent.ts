/**
 * The node agent (`denv agent --node NAME`): runs on this node what the
 * cluster binds to it and reports it back.
 *
 * An informer watches only the envs labelled `disposable.dev/node=<node>`; its
 * handlers enqueue `namespace/name` keys, and workers reconcile one key at a
 * time (src/controller/queue.ts): create on bind, supervise in this process
 * (the lifecycle is enforced here, on the node, whether or not the API server
 * answers), write the agent's status fields with server-side apply, tear down
 * on deletion or stop and release the finalizer after the verified teardown.
 * On start it rebuilds from the journal (adoption: running envs get a
 * supervisor again, half-made ones are rolled back) before it reads the API;
 * every GC pass stops envs the API no longer binds here and reclaims orphans.
 */
import type http from 'node:http';
import os from 'node:os';
import type { Logger } from 'winston';
import { ENV_PLURAL, GROUP, NODE_LABEL, VERSION } from '../../src/api/constants.js';
import { EnvSpecSchema, type EnvSpec } from '../../src/api/env.js';
import type { NodeStatus } from '../../src/api/node.js';
import { EventRecorder, type EventType } from '../../src/controller/events.js';
import { Informer } from '../../src/controller/informer.js';
import { ApiError, KubeClient } from '../../src/controller/kube-client.js';
import { loadConnection } from '../../src/controller/kubeconfig.js';
import { FIELD_MANAGER as CONTROLLER_FIELD_MANAGER, keyOf, ownedStatusOf, rfc3339, type EnvObject } from '../../src/controller/model.js';
import { WorkQueue } from '../../src/controller/queue.js';
import { portOf, startServer } from '../../src/controller/server.js';
import { createLogger, errorFields } from '../../src/log.js';
import { recover } from '../adopt.js';
import { gcPass, type GcReport } from '../gc/pass.js';
import { isFinished, outstanding, type EnvRecord } from '../journal.js';
import { usageFromStats, type Verdict } from '../lifecycle.js';
import { NodeMetrics } from '../metrics.js';
import { probeHost } from '../probe.js';
import { CreateError, PreflightError, Runtime } from '../runtime.js';
import { supervise } from '../supervisor.js';
import type { AgentConfig } from './config.js';
import { applyEnvStatus, releaseFinalizer } from './env-api.js';
import { agentStatus, agentStatusDiffers, type AgentStatus, type EnvFacts } from './env-status.js';
import { memoryOf, policyProblems, type Allocation } from './policy.js';
import { AGENT_VERSION, hostFacts, nodeReady, Registration } from './registration.js';
import { envIdForUid, keyOfTracked, track, type Tracked } from './tracked.js';

/** A Creating phase shorter than this is never written: Running follows at once (one write, not two). */
const CREATING_WRITE_DELAY_MS = 500;
/** Reconciles in flight at once (creates wait on runc, writes on the API server, not on the CPU). */
const WORKERS = 32;
/** Reporting controller of the agent's Events. */
const REPORTING_AGENT = 'disposable.dev/agent';

/** Events the agent records, by the env's reason. */
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

/** Test and embedding hooks. */
export interface AgentDeps {
  /** An already-built client (tests); default: from --kubeconfig / in-cluster. */
  readonly client?: KubeClient;
  readonly logger?: Logger;
}

/** One agent process. */
export class Agent {
  readonly logger: Logger;
  readonly queue: WorkQueue;
  private readonly tracked = new Map<string, Tracked>();
  private envs!: Informer<EnvObject>;
  private registration!: Registration;
  private events: EventRecorder | undefined;
  private server: http.Server | undefined;
  private workers: Promise<void>[] = [];
  private timers: NodeJS.Timeout[] = [];
  private gcRunning: Promise<void> | undefined;
  private stopping = false;
  private lastGc: NodeStatus['lastGC'];
  private hostStatus!: NodeStatus;
  private readyCondition: NonNullable<NodeStatus['conditions']>[number] | undefined;
  private gcPasses = 0;

  private constructor(
    readonly config: AgentConfig,
    readonly client: KubeClient,
    readonly rt: Runtime,
    readonly metrics: NodeMetrics,
    logger: Logger,
  ) {
    this.logger = logger;
    this.queue = new WorkQueue({ baseDelayMs: 200, maxDelayMs: 30_000 });
  }

  /** Starts everything; resolves once the agent has adopted its envs and its informer has synced. */
  static async start(config: AgentConfig, deps: AgentDeps = {}): Promise<Agent> {
    const logger = deps.logger ?? createLogger('agent', config.logLevel);
    const client = deps.client ?? KubeClient.fromConnection(loadConnection({ ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}), ...(config.context ? { context: config.context } : {}) }), { maxInFlight: config.apiMaxInFlight, userAgent: `disposable-env-agent/${AGENT_VERSION}` });
    const metrics = new NodeMetrics();
    const rt = await Runtime.open({ stateDir: config.stateDir, cgroupRoot: config.cgroupRoot, metrics, ...(config.runtimePath ? { runtimePath: config.runtimePath } : {}) });
    const agent = new Agent(config, client, rt, metrics, logger.child({ node: config.node }));
    await agent.run();
    return agent;
  }

  /** The port /metrics listens on (tests pass --http-addr with port 0). */
  get httpPort(): number | undefined {
    return this.server ? portOf(this.server) : undefined;
  }

  private async run(): Promise<void> {
    const c = this.config;
    this.server = await startServer(c.httpAddr.host, c.httpAddr.port, this.metrics.registry, {
      healthy: () => !this.stopping,
      ready: () => this.envs?.hasSynced() ?? false,
      leader: () => true,
      role: () => `node ${c.node}`,
    });
    const probe = await probeHost(c.runtimePath ? `${c.runtimePath}:${process.env.PATH ?? ''}` : process.env.PATH);
    this.hostStatus = {
      ...hostFacts(probe),
      cgroupRoot: c.cgroupRoot,
      capacity: { maxEnvs: c.maxEnvs, memoryBytes: this.offeredMemory(), cpuMillis: os.cpus().length * 1000 },
      agentVersion: AGENT_VERSION,
    };
    const problems = probe.cannotEnforce.filter((p) => p.what === 'running envs').map((p) => p.why);
    this.readyCondition = nodeReady(Date.now(), problems);
    this.registration = new Registration(this.client, { node: c.node, leaseNamespace: c.nodeLeaseNamespace, identity: c.identity, renewEveryMs: c.leaseRenewInterval, labels: c.nodeLabels, logger: this.logger });
    if (c.events) this.events = new EventRecorder(this.client, { identity: c.identity, queueSize: 5000, logger: this.logger, reportingController: REPORTING_AGENT });
    await this.adopt();
    await this.registration.start(this.nodeStatus());
    this.envs = new Informer<EnvObject>(this.client, {
      name: 'disposableenvs',
      path: `/apis/${GROUP}/${VERSION}/${ENV_PLURAL}`,
      labelSelector: `${NODE_LABEL}=${c.node}`,
      logger: this.logger,
      backoffBaseMs: 200,
      backoffCapMs: 10_000,
    });
    const enqueue = (env: EnvObject): void => this.queue.add(keyOf(env.metadata));
    this.envs.on({ add: enqueue, update: enqueue, delete: enqueue });
    this.envs.start();
    await this.envs.waitForSync();
    for (let i = 0; i < WORKERS; i++) this.workers.push(this.work());
    this.timers.push(setInterval(() => void this.sampleUsage(), Math.min(5000, Math.max(1000, c.usageInterval / 3))));
    this.gcRunning = this.gc().finally(() => (this.gcRunning = undefined));
    this.timers.push(
      setInterval(() => {
        this.gcRunning ??= this.gc().finally(() => (this.gcRunning = undefined));
      }, c.gcInterval),
    );
    this.logger.info('agent started', { stateDir: c.stateDir, cgroupRoot: c.cgroupRoot, cgroupMode: this.hostStatus.cgroupMode, envs: this.tracked.size, httpPort: this.httpPort });
  }

  private offeredMemory(): number {
    return Math.max(0, os.totalmem() - this.config.reservedMemory);
  }

  /** Rebuild from the journal: index our envs, then let adoption finish or re-supervise them. */
  private async adopt(): Promise<void> {
    const { records } = await this.rt.journal.list();
    for (const r of records) {
      if (r.source.kind !== 'kubernetes') continue;
      const t = track(r.id, r.source.uid, r.source.namespace, r.source.name, r.class);
      t.record = r;
      t.createBegun = Date.parse(r.createdAt);
      this.tracked.set(r.id, t);
    }
    const adopted = await recover(this.rt, {
      scope: (id) => this.tracked.has(id),
      metrics: this.metrics,
      supervise: (id) => {
        const t = this.tracked.get(id);
        if (t) this.superviseEnv(t);
        return Promise.resolve();
      },
    });
    for (const a of adopted) {
      const t = this.tracked.get(a.id);
      if (t) t.record = (await this.rt.journal.read(a.id)) ?? t.record;
      if (a.error) this.logger.error('adoption failed', { envId: a.id, action: a.action, error: a.error });
      else this.logger.info('adopted env', { envId: a.id, action: a.action, phase: a.phase });
    }
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const again = await this.reconcile(key);
        this.queue.forget(key);
        if (again !== undefined) this.queue.addAfter(key, again);
      } catch (err) {
        const delay = this.queue.addRateLimited(key);
        const level = err instanceof ApiError && (err.code === 409 || err.code === 0 || err.code >= 500) ? 'info' : 'warn';
        this.logger.log(level, 'reconcile failed; retrying', { env: key, retryInMs: delay, ...errorFields(err), ...(err instanceof ApiError ? { code: err.code } : {}) });
      } finally {
        this.queue.done(key);
      }
    }
  }

  private byKey(key: string): Tracked | undefined {
    let found: Tracked | undefined;
    for (const t of this.tracked.values()) if (keyOfTracked(t) === key && (!found || (t.createBegun ?? 0) > (found.createBegun ?? 0))) found = t;
    return found;
  }

  /** One reconcile of one env; returns "again after N ms" or undefined. */
  private async reconcile(key: string): Promise<number | undefined> {
    const env = this.envs.get(key);
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
    if (env.metadata.deletionTimestamp) return this.reconcileDeletion(env, t);
    if (!t) {
      const phase = env.status?.phase;
      if (phase === 'Scheduled') {
        t = track(id, uid, env.metadata.namespace ?? 'default', env.metadata.name, classOf(env));
        this.tracked.set(id, t);
        await this.create(t, env);
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
    return isFinished({ phase: env.status?.phase } as EnvRecord) && ownedStatusOf(env.metadata.managedFields, CONTROLLER_FIELD_MANAGER).fields.has('phase');
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
    if (await releaseFinalizer(this.client, env, this.metrics)) {
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
    this.metrics.dropEnv({ namespace: t.namespace, name: t.name, class: t.klass });
    this.tracked.delete(t.id);
  }

  private allocation(): Allocation {
    let envs = 0;
    let memoryBytes = 0;
    for (const t of this.tracked.values()) {
      if (!t.record || isFinished(t.record)) continue;
      envs++;
      memoryBytes += memoryOf(t.record.spec);
    }
    return { envs, memoryBytes };
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
    const spec: EnvSpec = parsed.data;
    const problems = policyProblems(spec, { allowedHostPaths: this.config.allowedHostPaths, maxEnvs: this.config.maxEnvs, memoryBytes: this.offeredMemory() }, this.allocation());
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
          if (r.phase === 'Creating') this.queue.addAfter(key, CREATING_WRITE_DELAY_MS);
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
    if (t.supervision || this.stopping) return;
    const key = keyOfTracked(t);
    t.supervision = supervise(this.rt, t.id, {
      intervalMs: this.config.sampleInterval,
      registerPid: true,
      stopRequested: () => t.stop,
      onPhase: (r) => {
        t.record = r;
        this.queue.add(key);
      },
      logger: this.logger,
    })
      .then((final) => {
        t.record = final;
        this.metrics.envsFinished.inc({ reason: final.reason ?? 'unknown' });
      })
      .catch((err: unknown) => void this.logger.error('supervision failed', { env: key, envId: t.id, ...errorFields(err) }))
      .finally(() => {
        t.supervision = undefined;
        if (!this.stopping) this.queue.add(key);
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
    await applyEnvStatus(this.client, env, desired, this.metrics);
    t.appliedKey = key;
    t.appliedConditions = desired.conditions;
    this.afterWrite(env, t, facts);
    return undefined;
  }

  /** Events for what the write reported (each once per env). */
  private afterWrite(env: EnvObject, t: Tracked, f: EnvFacts): void {
    if (f.phase === 'Running' || (f.startTime && isFinished({ phase: f.phase } as EnvRecord))) {
      this.event(env, t, 'Normal', 'Started', `the workload started on node ${this.config.node} (cgroup ${f.cgroupPath ?? '?'})`);
    }
    if (!isFinished({ phase: f.phase } as EnvRecord) || t.refusal) return;
    const type = f.reason ? FINISH_EVENTS[f.reason] : undefined;
    if (type && f.reason) this.event(env, t, type, f.reason, f.message ?? f.reason);
    if (f.leaks?.length) this.event(env, t, 'Warning', 'Leaked', `teardown could not remove: ${f.leaks.map((l) => `${l.what}: ${l.detail}`).join('; ')}`);
    else if (f.reclaimed) this.event(env, t, 'Normal', 'Reclaimed', `${f.reason === 'Completed' ? `exit ${f.exitCode ?? 0}; ` : ''}every host resource of the env is gone (verified)`);
  }

  private event(env: EnvObject, t: Tracked, type: EventType, reason: string, note: string): void {
    if (t.events.has(reason)) return;
    t.events.add(reason);
    this.events?.record(env, type, reason, reason, note);
  }

  /** Sample every running env: metrics always, status.usage every --usage-interval or on a large change. */
  private async sampleUsage(): Promise<void> {
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
      this.metrics.setEnv(labels, { ...usage, ...(t.memoryMaxBytes ? { memoryMaxBytes: t.memoryMaxBytes } : {}), ...(t.lastActivityMs ? { lastActivityMs: t.lastActivityMs } : {}) });
      const started = r.startTime ? Date.parse(r.startTime) : now;
      const due = now - Math.max(t.usageWrittenAt, started) >= this.config.usageInterval;
      const oom = (usage.oomKills ?? 0) > (prev?.oomKills ?? 0);
      const nearMax = t.memoryMaxBytes !== undefined && (usage.memoryCurrentBytes ?? 0) > t.memoryMaxBytes * 0.9 && (prev?.memoryCurrentBytes ?? 0) <= t.memoryMaxBytes * 0.9;
      if (due || oom || nearMax) {
        t.usageWrittenAt = now;
        this.queue.add(keyOfTracked(t));
      }
    }
    this.metrics.envsRunning.set(running);
  }

  /** One GC pass against the API: stop what the API no longer binds here, reclaim orphans, report. */
  private async gc(): Promise<void> {
    if (this.stopping) return;
    const started = Date.now();
    try {
      const liveUids = new Set<string>();
      for (const e of this.envs.list()) if (e.metadata.uid) liveUids.add(e.metadata.uid);
      for (const t of [...this.tracked.values()]) {
        if (liveUids.has(t.uid)) continue;
        if (t.record && !isFinished(t.record)) this.requestStop(t, 'the env is no longer in the API or no longer bound to this node');
        else if (t.record && outstanding(t.record).length && !t.supervision) {
          await this.rt.teardown(t.id).catch((err: unknown) => this.logger.warn('teardown retry failed', { envId: t.id, ...errorFields(err) }));
          t.record = (await this.rt.journal.read(t.id)) ?? t.record;
        } else if (!t.supervision) await this.forget(t);
      }
      const live = [...this.tracked.values()].filter((t) => t.record !== undefined && (!isFinished(t.record) || t.supervision !== undefined)).map((t) => t.id);
      const report = await gcPass(this.rt, { liveIds: live, minAgeSeconds: this.config.gcMinAge / 1000, metrics: this.metrics });
      this.gcPasses++;
      this.lastGc = gcSummary(report, started);
      this.logger.info('gc pass', { seconds: report.seconds, reclaimedEnvs: report.reclaimedEnvs.length, stuck: report.stuckEnvs.length, rows: report.rows.length });
    } catch (err) {
      this.logger.error('gc pass failed', errorFields(err));
    }
    await this.registration.applyStatus(this.nodeStatus()).catch((err: unknown) => this.logger.warn('DisposableNode status write failed', errorFields(err)));
  }

  /** Completed GC passes (tests wait for one). */
  get gcPassCount(): number {
    return this.gcPasses;
  }

  private nodeStatus(): NodeStatus {
    const a = this.allocation();
    return {
      ...this.hostStatus,
      allocated: { envs: a.envs, memoryBytes: a.memoryBytes },
      ...(this.lastGc ? { lastGC: this.lastGc } : {}),
      ...(this.readyCondition ? { conditions: [this.readyCondition] } : {}),
    };
  }

  /**
   * Stop the agent. Envs keep running under conmon (an agent upgrade must not
   * kill CI jobs); the next agent on this state dir adopts them.
   */
  async stop(): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.queue.shutDown();
    await Promise.allSettled(this.workers);
    await this.envs?.stop();
    await this.gcRunning;
    await this.registration?.stop();
    await this.events?.flush(2000);
    // the shared host root and empty cgroup parents go once no env of this state dir needs them
    await this.rt.close().catch((err: unknown) => void this.logger.warn('runtime close failed', errorFields(err)));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.client.close();
    this.logger.info('agent stopped; envs keep running and are adopted by the next agent', { running: [...this.tracked.values()].filter((t) => t.record && !isFinished(t.record)).length });
  }

  /** Envs with a supervision in this process (tests). */
  get supervising(): number {
    return [...this.tracked.values()].filter((t) => t.supervision !== undefined).length;
  }
}

/** The env's class (a DNS label the spec schema defaults to `default`). */
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

function gcSummary(report: GcReport, started: number): NonNullable<NodeStatus['lastGC']> {
  const count = (action: string): Record<string, number> => {
    const out: Record<string, number> = {};
    for (const r of report.rows) if (r.action === action || (action === 'found' && r.action !== 'reported (foreign)')) out[r.kind] = (out[r.kind] ?? 0) + 1;
    return out;
  };
  return {
    time: rfc3339(Date.now()),
    durationSeconds: Math.round((Date.now() - started) / 10) / 100,
    found: count('found'),
    reclaimed: count('reclaimed'),
    foreignLeaks: count('reported (foreign)'),
    stuck: report.stuckEnvs.length,
  };
}

export type { Verdict };
