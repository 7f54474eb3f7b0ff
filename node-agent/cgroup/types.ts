/**
 * The cgroup driver contract shared by the v2 driver and the v1/hybrid driver,
 * so the runtime, the lifecycle loop and teardown never branch on the cgroup
 * version themselves.
 */
import type { Resources } from '../../src/api/env.js';
import type { CgroupWrite, Unenforceable } from '../../src/core/cgroup-values.js';

/** How /sys/fs/cgroup is set up on this host. */
export type CgroupMode = 'unified' | 'hybrid' | 'legacy';

/** What the kernel reports about an env's cgroup. Absent fields: not available on this host. */
export interface CgroupStats {
  memoryCurrentBytes?: number;
  memoryPeakBytes?: number;
  /** The enforced limit (undefined when unlimited). */
  memoryMaxBytes?: number;
  /** Times the limit was hit (v2 memory.events max; v1 memory.failcnt). */
  memoryMaxEvents?: number;
  /** Times memory.high throttled the group (v2 only). */
  memoryHighEvents?: number;
  /** OOM situations (v2 memory.events oom; v1 under_oom transitions are not counted). */
  oomEvents?: number;
  /** Processes killed by the OOM killer. */
  oomKills?: number;
  pidsCurrent?: number;
  /** pids.max (undefined when unlimited). */
  pidsMax?: number;
  /** Forks refused because of pids.max. */
  pidsMaxEvents?: number;
  cpuUsageUsec?: number;
  cpuPeriods?: number;
  cpuThrottledPeriods?: number;
  cpuThrottledUsec?: number;
  ioReadBytes?: number;
  ioWriteBytes?: number;
}

/** Hooks so every directory is journaled before it is made and after. */
export interface CreateHooks {
  /** Called with directories about to be created; must persist them before returning. */
  intend(dirs: string[]): Promise<void>;
  /** Called with directories now existing; `made` false: it already existed. */
  created(dirs: { dir: string; made: boolean }[]): Promise<void>;
}

/** Result of a successful create. */
export interface CreatedCgroup {
  /** Writes that were applied and read back. */
  readonly applied: CgroupWrite[];
  /** Limits skipped because the env asked for best effort. */
  readonly skipped: Unenforceable[];
}

/** How to kill every process of a cgroup. */
export type KillMethod = 'auto' | 'cgroup.kill' | 'freeze';

/** One cgroup version's implementation. Paths are relative to each hierarchy root. */
export interface CgroupDriver {
  readonly mode: CgroupMode;
  /** Limits of `resources` this host cannot enforce (checked before anything is created). */
  unenforceable(resources: Resources): Promise<Unenforceable[]>;
  /** Every directory that makes up `relPath`'s ancestors and leaf, per hierarchy, top-down. */
  directories(relPath: string): string[][];
  /** Create `relPath` with limits, all-or-nothing. */
  create(relPath: string, resources: Resources, opts: { bestEffort: boolean; hooks: CreateHooks }): Promise<CreatedCgroup>;
  stats(relPath: string): Promise<CgroupStats>;
  /** Processes in the env's cgroup (the unified tree when there is one). */
  procs(relPath: string): Promise<number[]>;
  populated(relPath: string): Promise<boolean>;
  freeze(relPath: string, frozen: boolean): Promise<void>;
  /** SIGKILL every process in the cgroup; returns the method used. */
  kill(relPath: string, method?: KillMethod): Promise<'cgroup.kill' | 'freeze'>;
  /** Resolve true once no process is left, false on timeout. */
  waitEmpty(relPath: string, timeoutMs: number): Promise<boolean>;
  /** Remove the leaf in every hierarchy (children first), then empty parents under the root; returns what is gone. */
  remove(relPath: string, opts?: { budgetMs?: number; removeParents?: boolean }): Promise<{ removed: string[] }>;
  /** The hierarchy roots this driver makes directories in. */
  hierarchyRoots(): readonly string[];
  /** The value for the OCI config's `linux.cgroupsPath`. */
  runcPath(relPath: string): string;
}
