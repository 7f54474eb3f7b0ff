// The cgroup drivers against this host's real kernel. On the hybrid host the
// env directory is made in every v1 hierarchy (limits) and in the cgroup2
// `unified` tree (placement, cgroup.kill, freeze, cgroup.events). Every
// directory is named uniquely under disposable.slice/drvtest-<run> and removed
// in afterAll even when a test fails.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseSpec } from '../../src/api/validate.js';
import { weightToShares } from '../../src/core/cgroup-values.js';
import { detectCgroupLayout, type CgroupLayout } from '../../node-agent/probe.js';
import { V1Driver } from '../../node-agent/cgroup/v1.js';
import { removeCgroupDir } from '../../node-agent/cgroup/fs.js';
import type { CreateHooks } from '../../node-agent/cgroup/types.js';
import { findLeaks, testId } from './helpers.js';

const layout: CgroupLayout = await detectCgroupLayout();
const hybrid = layout.mode === 'hybrid';
if (!hybrid && !process.env.CI) console.warn(`[cgroup-hybrid tests skipped] this host is ${layout.mode}, not hybrid`);
const describeHybrid = hybrid || process.env.CI ? describe : describe.skip;

const klass = `drvtest-${testId()}`;
const klass2 = `drvtest-${testId()}`;
const children: ChildProcess[] = [];
const made: string[] = [];

function rel(k = klass): string {
  const p = `disposable.slice/${k}/denv-${testId()}`;
  made.push(p);
  return p;
}

/** Journal stand-in that records the order of intents and creations. */
function hooks(log: string[] = []): CreateHooks & { log: string[] } {
  return {
    log,
    intend: (dirs) => {
      log.push(...dirs.map((d) => `intend ${d}`));
      return Promise.resolve();
    },
    created: (dirs) => {
      log.push(...dirs.map((d) => `created ${d.dir} ${d.made}`));
      return Promise.resolve();
    },
  };
}

const res = (r: Record<string, unknown>) => parseSpec({ workload: { command: ['/bin/true'] }, resources: r }).resources;

/** Start `sleep` and place it in `relPath` in every hierarchy, the way runc does. */
function place(relPath: string): ChildProcess {
  const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
  children.push(c);
  for (const root of [...layout.v1.map((h) => h.mountPoint), layout.v2Root!]) writeFileSync(path.join(root, relPath, 'cgroup.procs'), String(c.pid));
  return c;
}

const exited = (c: ChildProcess): Promise<NodeJS.Signals | null> =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve(c.signalCode) : new Promise((r) => c.once('exit', (_code, sig) => r(sig)));

afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await Promise.all(children.map(exited));
  const roots = [...layout.v1.map((h) => h.mountPoint), ...(layout.v2Root ? [layout.v2Root] : [])];
  for (const p of made) for (const r of roots) await removeCgroupDir(path.join(r, p)).catch(() => undefined);
  for (const r of roots) {
    for (const k of [klass, klass2]) await removeCgroupDir(path.join(r, 'disposable.slice', k)).catch(() => undefined);
    await removeCgroupDir(path.join(r, 'disposable.slice'), { budgetMs: 100 }).catch(() => undefined);
  }
  expect(await findLeaks()).toEqual([]);
});

describeHybrid('V1Driver on the hybrid host', () => {
  const d = new V1Driver(layout);

  it('creates the env in every v1 hierarchy and in unified, journaling each level before making it', async () => {
    const p = rel();
    const h = hooks();
    await d.create(p, res({}), { bestEffort: false, hooks: h });
    for (const root of [...layout.v1.map((x) => x.mountPoint), layout.v2Root!]) expect(existsSync(path.join(root, p))).toBe(true);
    // every directory was announced before it was reported created
    for (const line of h.log.filter((l) => l.startsWith('created'))) {
      const dir = line.split(' ')[1]!;
      expect(h.log.indexOf(`intend ${dir}`)).toBeLessThan(h.log.indexOf(line));
    }
    expect(h.log.filter((l) => l.endsWith(' true')).some((l) => l.includes(`/denv-`))).toBe(true);
    await d.remove(p);
  });

  it('writes every limit and reads it back from the kernel', async () => {
    const p = rel();
    const out = await d.create(p, res({ memory: { max: '64Mi', swapMax: 0 }, cpu: { max: '250m', weight: 200 }, pids: { max: 32 } }), { bestEffort: false, hooks: hooks() });
    const read = (ctl: string, f: string): string => readFileSync(path.join('/sys/fs/cgroup', ctl, p, f), 'utf8').trim();
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
    expect(read('memory', 'memory.memsw.limit_in_bytes')).toBe(String(64 * 1024 * 1024));
    expect(read('cpu', 'cpu.cfs_quota_us')).toBe('25000');
    expect(read('cpu', 'cpu.cfs_period_us')).toBe('100000');
    expect(read('cpu', 'cpu.shares')).toBe(String(weightToShares(200)));
    expect(read('pids', 'pids.max')).toBe('32');
    expect(read('cpuset', 'cpuset.cpus')).toBe(readFileSync('/sys/fs/cgroup/cpuset/cpuset.cpus', 'utf8').trim());
    expect(out.applied.map((w) => w.file)).toEqual(['memory.limit_in_bytes', 'memory.memsw.limit_in_bytes', 'cpu.cfs_period_us', 'cpu.cfs_quota_us', 'cpu.shares', 'pids.max']);
    const st = await d.stats(p);
    expect(st).toMatchObject({ memoryMaxBytes: 64 * 1024 * 1024, pidsMax: 32, pidsCurrent: 0, cpuUsageUsec: 0 });
    await d.remove(p);
  });

  it('refuses a limit v1 cannot enforce and creates nothing; best effort skips it and says so', async () => {
    const p = rel();
    await expect(d.unenforceable(res({ memory: { high: '32Mi' } }))).resolves.toEqual([expect.objectContaining({ field: 'spec.resources.memory.high' })]);
    await expect(d.create(p, res({ memory: { high: '32Mi', max: '64Mi' } }), { bestEffort: false, hooks: hooks() })).rejects.toThrow(/memory.high.*bestEffort/s);
    for (const root of [...layout.v1.map((x) => x.mountPoint), layout.v2Root!]) expect(existsSync(path.join(root, p))).toBe(false);
    const out = await d.create(p, res({ memory: { high: '32Mi', max: '64Mi' }, bestEffort: true }), { bestEffort: true, hooks: hooks() });
    expect(out.skipped.map((s) => s.field)).toContain('spec.resources.memory.high');
    expect(out.applied.map((w) => w.file)).toContain('memory.limit_in_bytes');
    await d.remove(p);
  });

  it('is all-or-nothing: a failing write removes every directory it made', async () => {
    const p = rel();
    const leaf = p.split('/').pop()!;
    // a device that does not exist: the blkio write fails after the tree and other limits exist
    await expect(
      d.create(p, res({ pids: { max: 10 }, io: { max: [{ device: '259:250', rbps: '1Mi' }] } }), { bestEffort: false, hooks: hooks() }),
    ).rejects.toThrow(/blkio.throttle.read_bps_device/);
    for (const root of [...layout.v1.map((x) => x.mountPoint), layout.v2Root!]) {
      expect(existsSync(path.join(root, 'disposable.slice', klass, leaf))).toBe(false);
    }
  });

  it('places processes, reports populated and stats, freezes through unified, and cgroup.kill empties it', async () => {
    const p = rel();
    await d.create(p, res({ pids: { max: 16 } }), { bestEffort: false, hooks: hooks() });
    const c = place(p);
    const cg = readFileSync(`/proc/${c.pid}/cgroup`, 'utf8');
    expect(cg).toContain(`0::/${p}`);
    expect(cg).toContain(`:memory:/${p}`);
    expect(cg).toContain(`:pids:/${p}`);
    expect(await d.populated(p)).toBe(true);
    expect(await d.procs(p)).toEqual([c.pid]);
    expect((await d.stats(p)).pidsCurrent).toBe(1);
    await d.freeze(p, true);
    // the kernel sets `frozen 1` once every task has stopped: poll for it (up to 5 s) instead of guessing a delay
    const events = (): string => readFileSync(path.join(layout.v2Root!, p, 'cgroup.events'), 'utf8');
    for (let i = 0; i < 100 && !/^frozen 1$/m.test(events()); i++) await new Promise((r) => setTimeout(r, 50));
    expect(events()).toMatch(/^frozen 1$/m);
    await d.freeze(p, false);
    expect(await d.kill(p, 'cgroup.kill')).toBe('cgroup.kill');
    expect(await d.waitEmpty(p, 5000)).toBe(true);
    expect(await exited(c)).toBe('SIGKILL');
    expect(readFileSync(path.join(layout.v2Root!, p, 'cgroup.events'), 'utf8')).toMatch(/^populated 0$/m);
    await d.remove(p);
  });

  it('kills with freeze + SIGKILL when asked (the path for kernels without cgroup.kill)', async () => {
    const p = rel();
    await d.create(p, res({}), { bestEffort: false, hooks: hooks() });
    const a = place(p);
    const b = place(p);
    expect(await d.kill(p, 'freeze')).toBe('freeze');
    expect(await d.waitEmpty(p, 5000)).toBe(true);
    expect(await exited(a)).toBe('SIGKILL');
    expect(await exited(b)).toBe('SIGKILL');
    await d.remove(p);
  });

  it('removal: EBUSY while a process is inside is retried within the budget then reported; ENOENT is success', async () => {
    const p = rel();
    await d.create(p, res({}), { bestEffort: false, hooks: hooks() });
    const c = place(p);
    const t = Date.now();
    await expect(d.remove(p, { budgetMs: 300, removeParents: false })).rejects.toThrow(/EBUSY/);
    // hierarchies are removed in parallel, each retrying with doubling delays (10+20+40+80 ms) until the next would pass the budget
    expect(Date.now() - t).toBeGreaterThanOrEqual(140);
    await d.kill(p);
    await exited(c);
    const { removed } = await d.remove(p, { removeParents: false });
    expect(removed).toHaveLength(layout.v1.length + 1);
    await expect(d.remove(p, { removeParents: false })).resolves.toEqual({ removed: expect.any(Array) });
  });

  it('removes shared parents only once they are empty', async () => {
    const p1 = rel(klass2);
    const p2 = rel(klass2);
    await d.create(p1, res({}), { bestEffort: false, hooks: hooks() });
    await d.create(p2, res({}), { bestEffort: false, hooks: hooks() });
    await d.remove(p1);
    expect(existsSync(path.join('/sys/fs/cgroup/memory/disposable.slice', klass2))).toBe(true);
    await d.remove(p2);
    expect(existsSync(path.join('/sys/fs/cgroup/memory/disposable.slice', klass2))).toBe(false);
  });

  it('a legacy (v1-only) view of the same host kills through the freezer hierarchy', async () => {
    const legacy = new V1Driver({ mode: 'legacy', v1: layout.v1 });
    const p = rel();
    await legacy.create(p, res({ memory: { max: '32Mi' } }), { bestEffort: false, hooks: hooks() });
    const c = spawn('sleep', ['1000'], { stdio: 'ignore' });
    children.push(c);
    for (const h of layout.v1) writeFileSync(path.join(h.mountPoint, p, 'cgroup.procs'), String(c.pid));
    expect(await legacy.populated(p)).toBe(true);
    await expect(legacy.kill(p, 'cgroup.kill')).rejects.toThrow(/legacy/);
    expect(await legacy.kill(p)).toBe('freeze');
    expect(await legacy.waitEmpty(p, 5000)).toBe(true);
    expect(await exited(c)).toBe('SIGKILL');
    await legacy.remove(p);
  });
});
