/**
 * The controller process: informers on DisposableEnvs, DisposableNodes, Nodes
 * and node Leases feed one work queue; workers run the Reconciler, one key at a
 * time, only while this replica is the elected leader (a standby keeps warm
 * caches so failover is quick); node health transitions, freed capacity and a
 * periodic resync re-queue the envs they concern; `/healthz`, `/readyz` and
 * `/metrics` are served throughout; SIGTERM drains in-flight reconciles and
 * releases the leader Lease.
 */
import type http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { Logger } from 'winston';
import { ENV_PLURAL, GROUP, NODE_PLURAL, VERSION } from '../api/constants.js';
import { createLogger, errorFields } from '../log.js';
import { AllocationView } from './allocation.js';
import type { ControllerConfig } from './config.js';
import { EventRecorder } from './events.js';
import { WriteExpectations } from './expectations.js';
import { Informer } from './informer.js';
import { ApiError, KubeClient, isConflict } from './kube-client.js';
import { loadConnection, type Connection } from './kubeconfig.js';
import { LeaderElector } from './leader.js';
import { ControllerMetrics } from './metrics.js';
import {
  NOTHING_OWNED,
  boundNode,
  isFinished,
  keyOf,
  ownedStatusOf,
  type DisposableNodeObject,
  type EnvObject,
  type LeaseObject,
  type NodeObject,
  type OwnedStatus,
} from './model.js';
import { NodeMonitor } from './nodes.js';
import { Reconciler, type Outcome } from './reconciler.js';
import { portOf, startServer } from './server.js';
import { WorkQueue } from './queue.js';

const LAST_APPLIED = 'kubectl.kubernetes.io/last-applied-configuration';


/**
 * An env that is waiting to be bound (or validated): its reconcile is on the path users
 * wait for, so it goes to the queue's urgent lane, ahead of TTL deletes, finalizer
 * releases and resyncs of envs that are already placed.
 */
function waitsForNode(env: EnvObject): boolean {
  return boundNode(env) === undefined && !isFinished(env.status) && !env.metadata.deletionTimestamp;
}

/**
 * Reconciles of placed envs (TTL deletes, finalizer releases, resyncs) in flight at most while
 * envs wait for a node: their writes would slow the bindings down at the API server.
 */
const NORMAL_WHILE_BINDING = 4;

/** Everything one controller replica runs. */
export class Controller {
  readonly metrics: ControllerMetrics;
  readonly queue: WorkQueue;
  readonly allocation = new AllocationView();
  readonly expectations = new WriteExpectations();
  readonly unschedulable = new Set<string>();
  private readonly owned = new WeakMap<object, OwnedStatus>();
  /** Every env bound to a node (any phase, deleting too), for node-loss re-queues. */
  private readonly byNode = new Map<string, Set<string>>();
  private client!: KubeClient;
  envs!: Informer<EnvObject>;
  private dnodes!: Informer<DisposableNodeObject>;
  private nodes!: Informer<NodeObject>;
  private leases!: Informer<LeaseObject>;
  private monitor!: NodeMonitor;
  private events!: EventRecorder;
  reconciler!: Reconciler;
  private elector: LeaderElector | undefined;
  private server: http.Server | undefined;
  private workers: Promise<void>[] = [];
  private resyncTimer: NodeJS.Timeout | undefined;
  private leading = false;
  private shuttingDown = false;
  private synced = false;
  private reconcileSeq = 0;

  constructor(
    readonly config: ControllerConfig,
    private readonly conn: Connection,
    readonly logger: Logger = createLogger('controller', config.logLevel),
    private readonly exit: (code: number) => void = (code) => process.exit(code),
    /** Manual mode (tests): sync caches and serve, but run no workers and no election; the caller calls reconciler.reconcile(). */
    private readonly manual = false,
  ) {
    this.metrics = new ControllerMetrics(() => this.envCounts());
    this.queue = new WorkQueue({
      observer: {
        depth: (n) => this.metrics.queueDepth.set(n),
        added: () => this.metrics.queueAdds.inc(),
        started: (ms) => this.metrics.queueLatency.observe(ms / 1000),
        retried: () => this.metrics.queueRetries.inc(),
      },
      normalWhileUrgent: NORMAL_WHILE_BINDING,
    });
  }

  /** The port of the HTTP endpoints (after start). */
  get httpPort(): number | undefined {
    return this.server ? portOf(this.server) : undefined;
  }

  private readonly interned = new Map<string, OwnedStatus>();

  /** Most envs have the same ownership set: share one object per distinct set. */
  private intern(o: OwnedStatus): OwnedStatus {
    const sig = `${[...o.fields].sort().join(',')}|${[...o.conditions].sort().join(',')}`;
    const hit = this.interned.get(sig);
    if (hit) return hit;
    if (this.interned.size < 1000) this.interned.set(sig, o);
    return o;
  }

  /** What the controller's field manager owns in an env's status (kept when managedFields is dropped from the cache). */
  ownedOf = (env: EnvObject): OwnedStatus => this.owned.get(env) ?? NOTHING_OWNED;

  /** Connects, starts the informers and the HTTP server, and campaigns for leadership (or leads at once without election). */
  async start(): Promise<void> {
    const c = this.config;
    this.client = KubeClient.fromConnection(this.conn, { maxInFlight: c.apiMaxInFlight, observer: this.metrics.observeRequest });
    this.buildInformers();
    this.events = new EventRecorder(this.client, {
      identity: c.identity,
      queueSize: c.eventQueueSize,
      metrics: this.metrics,
      logger: this.logger,
      // Binding first, telling about it second: Events wait while keys wait or reconciles (and their writes) are in flight.
      busy: () => this.queue.length > 0 || this.queue.inFlight > 0,
    });
    this.monitor = new NodeMonitor(
      {
        disposableNode: (n) => this.dnodes.get(n),
        disposableNodes: () => this.dnodes.list(),
        node: (n) => this.nodes.get(n),
        lease: (n) => this.leases.get(`${c.nodeLeaseNamespace}/${n}`),
      },
      this.allocation,
      { leaseTimeoutMs: c.nodeLeaseTimeout, logger: this.logger, onTransition: (node, alive) => this.onNodeTransition(node, alive) },
    );
    this.reconciler = new Reconciler(
      {
        client: this.client,
        envs: this.envs,
        nodes: this.monitor,
        allocation: this.allocation,
        expectations: this.expectations,
        events: this.events,
        owned: this.ownedOf,
        unschedulable: this.unschedulable,
        metrics: this.metrics,
      },
      {
        strategy: c.schedulingStrategy,
        nodeLeaseTimeoutMs: c.nodeLeaseTimeout,
        nodeLostFinalizerGraceMs: c.nodeLostFinalizerGrace,
        reclaimedFinalizerGraceMs: c.reclaimedFinalizerGrace,
        deadlineSlackMs: c.deadlineSlack,
      },
    );
    this.server = await startServer(c.httpAddr.host, c.httpAddr.port, this.metrics.registry, {
      healthy: () => !this.shuttingDown,
      ready: () => this.synced,
      leader: () => this.leading,
    });
    this.logger.info('controller starting', {
      identity: c.identity,
      http: `${c.httpAddr.host}:${this.httpPort}`,
      strategy: c.schedulingStrategy,
      leaderElect: c.leaderElect,
      server: this.conn.server,
      credentials: this.conn.source,
    });
    for (const inf of [this.envs, this.dnodes, this.nodes, this.leases]) inf.start();
    await Promise.all([this.envs, this.dnodes, this.nodes, this.leases].map((i) => i.waitForSync()));
    this.synced = true;
    for (const dn of this.dnodes.list()) this.monitor.check(dn.metadata.name);
    this.logger.info('caches synced', { envs: this.envs.size, disposableNodes: this.dnodes.size, nodes: this.nodes.size, leases: this.leases.size });
    if (this.manual) return;
    if (c.resyncPeriod > 0) {
      this.resyncTimer = setInterval(() => this.enqueueAll(), c.resyncPeriod);
      this.resyncTimer.unref();
    }
    if (!c.leaderElect) {
      this.startLeading();
      return;
    }
    this.elector = new LeaderElector(this.client, {
      namespace: c.leaderElectionNamespace,
      name: c.leaderElectionId,
      identity: c.identity,
      leaseDurationMs: c.leaseDuration,
      renewDeadlineMs: c.renewDeadline,
      retryPeriodMs: c.retryPeriod,
      logger: this.logger,
    });
    this.elector.start({
      onStartedLeading: () => this.startLeading(),
      onStoppedLeading: () => {
        // Another replica may already act: stop at once and let the Deployment restart us as a standby.
        this.metrics.isLeader.set(0);
        this.leading = false;
        this.queue.shutDown();
        this.logger.error('lost leadership; exiting');
        this.exit(1);
      },
      onNewLeader: (id) => this.logger.info('leader election: current leader', { leader: id }),
    });
  }

  /** Graceful stop: drain reconciles (bounded), flush Events, release the Lease, close everything. */
  async stop(): Promise<void> {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.logger.info('shutting down');
    if (this.resyncTimer) clearInterval(this.resyncTimer);
    this.queue.shutDown();
    const drained = await Promise.race([
      Promise.all(this.workers).then(() => true),
      new Promise<boolean>((resolve) => setTimeout(() => resolve(false), this.config.shutdownTimeout).unref()),
    ]);
    if (!drained) this.logger.warn('shutdown timeout: reconciles still in flight were abandoned', { timeoutMs: this.config.shutdownTimeout });
    await this.events?.flush(2_000);
    await this.elector?.stop(true);
    this.leading = false;
    this.metrics.isLeader.set(0);
    this.monitor?.stop();
    await Promise.all([this.envs, this.dnodes, this.nodes, this.leases].filter(Boolean).map((i) => i.stop()));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.client?.close();
    this.logger.info('stopped');
  }

  private startLeading(): void {
    if (this.shuttingDown) return;
    this.leading = true;
    this.metrics.isLeader.set(1);
    this.metrics.leaderTransitions.inc();
    this.enqueueAll();
    for (let i = 0; i < this.config.workers; i++) this.workers.push(this.work());
  }

  private enqueueAll(): void {
    for (const env of this.envs.list()) this.queue.add(keyOf(env.metadata), waitsForNode(env));
  }

  private enqueueUnschedulable(): void {
    for (const key of this.unschedulable) this.queue.add(key, true);
  }

  private onNodeTransition(node: string, alive: boolean): void {
    for (const key of this.byNode.get(node) ?? []) this.queue.add(key);
    if (alive) this.enqueueUnschedulable();
  }

  private buildInformers(): void {
    const c = this.config;
    const base = `/apis/${GROUP}/${VERSION}`;
    const restart = (informer: string) => (reason: 'gone' | 'error'): void => this.metrics.informerRestarts.inc({ informer, reason });
    this.envs = new Informer<EnvObject>(this.client, {
      name: ENV_PLURAL,
      path: c.watchNamespace ? `${base}/namespaces/${c.watchNamespace}/${ENV_PLURAL}` : `${base}/${ENV_PLURAL}`,
      // Keep only what the controller reads of managedFields (its own status ownership): the cache stays small.
      transform: (env) => {
        this.owned.set(env, this.intern(ownedStatusOf(env.metadata.managedFields)));
        delete env.metadata.managedFields;
        // Validate now (cached per uid and generation) and keep only the facts: the spec itself is never read again.
        this.reconciler.prime(keyOf(env.metadata), env);
        delete env.spec;
        // `kubectl apply` keeps a second copy of the whole manifest here; the controller never reads it.
        if (env.metadata.annotations?.[LAST_APPLIED] !== undefined) {
          const { [LAST_APPLIED]: _dropped, ...rest } = env.metadata.annotations;
          env.metadata.annotations = rest;
        }
        return env;
      },
      logger: this.logger,
      onRestart: restart(ENV_PLURAL),
      onRelist: () => this.expectations.clearAll(),
    });
    this.envs.on({
      add: (env) => this.onEnv(env, undefined),
      update: (env, old) => this.onEnv(env, old),
      delete: (env) => this.onEnvDeleted(env),
    });
    const strip = <T extends { metadata: { managedFields?: unknown } }>(o: T): T => {
      delete o.metadata.managedFields;
      return o;
    };
    this.dnodes = new Informer<DisposableNodeObject>(this.client, {
      name: NODE_PLURAL,
      path: `${base}/${NODE_PLURAL}`,
      labelSelector: c.disposableNodeSelector || undefined,
      transform: strip,
      logger: this.logger,
      onRestart: restart(NODE_PLURAL),
    });
    this.dnodes.on({
      add: (n) => this.onNodeFacts(n.metadata.name),
      update: (n, old) => {
        if (JSON.stringify([n.spec, n.status?.capacity, n.status?.controllers, n.status?.features, n.status?.cgroupMode]) !==
          JSON.stringify([old.spec, old.status?.capacity, old.status?.controllers, old.status?.features, old.status?.cgroupMode])) {
          this.onNodeFacts(n.metadata.name);
        }
      },
      delete: (n) => this.onNodeFacts(n.metadata.name),
    });
    this.nodes = new Informer<NodeObject>(this.client, {
      name: 'nodes',
      path: '/api/v1/nodes',
      // Nodes are big (images, status); the scheduler needs labels and the cordon flag only.
      transform: (n) => ({ apiVersion: n.apiVersion, kind: n.kind, metadata: { name: n.metadata.name, resourceVersion: n.metadata.resourceVersion, labels: n.metadata.labels }, spec: { unschedulable: n.spec?.unschedulable } }),
      logger: this.logger,
      onRestart: restart('nodes'),
    });
    this.nodes.on({
      add: () => this.enqueueUnschedulable(),
      update: (n, old) => {
        if (JSON.stringify([n.metadata.labels, n.spec?.unschedulable]) !== JSON.stringify([old.metadata.labels, old.spec?.unschedulable])) this.enqueueUnschedulable();
      },
      delete: () => this.enqueueUnschedulable(),
    });
    this.leases = new Informer<LeaseObject>(this.client, {
      name: 'leases',
      path: `/apis/coordination.k8s.io/v1/namespaces/${c.nodeLeaseNamespace}/leases`,
      transform: strip,
      logger: this.logger,
      onRestart: restart('leases'),
    });
    const leaseChanged = (l: LeaseObject): void => {
      if (this.synced) this.monitor.check(l.metadata.name);
    };
    this.leases.on({ add: leaseChanged, update: leaseChanged, delete: leaseChanged });
  }

  private onNodeFacts(name: string): void {
    if (this.synced) this.monitor.check(name);
    this.enqueueUnschedulable();
  }

  private indexNode(key: string, node: string | undefined, old: string | undefined): void {
    if (old === node) return;
    if (old !== undefined) {
      const s = this.byNode.get(old);
      s?.delete(key);
      if (s?.size === 0) this.byNode.delete(old);
    }
    if (node !== undefined) {
      const s = this.byNode.get(node) ?? new Set<string>();
      s.add(key);
      this.byNode.set(node, s);
    }
  }

  private onEnv(env: EnvObject, old: EnvObject | undefined): void {
    const key = keyOf(env.metadata);
    this.expectations.observe(key, env.metadata.resourceVersion);
    const a = this.reconciler.allocationOf(key, env);
    this.allocation.observe(key, a.node, a.holding, a.memory);
    this.indexNode(key, a.node, old ? boundNode(old) : undefined);
    // A bound env that finished frees room: envs waiting for a node get another try.
    if (old && boundNode(old) !== undefined && !isFinished(old.status) && isFinished(env.status)) this.enqueueUnschedulable();
    this.queue.add(key, waitsForNode(env));
  }

  private onEnvDeleted(env: EnvObject): void {
    const key = keyOf(env.metadata);
    const node = boundNode(env);
    this.reconciler.forget(key);
    this.indexNode(key, undefined, node);
    if (node !== undefined) this.enqueueUnschedulable();
    this.queue.add(key);
  }

  /** env count by phase and reason, for the `disposable_env_envs` gauge. */
  private envCounts(): Map<string, number> {
    const out = new Map<string, number>();
    if (!this.envs) return out;
    for (const e of this.envs.list()) {
      const k = `${e.status?.phase ?? 'Pending'}\u0000${e.status?.reason ?? ''}`;
      out.set(k, (out.get(k) ?? 0) + 1);
    }
    return out;
  }

  private async work(): Promise<void> {
    for (let key = await this.queue.get(); key !== undefined; key = await this.queue.get()) {
      const started = performance.now();
      const log = this.logger.child({ env: key, reconcile: ++this.reconcileSeq });
      let result: string;
      try {
        const out: Outcome = await this.reconciler.reconcile(key, log);
        result = out.result;
        this.queue.forget(key);
        if (out.requeueAfterMs !== undefined) this.queue.addAfter(key, out.requeueAfterMs);
      } catch (err) {
        const conflict = isConflict(err) || (err instanceof Error && isConflict(err.cause));
        result = conflict ? 'conflict' : 'error';
        const delay = this.queue.addRateLimited(key);
        // Logged once, here at the loop boundary, with the cause chain.
        if (conflict) log.debug('stale cache, retrying', { retryInMs: Math.round(delay) });
        else log.warn('reconcile failed', { retryInMs: Math.round(delay), retries: this.queue.retries(key), ...errorFields(err), code: codeOf(err) });
      } finally {
        this.queue.done(key);
      }
      const seconds = (performance.now() - started) / 1000;
      this.metrics.reconciles.inc({ result });
      this.metrics.reconcileDuration.observe({ result }, seconds);
    }
  }
}

function codeOf(err: unknown): number | undefined {
  if (err instanceof ApiError) return err.code;
  if (err instanceof Error && err.cause instanceof ApiError) return err.cause.code;
  return undefined;
}

/** Runs a controller until SIGTERM/SIGINT; resolves with the exit code. */
export async function runController(config: ControllerConfig): Promise<number> {
  const logger = createLogger('controller', config.logLevel);
  const controller = new Controller(config, loadConnection(config), logger);
  const stopped = new Promise<number>((resolve) => {
    const onSignal = (sig: NodeJS.Signals): void => {
      logger.info('signal received', { signal: sig });
      controller.stop().then(
        () => resolve(0),
        (err: unknown) => {
          logger.error('shutdown failed', errorFields(err));
          resolve(1);
        },
      );
    };
    process.once('SIGTERM', onSignal);
    process.once('SIGINT', onSignal);
  });
  try {
    await controller.start();
  } catch (err) {
    logger.error('controller failed to start', errorFields(err));
    await controller.stop().catch(() => undefined);
    return 1;
  }
  return stopped;
}

/** A random suffix for identities of in-process controllers (tests, bench). */
export function randomIdentity(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}
