// Shared cgroup parents (<root>/<class>, <root>) outlive a teardown so the next
// env only makes its leaf; close() and the GC pass remove the empty ones and
// never one that an env still uses. A root of its own keeps other suites out.
// Also: finish() right after a kill (the race the faster cgroup reads exposed).
import { jest } from '@jest/globals';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { gcPass } from '../../node-agent/gc/pass.js';
import { Runtime } from '../../node-agent/runtime.js';
import { parseSpec } from '../../src/api/validate.js';
import { checkLeaksAfterAll, stateDir } from './helpers.js';

jest.setTimeout(120_000);

const tag = `p${randomBytes(4).toString('hex')}`;
const root = `disposable-${tag}.slice`;
const dirs: string[] = [];
const sd = stateDir(dirs);
checkLeaksAfterAll(dirs);
let rt: Runtime;

const spec = (klass: string) => parseSpec({ class: klass, workload: { command: ['/bin/sleep', '300'] }, resources: { memory: { max: '64Mi' }, pids: { max: 32 } } });
const everywhere = (rel: string): string[] => rt.driver.hierarchyRoots().map((h) => path.join(h, rel));
const allExist = (rel: string): boolean => everywhere(rel).every((d) => existsSync(d));
const noneExist = (rel: string): boolean => everywhere(rel).every((d) => !existsSync(d));

async function up(id: string, klass: string) {
  return rt.create({ id, name: id, spec: spec(klass) });
}
async function down(id: string): Promise<void> {
  const r = (await rt.journal.read(id))!;
  await rt.killAll(r);
  await rt.finish(id, { reason: 'Stopped', message: 'test' });
}

beforeAll(async () => {
  rt = await Runtime.open({ stateDir: sd, emptyTimeoutMs: 5000, cgroupRoot: root });
});

afterAll(async () => {
  await rt.close().catch(() => undefined);
});

it('a teardown removes the leaf and keeps the shared parents; the next env of the class only makes its leaf', async () => {
  await up(`${tag}a`, 'ci');
  await down(`${tag}a`);
  expect(noneExist(`${root}/ci/denv-${tag}a`)).toBe(true);
  expect(allExist(`${root}/ci`)).toBe(true);
  const r = await up(`${tag}b`, 'ci');
  // the journal lists the parents as the env's (shared) cgroups, but this create made only leaves
  expect(allExist(`${root}/ci/denv-${tag}b`)).toBe(true);
  expect(r.resources.filter((x) => x.kind === 'cgroup' && x.madeByUs).map((x) => path.basename(x.hostId))).toEqual(everywhere('').map(() => `denv-${tag}b`));
});

it('a GC pass removes empty class parents, reports them, and leaves a parent in use alone (dry run first)', async () => {
  await up(`${tag}c`, 'batch');
  await down(`${tag}c`);
  expect(allExist(`${root}/batch`)).toBe(true);
  const dry = await gcPass(rt, { minAgeSeconds: 0, audit: false, dryRun: true });
  const pruned = (rows: typeof dry.rows, action: string) => rows.filter((x) => x.detail === 'empty shared cgroup parent' && x.action === action).map((x) => x.path).sort();
  expect(pruned(dry.rows, 'would reclaim')).toEqual(everywhere(`${root}/batch`).sort());
  expect(allExist(`${root}/batch`)).toBe(true);
  const real = await gcPass(rt, { minAgeSeconds: 0, audit: false });
  expect(pruned(real.rows, 'reclaimed')).toEqual(everywhere(`${root}/batch`).sort());
  expect(noneExist(`${root}/batch`)).toBe(true);
  // 'ci' holds env b: neither it nor the root may go
  expect(allExist(`${root}/ci/denv-${tag}b`)).toBe(true);
  expect(real.rows.some((x) => x.path.includes(`${root}/ci`))).toBe(false);
});

it('close() removes the parents once nothing uses them, the root included', async () => {
  await down(`${tag}b`);
  expect(allExist(`${root}/ci`)).toBe(true);
  // a dry run lists both levels and removes nothing
  expect((await rt.pruneParents({ dryRun: true })).sort()).toEqual([...everywhere(`${root}/ci`), ...everywhere(root)].sort());
  expect(allExist(`${root}/ci`)).toBe(true);
  await rt.close();
  expect(noneExist(`${root}/ci`)).toBe(true);
  expect(noneExist(root)).toBe(true);
});

it('finish() right after killAll() still gets the exit code while the killed processes are being reaped', async () => {
  const spec = parseSpec({ class: 'ci', workload: { command: ['/bin/sh', '-c', 'for i in $(seq 60); do sleep 60 & done; wait'] }, resources: { pids: { max: 128 } } });
  for (let i = 0; i < 4; i++) {
    const r = await rt.create({ id: `${tag}k${i}`, name: `k${i}`, spec });
    await new Promise((res) => setTimeout(res, 300)); // the children exist
    await rt.killAll(r);
    expect(await rt.finish(r.id, { reason: 'Stopped', message: 'test' })).toMatchObject({ reason: 'Stopped', exitCode: 137 });
  }
  await rt.close();
});
