/**
 * Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules:
 * candidates try every retryPeriod (jittered); a holder's claim expires
 * leaseDurationSeconds after this replica last *saw the record change* (local
 * observation time, so clock skew between replicas does not matter); every write
 * is conditional on the resourceVersion read, so two candidates can never both
 * win; a leader that cannot renew for renewDeadline steps down; and on a clean
 * shutdown the leader releases the Lease (empty holder) so a standby takes over
 * at its next retry instead of waiting for expiry.
 */
import type { Logger } from 'winston';
import { errorFields } from '../log.js';
import { isConflict, isNotFound, type KubeClient } from './kube-client.js';
import { microTime, type LeaseObject } from './model.js';

export interface LeaderElectionOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  readonly leaseDurationMs: number;
  readonly renewDeadlineMs: number;
  readonly retryPeriodMs: number;
  readonly logger: Logger;
  readonly now?: () => number;
}

export interface LeaderCallbacks {
  /** Became leader; `signal` aborts when leadership ends. */
  onStartedLeading(signal: AbortSignal): void;
  /** Lost leadership (renewal failed for renewDeadline). Not called on a clean stop(). */
  onStoppedLeading(): void;
  /** Another identity holds the Lease (logged once per change). */
  onNewLeader?(identity: string): void;
}

/** Runs the election loop for one replica. */
export class LeaderElector {
  private leader = false;
  private stopped = false;
  private observed: { rv: string; at: number; record: LeaseObject } | undefined;
  private lastRenew = 0;
  private sleepTimer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private leading: AbortController | undefined;
  private loop: Promise<void> | undefined;
  private lastSeenHolder = '';

  constructor(
    private readonly client: KubeClient,
    private readonly opts: LeaderElectionOptions,
  ) {}

  private get path(): string {
    return `/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases/${this.opts.name}`;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  isLeader(): boolean {
    return this.leader;
  }

  /** Starts campaigning in the background. */
  start(cb: LeaderCallbacks): void {
    this.loop = this.run(cb);
  }

  /** Stops campaigning; a leader releases the Lease when `release` is true. */
  async stop(release: boolean): Promise<void> {
    this.stopped = true;
    if (this.sleepTimer) clearTimeout(this.sleepTimer);
    this.wake?.();
    await this.loop;
    if (this.leader && release) await this.release();
    this.leader = false;
    this.leading?.abort();
  }

  private async run(cb: LeaderCallbacks): Promise<void> {
    while (!this.stopped) {
      if (!this.leader) {
        if (await this.tryAcquireOrRenew(cb)) {
          this.leader = true;
          this.lastRenew = this.now();
          this.leading = new AbortController();
          this.opts.logger.info('leader election: became leader', { lease: `${this.opts.namespace}/${this.opts.name}`, identity: this.opts.identity });
          cb.onStartedLeading(this.leading.signal);
          continue;
        }
        await this.sleep(this.opts.retryPeriodMs * (1 + 0.2 * Math.random()));
        continue;
      }
      await this.sleep(this.opts.retryPeriodMs);
      if (this.stopped) break;
      if (await this.tryAcquireOrRenew(cb)) {
        this.lastRenew = this.now();
      } else if (this.now() - this.lastRenew >= this.opts.renewDeadlineMs) {
        this.leader = false;
        this.leading?.abort();
        this.opts.logger.error('leader election: could not renew within the renew deadline, stepping down', {
          renewDeadlineMs: this.opts.renewDeadlineMs,
        });
        cb.onStoppedLeading();
        return;
      }
    }
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      this.wake = resolve;
      this.sleepTimer = setTimeout(resolve, ms);
    });
    this.wake = undefined;
  }

  /** One attempt; true when this replica holds the Lease afterwards. */
  private async tryAcquireOrRenew(cb: LeaderCallbacks): Promise<boolean> {
    const now = this.now();
    const durationSeconds = Math.ceil(this.opts.leaseDurationMs / 1000);
    let current: LeaseObject;
    try {
      current = await this.client.get<LeaseObject>(this.path);
    } catch (err) {
      if (!isNotFound(err)) {
        this.opts.logger.warn('leader election: cannot read the Lease', errorFields(err));
        return false;
      }
      try {
        const created = await this.client.create<LeaseObject>(`/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases`, {
          apiVersion: 'coordination.k8s.io/v1',
          kind: 'Lease',
          metadata: { name: this.opts.name, namespace: this.opts.namespace },
          spec: { holderIdentity: this.opts.identity, leaseDurationSeconds: durationSeconds, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
        });
        this.observe(created, now);
        return true;
      } catch (e) {
        if (!isConflict(e)) this.opts.logger.warn('leader election: cannot create the Lease', errorFields(e));
        return false;
      }
    }
    this.observe(current, now);
    const spec = current.spec ?? {};
    const holder = spec.holderIdentity ?? '';
    const mine = holder === this.opts.identity;
    if (holder !== this.lastSeenHolder) {
      this.lastSeenHolder = holder;
      if (holder && !mine) cb.onNewLeader?.(holder);
    }
    const recordDurationMs = (spec.leaseDurationSeconds ?? durationSeconds) * 1000;
    const expired = (this.observed?.at ?? now) + recordDurationMs <= now;
    if (holder && !mine && !expired) return false;
    const next: LeaseObject = {
      ...current,
      spec: {
        ...spec,
        holderIdentity: this.opts.identity,
        leaseDurationSeconds: durationSeconds,
        renewTime: microTime(now),
        acquireTime: mine ? spec.acquireTime : microTime(now),
        leaseTransitions: mine ? (spec.leaseTransitions ?? 0) : (spec.leaseTransitions ?? 0) + (holder ? 1 : 0),
      },
    };
    try {
      // Conditional on the resourceVersion we read: of two candidates, exactly one wins.
      const updated = await this.client.replace<LeaseObject>(this.path, next);
      this.observe(updated, now);
      return true;
    } catch (err) {
      if (!isConflict(err)) this.opts.logger.warn('leader election: cannot update the Lease', errorFields(err));
      return false;
    }
  }

  private observe(lease: LeaseObject, now: number): void {
    const rv = lease.metadata.resourceVersion ?? '';
    if (this.observed?.rv !== rv) this.observed = { rv, at: now, record: lease };
  }

  /** Gives the Lease up so a standby acquires it at its next retry. */
  private async release(): Promise<void> {
    const rec = this.observed?.record;
    if (!rec || rec.spec?.holderIdentity !== this.opts.identity) return;
    const now = this.now();
    try {
      await this.client.replace(this.path, {
        ...rec,
        spec: { ...rec.spec, holderIdentity: null, leaseDurationSeconds: 1, renewTime: microTime(now), acquireTime: microTime(now) },
      });
      this.opts.logger.info('leader election: released the Lease');
    } catch (err) {
      this.opts.logger.warn('leader election: could not release the Lease', errorFields(err));
    }
  }
}
