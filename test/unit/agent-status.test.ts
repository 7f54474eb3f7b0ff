import { agentStatus, agentStatusDiffers, type EnvFacts, type StatusContext } from '../../node-agent/agent/env-status.js';
import { isWithin, policyProblems, type NodePolicy } from '../../node-agent/agent/policy.js';
import { envIdForUid } from '../../node-agent/agent/tracked.js';
import { EnvSpecSchema } from '../../src/api/env.js';
import { isEnvId } from '../../node-agent/names.js';
import { lastGcOf } from '../../node-agent/agent/registration.js';
import { ORPHAN_KINDS } from '../../node-agent/gc/plan.js';
import { GC_KINDS } from '../../src/api/node.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const ctx = (over: Partial<StatusContext> = {}): StatusContext => ({ current: undefined, generation: 1, now: T0, controllerEnded: false, ...over });
const conds = (f: EnvFacts, c = ctx()): string[] => agentStatus(f, c).conditions.map((x) => `${x.type}=${x.status}/${x.reason}`);

describe('agentStatus: conditions health tools read', () => {
  it('Creating: Ready=False and Finished=False (kstatus InProgress)', () => {
    expect(conds({ phase: 'Creating' })).toEqual(['Ready=False/Creating', 'Finished=False/Creating']);
  });

  it('Running: Ready=True (kstatus Current), Finished=False', () => {
    const s = agentStatus({ phase: 'Running', cgroupPath: 'r/c/denv-x', startTime: '2026-01-01T00:00:00Z' }, ctx());
    expect(s).toMatchObject({ phase: 'Running', cgroupPath: 'r/c/denv-x', startTime: '2026-01-01T00:00:00Z', observedGeneration: 1 });
    expect(s.conditions.map((x) => `${x.type}=${x.status}`)).toEqual(['Ready=True', 'Finished=False']);
  });

  it('Succeeded keeps Ready=True (a finished job is healthy), Finished=True, no Stalled, Reclaimed once teardown is verified', () => {
    expect(conds({ phase: 'Succeeded', reason: 'Completed', exitCode: 0, reclaimed: true })).toEqual([
      'Ready=True/Completed',
      'Finished=True/Completed',
      'Reclaimed=True/Reclaimed',
    ]);
  });

  it('Failed: Ready=False, Finished=True and Stalled=True with the reason (kstatus Failed)', () => {
    expect(conds({ phase: 'Failed', reason: 'OOMKilled', message: 'oom', reclaimed: true })).toEqual([
      'Ready=False/OOMKilled',
      'Finished=True/OOMKilled',
      'Stalled=True/OOMKilled',
      'Reclaimed=True/Reclaimed',
    ]);
  });

  it('a teardown that leaked: Reclaimed=False and Leaked=True naming what is left', () => {
    const s = agentStatus({ phase: 'Failed', reason: 'Leaked', leaks: [{ what: 'process', pids: [42], detail: 'stuck in D state' }] }, ctx());
    expect(s.conditions.find((c) => c.type === 'Leaked')).toMatchObject({ status: 'True', message: 'process: stuck in D state' });
    expect(s.conditions.find((c) => c.type === 'Reclaimed')?.status).toBe('False');
  });

  it('after the controller ended the env by a backstop, writes neither phase nor reason nor health conditions', () => {
    const s = agentStatus({ phase: 'Failed', reason: 'Stopped', reclaimed: true }, ctx({ controllerEnded: true }));
    expect(s.phase).toBeUndefined();
    expect(s.reason).toBeUndefined();
    expect(s.conditions.map((c) => c.type)).toEqual(['Reclaimed']);
  });

  it('lastTransitionTime moves only when a condition flips', () => {
    const first = agentStatus({ phase: 'Running' }, ctx());
    const later = agentStatus({ phase: 'Succeeded', reason: 'Completed' }, ctx({ current: { conditions: first.conditions }, now: T0 + 60_000 }));
    const ready = later.conditions.find((c) => c.type === 'Ready')!;
    const finished = later.conditions.find((c) => c.type === 'Finished')!;
    expect(ready.lastTransitionTime).toBe('2026-01-01T00:00:00Z');
    expect(finished.lastTransitionTime).toBe('2026-01-01T00:01:00Z');
  });

  it('agentStatusDiffers: nothing to write when the API shows the same; a write when a value or a condition differs', () => {
    const s = agentStatus({ phase: 'Running', cgroupPath: 'x' }, ctx());
    expect(agentStatusDiffers({ ...s }, s)).toBe(false);
    expect(agentStatusDiffers({ ...s, phase: 'Creating' }, s)).toBe(true);
    expect(agentStatusDiffers({ ...s, conditions: s.conditions.slice(1) }, s)).toBe(true);
    expect(agentStatusDiffers(undefined, s)).toBe(true);
  });
});

describe('node policy', () => {
  const spec = (o: Record<string, unknown>) => EnvSpecSchema.parse({ workload: { command: ['/bin/true'] }, ...o });
  const policy: NodePolicy = { allowedHostPaths: ['/srv/ci'], maxEnvs: 2, memoryBytes: 1024 * 1024 * 1024 };

  it('a host path must be an allowed dir or below it (not a sibling with the same prefix)', () => {
    expect(isWithin('/srv/ci', '/srv/ci')).toBe(true);
    expect(isWithin('/srv/ci/job-1', '/srv/ci')).toBe(true);
    expect(isWithin('/srv/ci2', '/srv/ci')).toBe(false);
    expect(isWithin('/srv/ci/../etc', '/srv/ci')).toBe(false);
    expect(policyProblems(spec({ rootfs: { hostPath: '/srv/ci/job' } }), policy, { envs: 0, memoryBytes: 0 })).toEqual([]);
    const [p] = policyProblems(spec({ rootfs: { hostPath: '/srv/other' } }), policy, { envs: 0, memoryBytes: 0 });
    expect(p).toMatch(/^spec\.rootfs\.hostPath: \/srv\/other is not under a path this node allows/);
    expect(policyProblems(spec({ rootfs: { hostPath: '/srv/ci' } }), { ...policy, allowedHostPaths: [] }, { envs: 0, memoryBytes: 0 })[0]).toContain('--allowed-host-paths');
  });

  it('max envs and memory: what is held counts', () => {
    expect(policyProblems(spec({}), policy, { envs: 2, memoryBytes: 0 })[0]).toContain('its limit is 2');
    const big = spec({ resources: { memory: { max: '768Mi' } } });
    expect(policyProblems(big, policy, { envs: 0, memoryBytes: 0 })).toEqual([]);
    expect(policyProblems(big, policy, { envs: 1, memoryBytes: 512 * 1024 * 1024 })[0]).toMatch(/^spec\.resources\.memory\.max: 768Mi does not fit/);
  });
});

describe('env id of an API object', () => {
  it('is derived from the uid: stable, distinct, and a valid env id', () => {
    const a = envIdForUid('6f1c2d3e-0000-4000-8000-000000000001');
    expect(envIdForUid('6f1c2d3e-0000-4000-8000-000000000001')).toBe(a);
    expect(envIdForUid('6f1c2d3e-0000-4000-8000-000000000002')).not.toBe(a);
    expect(isEnvId(a)).toBe(true);
    expect(a).toMatch(/^k[0-9a-f]{15}$/);
  });
});

describe('DisposableNode lastGC', () => {
  it('counts rows by kind: found (ours), reclaimed, foreign leaks; every kind a GC row can carry is one the API declares', () => {
    const rows = [
      { kind: 'cgroup', path: '/a', action: 'reclaimed' },
      { kind: 'conmon', path: 'pid 1', action: 'reclaimed' },
      { kind: 'idRange', path: '/r', action: 'young' },
      { kind: 'netns', path: 'x', action: 'reported (foreign)' },
      { kind: 'process', path: 'pid 2', action: 'stuck' },
    ] as const;
    const g = lastGcOf({ rows: [...rows], seconds: 0.2, corruptJournals: [], reclaimedEnvs: ['e'], stuckEnvs: ['s'] }, T0, T0 + 1234);
    expect(g).toEqual({
      time: '2026-01-01T00:00:01Z',
      durationSeconds: 1.23,
      found: { cgroup: 1, conmon: 1, idRange: 1, process: 1 },
      reclaimed: { cgroup: 1, conmon: 1 },
      foreignLeaks: { netns: 1 },
      stuck: 1,
    });
    for (const k of ORPHAN_KINDS) expect(GC_KINDS).toContain(k);
  });
});
