// Process identity on this host: a process recorded by pid plus start time is
// judged gone once it dies (and while it is a zombie), and adoption treats a
// supervisor whose pid now belongs to another process as dead and takes the
// env over. The supervisor reports through the winston logger it is given.
import { jest } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import winston from 'winston';
import { recover } from '../../node-agent/adopt.js';
import { isSameProcess, processIdentity, selfIdentity } from '../../node-agent/exec.js';
import { outstanding, recordProcess } from '../../node-agent/journal.js';
import type { Verdict } from '../../node-agent/lifecycle.js';
import { Runtime } from '../../node-agent/runtime.js';
import { supervise } from '../../node-agent/supervisor.js';
import { parseSpec } from '../../src/api/validate.js';
import { checkLeaksAfterAll, stateDir, testId, waitFor, zombies } from './helpers.js';

jest.setTimeout(120_000);

const dirs: string[] = [];
checkLeaksAfterAll(dirs);

const children: ChildProcess[] = [];
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

const exited = (c: ChildProcess): Promise<void> => new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r() : c.once('exit', () => r())));

/** Child pids of `pid`. */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

const SLEEPER = parseSpec({ workload: { command: ['/bin/sleep', '120'] }, lifecycle: { gracePeriodSeconds: 1 } });

describe('isSameProcess on real processes', () => {
  it('is true for a running process and false once it was killed', async () => {
    const c = spawn('/bin/sleep', ['60'], { stdio: 'ignore' });
    children.push(c);
    const id = processIdentity(c.pid!)!;
    expect(id.pid).toBe(c.pid);
    expect(id.startTicks).toBeGreaterThan(0);
    expect(isSameProcess(id)).toBe(true);
    c.kill('SIGKILL');
    await exited(c);
    expect(isSameProcess(id)).toBe(false);
  });

  it('is false for another start time on a live pid, and for a zombie that still holds its pid and start time', async () => {
    const me = selfIdentity();
    expect(isSameProcess(me)).toBe(true);
    expect(isSameProcess({ pid: me.pid, startTicks: me.startTicks + 1 })).toBe(false);
    // the shell backgrounds a short sleep and becomes `sleep 60`, which never reaps it
    const c = spawn('/bin/sh', ['-c', '/bin/sleep 0.3 & exec /bin/sleep 60'], { stdio: 'ignore' });
    children.push(c);
    const kid = await waitFor(() => childrenOf(c.pid!)[0], 5000, 'the background sleep');
    const id = processIdentity(kid)!;
    expect(isSameProcess(id)).toBe(true);
    await waitFor(() => zombies([kid]).length > 0, 5000, 'the zombie');
    expect(processIdentity(kid)).toEqual(id); // still there, with the same start time
    expect(isSameProcess(id)).toBe(false);
    c.kill('SIGKILL');
    await exited(c);
  });
});

describe('adoption by identity', () => {
  it('takes over an env whose recorded supervisor pid now belongs to another process', async () => {
    const sd = stateDir(dirs);
    const rt = await Runtime.open({ stateDir: sd });
    const id = testId();
    await rt.create({ name: 'reused-pid', id, spec: SLEEPER });
    const me = selfIdentity();
    let verdict: Verdict | undefined;
    const supervised: string[] = [];
    const opts = {
      scope: (x: string): boolean => x === id,
      supervise: async (x: string): Promise<void> => {
        supervised.push(x);
        setTimeout(() => (verdict = { reason: 'Stopped', message: 'test' }), 300);
        await supervise(rt, x, { intervalMs: 100, registerPid: true, stopRequested: () => verdict });
      },
    };
    try {
      // the supervisor is this process, as recorded: alive, nothing to adopt
      await rt.journal.update(id, (r) => recordProcess(r, 'supervisor', me));
      expect(await recover(rt, opts)).toEqual([]);
      // the same pid with another start time: the recorded supervisor died and the pid went to another process
      await rt.journal.update(id, (r) => recordProcess(r, 'supervisor', { pid: me.pid, startTicks: me.startTicks + 1 }));
      const adopted = await recover(rt, opts);
      expect(adopted).toEqual([{ id, action: 'supervise', phase: 'Failed' }]);
      expect(supervised).toEqual([id]);
      const final = (await rt.journal.read(id))!;
      expect(final).toMatchObject({ phase: 'Failed', reason: 'Stopped' });
      expect(final.processes.supervisor).toEqual(me); // the new supervisor registered itself by identity
      expect(outstanding(final)).toEqual([]);
    } finally {
      await rt.teardown(id).catch(() => undefined);
      await rt.close();
    }
  });

  it('the supervisor logs through the winston logger it is given', async () => {
    const sd = stateDir(dirs);
    const rt = await Runtime.open({ stateDir: sd });
    const id = testId();
    await rt.create({ name: 'logged', id, spec: SLEEPER });
    const lines: Record<string, unknown>[] = [];
    const logger = winston.createLogger({
      format: winston.format.json(),
      transports: [new winston.transports.Stream({ stream: new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), cb()) }) })],
    });
    const sample = jest.spyOn(rt, 'sample').mockRejectedValue(new Error('no cgroup today'));
    try {
      const final = await supervise(rt, id, { intervalMs: 50, logger, stopRequested: () => (lines.length ? { reason: 'Stopped', message: 'test' } : undefined) });
      expect(final).toMatchObject({ phase: 'Failed', reason: 'Stopped' });
      expect(lines[0]).toMatchObject({ level: 'warn', env: 'logged', id, error: 'no cgroup today' });
    } finally {
      sample.mockRestore();
      await rt.teardown(id).catch(() => undefined);
      await rt.close();
    }
  });
});
