/**
 * What the controller knows about nodes, joined from three informers: the
 * DisposableNode (what the agent can enforce and offers), the core/v1 Node of
 * the same name (labels for nodeSelector, cordon), and the node Lease in the
 * lease namespace (is the agent alive). It turns Lease renewals into
 * alive/lost *transitions* with one timer per node, so an env is reconciled when
 * its node's health changes rather than on every heartbeat.
 */
import type { Logger } from 'winston';
import type { AllocationView } from './allocation.js';
import { nodeLostAt } from './backstops.js';
import type { DisposableNodeObject, LeaseObject, NodeObject } from './model.js';
import type { NodeInfo } from './scheduler.js';

/** Lookups the monitor needs (informer caches, keyed by name). */
export interface NodeSources {
  disposableNode(name: string): DisposableNodeObject | undefined;
  disposableNodes(): Iterable<DisposableNodeObject>;
  node(name: string): NodeObject | undefined;
  lease(name: string): LeaseObject | undefined;
}

export interface NodeMonitorOptions {
  readonly leaseTimeoutMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
  /** A node became lost or alive again. */
  readonly onTransition: (node: string, alive: boolean) => void;
}

/** Joins node facts for the scheduler and watches Lease freshness. */
export class NodeMonitor {
  private readonly alive = new Map<string, boolean>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  constructor(
    private readonly src: NodeSources,
    private readonly allocation: AllocationView,
    private readonly opts: NodeMonitorOptions,
  ) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** The node's Lease (agent heartbeat), if any. */
  lease(name: string): LeaseObject | undefined {
    return this.src.lease(name);
  }

  /** When the node is (or was) lost, from its Lease. */
  lostAt(name: string): number {
    return nodeLostAt(this.src.lease(name), this.opts.leaseTimeoutMs);
  }

  /** Every registered node as the scheduler sees it at `now`. */
  infos(now: number): NodeInfo[] {
    const out: NodeInfo[] = [];
    for (const dn of this.src.disposableNodes()) {
      const name = dn.metadata.name;
      const node = this.src.node(name);
      const usage = this.allocation.usageOf(name);
      out.push({
        name,
        labels: node?.metadata.labels ?? {},
        alive: now < this.lostAt(name),
        unschedulable: dn.spec?.unschedulable === true || node?.spec?.unschedulable === true,
        cgroupMode: dn.status?.cgroupMode,
        controllers: dn.status?.controllers,
        features: dn.status?.features,
        maxEnvs: dn.spec?.maxEnvs ?? dn.status?.capacity?.maxEnvs,
        memoryBytes: dn.status?.capacity?.memoryBytes,
        allocatedEnvs: usage.envs,
        allocatedMemory: usage.memory,
      });
    }
    return out;
  }

  /**
   * Re-evaluates one node's liveness (call on every Lease event and at start):
   * reports a transition, and arms a timer for the instant the Lease expires.
   */
  check(name: string): void {
    const now = this.now();
    const lostAt = this.lostAt(name);
    const alive = now < lostAt;
    const before = this.alive.get(name);
    this.alive.set(name, alive);
    const pending = this.timers.get(name);
    if (pending) clearTimeout(pending);
    this.timers.delete(name);
    if (alive) {
      const t = setTimeout(() => this.check(name), lostAt - now + 5);
      t.unref?.();
      this.timers.set(name, t);
    }
    if (before !== undefined && before !== alive) {
      this.opts.logger.info(alive ? 'node agent is alive again' : 'node lost: its Lease expired', { node: name, lostAt: new Date(lostAt).toISOString() });
      this.opts.onTransition(name, alive);
    } else if (before === undefined && !alive && this.src.disposableNode(name)) {
      // First look (controller start): a registered node that is already lost is a transition too.
      this.opts.onTransition(name, false);
    }
  }

  /** Stops every timer. */
  stop(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }
}
