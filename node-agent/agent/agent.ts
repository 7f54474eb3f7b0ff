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
import type { NodeStatus } from '../../src/api/node.js';
import { EventRecorder } from '../../src/controller/events.js';
import { Informer } from '../../src/controller/informer.js';
import { ApiError, KubeClient } from '../../src/controller/kube-client.js';
import { loadConnection } from '../../src/controller/kubeconfig.js';
import { keyOf, type EnvObject } from '../../src/controller/model.js';
import { WorkQueue } from '../../src/controller/queue.js';
import { portOf, startServer } from '../../src/controller/server.js';
import { createLogger, errorFields } from '../../src/log.js';
import { recover } from '../adopt.js';
import { gcPass } from '../gc/pass.js';
import { NodeMetrics } from '../metrics.js';
import { probeHost } from '../probe.js';
import { Runtime } from '../runtime.js';
import type { AgentConfig } from './config.js';
import { AGENT_VERSION, hostFacts, lastGcOf, nodeReady, Registration } from './registration.js';
import { EnvDriver } from './env-driver.js';

/** Reconciles in flight at once (creates wait on runc, writes on the API server, not on the CPU). */
const WORKERS = 32;
/** Reporting controller of the agent's Events. */
const REPORTING_AGENT = 'disposable.dev/agent';

/** Test and embedding hooks. */
export interface AgentDeps {
  readonly logger?: Logger;
}

/** One agent process. */
export class Agent {
  readonly logger: Logger;
  readonly queue: WorkQueue;
  private envs!: Informer<EnvObject>;
  private driver!: EnvDriver;
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
    const client = KubeClient.fromConnection(loadConnection({ ...(config.kubeconfig ? { kubeconfig: config.kubeconfig } : {}), ...(config.context ? { context: config.context } : {}) }), { maxInFlight: config.apiMaxInFlight, userAgent: `disposable-env-agent/${AGENT_VERSION}` });
    const metrics = new NodeMetrics();
    const rt = await Runtime.open({ stateDir: config.stateDir, cgroupRoot: config.cgroupRoot, seccompProfileDir: config.seccompProfileDir, metrics, ...(config.runtimePath ? { runtimePath: config.runtimePath } : {}) });
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
    this.driver = new EnvDriver({
      config: c,
      client: this.client,
      rt: this.rt,
      metrics: this.metrics,
      queue: this.queue,
      logger: this.logger,
      events: this.events,
      cached: (key) => this.envs?.get(key),
      offeredMemory: () => this.offeredMemory(),
      stopping: () => this.stopping,
    });
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
    this.timers.push(setInterval(() => void this.driver.sampleUsage(), Math.min(5000, Math.max(1000, c.usageInterval / 3))));
    this.gcRunning = this.gc().finally(() => (this.gcRunning = undefined));
    this.timers.push(
      setInterval(() => {
        this.gcRunning ??= this.gc().finally(() => (this.gcRunning = undefined));
      }, c.gcInterval),
    );
    this.logger.info('agent started', { stateDir: c.stateDir, cgroupRoot: c.cgroupRoot, cgroupMode: this.hostStatus.cgroupMode, envs: this.driver.tracked.size, httpPort: this.httpPort });
  }

  private offeredMemory(): number {
    return Math.max(0, os.totalmem() - this.config.reservedMemory);
  }

  /** Rebuild from the journal: index our envs, then let adoption finish or re-supervise them. */
  private async adopt(): Promise<void> {
    const { records } = await this.rt.journal.list();
    const ours = new Set(records.filter((r) => this.driver.remember(r)).map((r) => r.id));
    const adopted = await recover(this.rt, {
      scope: (id) => ours.has(id),
      metrics: this.metrics,
      supervise: (id) => {
        this.driver.adopt(id);
        return Promise.resolve();
      },
    });
    for (const a of adopted) {
      await this.driver.refresh(a.id);
      if (a.error) this.logger.error('adoption failed', { envId: a.id, action: a.action, error: a.error });
      else this.logger.info('adopted env', { envId: a.id, action: a.action, phase: a.phase });
    }
  }

  private async work(): Promise<void> {
    for (;;) {
      const key = await this.queue.get();
      if (key === undefined) return;
      try {
        const again = await this.driver.reconcile(key);
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

  /** One GC pass against the API: stop what the API no longer binds here, reclaim orphans, report. */
  private async gc(): Promise<void> {
    if (this.stopping) return;
    const started = Date.now();
    try {
      const liveUids = new Set<string>();
      for (const e of this.envs.list()) if (e.metadata.uid) liveUids.add(e.metadata.uid);
      const live = await this.driver.sweep(liveUids);
      const report = await gcPass(this.rt, { liveIds: live, minAgeSeconds: this.config.gcMinAge / 1000, metrics: this.metrics });
      this.lastGc = lastGcOf(report, started, Date.now());
      this.logger.info('gc pass', { seconds: report.seconds, reclaimedEnvs: report.reclaimedEnvs.length, stuck: report.stuckEnvs.length, rows: report.rows.length });
    } catch (err) {
      this.logger.error('gc pass failed', errorFields(err));
    }
    await this.registration.applyStatus(this.nodeStatus()).catch((err: unknown) => this.logger.warn('DisposableNode status write failed', errorFields(err)));
  }

  private nodeStatus(): NodeStatus {
    const a = this.driver.allocation();
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
    await this.driver?.settle();
    await this.envs?.stop();
    await this.gcRunning;
    await this.registration?.stop();
    await this.events?.flush(2000);
    // the shared host root and empty cgroup parents go once no env of this state dir needs them
    await this.rt.close().catch((err: unknown) => void this.logger.warn('runtime close failed', errorFields(err)));
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
    this.server?.closeAllConnections();
    this.client.close();
    this.logger.info('agent stopped; envs keep running and are adopted by the next agent', { running: this.driver.running });
  }
}
