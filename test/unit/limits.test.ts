import { EnvSpecSchema } from '../../src/api/env.js';
import { applyDefaultLimits, DEFAULT_LIMITS_FLAG, defaultsAboveCaps, limitProblems, parseLimits, type LimitKey } from '../../node-agent/limits.js';

const spec = (resources: Record<string, unknown> = {}) => EnvSpecSchema.parse({ workload: { command: ['/bin/true'] }, resources });
const none = new Map<LimitKey, string>();
const defaults = parseLimits(DEFAULT_LIMITS_FLAG);

describe('default limits', () => {
  it('parses the template: memory 1Gi, high 800Mi, swap 500Mi, cpu 500m, pids 100, io weight 100', () => {
    expect(defaults).toEqual({ memory: '1Gi', 'memory.high': '800Mi', swap: '500Mi', cpu: '500m', pids: '100', 'io.weight': '100' });
    expect(parseLimits('')).toEqual({});
  });

  it('refuses a bad list, naming the entry', () => {
    expect(() => parseLimits('mem=1Gi')).toThrow(/unknown limit "mem" \(expected memory, memory.high, swap, cpu, pids, io.weight\)/);
    expect(() => parseLimits('pids')).toThrow(/expected pids=VALUE/);
    expect(() => parseLimits('pids=1.5')).toThrow(/pids must be an integer/);
    expect(() => parseLimits('pids=0')).toThrow(/^pids: /);
    expect(() => parseLimits('memory=lots')).toThrow(/^memory: /);
    expect(() => parseLimits('cpu=1m')).toThrow(/^cpu: must be at least 10m/);
    expect(() => parseLimits('memory=1Gi,memory=2Gi')).toThrow(/memory is given twice/);
    expect(() => parseLimits('memory=512Mi,memory.high=800Mi')).toThrow(/^memory.high: must not exceed spec.resources.memory.max \(512Mi\)/);
  });

  it('fills every unset limit and reports what it applied', () => {
    const d = applyDefaultLimits(spec(), defaults, none);
    expect(d.spec.resources).toEqual({
      bestEffort: false,
      memory: { max: '1Gi', high: '800Mi', swapMax: '500Mi' },
      cpu: { max: '500m' },
      pids: { max: 100 },
      io: { weight: 100 },
    });
    expect(d.applied).toEqual(['memory', 'memory.high', 'swap', 'cpu', 'pids', 'io.weight']);
    expect(d.skipped).toEqual([]);
    expect(EnvSpecSchema.safeParse(d.spec).success).toBe(true);
  });

  it('never changes a limit the env set, and keeps its other fields', () => {
    const s = spec({ memory: { max: '2Gi' }, pids: { max: 5000 }, cpu: { weight: 50 }, io: { max: [{ device: '8:0', rbps: '1Mi' }] }, bestEffort: true });
    const d = applyDefaultLimits(s, defaults, none);
    expect(d.spec.resources).toEqual({
      bestEffort: true,
      memory: { max: '2Gi', high: '800Mi', swapMax: '500Mi' },
      cpu: { weight: 50, max: '500m' },
      pids: { max: 5000 },
      io: { max: [{ device: '8:0', rbps: '1Mi' }], weight: 100 },
    });
    expect(d.applied).not.toContain('memory');
    expect(d.applied).not.toContain('pids');
    expect(s.resources.memory).toEqual({ max: '2Gi' });
  });

  it('skips what this host cannot enforce (memory.high on cgroup v1, io.weight without blkio.weight) and says why', () => {
    const cannot = new Map<LimitKey, string>([
      ['memory.high', 'memory.high exists only on cgroup v2'],
      ['io.weight', 'blkio.weight does not exist on this kernel'],
    ]);
    const d = applyDefaultLimits(spec(), defaults, cannot);
    expect(d.spec.resources.memory).toEqual({ max: '1Gi', swapMax: '500Mi' });
    expect(d.spec.resources.io).toBeUndefined();
    expect(d.spec.resources.pids).toEqual({ max: 100 });
    expect(d.skipped).toEqual([
      { key: 'memory.high', field: 'spec.resources.memory.high', why: 'this node cannot enforce it: memory.high exists only on cgroup v2' },
      { key: 'io.weight', field: 'spec.resources.io.weight', why: 'this node cannot enforce it: blkio.weight does not exist on this kernel' },
    ]);
  });

  it('skips a default memory.high above the env\'s own memory.max (the spec stays valid)', () => {
    const d = applyDefaultLimits(spec({ memory: { max: '256Mi' } }), defaults, none);
    expect(d.spec.resources.memory).toEqual({ max: '256Mi', swapMax: '500Mi' });
    expect(d.skipped).toEqual([{ key: 'memory.high', field: 'spec.resources.memory.high', why: "the default 800Mi is above the env's memory.max 256Mi" }]);
    expect(EnvSpecSchema.safeParse(d.spec).success).toBe(true);
  });

  it('with no defaults changes nothing', () => {
    const s = spec();
    expect(applyDefaultLimits(s, {}, none)).toEqual({ spec: s, applied: [], skipped: [] });
  });
});

describe('limit caps', () => {
  const caps = parseLimits('memory=4Gi,cpu=2,pids=1000');

  it('names the field and the cap of each limit above it', () => {
    const s = spec({ memory: { max: '8Gi' }, cpu: { max: '2500m' }, pids: { max: 1000 } });
    expect(limitProblems(s, caps)).toEqual([
      "spec.resources.memory.max: 8Gi is above this node's cap 4Gi (flag --max-limits)",
      "spec.resources.cpu.max: 2500m is above this node's cap 2 (flag --max-limits)",
    ]);
  });

  it('allows what is at or below the cap, and checks nothing without caps', () => {
    expect(limitProblems(spec({ memory: { max: '4Gi' }, cpu: { max: '1' } }), caps)).toEqual([]);
    expect(limitProblems(spec({ memory: { max: '64Gi' } }), {})).toEqual([]);
  });

  it('checks the defaulted spec: defaults under the caps pass', () => {
    expect(limitProblems(applyDefaultLimits(spec(), defaults, none).spec, caps)).toEqual([]);
  });

  it('finds defaults above their caps (a node so configured would refuse every env)', () => {
    expect(defaultsAboveCaps(defaults, parseLimits('pids=50,memory=2Gi'))).toEqual(['default pids=100 is above its cap 50']);
  });
});
