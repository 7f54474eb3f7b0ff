// Limits by default, on this hybrid host through the real `denv run`: an env
// with no `resources` runs under the node's default limits, read back from the
// kernel (v1 pids, memory, memsw and cpu files of its cgroup) while it runs; the
// defaults this host cannot enforce (memory.high on v1, io.weight without
// blkio.weight) are skipped and said so; asking above --max-limits is refused
// naming the field and the cap, and creates nothing.
import { jest } from '@jest/globals';
import { existsSync, readFileSync } from 'node:fs';
import { Journal } from '../../node-agent/journal.js';
import { isSameProcess } from '../../node-agent/exec.js';
import { checkLeaksAfterAll, denv, envDirs, hostSnapshot, manifest, stateDir, testId, waitFor } from './helpers.js';

jest.setTimeout(120_000);

const dirs: string[] = [];
const work = stateDir(dirs);
checkLeaksAfterAll(dirs);

const FAST = ['--sample-interval-ms', '200'];
const GI = 1024 ** 3;
const MI = 1024 ** 2;
const read = (file: string): string => readFileSync(file, 'utf8').trim();

describe('limits by default (denv run, hybrid host)', () => {
  it('an env with no resources runs with pids and memory bounded by the node defaults, as the kernel reports', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'unlimited', { workload: { command: ['/bin/sh', '-c', 'sleep 60'] } });
    const d = await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--detach', ...FAST]);
    expect(d.exitCode).toBe(0);
    // memory.high and io.weight cannot be enforced here: they are skipped and said so, the env still runs
    expect(d.stderr).toMatch(/default memory\.high not applied to spec\.resources\.memory\.high: this node cannot enforce it/);
    const rec = (await new Journal(sd).read(id))!;
    expect(rec.phase).toBe('Running');
    // the journal's spec holds the effective limits
    expect(rec.spec.resources).toMatchObject({ memory: { max: '1Gi', swapMax: '500Mi' }, cpu: { max: '500m' }, pids: { max: 100 } });
    expect(rec.spec.resources.memory?.high).toBeUndefined();
    const cg = rec.cgroupPath;
    expect(cg).toBe(`disposable.slice/default/denv-${id}`);
    // read back from the kernel while it runs
    expect(read(`/sys/fs/cgroup/pids/${cg}/pids.max`)).toBe('100');
    expect(Number(read(`/sys/fs/cgroup/memory/${cg}/memory.limit_in_bytes`))).toBe(GI);
    if (existsSync(`/sys/fs/cgroup/memory/${cg}/memory.memsw.limit_in_bytes`)) {
      expect(Number(read(`/sys/fs/cgroup/memory/${cg}/memory.memsw.limit_in_bytes`))).toBe(GI + 500 * MI);
    }
    expect(read(`/sys/fs/cgroup/cpu/${cg}/cpu.cfs_quota_us`)).toBe('50000');
    expect(read(`/sys/fs/cgroup/cpu/${cg}/cpu.cfs_period_us`)).toBe('100000');
    // the workload's process is in that pids cgroup
    expect(read(`/proc/${rec.pids.container!}/cgroup`)).toContain(`pids:/${cg}`);
    const stop = await denv(['stop', id, '--state-dir', sd, '--json']);
    expect(stop.exitCode).toBe(0);
    await waitFor(() => !isSameProcess(rec.processes.supervisor), 10_000, 'the supervisor to exit');
  });

  it('a limit the env sets is kept; the defaults fill only the rest', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'own-pids', { workload: { command: ['/bin/sh', '-c', 'cat /proc/self/status >/dev/null'] }, resources: { pids: { max: 20 } } });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--default-limits', 'memory=256Mi,pids=100', ...FAST]);
    expect(r.exitCode).toBe(0);
    const rec = (await new Journal(sd).read(id))!;
    expect(rec.spec.resources).toMatchObject({ memory: { max: '256Mi' }, pids: { max: 20 } });
    expect(rec.spec.resources.cpu).toBeUndefined();
  });

  it('asking memory.max above --max-limits is refused naming the field and the cap, and creates nothing', async () => {
    const sd = stateDir(dirs);
    const before = await hostSnapshot();
    const m = manifest(work, 'greedy', { workload: { command: ['/bin/true'] }, resources: { memory: { max: '8Gi' } } });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--max-limits', 'memory=2Gi', ...FAST]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toContain("spec.resources.memory.max: 8Gi is above this node's cap 2Gi (flag --max-limits)");
    expect(r.stderr).toContain('nothing was created');
    expect(envDirs(sd)).toEqual([]);
    expect((await new Journal(sd).list()).records).toEqual([]);
    expect(await hostSnapshot()).toEqual(before);
  });

  it('a bad limits flag is a usage error naming the flag', async () => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'bad-flag', { workload: { command: ['/bin/true'] } });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--default-limits', 'pids=lots']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/--default-limits: "pids=lots": pids must be an integer/);
    expect(envDirs(sd)).toEqual([]);
  });
});
