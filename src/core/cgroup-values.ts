/**
 * Pure translation of a DisposableEnv's `spec.resources` into the exact
 * `{file, value}` writes for cgroup v2 and for cgroup v1. The node runtime's
 * drivers write these through one function; keeping the arithmetic here means it
 * is tested without a kernel and is the same for both drivers.
 */
import type { Resources } from '../api/env.js';
import { toBytes, toMillicores } from './quantity.js';

/** The CFS period the project uses everywhere (the kernel default). */
export const CPU_PERIOD_US = 100_000n;
/** The kernel refuses a CFS quota below 1 ms. */
export const CPU_MIN_QUOTA_US = 1_000n;

/** One write to a cgroup control file. `controller` is only set for v1. */
export interface CgroupWrite {
  readonly controller?: V1Controller;
  readonly file: string;
  readonly value: string;
}

/** cgroup v1 hierarchies this project writes to. */
export type V1Controller = 'memory' | 'cpu' | 'pids' | 'blkio';

/** A limit the spec asks for that this cgroup version cannot express. */
export interface Unenforceable {
  readonly field: string;
  readonly why: string;
}

/** A plan: the writes, plus what cannot be enforced by this version. */
export interface CgroupPlan {
  readonly writes: CgroupWrite[];
  readonly unenforceable: Unenforceable[];
  /** Controllers the plan needs enabled (v2 names). */
  readonly controllers: string[];
}

/** cpu.max quota in µs for a CPU limit in millicores, never below the kernel minimum. */
export function cpuQuotaUs(millicores: bigint, periodUs: bigint = CPU_PERIOD_US): bigint {
  const q = (millicores * periodUs + 999n) / 1000n;
  return q < CPU_MIN_QUOTA_US ? CPU_MIN_QUOTA_US : q;
}

/** `cpu.max` contents ("quota period") for a CPU quantity such as `500m` or `1.5`. */
export function cpuMax(q: string | number, periodUs: bigint = CPU_PERIOD_US): string {
  return `${cpuQuotaUs(toMillicores(q), periodUs)} ${periodUs}`;
}

/** cgroup v2 cpu.weight [1,10000] → v1 cpu.shares [2,262144] (the mapping runc and crun use, inverted). */
export function weightToShares(weight: number): number {
  return 2 + Math.floor(((weight - 1) * 262142) / 9999);
}

/** cgroup v1 cpu.shares → v2 cpu.weight, as runc converts. */
export function sharesToWeight(shares: number): number {
  return 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

/** cgroup v2 io.weight [1,10000] → v1 blkio.weight [10,1000]. */
export function ioWeightToBlkio(weight: number): number {
  return 10 + Math.floor(((weight - 1) * 990) / 9999);
}

/** cgroup v1 blkio.weight [10,1000] → v2 io.weight, as crun converts. */
export function blkioToIoWeight(blkio: number): number {
  return 1 + Math.floor(((blkio - 10) * 9999) / 990);
}

/** One `io.max` line for a device entry, only the keys that are set. */
export function ioMaxLine(dev: NonNullable<NonNullable<Resources['io']>['max']>[number]): string {
  const parts = [dev.device];
  if (dev.rbps !== undefined) parts.push(`rbps=${toBytes(dev.rbps)}`);
  if (dev.wbps !== undefined) parts.push(`wbps=${toBytes(dev.wbps)}`);
  if (dev.riops !== undefined) parts.push(`riops=${dev.riops}`);
  if (dev.wiops !== undefined) parts.push(`wiops=${dev.wiops}`);
  return parts.join(' ');
}

/** The cgroup v2 writes for `resources`, in the order they must be applied. */
export function planV2(r: Resources): CgroupPlan {
  const writes: CgroupWrite[] = [];
  const controllers = new Set<string>();
  const mem = r.memory;
  if (mem) {
    // high before max so that a lowered max never sits below the current high
    if (mem.high !== undefined) writes.push({ file: 'memory.high', value: toBytes(mem.high).toString() });
    if (mem.max !== undefined) writes.push({ file: 'memory.max', value: toBytes(mem.max).toString() });
    if (mem.swapMax !== undefined) writes.push({ file: 'memory.swap.max', value: toBytes(mem.swapMax).toString() });
    if (mem.high !== undefined || mem.max !== undefined || mem.swapMax !== undefined) controllers.add('memory');
  }
  if (r.cpu) {
    if (r.cpu.max !== undefined) writes.push({ file: 'cpu.max', value: cpuMax(r.cpu.max) });
    if (r.cpu.weight !== undefined) writes.push({ file: 'cpu.weight', value: String(r.cpu.weight) });
    if (r.cpu.max !== undefined || r.cpu.weight !== undefined) controllers.add('cpu');
  }
  if (r.pids?.max !== undefined) {
    writes.push({ file: 'pids.max', value: String(r.pids.max) });
    controllers.add('pids');
  }
  if (r.io) {
    if (r.io.weight !== undefined) writes.push({ file: 'io.weight', value: `default ${r.io.weight}` });
    for (const dev of r.io.max ?? []) writes.push({ file: 'io.max', value: ioMaxLine(dev) });
    if (r.io.weight !== undefined || (r.io.max?.length ?? 0) > 0) controllers.add('io');
  }
  return { writes, unenforceable: [], controllers: [...controllers] };
}

/** The cgroup v1 writes for `resources`, and the limits v1 cannot express. */
export function planV1(r: Resources): CgroupPlan {
  const writes: CgroupWrite[] = [];
  const unenforceable: Unenforceable[] = [];
  const controllers = new Set<string>();
  const mem = r.memory;
  if (mem) {
    if (mem.max !== undefined) {
      controllers.add('memory');
      writes.push({ controller: 'memory', file: 'memory.limit_in_bytes', value: toBytes(mem.max).toString() });
      if (mem.swapMax !== undefined) {
        // v1 limits memory+swap together; v2 limits swap alone
        const total = toBytes(mem.max) + toBytes(mem.swapMax);
        writes.push({ controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: total.toString() });
      }
    } else if (mem.swapMax !== undefined) {
      unenforceable.push({
        field: 'spec.resources.memory.swapMax',
        why: 'cgroup v1 limits memory+swap together (memory.memsw.limit_in_bytes) and needs memory.max to be set too',
      });
    }
    if (mem.high !== undefined) {
      unenforceable.push({
        field: 'spec.resources.memory.high',
        why: 'memory.high (throttling without killing) exists only on cgroup v2',
      });
    }
  }
  if (r.cpu) {
    if (r.cpu.max !== undefined) {
      controllers.add('cpu');
      writes.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: CPU_PERIOD_US.toString() });
      writes.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: cpuQuotaUs(toMillicores(r.cpu.max)).toString() });
    }
    if (r.cpu.weight !== undefined) {
      controllers.add('cpu');
      writes.push({ controller: 'cpu', file: 'cpu.shares', value: String(weightToShares(r.cpu.weight)) });
    }
  }
  if (r.pids?.max !== undefined) {
    controllers.add('pids');
    writes.push({ controller: 'pids', file: 'pids.max', value: String(r.pids.max) });
  }
  if (r.io) {
    if (r.io.weight !== undefined) {
      controllers.add('io');
      writes.push({ controller: 'blkio', file: 'blkio.weight', value: String(ioWeightToBlkio(r.io.weight)) });
    }
    for (const dev of r.io.max ?? []) {
      controllers.add('io');
      const pairs: [string, string | number | undefined, boolean][] = [
        ['blkio.throttle.read_bps_device', dev.rbps, true],
        ['blkio.throttle.write_bps_device', dev.wbps, true],
        ['blkio.throttle.read_iops_device', dev.riops, false],
        ['blkio.throttle.write_iops_device', dev.wiops, false],
      ];
      for (const [file, v, isBytes] of pairs) {
        if (v === undefined) continue;
        const n = isBytes ? toBytes(v).toString() : String(v);
        writes.push({ controller: 'blkio', file, value: `${dev.device} ${n}` });
      }
    }
  }
  return { writes, unenforceable, controllers: [...controllers] };
}
