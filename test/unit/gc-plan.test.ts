// Pure GC and adoption decisions: orphan classification, min-age judged per env
// by its youngest object, live ids from journal and API, oldest-orphan age,
// duration flags, /proc stat parsing, and what adoption does in every phase.
// Plus the journal's handling of a torn file (reported as incomplete, the
// listing goes on).
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { adoptAction, classify, envsToReclaim, oldestOrphanAge, parseDuration, processAgeSeconds, type HostObject } from '../../node-agent/gc/plan.js';
import { parseProcStat } from '../../src/core/procfs.js';
import { Journal } from '../../node-agent/journal.js';

const obj = (envId: string, kind: HostObject['kind'], ageSeconds?: number): HostObject => ({ kind, path: `/x/${kind}/${envId}`, envId, ...(ageSeconds !== undefined ? { ageSeconds } : {}) });

describe('classify', () => {
  it('reclaims objects of envs nobody owns once every object of the env is old enough', () => {
    const d = classify([obj('a', 'cgroup', 120), obj('a', 'netns', 90), obj('b', 'cgroup', 120), obj('b', 'process', 5), obj('c', 'mount', 300)], { liveIds: new Set(['c']), minAgeSeconds: 60 });
    expect(d.map((x) => `${x.object.envId}:${x.object.kind}:${x.action}`)).toEqual(['a:cgroup:reclaim', 'a:netns:reclaim', 'b:cgroup:young', 'b:process:young', 'c:mount:owned']);
    expect(envsToReclaim(d)).toEqual(['a']);
  });

  it('treats an unknown age as old, and min age 0 reclaims everything unowned', () => {
    const d = classify([obj('a', 'container'), obj('b', 'cgroup', 0)], { liveIds: new Set(), minAgeSeconds: 0 });
    expect(d.every((x) => x.action === 'reclaim')).toBe(true);
    const d2 = classify([obj('a', 'container')], { liveIds: new Set(), minAgeSeconds: 1e9 });
    expect(d2[0]!.action).toBe('reclaim');
  });

  it('a live id (journal or API) protects every object of the env, whatever its age', () => {
    const d = classify([obj('a', 'cgroup', 1e6), obj('a', 'zombie', 1e6)], { liveIds: new Set(['a']), minAgeSeconds: 0 });
    expect(d.map((x) => x.action)).toEqual(['owned', 'owned']);
    expect(envsToReclaim(d)).toEqual([]);
    expect(oldestOrphanAge(d)).toBe(0);
  });

  it('reports the age of the oldest orphan, ignoring owned objects and unknown ages', () => {
    const d = classify([obj('a', 'cgroup', 30), obj('b', 'netns', 700), obj('c', 'mount'), obj('d', 'cgroup', 9999)], { liveIds: new Set(['d']), minAgeSeconds: 60 });
    expect(oldestOrphanAge(d)).toBe(700);
  });
});

describe('adoptAction', () => {
  const f = (phase: Parameters<typeof adoptAction>[0]['phase'], o: Partial<Parameters<typeof adoptAction>[0]> = {}): string => adoptAction({ phase, outstanding: 0, ownerAlive: false, conmonAlive: false, ...o });
  it('leaves clean finished envs and envs with a live owner alone', () => {
    expect(f('Succeeded')).toBe('none');
    expect(f('Failed')).toBe('none');
    expect(f('Running', { ownerAlive: true, conmonAlive: true })).toBe('none');
    expect(f('Creating', { ownerAlive: true })).toBe('none');
  });
  it('finishes a half-torn-down env even when its owner is alive', () => {
    expect(f('Failed', { outstanding: 2, ownerAlive: true })).toBe('teardown');
  });
  it('rolls back a half-created env whose creator is gone', () => {
    expect(f('Creating', { outstanding: 3 })).toBe('rollback');
    expect(f('Creating', { conmonAlive: true })).toBe('rollback');
  });
  it('re-supervises a running env while conmon lives, else collects its exit and tears down', () => {
    expect(f('Running', { conmonAlive: true })).toBe('supervise');
    expect(f('Terminating', { conmonAlive: true })).toBe('supervise');
    expect(f('Running')).toBe('finish');
    expect(f('Terminating')).toBe('finish');
  });
});

describe('helpers', () => {
  it('parses durations', () => {
    expect(parseDuration('60s')).toBe(60);
    expect(parseDuration('5m')).toBe(300);
    expect(parseDuration('1h')).toBe(3600);
    expect(parseDuration('250ms')).toBe(0.25);
    expect(parseDuration('42')).toBe(42);
    expect(() => parseDuration('soon')).toThrow(/invalid duration/);
    expect(() => parseDuration('-5s')).toThrow(/invalid duration/);
  });

  it('parses /proc/PID/stat even when the command contains spaces and parentheses', () => {
    const line = '4242 (we ird) (x)) Z 17 4242 4242 0 -1 4194564 100 0 0 0 1 2 0 0 20 0 1 0 123456 0 0 18446744073709551615';
    expect(parseProcStat(line)).toEqual({ state: 'Z', ppid: 17, startTicks: 123456 });
    expect(parseProcStat('garbage')).toBeUndefined();
  });

  it('computes a process age from boot time and start ticks', () => {
    expect(processAgeSeconds(1000, 1_700_000_000, 1_700_000_100_000)).toBe(90);
  });
});

describe('journal listing with a torn file', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gc-plan-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('reports torn, empty and missing journals as incomplete and still lists the good ones', async () => {
    const j = new Journal(dir);
    const spec = {} as never;
    await j.begin({ id: 'good1', name: 'g', class: 'c', source: { kind: 'cli' }, spec, cgroupPath: 'x', cgroupMode: 'hybrid', phase: 'Running', deadlines: {}, processes: {}, runtime: { runc: '', conmon: '', init: '', runcRoot: '' } });
    for (const [id, text] of [
      ['torn1', '{"version":1,"id":"torn1","resour'],
      ['empty1', ''],
    ] as const) {
      mkdirSync(path.join(dir, 'envs', id), { recursive: true });
      writeFileSync(path.join(dir, 'envs', id, 'journal.json'), text);
    }
    mkdirSync(path.join(dir, 'envs', 'nojournal1'));
    const l = await j.list();
    expect(l.records.map((r) => r.id)).toEqual(['good1']);
    expect(l.incomplete.map((x) => x.id).sort()).toEqual(['empty1', 'nojournal1', 'torn1']);
    expect(l.incomplete.find((x) => x.id === 'torn1')!.error).toMatch(/unreadable/);
  });
});
