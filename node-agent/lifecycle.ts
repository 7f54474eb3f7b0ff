/**
 * When an env must end, and why — pure functions of the spec, `now` and what
 * the kernel reported (samples), so every rule is unit-tested without clocks or
 * cgroups. The supervisor feeds samples in and acts on the verdicts.
 *
 * Rules: the deadline (`timeoutSeconds` from start) → DeadlineExceeded; no
 * activity the kernel can see (CPU, block I/O, network bytes, number of live
 * processes) for `idleTimeoutSeconds` → IdleTimeout; an OOM kill →
 * OOMKilled (when `reclaim.onOOMKill`); memory above `thresholdPercent` of max
 * for `forSeconds`, or the task count pinned at pids.max for `forSeconds` →
 * ResourceExceeded. Every verdict is followed by SIGTERM, the grace period and a
 * kill of the whole cgroup.
 */
import type { EnvSpec, Usage } from '../src/api/env.js';
import type { Phase, Reason } from '../src/api/constants.js';
import type { CgroupStats } from './cgroup/types.js';

/** The lifecycle part of a spec in milliseconds. */
export interface Policy {
  readonly timeoutMs: number;
  readonly graceMs: number;
  readonly idleTimeoutMs?: number;
  readonly onOOMKill: boolean;
  readonly memoryPressure?: { readonly thresholdPercent: number; readonly forMs: number };
  readonly pidsAtMax?: { readonly forMs: number };
  /** CPU use (µs per second of wall time) below which the CPU counts as idle. Default 10 000 (1% of a core). */
  readonly idleCpuUsecPerSec: number;
}

/** Derive the policy from a validated spec. */
export function policyFromSpec(spec: EnvSpec): Policy {
  const lc = spec.lifecycle;
  return {
    timeoutMs: lc.timeoutSeconds * 1000,
    graceMs: lc.gracePeriodSeconds * 1000,
    ...(lc.idleTimeoutSeconds !== undefined ? { idleTimeoutMs: lc.idleTimeoutSeconds * 1000 } : {}),
    onOOMKill: lc.reclaim.onOOMKill,
    ...(lc.reclaim.memoryPressure
      ? { memoryPressure: { thresholdPercent: lc.reclaim.memoryPressure.thresholdPercent, forMs: lc.reclaim.memoryPressure.forSeconds * 1000 } }
      : {}),
    ...(lc.reclaim.pidsAtMax ? { pidsAtMax: { forMs: lc.reclaim.pidsAtMax.forSeconds * 1000 } } : {}),
    idleCpuUsecPerSec: 10_000,
  };
}

/** One observation of the env: cgroup stats plus network bytes, at time `at` (ms). */
export interface Sample {
  readonly at: number;
  readonly stats: CgroupStats;
  /** rx+tx bytes over all interfaces of the env's netns. */
  readonly netBytes?: number;
}

/** What the watcher remembers between samples. */
export interface WatchState {
  readonly startedAt: number;
  readonly lastActivityAt: number;
  readonly prev?: Sample;
  /** oom_kill count when the env started (v1 counters are per cgroup, so normally 0). */
  readonly baselineOomKills: number;
  readonly memoryHighSince?: number;
  readonly pidsAtMaxSince?: number;
}

/** Why an env must end now. */
export interface Verdict {
  readonly reason: Extract<Reason, 'DeadlineExceeded' | 'IdleTimeout' | 'OOMKilled' | 'ResourceExceeded' | 'Stopped'>;
  readonly message: string;
}

/** State at start; `startedAt` counts as activity. */
export function initialState(startedAt: number, first?: Sample): WatchState {
  return { startedAt, lastActivityAt: startedAt, baselineOomKills: first?.stats.oomKills ?? 0, ...(first ? { prev: first } : {}) };
}

/** Absolute deadline (ms) of an env that started at `startedAt`. */
export function deadlineAt(policy: Policy, startedAt: number): number {
  return startedAt + policy.timeoutMs;
}

function delta(a: number | undefined, b: number | undefined): number {
  return a === undefined || b === undefined ? 0 : Math.max(0, b - a);
}

/** Did anything happen between two samples that the kernel can see? Returns what, or undefined. */
export function activity(policy: Policy, prev: Sample, cur: Sample): string | undefined {
  const seconds = Math.max(0.001, (cur.at - prev.at) / 1000);
  const cpu = delta(prev.stats.cpuUsageUsec, cur.stats.cpuUsageUsec);
  if (cpu / seconds > policy.idleCpuUsecPerSec) return `cpu ${Math.round(cpu / seconds / 1000)}ms/s`;
  const io = delta(prev.stats.ioReadBytes, cur.stats.ioReadBytes) + delta(prev.stats.ioWriteBytes, cur.stats.ioWriteBytes);
  if (io > 0) return `io ${io} bytes`;
  const net = delta(prev.netBytes, cur.netBytes);
  if (net > 0) return `net ${net} bytes`;
  if (prev.stats.pidsCurrent !== undefined && cur.stats.pidsCurrent !== undefined && prev.stats.pidsCurrent !== cur.stats.pidsCurrent) {
    return `processes ${prev.stats.pidsCurrent}→${cur.stats.pidsCurrent}`;
  }
  return undefined;
}

function memoryOver(policy: Policy, s: Sample): boolean {
  const mp = policy.memoryPressure;
  const max = s.stats.memoryMaxBytes;
  const cur = s.stats.memoryCurrentBytes;
  if (!mp || !max || cur === undefined) return false;
  return cur * 100 >= max * mp.thresholdPercent;
}

function pidsPinned(prev: Sample | undefined, s: Sample): boolean {
  const max = s.stats.pidsMax;
  if (max === undefined) return false;
  if ((s.stats.pidsCurrent ?? 0) >= max) return true;
  // a fork was refused since the last sample: the count touched the limit in between
  return delta(prev?.stats.pidsMaxEvents, s.stats.pidsMaxEvents) > 0;
}

/**
 * Take one sample into account. Returns the new state and, when the env must
 * end, a verdict. Deadline first, then OOM, resource limits, idleness.
 */
export function observe(policy: Policy, state: WatchState, s: Sample): { state: WatchState; verdict?: Verdict } {
  const now = s.at;
  let next: WatchState = { ...state, prev: s };
  if (now >= deadlineAt(policy, state.startedAt)) {
    return { state: next, verdict: { reason: 'DeadlineExceeded', message: `ran longer than timeoutSeconds=${policy.timeoutMs / 1000}` } };
  }
  const ooms = (s.stats.oomKills ?? 0) - state.baselineOomKills;
  if (policy.onOOMKill && ooms > 0) {
    return { state: next, verdict: { reason: 'OOMKilled', message: `the kernel OOM-killed ${ooms} process(es) at the memory limit` } };
  }
  if (state.prev) {
    const what = activity(policy, state.prev, s);
    if (what) next = { ...next, lastActivityAt: now };
  }
  if (policy.memoryPressure) {
    const since = memoryOver(policy, s) ? (state.memoryHighSince ?? now) : undefined;
    next = { ...next, memoryHighSince: since };
    if (since !== undefined && now - since >= policy.memoryPressure.forMs) {
      return {
        state: next,
        verdict: { reason: 'ResourceExceeded', message: `memory stayed above ${policy.memoryPressure.thresholdPercent}% of memory.max for ${policy.memoryPressure.forMs / 1000}s` },
      };
    }
  }
  if (policy.pidsAtMax) {
    const since = pidsPinned(state.prev, s) ? (state.pidsAtMaxSince ?? now) : undefined;
    next = { ...next, pidsAtMaxSince: since };
    if (since !== undefined && now - since >= policy.pidsAtMax.forMs) {
      return { state: next, verdict: { reason: 'ResourceExceeded', message: `tasks stayed at pids.max=${s.stats.pidsMax} for ${policy.pidsAtMax.forMs / 1000}s` } };
    }
  }
  if (policy.idleTimeoutMs !== undefined && now - next.lastActivityAt >= policy.idleTimeoutMs) {
    return { state: next, verdict: { reason: 'IdleTimeout', message: `no cpu, io, network or process activity for ${policy.idleTimeoutMs / 1000}s` } };
  }
  return { state: next };
}

/** When the SIGTERMed env must be killed outright. */
export function killAt(policy: Policy, termStartedAt: number): number {
  return termStartedAt + policy.graceMs;
}

/** The end of an env: phase, reason and a message. */
export interface Outcome {
  readonly phase: Extract<Phase, 'Succeeded' | 'Failed'>;
  readonly reason: Reason;
  readonly message: string;
}

/**
 * Final phase and reason. A verdict we acted on wins (the exit code is only the
 * consequence of our SIGTERM/SIGKILL); then an OOM kill; then the exit code.
 * Leaks override everything: the env is not cleanly gone.
 */
export function outcome(input: {
  verdict?: Verdict;
  exitCode?: number;
  oomKills: number;
  onOOMKill: boolean;
  leaks?: readonly string[];
}): Outcome {
  if (input.leaks?.length) return { phase: 'Failed', reason: 'Leaked', message: `teardown left: ${input.leaks.join('; ')}` };
  if (input.verdict) return { phase: 'Failed', reason: input.verdict.reason, message: input.verdict.message };
  if (input.oomKills > 0 && input.onOOMKill) return { phase: 'Failed', reason: 'OOMKilled', message: `the kernel OOM-killed ${input.oomKills} process(es)` };
  if (input.exitCode === 0) return { phase: 'Succeeded', reason: 'Completed', message: 'the workload exited 0' };
  if (input.exitCode === undefined) return { phase: 'Failed', reason: 'Error', message: 'the workload exit code is unknown' };
  const sig = input.exitCode > 128 ? ` (signal ${input.exitCode - 128})` : '';
  return { phase: 'Failed', reason: 'Error', message: `the workload exited ${input.exitCode}${sig}` };
}

/** The API's usage snapshot from cgroup stats. */
export function usageFromStats(s: CgroupStats): Usage {
  const u: Usage = {};
  if (s.memoryCurrentBytes !== undefined) u.memoryCurrentBytes = s.memoryCurrentBytes;
  if (s.memoryPeakBytes !== undefined) u.memoryPeakBytes = s.memoryPeakBytes;
  if (s.pidsCurrent !== undefined) u.pids = s.pidsCurrent;
  if (s.cpuUsageUsec !== undefined) u.cpuSeconds = Math.round(s.cpuUsageUsec / 1000) / 1000;
  if (s.ioReadBytes !== undefined) u.ioReadBytes = s.ioReadBytes;
  if (s.ioWriteBytes !== undefined) u.ioWriteBytes = s.ioWriteBytes;
  if (s.oomKills !== undefined) u.oomKills = s.oomKills;
  return u;
}
