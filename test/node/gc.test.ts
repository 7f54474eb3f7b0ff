// The GC pass on real kernel objects. Planted orphans of ours (prefix denv-):
//  - env A: made by the real runtime (cgroups in every hierarchy, netns, rootfs
//    mounts, runc container under conmon, uid range, its workload's processes),
//    then its journal is torn — the GC must fall back to names on the host;
//  - env B: bare objects: cgroup dirs in v1 hierarchies and the unified tree, a
//    stray process placed in them, a `denv-` netns, a bind mount under the state
//    dir in an env dir without journal, a conmon-like process (argv0 conmon,
//    naming denv-B) with an unreaped zombie child;
//  - env Y: the same kinds, made 2.5 s later: younger than the minimum age.
// Foreign objects without the prefix (a cgroup next to ours, one inside our
// cgroup root, a netns, a process in the foreign cgroup, a bind mount) must be
// reported (where the audit applies) and left untouched.
import { jest } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { execa } from 'execa';
import { isSameProcess } from '../../node-agent/exec.js';
import { gcPass, hierarchies, type GcReport } from '../../node-agent/gc/pass.js';
import { NodeMetrics } from '../../node-agent/metrics.js';
import { RUNC_ROOT } from '../../node-agent/names.js';
import { Runtime } from '../../node-agent/runtime.js';
import { parseSpec } from '../../src/api/validate.js';
import { parseMountinfo } from '../../src/core/procfs.js';
import { cleanup, findLeaks, stateDir } from './helpers.js';

jest.setTimeout(120_000);

const tag = `g${randomBytes(4).toString('hex')}`;
const A = `${tag}a`;
const B = `${tag}b`;
const Y = `${tag}y`;
const ours = (id: string): boolean => id.startsWith(tag);
const dirs: string[] = [];
const sd = stateDir(dirs);
const work = stateDir(dirs);
const started: ChildProcess[] = [];
const run = (cmd: string, args: string[]): Promise<unknown> => execa(cmd, args, { timeout: 10_000 });
let rt: Runtime;

const PIDS = '/sys/fs/cgroup/pids';
const foreignCgroup = path.join(PIDS, `foreign-gc-${tag}`);
const foreignEmpty = path.join(PIDS, `foreign-gc-empty-${tag}`);
const foreignInRoot = path.join(PIDS, 'disposable.slice', 'gc-test', `notours-${tag}`);
const foreignNetns = `foreign-gc-${tag}`;
const foreignMount = path.join(work, 'foreign-target');

function cgroupDirs(id: string): string[] {
  return hierarchies(rt)
    .filter((h) => /\/(pids|memory|unified)$/.test(h))
    .map((h) => path.join(h, 'disposable.slice', 'gc-test', `denv-${id}`));
}

function spawnSleep(argv0?: string, script = 'sleep 300', extra: string[] = []): ChildProcess {
  const c = spawn('perl', ['-e', script, ...extra], { stdio: 'ignore', detached: true, ...(argv0 ? { argv0 } : {}) });
  started.push(c);
  return c;
}

const alive = (pid: number): boolean => {
  const st = (() => {
    try {
      return readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      return '';
    }
  })();
  return st !== '' && st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) !== 'Z';
};
const mounted = (p: string): boolean => parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === p || m.mountPoint.startsWith(`${p}/`));

/** Bare orphans of env `id`: cgroups with a stray process, netns, a bind mount in a journal-less env dir, a conmon-like process with a zombie child. */
async function plantBare(id: string): Promise<{ stray: number; conmon: number }> {
  const stray = spawnSleep(undefined, 'sleep 300');
  for (const d of cgroupDirs(id)) {
    mkdirSync(d, { recursive: true });
    writeFileSync(path.join(d, 'cgroup.procs'), String(stray.pid));
  }
  await run('ip', ['netns', 'add', `denv-${id}`]);
  const envDir = path.join(sd, 'envs', id);
  mkdirSync(path.join(envDir, 'bundle', 'rootfs'), { recursive: true });
  mkdirSync(path.join(work, `src-${id}`));
  await run('mount', ['--bind', path.join(work, `src-${id}`), path.join(envDir, 'bundle', 'rootfs')]);
  const conmon = spawnSleep('conmon', 'if (fork() == 0) { exit 0 } sleep 300', [`denv-${id}`]);
  return { stray: stray.pid!, conmon: conmon.pid! };
}

let bare: { stray: number; conmon: number };
let young: { stray: number; conmon: number };
let foreignProc: ChildProcess;
let aRecord: Awaited<ReturnType<Runtime['create']>>;

beforeAll(async () => {
  rt = await Runtime.open({ stateDir: sd, emptyTimeoutMs: 5000 });
  // env A: the real thing, then its journal is torn mid-write
  aRecord = await rt.create({
    id: A,
    name: 'gc-a',
    spec: parseSpec({ class: 'gc-test', workload: { command: ['/bin/sleep', '300'] }, resources: { memory: { max: '64Mi' }, pids: { max: 32 } } }),
  });
  const journal = path.join(sd, 'envs', A, 'journal.json');
  writeFileSync(journal, readFileSync(journal, 'utf8').slice(0, 97));
  bare = await plantBare(B);
  // foreign objects
  mkdirSync(foreignCgroup);
  mkdirSync(foreignEmpty);
  mkdirSync(foreignInRoot, { recursive: true });
  foreignProc = spawnSleep(undefined, 'sleep 300', ['denv-looks-like-ours-but-argv0-is-perl']);
  writeFileSync(path.join(foreignCgroup, 'cgroup.procs'), String(foreignProc.pid));
  await run('ip', ['netns', 'add', foreignNetns]);
  mkdirSync(path.join(work, 'foreign-src'));
  mkdirSync(foreignMount);
  await run('mount', ['--bind', path.join(work, 'foreign-src'), foreignMount]);
  await new Promise((r) => setTimeout(r, 2500));
  young = await plantBare(Y);
});

afterAll(async () => {
  for (const c of started) if (c.pid && alive(c.pid)) process.kill(c.pid, 'SIGKILL');
  await new Promise((r) => setTimeout(r, 200));
  await gcPass(rt, { minAgeSeconds: 0, scope: ours, audit: false }).catch(() => undefined);
  await run('umount', [foreignMount]).catch(() => undefined);
  await run('ip', ['netns', 'delete', foreignNetns]).catch(() => undefined);
  for (const d of [foreignCgroup, foreignEmpty, foreignInRoot]) if (existsSync(d)) rmdirSync(d);
  for (const d of [path.dirname(foreignInRoot), path.dirname(path.dirname(foreignInRoot))]) {
    try {
      rmdirSync(d);
    } catch {
      /* still used by another env */
    }
  }
  const before = await findLeaks();
  await cleanup(dirs);
  expect([...before, ...(await findLeaks())]).toEqual([]);
});

function foreignIntact(): void {
  expect(existsSync(foreignCgroup)).toBe(true);
  expect(existsSync(foreignEmpty)).toBe(true);
  expect(existsSync(foreignInRoot)).toBe(true);
  expect(existsSync(`/run/netns/${foreignNetns}`)).toBe(true);
  expect(mounted(foreignMount)).toBe(true);
  expect(alive(foreignProc.pid!)).toBe(true);
  expect(readFileSync(path.join(foreignCgroup, 'cgroup.procs'), 'utf8').trim()).toBe(String(foreignProc.pid));
}

function kinds(report: GcReport, id: string, action: string): string[] {
  return [...new Set(report.rows.filter((r) => r.envId === id && r.action === action).map((r) => r.kind))].sort();
}

it('dry run: lists what it would reclaim and changes nothing', async () => {
  const report = await gcPass(rt, { minAgeSeconds: 2, scope: ours, dryRun: true, audit: false, sharedRoot: true });
  expect(kinds(report, B, 'would reclaim')).toEqual(['bundle', 'cgroup', 'conmon', 'mount', 'netns', 'process', 'zombie']);
  expect(kinds(report, A, 'would reclaim')).toEqual(expect.arrayContaining(['bundle', 'cgroup', 'conmon', 'container', 'netns', 'process']));
  // A ran on the shared host root; while an env dir without a readable journal exists, the root may be in use
  expect(report.rows.filter((r) => r.path === rt.hostRoot.paths.anchor)).toEqual([]);
  expect(mounted(rt.hostRoot.paths.rootfs)).toBe(true);
  expect(report.corruptJournals.map((c) => c.dir)).toEqual([path.join(sd, 'envs', A)]);
  expect(alive(bare.stray)).toBe(true);
  expect(alive(bare.conmon)).toBe(true);
  expect(existsSync(`/run/netns/denv-${A}`)).toBe(true);
  for (const d of cgroupDirs(B)) expect(existsSync(d)).toBe(true);
});

it('reclaims every orphan of ours older than the min age, verified gone; young and foreign objects are untouched', async () => {
  const metrics = new NodeMetrics();
  const report = await gcPass(rt, { minAgeSeconds: 2, scope: ours, metrics, foreignMinAgeSeconds: 0, sharedRoot: true });
  const stuck = report.rows.filter((r) => r.action === 'stuck');
  expect(stuck).toEqual([]);
  expect(report.reclaimedEnvs).toEqual([A, B]);
  expect(kinds(report, B, 'reclaimed')).toEqual(['bundle', 'cgroup', 'conmon', 'mount', 'netns', 'process', 'zombie']);
  expect(kinds(report, A, 'reclaimed')).toEqual(expect.arrayContaining(['bundle', 'cgroup', 'conmon', 'container', 'netns', 'process']));
  // the young orphan's journal-less dir could be an env being created: the shared root stays
  expect(report.rows.filter((r) => r.path === rt.hostRoot.paths.anchor)).toEqual([]);
  expect(mounted(rt.hostRoot.paths.rootfs)).toBe(true);
  expect(kinds(report, Y, 'young')).toEqual(['bundle', 'cgroup', 'conmon', 'mount', 'netns', 'process', 'zombie']);

  // ours: gone, checked here independently of the GC's own verification
  for (const id of [A, B]) {
    expect(existsSync(`/run/netns/denv-${id}`)).toBe(false);
    expect(existsSync(path.join(sd, 'envs', id))).toBe(false);
    expect(mounted(path.join(sd, 'envs', id))).toBe(false);
    for (const h of hierarchies(rt)) expect(existsSync(path.join(h, 'disposable.slice', 'gc-test', `denv-${id}`))).toBe(false);
  }
  expect(existsSync(path.join(RUNC_ROOT, `denv-${A}`))).toBe(false);
  expect(alive(bare.stray)).toBe(false);
  expect(alive(bare.conmon)).toBe(false);
  expect(aRecord.processes.conmon).toBeDefined();
  expect(isSameProcess(aRecord.processes.conmon)).toBe(false);
  expect(isSameProcess(aRecord.processes.container)).toBe(false);
  if (aRecord.idRange) expect(kinds(report, A, 'reclaimed')).toContain('idRange');

  // young: all still there
  expect(alive(young.stray)).toBe(true);
  expect(alive(young.conmon)).toBe(true);
  expect(existsSync(`/run/netns/denv-${Y}`)).toBe(true);
  expect(mounted(path.join(sd, 'envs', Y, 'bundle', 'rootfs'))).toBe(true);
  for (const d of cgroupDirs(Y)) expect(existsSync(d)).toBe(true);

  // foreign: reported by the audit, never touched
  const foreign = report.rows.filter((r) => r.action === 'reported (foreign)').map((r) => `${r.kind}:${r.path}`);
  expect(foreign).toEqual(expect.arrayContaining([`cgroup:${foreignEmpty}`, `netns:/run/netns/${foreignNetns}`]));
  expect(foreign.some((f) => f.includes(`/denv-${tag}`))).toBe(false);
  foreignIntact();

  // metrics
  const text = await metrics.text();
  for (const k of ['cgroup', 'netns', 'mount', 'container', 'bundle', 'conmon', 'process', 'zombie']) {
    expect(text).toMatch(new RegExp(`disposable_env_orphans_reclaimed_total\\{kind="${k}"\\} [1-9]`));
  }
  expect(text).toMatch(/disposable_env_journal_corrupt_total 1/);
  expect(text).toMatch(/disposable_env_oldest_orphan_age_seconds [2-9]/);
  expect(text).toMatch(/disposable_env_foreign_leaks\{kind="netns"\} [1-9]/);
});

it('reclaims the young orphan once it is old enough, and a second pass finds nothing', async () => {
  const report = await gcPass(rt, { minAgeSeconds: 0, scope: ours, audit: false, sharedRoot: true });
  expect(report.reclaimedEnvs).toEqual([Y]);
  // no env left that could use the shared host root: reclaimed in the same pass, as a mount
  expect(report.rows.filter((r) => r.path === rt.hostRoot.paths.anchor).map((r) => `${r.kind} ${r.action}`)).toEqual(['mount reclaimed']);
  expect(mounted(rt.hostRoot.paths.anchor)).toBe(false);
  expect(alive(young.stray)).toBe(false);
  expect(existsSync(`/run/netns/denv-${Y}`)).toBe(false);
  const again = await gcPass(rt, { minAgeSeconds: 0, scope: ours, audit: false, sharedRoot: true });
  expect(again.rows).toEqual([]);
  foreignIntact();
});

it('an env of another state dir on this host is never taken for an orphan (the state-dir registry)', async () => {
  const other = stateDir(dirs);
  const rt2 = await Runtime.open({ stateDir: other, emptyTimeoutMs: 5000 });
  const O = `${tag}o`;
  const r = await rt2.create({ id: O, name: 'gc-other', spec: parseSpec({ class: 'gc-test', workload: { command: ['/bin/sleep', '300'] } }) });
  try {
    const report = await gcPass(rt, { minAgeSeconds: 0, scope: ours, audit: false });
    expect(report.rows.filter((x) => x.envId === O)).toEqual([]);
    expect(existsSync(`/run/netns/denv-${O}`)).toBe(true);
    expect(isSameProcess(r.processes.container)).toBe(true);
    // control: a pass that does not know the other state dir (empty registry) would take it for an orphan
    const blind = await Runtime.open({ stateDir: sd, stateRegistryDir: path.join(work, 'empty-registry') });
    const wouldBe = await gcPass(blind, { minAgeSeconds: 0, scope: ours, audit: false, dryRun: true });
    expect(wouldBe.rows.filter((x) => x.envId === O && x.action === 'would reclaim').map((x) => x.kind)).toEqual(expect.arrayContaining(['cgroup', 'netns', 'container']));
  } finally {
    await rt2.killAll(r);
    expect(await rt2.finish(O, { reason: 'Stopped', message: 'test' })).toMatchObject({ reason: 'Stopped' });
    expect(await rt2.close()).toBe(true);
  }
  expect(existsSync(`/run/netns/denv-${O}`)).toBe(false);
});
