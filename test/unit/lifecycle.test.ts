// The lifecycle rules as pure functions of policy, state and samples: deadlines,
// idleness, OOM kills, memory pressure and pids pinned at max, and the final
// phase/reason. No clocks, no cgroups.
import { parseSpec } from '../../src/api/validate.js';
import { activity, initialState, observe, outcome, policyFromSpec, usageFromStats, type Policy, type Sample } from '../../node-agent/lifecycle.js';
import type { CgroupStats } from '../../node-agent/cgroup/types.js';

const base: Policy = { timeoutMs: 60_000, graceMs: 5_000, onOOMKill: true, idleCpuUsecPerSec: 10_000 };
const T0 = 1_000_000;

function s(at: number, stats: CgroupStats, netBytes?: number): Sample {
  return { at: T0 + at, stats, ...(netBytes !== undefined ? { netBytes } : {}) };
}

/** Feed samples in order; returns the first verdict and when it came. */
function run(policy: Policy, samples: Sample[]): { reason?: string; at?: number } {
  let st = initialState(T0, samples[0]);
  for (const x of samples.slice(1)) {
    const r = observe(policy, st, x);
    st = r.state;
    if (r.verdict) return { reason: r.verdict.reason, at: x.at - T0 };
  }
  return {};
}

const idle = (n: number, stepMs: number, extra: CgroupStats = {}): Sample[] =>
  Array.from({ length: n }, (_v, i) => s(i * stepMs, { cpuUsageUsec: 1000 + i * 5, pidsCurrent: 2, ioReadBytes: 0, ioWriteBytes: 0, ...extra }, 0));

describe('policyFromSpec', () => {
  it('converts seconds to milliseconds and carries the reclaim policies', () => {
    const spec = parseSpec({
      workload: { command: ['/bin/true'] },
      resources: { memory: { max: '64Mi' }, pids: { max: 10 } },
      lifecycle: { timeoutSeconds: 30, gracePeriodSeconds: 3, idleTimeoutSeconds: 10, reclaim: { memoryPressure: { thresholdPercent: 80, forSeconds: 5 }, pidsAtMax: { forSeconds: 2 } } },
    });
    const p = policyFromSpec(spec);
    expect(p).toMatchObject({ timeoutMs: 30_000, graceMs: 3_000, idleTimeoutMs: 10_000, onOOMKill: true, memoryPressure: { thresholdPercent: 80, forMs: 5000 }, pidsAtMax: { forMs: 2000 } });
  });
});

describe('deadline', () => {
  it('is DeadlineExceeded at exactly timeoutSeconds after start, not before', () => {
    const p = { ...base, timeoutMs: 10_000 };
    const samples = [s(0, {}), s(9_999, {}), s(10_000, {})];
    expect(run(p, samples)).toEqual({ reason: 'DeadlineExceeded', at: 10_000 });
    expect(run(p, samples.slice(0, 2))).toEqual({});
  });
});

describe('idleness', () => {
  const p = { ...base, idleTimeoutMs: 10_000 };

  it('an env with no cpu, io, net or process changes is IdleTimeout after idleTimeout', () => {
    expect(run(p, idle(12, 1000))).toEqual({ reason: 'IdleTimeout', at: 10_000 });
  });

  it('a busy cpu is never idle', () => {
    const busy = Array.from({ length: 30 }, (_v, i) => s(i * 1000, { cpuUsageUsec: i * 900_000, pidsCurrent: 2 }, 0));
    expect(run(p, busy)).toEqual({});
  });

  it('cpu below the threshold (1% of a core) still counts as idle', () => {
    const trickle = Array.from({ length: 12 }, (_v, i) => s(i * 1000, { cpuUsageUsec: i * 5_000, pidsCurrent: 2 }, 0));
    expect(run(p, trickle).reason).toBe('IdleTimeout');
  });

  it('io, network bytes and a changing process count each reset the idle clock', () => {
    const withIo = idle(12, 1000).map((x, i) => (i === 8 ? s(8000, { ...x.stats, ioWriteBytes: 4096 }, 0) : x));
    // io at 8 s: idle again only from 8 s, so no verdict by 11 s
    expect(run(p, withIo)).toEqual({});
    const withNet = idle(12, 1000).map((x, i) => (i >= 5 ? s(i * 1000, x.stats, 100) : x));
    expect(run(p, withNet)).toEqual({});
    const withFork = idle(12, 1000).map((x, i) => (i === 6 ? s(6000, { ...x.stats, pidsCurrent: 3 }, 0) : x));
    expect(run(p, withFork)).toEqual({});
  });

  it('activity() names what moved', () => {
    expect(activity(base, s(0, { cpuUsageUsec: 0 }), s(1000, { cpuUsageUsec: 500_000 }))).toMatch(/^cpu/);
    expect(activity(base, s(0, { ioReadBytes: 0 }), s(1000, { ioReadBytes: 1 }))).toMatch(/^io/);
    expect(activity(base, s(0, {}, 10), s(1000, {}, 20))).toMatch(/^net/);
    expect(activity(base, s(0, { pidsCurrent: 1 }), s(1000, { pidsCurrent: 4 }))).toMatch(/^processes/);
    expect(activity(base, s(0, { cpuUsageUsec: 10 }), s(1000, { cpuUsageUsec: 20 }))).toBeUndefined();
  });

  it('no idle rule without idleTimeoutSeconds', () => {
    expect(run(base, idle(40, 1000))).toEqual({});
  });
});

describe('OOM', () => {
  it('an OOM kill after start ends the env with OOMKilled', () => {
    const samples = [s(0, { oomKills: 0 }), s(1000, { oomKills: 0 }), s(2000, { oomKills: 1 })];
    expect(run(base, samples)).toEqual({ reason: 'OOMKilled', at: 2000 });
  });
  it('is ignored when reclaim.onOOMKill is false', () => {
    expect(run({ ...base, onOOMKill: false }, [s(0, { oomKills: 0 }), s(1000, { oomKills: 3 })])).toEqual({});
  });
  it('counts only kills after the first sample (baseline)', () => {
    expect(run(base, [s(0, { oomKills: 2 }), s(1000, { oomKills: 2 })])).toEqual({});
  });
});

describe('memory pressure', () => {
  const p = { ...base, memoryPressure: { thresholdPercent: 90, forMs: 3000 } };
  const mem = (at: number, cur: number): Sample => s(at, { memoryCurrentBytes: cur, memoryMaxBytes: 1000 });

  it('is ResourceExceeded when usage stays at or above the threshold for forSeconds', () => {
    expect(run(p, [mem(0, 100), mem(1000, 950), mem(2000, 960), mem(3000, 990), mem(4000, 900)])).toEqual({ reason: 'ResourceExceeded', at: 4000 });
  });
  it('a dip below the threshold restarts the clock', () => {
    expect(run(p, [mem(0, 950), mem(1000, 950), mem(2000, 500), mem(3000, 950), mem(4000, 950), mem(5000, 950)])).toEqual({});
  });
});

describe('pids pinned at max', () => {
  const p = { ...base, pidsAtMax: { forMs: 2000 } };
  it('current == max for forSeconds is ResourceExceeded', () => {
    const at = (t: number, cur: number, ev = 0): Sample => s(t, { pidsCurrent: cur, pidsMax: 10, pidsMaxEvents: ev });
    expect(run(p, [at(0, 3), at(1000, 10), at(2000, 10), at(3000, 10)])).toEqual({ reason: 'ResourceExceeded', at: 3000 });
  });
  it('refused forks between samples count as pinned even if the count dipped', () => {
    const at = (t: number, cur: number, ev: number): Sample => s(t, { pidsCurrent: cur, pidsMax: 10, pidsMaxEvents: ev });
    expect(run(p, [at(0, 3, 0), at(1000, 9, 50), at(2000, 8, 120), at(3000, 9, 300)]).reason).toBe('ResourceExceeded');
    expect(run(p, [at(0, 3, 0), at(1000, 9, 50), at(2000, 8, 50), at(3000, 9, 50)])).toEqual({});
  });
});

describe('outcome', () => {
  it('exit 0 is Succeeded/Completed; non-zero is Failed/Error with the signal named', () => {
    expect(outcome({ exitCode: 0, oomKills: 0, onOOMKill: true })).toMatchObject({ phase: 'Succeeded', reason: 'Completed' });
    expect(outcome({ exitCode: 3, oomKills: 0, onOOMKill: true })).toMatchObject({ phase: 'Failed', reason: 'Error' });
    expect(outcome({ exitCode: 137, oomKills: 0, onOOMKill: true }).message).toMatch(/signal 9/);
  });
  it('our verdict wins over the exit code it caused', () => {
    expect(outcome({ verdict: { reason: 'DeadlineExceeded', message: 'x' }, exitCode: 137, oomKills: 0, onOOMKill: true })).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
  });
  it('an OOM kill seen only at the end still makes it OOMKilled (unless disabled)', () => {
    expect(outcome({ exitCode: 137, oomKills: 1, onOOMKill: true }).reason).toBe('OOMKilled');
    expect(outcome({ exitCode: 0, oomKills: 1, onOOMKill: false }).reason).toBe('Completed');
  });
  it('leaks override everything', () => {
    expect(outcome({ exitCode: 0, oomKills: 0, onOOMKill: true, leaks: ['processes: 123'] })).toMatchObject({ phase: 'Failed', reason: 'Leaked' });
  });
});

describe('usageFromStats', () => {
  it('maps cgroup stats to the API usage', () => {
    expect(usageFromStats({ memoryCurrentBytes: 1, memoryPeakBytes: 2, pidsCurrent: 3, cpuUsageUsec: 1_234_567, ioReadBytes: 4, ioWriteBytes: 5, oomKills: 6 })).toEqual({
      memoryCurrentBytes: 1,
      memoryPeakBytes: 2,
      pids: 3,
      cpuSeconds: 1.235,
      ioReadBytes: 4,
      ioWriteBytes: 5,
      oomKills: 6,
    });
  });
});
