/**
 * A stand-in for the node agent in controller tests: it registers a node (core
 * Node with labels, DisposableNode with what the node can enforce and offers),
 * heartbeats the node Lease, watches the envs bound to it (label selector
 * `disposable.dev/node=<node>`, exactly like the real agent) and writes the
 * agent-owned status with its own field manager: Running, then Succeeded after
 * `runMs` (or never, with `hang`). Once an env is deleted it "tears down" (after
 * `reclaimDelayMs`) and then, as the contract in docs/controller.md asks, removes
 * the finalizer itself — one write, the env is gone; with `releaseFinalizer: false`
 * it plays an older agent that only reports Reclaimed=True and leaves the release
 * to the controller.
 * `kill()` stops it without cleaning up, so its Lease goes stale: a lost node.
 */
import type { KubeConfig } from '@kubernetes/client-node';
import winston from 'winston';
import { API_VERSION, ENV_KIND, FINALIZER, GROUP, NODE_KIND, NODE_LABEL, VERSION } from '../../src/api/constants.js';
import type { CgroupMode } from '../../src/api/node.js';
import { Informer } from '../../src/controller/informer.js';
import { KubeClient, isConflict, isNotFound } from '../../src/controller/kube-client.js';
import { keyOf, microTime, rfc3339, type EnvObject } from '../../src/controller/model.js';

export const AGENT_FIELD_MANAGER = 'disposable-env-agent';

export interface FakeNodeOptions {
  readonly name: string;
  /** Labels of the core/v1 Node (what nodeSelector matches). */
  readonly nodeLabels?: Record<string, string>;
  /** Labels of the DisposableNode (what --disposable-node-selector matches). */
  readonly labels?: Record<string, string>;
  readonly leaseNamespace: string;
  readonly cgroupMode?: CgroupMode;
  readonly controllers?: string[];
  readonly features?: string[];
  readonly maxEnvs?: number;
  readonly memoryBytes?: number;
  /** Heartbeat period. Default 1 s. */
  readonly renewEveryMs?: number;
  /** How long a workload "runs" before Succeeded. Default 300 ms. */
  readonly runMs?: number;
  /** Never finish (deadline tests); Running forever. */
  readonly hang?: boolean;
  /** Do not even start envs (they stay Scheduled). */
  readonly passive?: boolean;
  /** Wait this long after a deletion before the teardown is done (a slow teardown). */
  readonly reclaimDelayMs?: number;
  /** After teardown, remove the finalizer itself (default true, the contract); false: only report Reclaimed=True. */
  readonly releaseFinalizer?: boolean;
}

type Obj = Record<string, unknown>;

const quiet = winston.createLogger({ level: 'error', silent: true, transports: [new winston.transports.Console()] });

/** One simulated node and its agent. */
export class FakeAgent {
  private timer: NodeJS.Timeout | undefined;
  private informer: Informer<EnvObject> | undefined;
  private readonly timers = new Set<NodeJS.Timeout>();
  private readonly started = new Set<string>();
  private readonly reclaiming = new Set<string>();
  private alive = false;
  /** Agent-side writes, for tests that count them. */
  writes = 0;

  private constructor(
    readonly client: KubeClient,
    readonly opts: FakeNodeOptions,
  ) {}

  /** Registers the node and starts heartbeating and working. */
  static async start(kc: KubeConfig, opts: FakeNodeOptions): Promise<FakeAgent> {
    const client = await KubeClient.fromKubeConfig(kc, { maxInFlight: 16 });
    const agent = new FakeAgent(client, opts);
    await agent.register();
    agent.alive = true;
    agent.timer = setInterval(() => void agent.heartbeat().catch(() => undefined), opts.renewEveryMs ?? 1000);
    if (!opts.passive) await agent.watch();
    return agent;
  }

  get name(): string {
    return this.opts.name;
  }

  private leasePath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.leaseNamespace}/leases/${this.opts.name}`;
  }

  private async register(): Promise<void> {
    const { name } = this.opts;
    await ensureNamespace(this.client, this.opts.leaseNamespace);
    await upsert(this.client, '/api/v1/nodes', name, { apiVersion: 'v1', kind: 'Node', metadata: { name, labels: this.opts.nodeLabels ?? {} } });
    await upsert(this.client, `/apis/${GROUP}/${VERSION}/disposablenodes`, name, {
      apiVersion: API_VERSION,
      kind: NODE_KIND,
      metadata: { name, labels: this.opts.labels ?? {} },
      spec: {},
    });
    await this.client.apply(
      `/apis/${GROUP}/${VERSION}/disposablenodes/${name}/status`,
      {
        apiVersion: API_VERSION,
        kind: NODE_KIND,
        metadata: { name },
        status: {
          cgroupMode: this.opts.cgroupMode ?? 'v2',
          controllers: this.opts.controllers ?? ['cpu', 'memory', 'io', 'pids'],
          features: this.opts.features ?? [],
          capacity: { maxEnvs: this.opts.maxEnvs, memoryBytes: this.opts.memoryBytes },
          agentVersion: 'fake',
        },
      },
      AGENT_FIELD_MANAGER,
    );
    const now = Date.now();
    await upsert(this.client, `/apis/coordination.k8s.io/v1/namespaces/${this.opts.leaseNamespace}/leases`, name, {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name, namespace: this.opts.leaseNamespace },
      spec: { holderIdentity: `fake-agent-${name}`, leaseDurationSeconds: 40, acquireTime: microTime(now), renewTime: microTime(now) },
    });
  }

  /** Renews the Lease (what the real agent does every few seconds). */
  async heartbeat(): Promise<void> {
    if (!this.alive) return;
    await this.client.mergePatch(this.leasePath(), { spec: { renewTime: microTime(Date.now()) } });
  }

  private async watch(): Promise<void> {
    this.informer = new Informer<EnvObject>(this.client, {
      name: `fake-agent-${this.opts.name}`,
      path: `/apis/${GROUP}/${VERSION}/disposableenvs`,
      labelSelector: `${NODE_LABEL}=${this.opts.name}`,
      logger: quiet,
      backoffBaseMs: 100,
      backoffCapMs: 1000,
    });
    const onEnv = (env: EnvObject): void => void this.handle(env).catch(() => undefined);
    this.informer.on({ add: onEnv, update: onEnv });
    this.informer.start();
    await this.informer.waitForSync();
  }

  private async handle(env: EnvObject): Promise<void> {
    if (!this.alive) return;
    const key = keyOf(env.metadata);
    const st = env.status ?? {};
    if (env.metadata.deletionTimestamp) {
      if (st.conditions?.some((c) => c.type === 'Reclaimed' && c.status === 'True') || this.reclaiming.has(key)) return;
      this.reclaiming.add(key);
      if (this.opts.reclaimDelayMs) await this.sleep(this.opts.reclaimDelayMs);
      if (!this.alive) return;
      if (this.opts.releaseFinalizer ?? true) {
        await this.release(env);
        return;
      }
      const ended = st.phase === 'Succeeded' || st.phase === 'Failed';
      // An agent keeps asserting the conditions it took over: server-side apply would otherwise drop its fields
      // of Ready and leave the parts the controller co-owns (type, observedGeneration), an invalid condition.
      const ready = st.conditions?.find((c) => c.type === 'Ready');
      await this.status(env, {
        ...(ended ? {} : { phase: 'Succeeded', reason: 'Stopped', finishTime: rfc3339(Date.now()) }),
        conditions: [...(ended && ready ? [ready] : []), cond('Reclaimed', 'True', 'Reclaimed', 'every host resource is gone')],
      });
      return;
    }
    if (st.nodeName !== this.opts.name || st.phase !== 'Scheduled' || this.started.has(key)) return;
    this.started.add(key);
    await this.status(env, { phase: 'Running', startTime: rfc3339(Date.now()), conditions: [cond('Ready', 'True', 'Running', 'workload running')] });
    if (this.opts.hang) return;
    const t = setTimeout(() => {
      this.timers.delete(t);
      // The cache may not show our own Running write yet: only skip an env that is gone, deleting or already ended.
      const fresh = this.informer?.get(key) ?? env;
      const ended = fresh.status?.phase === 'Succeeded' || fresh.status?.phase === 'Failed';
      if (!this.alive || !this.informer?.get(key) || fresh.metadata.deletionTimestamp || ended) return;
      void this.status(fresh, {
        phase: 'Succeeded',
        reason: 'Completed',
        exitCode: 0,
        finishTime: rfc3339(Date.now()),
        conditions: [cond('Ready', 'False', 'Completed', 'workload exited 0')],
      }).catch(() => undefined);
    }, this.opts.runMs ?? 300);
    this.timers.add(t);
  }

  /** A teardown's wait: tracked like every timer, so kill() ends it (and a test run is not kept alive by it). */
  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.timers.delete(t);
        resolve();
      }, ms);
      this.timers.add(t);
    });
  }

  /** Server-side apply of agent-owned status fields (force: the agent owns what it observed). */
  private async status(env: EnvObject, status: Obj): Promise<void> {
    const { name, namespace = '' } = env.metadata;
    this.writes++;
    await this.client.apply(
      `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/disposableenvs/${name}/status`,
      { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace }, status },
      AGENT_FIELD_MANAGER,
    );
  }

  /** Removes exactly the finalizer (JSON patch that tests the entry first); a 404 means the env is already gone. */
  private async release(env: EnvObject): Promise<void> {
    const i = env.metadata.finalizers?.indexOf(FINALIZER) ?? -1;
    if (i < 0) return;
    const { name, namespace = '' } = env.metadata;
    this.writes++;
    try {
      await this.client.jsonPatch(`/apis/${GROUP}/${VERSION}/namespaces/${namespace}/disposableenvs/${name}`, [
        { op: 'test', path: `/metadata/finalizers/${i}`, value: FINALIZER },
        { op: 'remove', path: `/metadata/finalizers/${i}` },
      ]);
    } catch (err) {
      if (!isNotFound(err)) throw err;
    }
  }

  /** The agent dies: no more heartbeats or status writes; everything it registered stays. */
  async kill(): Promise<void> {
    this.alive = false;
    if (this.timer) clearInterval(this.timer);
    for (const t of this.timers) clearTimeout(t);
    await this.informer?.stop();
  }

  /** The agent comes back: heartbeats (and work) resume. */
  async revive(): Promise<void> {
    this.alive = true;
    await this.heartbeat();
    this.timer = setInterval(() => void this.heartbeat().catch(() => undefined), this.opts.renewEveryMs ?? 1000);
    if (!this.opts.passive) await this.watch();
  }

  /** Stops and deletes the Node, DisposableNode and Lease. */
  async cleanup(): Promise<void> {
    await this.kill();
    const { name } = this.opts;
    await this.client.delete(`/api/v1/nodes/${name}`).catch(() => undefined);
    await this.client.delete(`/apis/${GROUP}/${VERSION}/disposablenodes/${name}`).catch(() => undefined);
    await this.client.delete(this.leasePath()).catch(() => undefined);
    this.client.close();
  }
}

function cond(type: string, status: 'True' | 'False', reason: string, message: string): Obj {
  return { type, status, reason, message, lastTransitionTime: rfc3339(Date.now()) };
}

async function ensureNamespace(client: KubeClient, name: string): Promise<void> {
  try {
    await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

/** Create, or replace the labels/spec of an existing object. */
async function upsert(client: KubeClient, collection: string, name: string, body: Obj): Promise<void> {
  try {
    await client.create(collection, body);
  } catch (err) {
    if (!isConflict(err)) throw err;
    const path = `${collection}/${name}`;
    try {
      await client.mergePatch(path, { metadata: { labels: (body.metadata as Obj).labels ?? {} }, spec: body.spec });
    } catch (e) {
      if (!isNotFound(e)) throw e;
    }
  }
}
