import fc from 'fast-check';
import {
  CPU_MIN_QUOTA_US,
  blkioToIoWeight,
  cpuMax,
  ioWeightToBlkio,
  planV1,
  planV2,
  sharesToWeight,
  weightToShares,
} from '../../src/core/cgroup-values.js';
import { parseSpec } from '../../src/api/validate.js';

const resources = (r: unknown) => parseSpec({ workload: { command: ['/bin/true'] }, resources: r }).resources;

describe('cpu.max', () => {
  it.each([
    ['500m', '50000 100000'],
    ['1.5', '150000 100000'],
    ['0.2', '20000 100000'],
    [2, '200000 100000'],
    ['10m', '1000 100000'],
    ['1m', '1000 100000'], // clamped to the kernel minimum
  ])('%s → %s', (q, want) => {
    expect(cpuMax(q)).toBe(want);
  });

  it('quota is never below 1ms and scales linearly', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64_000 }), (m) => {
        const [quota, period] = cpuMax(`${m}m`).split(' ').map(BigInt);
        expect(period).toBe(100000n);
        expect(quota! >= CPU_MIN_QUOTA_US).toBe(true);
        if (m >= 10) expect(quota).toBe(BigInt(m) * 100n);
      }),
    );
  });
});

describe('weight conversions', () => {
  it('v2 weight ↔ v1 shares stays within bounds and round-trips closely', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10000 }), (w) => {
        const shares = weightToShares(w);
        expect(shares).toBeGreaterThanOrEqual(2);
        expect(shares).toBeLessThanOrEqual(262144);
        expect(Math.abs(sharesToWeight(shares) - w)).toBeLessThanOrEqual(1);
      }),
    );
    expect(weightToShares(1)).toBe(2);
    expect(weightToShares(10000)).toBe(262144);
    expect(sharesToWeight(1024)).toBe(39);
  });

  it('io.weight ↔ blkio.weight stays within [10,1000]', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 10000 }), (w) => {
        const b = ioWeightToBlkio(w);
        expect(b).toBeGreaterThanOrEqual(10);
        expect(b).toBeLessThanOrEqual(1000);
        expect(Math.abs(blkioToIoWeight(b) - w)).toBeLessThanOrEqual(11);
      }),
    );
  });
});

describe('planV2', () => {
  it('writes every limit, high before max', () => {
    const plan = planV2(
      resources({
        memory: { max: '1Gi', high: '800Mi', swapMax: 0 },
        cpu: { max: '500m', weight: 200 },
        pids: { max: 256 },
        io: { weight: 300, max: [{ device: '8:0', rbps: '50Mi', wiops: 100 }] },
      }),
    );
    expect(plan.writes).toEqual([
      { file: 'memory.high', value: '838860800' },
      { file: 'memory.max', value: '1073741824' },
      { file: 'memory.swap.max', value: '0' },
      { file: 'cpu.max', value: '50000 100000' },
      { file: 'cpu.weight', value: '200' },
      { file: 'pids.max', value: '256' },
      { file: 'io.weight', value: 'default 300' },
      { file: 'io.max', value: '8:0 rbps=52428800 wiops=100' },
    ]);
    expect(plan.controllers.sort()).toEqual(['cpu', 'io', 'memory', 'pids']);
    expect(plan.unenforceable).toEqual([]);
  });

  it('writes nothing for no limits', () => {
    expect(planV2(resources({}))).toEqual({ writes: [], unenforceable: [], controllers: [] });
  });
});

describe('planV1', () => {
  it('maps to v1 files and reports what v1 cannot do', () => {
    const plan = planV1(
      resources({
        memory: { max: '1Gi', high: '800Mi', swapMax: '1Gi' },
        cpu: { max: '1.5', weight: 100 },
        pids: { max: 64 },
        io: { weight: 10000, max: [{ device: '8:16', wbps: '1Mi', riops: 5 }] },
      }),
    );
    expect(plan.writes).toEqual([
      { controller: 'memory', file: 'memory.limit_in_bytes', value: '1073741824' },
      { controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: '2147483648' },
      { controller: 'cpu', file: 'cpu.cfs_period_us', value: '100000' },
      { controller: 'cpu', file: 'cpu.cfs_quota_us', value: '150000' },
      { controller: 'cpu', file: 'cpu.shares', value: String(weightToShares(100)) },
      { controller: 'pids', file: 'pids.max', value: '64' },
      { controller: 'blkio', file: 'blkio.weight', value: '1000' },
      { controller: 'blkio', file: 'blkio.throttle.write_bps_device', value: '8:16 1048576' },
      { controller: 'blkio', file: 'blkio.throttle.read_iops_device', value: '8:16 5' },
    ]);
    expect(plan.unenforceable.map((u) => u.field)).toEqual(['spec.resources.memory.high']);
  });

  it('swapMax without max cannot be expressed on v1', () => {
    expect(planV1(resources({ memory: { swapMax: '1Gi' } })).unenforceable.map((u) => u.field)).toEqual([
      'spec.resources.memory.swapMax',
    ]);
  });
});
