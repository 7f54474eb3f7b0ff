/**
 * The foreign-leak audit on real kernel objects: plant leaks that are not ours
 * (an empty cgroup, a netns with no process, a bind mount whose source was
 * deleted) and ones carrying our names; the audit must report exactly the
 * foreign ones and leave every planted object untouched. Everything planted is
 * removed in afterAll.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, mkdtempSync, rmSync, rmdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { auditForeignLeaks } from '../../node-agent/gc/audit.js';

const id = `${process.pid}-${Date.now().toString(36)}`;
const cgroupV1 = '/sys/fs/cgroup/pids';
const foreignCgroup = join(cgroupV1, `foreign-leak-${id}`);
const ourCgroup = join(cgroupV1, `disposable.slice-test-${id}`);
const foreignNetns = `foreign-leak-${id}`;
const ourNetns = `denv-audit-${id}`;
const work = mkdtempSync(join(tmpdir(), 'audit-'));
const source = join(work, 'source');
const target = join(work, 'target');

const run = (cmd: string, args: string[]) => execa(cmd, args, { timeout: 10_000 });
const isOurs = (_kind: string, path: string): boolean => path.includes('disposable.slice') || path.includes('/denv-');

beforeAll(async () => {
  mkdirSync(foreignCgroup);
  mkdirSync(ourCgroup);
  await run('ip', ['netns', 'add', foreignNetns]);
  await run('ip', ['netns', 'add', ourNetns]);
  mkdirSync(source);
  mkdirSync(target);
  await run('mount', ['--bind', source, target]);
  rmdirSync(source); // the mount's source is now gone
});

afterAll(async () => {
  await run('umount', [target]).catch(() => undefined);
  for (const ns of [foreignNetns, ourNetns]) await run('ip', ['netns', 'delete', ns]).catch(() => undefined);
  for (const dir of [foreignCgroup, ourCgroup]) if (existsSync(dir)) rmdirSync(dir);
  rmSync(work, { recursive: true, force: true });
});

it('reports foreign leaks with paths and ages, skips ours, and touches nothing', async () => {
  const leaks = await auditForeignLeaks({ now: new Date(Date.now() + 3600_000), isOurs, minCgroupAgeSeconds: 1800 });
  const paths = leaks.map((l) => `${l.kind}:${l.path}`);
  expect(paths).toContain(`cgroup:${foreignCgroup}`);
  expect(paths).toContain(`netns:/run/netns/${foreignNetns}`);
  expect(paths).toContain(`mount:${target}`);
  expect(paths).not.toContain(`cgroup:${ourCgroup}`);
  expect(paths).not.toContain(`netns:/run/netns/${ourNetns}`);
  const cg = leaks.find((l) => l.path === foreignCgroup)!;
  expect(cg.ageSeconds).toBeGreaterThanOrEqual(1800);
  expect(leaks.find((l) => l.path === target)!.detail).toContain('//deleted');

  // read-only: every planted object is still there
  expect(existsSync(foreignCgroup)).toBe(true);
  expect(existsSync(`/run/netns/${foreignNetns}`)).toBe(true);
  const { stdout } = await run('findmnt', ['-n', '-o', 'TARGET', target]);
  expect(stdout.trim()).toBe(target);
});

it('does not report young empty cgroups or netns that a process uses', async () => {
  const leaks = await auditForeignLeaks({ now: new Date(), isOurs, minCgroupAgeSeconds: 1800 });
  expect(leaks.map((l) => l.path)).not.toContain(foreignCgroup);
  // a netns with a process in it is in use
  const sleeper = execa('ip', ['netns', 'exec', foreignNetns, 'sleep', '30'], { timeout: 40_000, reject: false });
  try {
    for (let i = 0; i < 50 && !(await run('ip', ['netns', 'pids', foreignNetns])).stdout.trim(); i++) await new Promise((r) => setTimeout(r, 50));
    const again = await auditForeignLeaks({ now: new Date(), isOurs, minCgroupAgeSeconds: 1800 });
    expect(again.map((l) => l.path)).not.toContain(`/run/netns/${foreignNetns}`);
  } finally {
    sleeper.kill('SIGKILL');
    await sleeper;
  }
});
