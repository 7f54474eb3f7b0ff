/**
 * Pure interpretation of cgroup file contents: read-back checks after a limit
 * is written, and the stats of either version turned into one CgroupStats.
 * No I/O here, so every rule is tested against fixture strings.
 */
import { parseFlatKeyed } from '../../src/core/procfs.js';
import type { CgroupStats } from './types.js';

const PAGE = 4096n;

const BYTE_FILES = new Set([
  'memory.max',
  'memory.high',
  'memory.swap.max',
  'memory.limit_in_bytes',
  'memory.memsw.limit_in_bytes',
]);

/** A limit value as the kernel shows it: `max` and the v1 "unlimited" sentinel are both "unlimited". */
function isUnlimited(v: string): boolean {
  return v === 'max' || v === '-1' || /^9223372036854\d{6}$/.test(v);
}

/**
 * Does what the kernel shows in `file` after we wrote `written` mean the limit
 * is in force? Memory limits are rounded down to a page; `io.max` and the v1
 * throttle files list one line per device with every key; `io.weight` shows a
 * `default N` line.
 */
export function readbackMatches(file: string, written: string, shown: string): boolean {
  const v = shown.trim();
  if (BYTE_FILES.has(file)) {
    if (isUnlimited(written)) return isUnlimited(v);
    if (!/^\d+$/.test(v)) return false;
    const w = BigInt(written);
    const s = BigInt(v);
    return s === w || s === (w / PAGE) * PAGE;
  }
  if (file === 'io.max') {
    const [dev, ...pairs] = written.trim().split(/\s+/);
    const line = v.split('\n').find((l) => l.startsWith(`${dev} `));
    if (!line) return false;
    const have = new Set(line.trim().split(/\s+/).slice(1));
    return pairs.every((p) => have.has(p));
  }
  if (file === 'io.weight') {
    return v.split('\n').some((l) => l.trim() === written.trim());
  }
  if (file.startsWith('blkio.throttle.')) {
    return v.split('\n').some((l) => l.trim() === written.trim());
  }
  return v.split(/\s+/).join(' ') === written.trim().split(/\s+/).join(' ');
}

/** Sum of `rbytes`/`wbytes` over every device in a v2 `io.stat`. */
export function parseIoStat(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    for (const kv of line.trim().split(/\s+/).slice(1)) {
      const [k, val] = kv.split('=');
      if (k === 'rbytes') read += Number(val);
      if (k === 'wbytes') write += Number(val);
    }
  }
  return { read, write };
}

/** Sum of Read/Write over every device in v1 `blkio.throttle.io_service_bytes_recursive`. */
export function parseBlkioBytes(text: string): { read: number; write: number } {
  let read = 0;
  let write = 0;
  for (const line of text.split('\n')) {
    const m = /^\d+:\d+\s+(Read|Write)\s+(\d+)$/.exec(line.trim());
    if (m?.[1] === 'Read') read += Number(m[2]);
    if (m?.[1] === 'Write') write += Number(m[2]);
  }
  return { read, write };
}

function limit(text: string | undefined): number | undefined {
  if (text === undefined || isUnlimited(text.trim())) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
}

function int(text: string | undefined): number | undefined {
  if (text === undefined) return undefined;
  const n = Number(text.trim());
  return Number.isFinite(n) ? n : undefined;
}

/** Raw cgroup v2 file contents (undefined: file absent). */
export interface V2Files {
  'memory.current'?: string;
  'memory.peak'?: string;
  'memory.max'?: string;
  'memory.events'?: string;
  'pids.current'?: string;
  'pids.max'?: string;
  'pids.events'?: string;
  'cpu.stat'?: string;
  'io.stat'?: string;
}

/** CgroupStats from cgroup v2 files. */
export function statsFromV2(f: V2Files): CgroupStats {
  const s: CgroupStats = {};
  s.memoryCurrentBytes = int(f['memory.current']);
  s.memoryPeakBytes = int(f['memory.peak']);
  s.memoryMaxBytes = limit(f['memory.max']);
  if (f['memory.events'] !== undefined) {
    const e = parseFlatKeyed(f['memory.events']);
    s.memoryMaxEvents = e.max;
    s.memoryHighEvents = e.high;
    s.oomEvents = e.oom;
    s.oomKills = e.oom_kill;
  }
  s.pidsCurrent = int(f['pids.current']);
  s.pidsMax = limit(f['pids.max']);
  if (f['pids.events'] !== undefined) s.pidsMaxEvents = parseFlatKeyed(f['pids.events']).max;
  if (f['cpu.stat'] !== undefined) {
    const c = parseFlatKeyed(f['cpu.stat']);
    s.cpuUsageUsec = c.usage_usec;
    s.cpuPeriods = c.nr_periods;
    s.cpuThrottledPeriods = c.nr_throttled;
    s.cpuThrottledUsec = c.throttled_usec;
  }
  if (f['io.stat'] !== undefined) {
    const io = parseIoStat(f['io.stat']);
    s.ioReadBytes = io.read;
    s.ioWriteBytes = io.write;
  }
  return dropUndefined(s);
}

/** Raw cgroup v1 file contents, keyed by `<controller>/<file>`. */
export interface V1Files {
  'memory/memory.usage_in_bytes'?: string;
  'memory/memory.max_usage_in_bytes'?: string;
  'memory/memory.limit_in_bytes'?: string;
  'memory/memory.failcnt'?: string;
  'memory/memory.oom_control'?: string;
  'pids/pids.current'?: string;
  'pids/pids.max'?: string;
  'pids/pids.events'?: string;
  'cpuacct/cpuacct.usage'?: string;
  'cpu/cpu.stat'?: string;
  'blkio/blkio.throttle.io_service_bytes_recursive'?: string;
  /** cpu.stat of the unified tree on a hybrid host (usage without cpuacct). */
  'unified/cpu.stat'?: string;
}

/** CgroupStats from cgroup v1 files (on a hybrid host, plus unified cpu.stat). */
export function statsFromV1(f: V1Files): CgroupStats {
  const s: CgroupStats = {};
  s.memoryCurrentBytes = int(f['memory/memory.usage_in_bytes']);
  s.memoryPeakBytes = int(f['memory/memory.max_usage_in_bytes']);
  s.memoryMaxBytes = limit(f['memory/memory.limit_in_bytes']);
  s.memoryMaxEvents = int(f['memory/memory.failcnt']);
  if (f['memory/memory.oom_control'] !== undefined) {
    const o = parseFlatKeyed(f['memory/memory.oom_control']);
    s.oomKills = o.oom_kill;
  }
  s.pidsCurrent = int(f['pids/pids.current']);
  s.pidsMax = limit(f['pids/pids.max']);
  if (f['pids/pids.events'] !== undefined) s.pidsMaxEvents = parseFlatKeyed(f['pids/pids.events']).max;
  const ns = int(f['cpuacct/cpuacct.usage']);
  if (ns !== undefined) s.cpuUsageUsec = Math.floor(ns / 1000);
  else if (f['unified/cpu.stat'] !== undefined) s.cpuUsageUsec = parseFlatKeyed(f['unified/cpu.stat']).usage_usec;
  if (f['cpu/cpu.stat'] !== undefined) {
    const c = parseFlatKeyed(f['cpu/cpu.stat']);
    s.cpuPeriods = c.nr_periods;
    s.cpuThrottledPeriods = c.nr_throttled;
    if (c.throttled_time !== undefined) s.cpuThrottledUsec = Math.floor(c.throttled_time / 1000);
  }
  const blk = f['blkio/blkio.throttle.io_service_bytes_recursive'];
  if (blk !== undefined) {
    const io = parseBlkioBytes(blk);
    s.ioReadBytes = io.read;
    s.ioWriteBytes = io.write;
  }
  return dropUndefined(s);
}

function dropUndefined(s: CgroupStats): CgroupStats {
  for (const k of Object.keys(s) as (keyof CgroupStats)[]) if (s[k] === undefined || Number.isNaN(s[k])) delete s[k];
  return s;
}
