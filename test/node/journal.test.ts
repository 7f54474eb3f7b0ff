// The write-ahead journal on a real filesystem: records survive as whole
// documents, resources move intended → created → removed, incomplete env dirs
// are reported, and an env with outstanding resources cannot be forgotten.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parseSpec } from '../../src/api/validate.js';
import { expireFinished } from '../../node-agent/cli.js';
import { atomicWrite, isFinished, Journal, JOURNAL_VERSION, JournalCorruptError, outstanding, type NewEnvRecord } from '../../node-agent/journal.js';

const dirs: string[] = [];
afterAll(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function fresh(): Journal {
  const d = mkdtempSync(path.join(tmpdir(), 'denv-journal-'));
  dirs.push(d);
  return new Journal(d);
}

const init = (id: string): NewEnvRecord => ({
  id,
  name: 'build-1',
  class: 'ci-jobs',
  source: { kind: 'cli' },
  spec: parseSpec({ workload: { command: ['/bin/true'] } }),
  cgroupPath: `disposable.slice/default/denv-${id}`,
  cgroupMode: 'hybrid',
  phase: 'Creating',
  deadlines: {},
  processes: {},
  runtime: { runc: '/usr/sbin/runc', conmon: '/usr/bin/conmon', init: '/usr/bin/tini-static', runcRoot: '/run/disposable-env/runc' },
});

describe('Journal', () => {
  it('begin writes a versioned record; a second begin with the same id is refused', async () => {
    const j = fresh();
    const r = await j.begin(init('a1'));
    expect(r).toMatchObject({ version: JOURNAL_VERSION, id: 'a1', seq: 1, resources: [], stateDir: j.stateDir });
    expect(await j.read('a1')).toEqual(r);
    await expect(j.begin(init('a1'))).rejects.toThrow(/EEXIST/);
  });

  it('liveNamed finds the unfinished env of a name, and sees writes made through another Journal (another process)', async () => {
    const j = fresh();
    const other = new Journal(j.stateDir);
    expect(j.liveNamed('build-1')).toBeUndefined(); // no envs/ yet
    await j.begin({ ...init('n1'), name: 'web' });
    await j.begin({ ...init('n2'), name: 'build-1' });
    expect(j.liveNamed('build-1')).toEqual({ id: 'n2', phase: 'Creating' });
    expect(j.liveNamed('web')).toEqual({ id: 'n1', phase: 'Creating' });
    expect(j.liveNamed('api')).toBeUndefined();
    // finished elsewhere: the cached summary must not survive the file's change
    await other.update('n2', (r) => {
      r.phase = 'Running';
    });
    expect(j.liveNamed('build-1')).toEqual({ id: 'n2', phase: 'Running' });
    await other.update('n2', (r) => {
      r.phase = 'Succeeded';
    });
    expect(j.liveNamed('build-1')).toBeUndefined();
    // a name is free again once its env finished; a new env may take it
    await other.begin({ ...init('n3'), name: 'build-1' });
    expect(j.liveNamed('build-1')).toEqual({ id: 'n3', phase: 'Creating' });
    // an unreadable record is skipped (list() reports it as incomplete), a removed one forgotten
    writeFileSync(j.file('n3'), '{torn');
    expect(j.liveNamed('build-1')).toBeUndefined();
    rmSync(path.dirname(j.file('n1')), { recursive: true });
    expect(j.liveNamed('web')).toBeUndefined();
  });

  it('rejects ids that could escape the state dir', async () => {
    const j = fresh();
    await expect(j.begin(init('../x'))).rejects.toThrow(/invalid env id/);
  });

  it('tracks a resource intended → created → removed, with outstanding() in between', async () => {
    const j = fresh();
    await j.begin(init('b2'));
    await j.intend('b2', [{ kind: 'netns', hostId: '/run/netns/denv-b2' }, { kind: 'cgroup', hostId: '/sys/fs/cgroup/x' }]);
    let r = (await j.read('b2'))!;
    expect(r.resources.map((x) => x.state)).toEqual(['intended', 'intended']);
    expect(outstanding(r)).toHaveLength(2);
    await j.created('b2', [{ kind: 'netns', hostId: '/run/netns/denv-b2', madeByUs: true }]);
    await j.created('b2', [{ kind: 'cgroup', hostId: '/sys/fs/cgroup/x', madeByUs: false }]);
    r = (await j.read('b2'))!;
    expect(r.resources).toEqual([
      expect.objectContaining({ kind: 'netns', state: 'created', madeByUs: true }),
      expect.objectContaining({ kind: 'cgroup', state: 'created', madeByUs: false }),
    ]);
    await j.removed('b2', [{ kind: 'netns', hostId: '/run/netns/denv-b2' }]);
    r = (await j.read('b2'))!;
    expect(outstanding(r).map((x) => x.kind)).toEqual(['cgroup']);
    expect(r.seq).toBe(5); // begin + intend + 2×created + removed
  });

  it('serialises concurrent updates from one process (no lost writes)', async () => {
    const j = fresh();
    await j.begin(init('c3'));
    await Promise.all(Array.from({ length: 40 }, (_v, i) => j.intend('c3', [{ kind: 'cgroup', hostId: `/cg/${i}` }])));
    const r = (await j.read('c3'))!;
    expect(r.resources).toHaveLength(40);
    expect(r.seq).toBe(41);
  });

  it('writes atomically: no temp files remain and the file is always whole JSON', async () => {
    const j = fresh();
    await j.begin(init('d4'));
    for (let i = 0; i < 20; i++) await j.update('d4', (r) => void (r.message = 'x'.repeat(i * 1000)));
    const files = readdirSync(path.dirname(j.file('d4')));
    expect(files.filter((f) => f.endsWith('.tmp'))).toEqual([]);
    expect(() => JSON.parse(readFileSync(j.file('d4'), 'utf8')) as unknown).not.toThrow();
    const other = path.join(j.stateDir, 'plain.json');
    await atomicWrite(other, '{"a":1}');
    expect(readFileSync(other, 'utf8')).toBe('{"a":1}');
  });

  it('list() returns records and reports env dirs without a readable journal', async () => {
    const j = fresh();
    await j.begin(init('e5'));
    mkdirSync(path.join(j.envsDir, 'e6')); // crash between mkdir and the first write
    mkdirSync(path.join(j.envsDir, 'e7'));
    writeFileSync(path.join(j.envsDir, 'e7', 'journal.json'), '{"trunc');
    writeFileSync(path.join(j.envsDir, 'NOT-AN-ID'), '');
    const l = await j.list();
    expect(l.records.map((r) => r.id)).toEqual(['e5']);
    expect(l.incomplete.map((x) => x.id)).toEqual(['e6', 'e7']);
    await expect(j.read('e7')).rejects.toBeInstanceOf(JournalCorruptError);
  });

  it('refuses records from a newer format version', async () => {
    const j = fresh();
    await j.begin(init('f8'));
    const r = JSON.parse(readFileSync(j.file('f8'), 'utf8')) as { version: number };
    r.version = JOURNAL_VERSION + 1;
    writeFileSync(j.file('f8'), JSON.stringify(r));
    await expect(j.read('f8')).rejects.toThrow(/newer/);
  });

  it('forget() refuses while host resources are outstanding, then deletes the env dir', async () => {
    const j = fresh();
    await j.begin(init('g9'));
    await j.intend('g9', [{ kind: 'mount', hostId: '/x' }]);
    await expect(j.forget('g9')).rejects.toThrow(/host resource/);
    await j.removed('g9', [{ kind: 'mount', hostId: '/x' }]);
    await j.update('g9', (r) => void (r.phase = 'Succeeded'));
    expect(isFinished((await j.read('g9'))!)).toBe(true);
    await j.forget('g9');
    expect(await j.read('g9')).toBeUndefined();
  });

  it('expireFinished forgets finished envs after ttlSecondsAfterFinished, never live or leaky ones', async () => {
    const j = fresh();
    const t = Date.parse('2026-01-01T00:00:00Z');
    for (const id of ['h1', 'h2', 'h3', 'h4']) await j.begin(init(id));
    const finish = (id: string, at: number) =>
      j.update(id, (r) => {
        r.phase = 'Succeeded';
        r.finishTime = new Date(at).toISOString();
      });
    await finish('h1', t - 301_000); // default TTL 300 s: expired
    await finish('h2', t - 299_000); // not yet
    await finish('h3', t - 999_000);
    await j.intend('h3', [{ kind: 'netns', hostId: '/run/netns/denv-h3' }]); // still holds a host resource
    expect(await expireFinished(j, t)).toEqual(['h1']);
    expect((await j.list()).records.map((r) => r.id)).toEqual(['h2', 'h3', 'h4']);
  });
});
