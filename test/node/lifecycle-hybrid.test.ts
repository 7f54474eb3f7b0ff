/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-argument -- assertions walk the CLI's JSON output */
// The lifecycle enforced on a real env on this host: the deadline (SIGTERM,
// grace, then a kill of the whole cgroup, by cgroup.kill or by freeze +
// SIGKILL), idleness judged from what the kernel sees (an idle sleep is
// reclaimed, a busy loop of the same length is not), the env dying with the
// `denv run` that started it, and a process stuck in D state reported as Leaked
// with its pid instead of being waited for forever.
import { jest } from '@jest/globals';
import { execa } from 'execa';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseSpec } from '../../src/api/validate.js';
import { Journal } from '../../node-agent/journal.js';
import { Runtime } from '../../node-agent/runtime.js';
import { checkLeaksAfterAll, denv, findLeaks, manifest, REPO, result, stateDir, testId, waitFor } from './helpers.js';

jest.setTimeout(120_000);

const dirs: string[] = [];
const work = stateDir(dirs);

checkLeaksAfterAll(dirs);

const FAST = ['--sample-interval-ms', '200'];
const seconds = (r: Record<string, any>): number => (Date.parse(r.finishTime) - Date.parse(r.startTime)) / 1000;

describe('deadline', () => {
  it.each(['cgroup.kill', 'freeze'])('a workload ignoring SIGTERM is killed after the grace period (DeadlineExceeded, kill by %s)', async (method) => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'stubborn', {
      workload: { command: ['/bin/sh', '-c', 'trap "" TERM; echo started; sleep 100; echo never'] },
      lifecycle: { timeoutSeconds: 3, gracePeriodSeconds: 2 },
    });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--json', '--kill-method', method, ...FAST]);
    const res = result(r.stdout);
    expect(res).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded', exitCode: 137 });
    expect(r.exitCode).toBe(137);
    expect(seconds(res)).toBeGreaterThanOrEqual(5);
    expect(seconds(res)).toBeLessThan(9);
    expect(res.logTail).toContain('started');
    expect(res.logTail).not.toContain('never');
  });

  it('a workload that handles SIGTERM ends within the grace period with its own exit code', async () => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'polite', {
      workload: { command: ['/bin/sh', '-c', 'trap "echo got-term; exit 7" TERM; sleep 100 & wait'] },
      lifecycle: { timeoutSeconds: 3, gracePeriodSeconds: 3 },
    });
    const res = result((await denv(['run', '-f', m, '--state-dir', sd, '--json', ...FAST])).stdout);
    expect(res).toMatchObject({ reason: 'DeadlineExceeded', exitCode: 7 });
    expect(res.logTail).toContain('got-term');
    expect(seconds(res)).toBeLessThan(6); // long before the grace period ended
  });
});

describe('idleness', () => {
  it('an idle sleep is reclaimed with IdleTimeout while a busy loop of the same length is not', async () => {
    const sd = stateDir(dirs);
    const idle = manifest(work, 'idle', {
      workload: { command: ['/bin/sh', '-c', 'sleep 16'] },
      lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 1, idleTimeoutSeconds: 10 },
    });
    const busy = manifest(work, 'busy', {
      workload: { command: ['/bin/sh', '-c', 'end=$(($(date +%s) + 16)); while [ "$(date +%s)" -lt "$end" ]; do :; done'] },
      lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 1, idleTimeoutSeconds: 10 },
      resources: { cpu: { max: '500m' } },
    });
    const [ri, rb] = await Promise.all([
      denv(['run', '-f', idle, '--state-dir', sd, '--json', '--sample-interval-ms', '500']),
      denv(['run', '-f', busy, '--state-dir', sd, '--json', '--sample-interval-ms', '500']),
    ]);
    const i = result(ri.stdout);
    const b = result(rb.stdout);
    expect(i).toMatchObject({ phase: 'Failed', reason: 'IdleTimeout' });
    expect(seconds(i)).toBeGreaterThanOrEqual(10);
    expect(seconds(i)).toBeLessThan(14);
    expect(b).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
    expect(seconds(b)).toBeGreaterThanOrEqual(15);
    expect(b.usage.cpuSeconds).toBeGreaterThan(4); // it really was busy (about half a core)
  });
});

describe('the env dies with the denv run that started it', () => {
  it('SIGTERM to an attached denv run stops and tears down the env (Stopped)', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'attached', { workload: { command: ['/bin/sh', '-c', 'sleep 300'] }, lifecycle: { gracePeriodSeconds: 5 } });
    const proc = execa(process.execPath, ['--import', 'tsx/esm', path.join(REPO, 'src/cli/bin.ts'), 'run', '-f', m, '--state-dir', sd, '--id', id, '--json', ...FAST], {
      cwd: REPO,
      reject: false,
      timeout: 60_000,
    });
    const j = new Journal(sd);
    await waitFor(async () => (await j.read(id).catch(() => undefined))?.phase === 'Running', 30_000, 'the env to run');
    proc.kill('SIGTERM');
    const r = await proc;
    const res = result(String(r.stdout));
    expect(res).toMatchObject({ phase: 'Failed', reason: 'Stopped', exitCode: 143 });
    expect(r.exitCode).toBe(143);
    expect(res.message).toMatch(/SIGTERM/);
    expect(await findLeaks()).toEqual([]);
  });
});

describe('a process stuck in D state', () => {
  it('is reported as Leaked with its pid after a bounded wait, and a later teardown cleans up', async () => {
    const sd = stateDir(dirs);
    const rt = await Runtime.open({ stateDir: sd, emptyTimeoutMs: 1500 });
    const spec = parseSpec({ workload: { command: ['/bin/sh', '-c', 'sleep 300'] } });
    const r = await rt.create({ name: 'stuck', spec, id: testId() });
    const freezer = path.join('/sys/fs/cgroup/freezer', r.cgroupPath);
    // the v1 freezer puts tasks in uninterruptible sleep: SIGKILL stays pending until they thaw
    // a freeze can stay FREEZING when a task was mid-fork or mid-exec; writing FROZEN again retries it (runc does the same)
    await waitFor(
      () => {
        writeFileSync(path.join(freezer, 'freezer.state'), 'FROZEN');
        return readFileSync(path.join(freezer, 'freezer.state'), 'utf8').trim() === 'FROZEN';
      },
      10_000,
      'the freeze',
    );
    const pids = readFileSync(path.join(freezer, 'cgroup.procs'), 'utf8').trim().split('\n').map(Number);
    const t = Date.now();
    const final = await rt.finish(r.id);
    expect(Date.now() - t).toBeLessThan(40_000);
    expect(final).toMatchObject({ phase: 'Failed', reason: 'Leaked' });
    const procs = final.leaks?.find((l) => l.what === 'processes');
    expect(procs?.pids?.sort()).toEqual(pids.sort());
    expect(procs?.detail).toMatch(/in uninterruptible sleep/);
    expect(final.message).toMatch(/teardown left: processes/);
    // once the processes can die, teardown completes
    try {
      writeFileSync(path.join(freezer, 'freezer.state'), 'THAWED');
    } catch {
      /* runc delete already thawed and removed it */
    }
    expect(await rt.teardown(r.id)).toEqual([]);
    expect(await rt.close()).toBe(true); // the shared host root goes with the last env
  });
});
