/**
 * The node's registration with the cluster: its DisposableNode (what the host
 * can enforce, capacity, allocation, the last GC pass) and its node Lease, the
 * heartbeat the controller reads to tell a live node from a lost one
 * (docs/controller.md, "The node Lease convention").
 */
import os from 'node:os';
import type { Logger } from 'winston';
import { API_VERSION, GROUP, NODE_KIND, NODE_PLURAL, VERSION } from '../../src/api/constants.js';
import { GC_KINDS, type CgroupMode, type GcKind, type NodeStatus } from '../../src/api/node.js';
import type { GcReport } from '../gc/pass.js';
import { ApiError, isConflict, isNotFound, type KubeClient } from '../../src/controller/kube-client.js';
import { microTime, rfc3339 } from '../../src/controller/model.js';
import { errorFields } from '../../src/log.js';
import type { HostProbe } from '../probe.js';

/** Field manager of everything the agent writes (docs/controller.md, field ownership). */
export const AGENT_FIELD_MANAGER = 'disposable-env-agent';

/** The agent's version, reported in DisposableNode.status.agentVersion. */
export const AGENT_VERSION = '0.1.0';

/** Lease validity the agent announces (the controller uses its own --node-lease-timeout). */
const LEASE_DURATION_SECONDS = 40;

/** cgroup mode in the API's words. */
export function cgroupModeOf(probe: HostProbe): CgroupMode {
  return probe.cgroup.mode === 'unified' ? 'v2' : probe.cgroup.mode === 'hybrid' ? 'hybrid' : 'v1';
}

/** What the host probe says this node can enforce, in the scheduler's terms (docs/controller.md, Scheduling). */
export function hostFacts(probe: HostProbe): Pick<NodeStatus, 'cgroupMode' | 'controllers' | 'features' | 'kernel' | 'runtime'> {
  const mode = cgroupModeOf(probe);
  // v1 hierarchies carry the limits on a hybrid host; the v2 tree's controllers are listed as "x (v2)" and left out
  const plain = probe.cgroup.controllers.filter((c) => !c.includes(' '));
  const controllers = [...new Set(plain.flatMap((c) => (c === 'blkio' ? ['blkio', 'io'] : [c])))].filter((c) => ['cpu', 'memory', 'io', 'blkio', 'pids', 'cpuset', 'hugetlb', 'freezer', 'devices'].includes(c));
  const features: string[] = [];
  if (mode === 'v2' && plain.includes('memory')) features.push('memory.high');
  if (probe.cgroup.v2Features.kill) features.push('cgroup.kill');
  if (probe.cgroup.v2Features.freeze) features.push('cgroup.freeze');
  if (probe.userNamespaces.supported) features.push('userns');
  const init = probe.tools['tini-static'].path ? `tini ${probe.tools['tini-static'].version ?? ''}`.trim() : probe.tools.catatonit.path ? `catatonit ${probe.tools.catatonit.version ?? ''}`.trim() : undefined;
  return {
    cgroupMode: mode,
    controllers,
    features,
    kernel: os.release(),
    runtime: {
      name: 'runc',
      version: (probe.tools.runc.version ?? 'unknown').slice(0, 256),
      ...(probe.tools.conmon.version ? { monitor: probe.tools.conmon.version.slice(0, 256) } : {}),
      ...(init ? { init: init.slice(0, 256) } : {}),
    },
  };
}

/** Settings of the registration. */
export interface RegistrationOptions {
  readonly node: string;
  readonly leaseNamespace: string;
  readonly identity: string;
  readonly renewEveryMs: number;
  /** Labels of the DisposableNode (kept in step on every start). */
  readonly labels: Readonly<Record<string, string>>;
  readonly logger: Logger;
}

/** Keeps the DisposableNode's status and the node Lease of one agent. */
export class Registration {
  private timer: NodeJS.Timeout | undefined;
  private renewing: Promise<void> | undefined;
  /** The last status applied, so a heartbeat-time refresh writes only on change. */
  private lastStatus = '';
  /** Time of the last successful renewal (for /readyz and tests). */
  lastRenewed = 0;

  constructor(
    private readonly client: KubeClient,
    private readonly opts: RegistrationOptions,
  ) {}

  private get leasePath(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.leaseNamespace}/leases/${this.opts.node}`;
  }

  private get nodePath(): string {
    return `/apis/${GROUP}/${VERSION}/${NODE_PLURAL}/${this.opts.node}`;
  }

  /** Create the DisposableNode (if missing), apply its status, take the Lease and start renewing it. */
  async start(status: NodeStatus): Promise<void> {
    const labels = { ...this.opts.labels };
    try {
      await this.client.create(`/apis/${GROUP}/${VERSION}/${NODE_PLURAL}`, { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: this.opts.node, labels }, spec: {} });
    } catch (err) {
      if (!isConflict(err)) throw new Error(`registration: cannot create DisposableNode ${this.opts.node}`, { cause: err });
      if (Object.keys(labels).length) await this.client.apply(this.nodePath, { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: this.opts.node, labels } }, AGENT_FIELD_MANAGER);
    }
    await this.applyStatus(status);
    await this.renew();
    this.timer = setInterval(() => {
      this.renewing ??= this.renew()
        .catch((err: unknown) => void this.opts.logger.warn('node lease renewal failed; retrying', { node: this.opts.node, ...errorFields(err) }))
        .finally(() => (this.renewing = undefined));
    }, this.opts.renewEveryMs);
  }

  /** Server-side apply of the DisposableNode status; skipped when nothing changed since the last apply. */
  async applyStatus(status: NodeStatus): Promise<void> {
    const text = JSON.stringify(status);
    if (text === this.lastStatus) return;
    await this.client.apply(`${this.nodePath}/status`, { apiVersion: API_VERSION, kind: NODE_KIND, metadata: { name: this.opts.node }, status }, AGENT_FIELD_MANAGER);
    this.lastStatus = text;
  }

  /** Renew the node Lease (create it, and its namespace, when missing). */
  async renew(): Promise<void> {
    const now = Date.now();
    try {
      await this.client.mergePatch(this.leasePath, { spec: { holderIdentity: this.opts.identity, renewTime: microTime(now), leaseDurationSeconds: LEASE_DURATION_SECONDS } });
    } catch (err) {
      if (!isNotFound(err)) throw err;
      await this.createLease(now);
    }
    this.lastRenewed = now;
  }

  private async createLease(now: number): Promise<void> {
    const body = {
      apiVersion: 'coordination.k8s.io/v1',
      kind: 'Lease',
      metadata: { name: this.opts.node, namespace: this.opts.leaseNamespace },
      spec: { holderIdentity: this.opts.identity, leaseDurationSeconds: LEASE_DURATION_SECONDS, acquireTime: microTime(now), renewTime: microTime(now) },
    };
    try {
      await this.client.create(`/apis/coordination.k8s.io/v1/namespaces/${this.opts.leaseNamespace}/leases`, body);
    } catch (err) {
      if (isConflict(err)) return;
      if (err instanceof ApiError && err.code === 404) {
        throw new Error(`registration: the lease namespace ${this.opts.leaseNamespace} does not exist (create it, or set --node-lease-namespace)`, { cause: err });
      }
      throw err;
    }
  }

  /** Stop renewing (the Lease then expires and the controller declares the node lost, unless an agent returns). */
  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.renewing;
  }
}

/** The node's Ready condition for its DisposableNode. */
export function nodeReady(now: number, problems: readonly string[]): NonNullable<NodeStatus['conditions']>[number] {
  return problems.length
    ? { type: 'Ready', status: 'False', reason: 'CannotRunEnvs', message: problems.join('; ').slice(0, 32768), lastTransitionTime: rfc3339(now) }
    : { type: 'Ready', status: 'True', reason: 'AgentReady', message: 'the agent runs envs on this node', lastTransitionTime: rfc3339(now) };
}

/**
 * `DisposableNode.status.lastGC` from a GC pass: counts by kind of what it found (ours), reclaimed, and saw
 * of others' leaks. Only the kinds the API declares are counted: a server-side apply with an undeclared
 * field is refused as a whole.
 */
export function lastGcOf(report: GcReport, startedMs: number, nowMs: number): NonNullable<NodeStatus['lastGC']> {
  const known = new Set<string>(GC_KINDS);
  const count = (match: (action: string) => boolean): Partial<Record<GcKind, number>> => {
    const out: Partial<Record<GcKind, number>> = {};
    for (const r of report.rows) if (known.has(r.kind) && match(r.action)) out[r.kind] = (out[r.kind] ?? 0) + 1;
    return out;
  };
  return {
    time: rfc3339(nowMs),
    durationSeconds: Math.round((nowMs - startedMs) / 10) / 100,
    found: count((a) => a !== 'reported (foreign)'),
    reclaimed: count((a) => a === 'reclaimed'),
    foreignLeaks: count((a) => a === 'reported (foreign)'),
    stuck: report.stuckEnvs.length,
  };
}
