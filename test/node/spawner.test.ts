/**
 * The spawn helper (node-agent/native/spawn-helper.c) with real programs: what
 * run() and conmonCreate() rely on. The binary comes from `npm run build`.
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ExecError, pidAlive, run } from '../../node-agent/exec.js';
import { closeSharedHelper, findHelper, SpawnHelper, sharedHelper } from '../../node-agent/spawner.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'denv-spawner-'));
const helpers: SpawnHelper[] = [];

function helper(): SpawnHelper {
  const bin = findHelper();
  if (!bin) throw new Error('dist/native/denv-spawn is missing: run `npm run build` (it needs gcc)');
  const h = new SpawnHelper(bin);
  helpers.push(h);
  return h;
}

afterAll(() => {
  for (const h of helpers) h.close();
  closeSharedHelper();
  rmSync(dir, { recursive: true, force: true });
});

describe('spawn helper', () => {
  it('runs an argv array and reports exit code, stdout and stderr', async () => {
    const r = await helper().run({ file: '/bin/sh', args: ['-c', 'echo out; echo err >&2; exit 3', 'ignored $(rm -rf /)'], timeoutMs: 5000 });
    expect(r).toMatchObject({ state: 'exit', exitCode: 3, signal: 0, timedOut: false, stdout: 'out\n', stderr: 'err\n' });
  });

  it('passes arguments verbatim, never through a shell', async () => {
    const odd = ['$(echo no)', '; echo no', "'quoted'", 'spaces in one', ''];
    const r = await helper().run({ file: '/usr/bin/printf', args: ['[%s]', ...odd], timeoutMs: 5000 });
    expect(r.stdout).toBe(odd.map((a) => `[${a}]`).join(''));
  });

  it('finds a bare program name on PATH, overrides the environment and sets the working directory', async () => {
    const r = await helper().run({ file: 'sh', args: ['-c', 'echo "$DENV_X|$(pwd)"'], timeoutMs: 5000, env: { DENV_X: 'y=1' }, cwd: dir });
    expect(r.stdout).toBe(`y=1|${dir}\n`);
  });

  it('reports a program that cannot start with its errno', async () => {
    const r = await helper().run({ file: path.join(dir, 'no-such-program'), args: [], timeoutMs: 5000 });
    expect(r).toMatchObject({ state: 'error', errno: 'ENOENT' });
  });

  it('kills a program at its timeout (SIGKILL) and says so', async () => {
    const h = helper();
    const t = Date.now();
    const r = await h.run({ file: '/bin/sleep', args: ['30'], timeoutMs: 300 });
    expect(r).toMatchObject({ state: 'exit', timedOut: true, signal: 9 });
    expect(Date.now() - t).toBeLessThan(5000);
  });

  it('answers after the exit even when a grandchild keeps the output pipe open', async () => {
    const pidFile = path.join(dir, 'grandchild.pid');
    const t = Date.now();
    const r = await helper().run({ file: '/bin/sh', args: ['-c', `sleep 20 & echo $! > ${pidFile}; exit 0`], timeoutMs: 10_000 });
    const elapsed = Date.now() - t;
    const pid = Number(readFileSync(pidFile, 'utf8'));
    process.kill(pid, 'SIGKILL'); // the sleep this test started
    expect(r).toMatchObject({ state: 'exit', exitCode: 0 });
    expect(elapsed).toBeGreaterThanOrEqual(1500);
    expect(elapsed).toBeLessThan(8000);
  });

  it('sync mode: answers with the first line on fd 3 without waiting for the program, in its own session, output to a file', async () => {
    const log = path.join(dir, 'out.log');
    const t = Date.now();
    const r = await helper().run({
      file: '/bin/sh',
      args: ['-c', 'echo logged; echo "{\\"data\\": $$, \\"sid\\": $(cut -d" " -f6 /proc/$$/stat)}" >&3; exec sleep 5'],
      timeoutMs: 10_000,
      syncFd3: true,
      newSession: true,
      outputFile: log,
    });
    expect(Date.now() - t).toBeLessThan(4000);
    expect(r.state).toBe('sync');
    const msg = JSON.parse(r.sync.split('\n')[0]!) as { data: number; sid: number };
    expect(msg.sid).toBe(msg.data); // session leader: setsid happened
    expect(readFileSync(log, 'utf8')).toBe('logged\n');
    expect(pidAlive(msg.data)).toBe(true);
    process.kill(msg.data, 'SIGKILL'); // the sleep this test started
  });

  it('sync mode: waits for the line from what the program left behind after it exited, past the output grace (conmon daemonises)', async () => {
    const pidFile = path.join(dir, 'daemon.pid');
    const t = Date.now();
    const r = await helper().run({
      file: '/bin/sh',
      args: ['-c', `(sleep 2.5; echo '{"data": 1}' >&3; sleep 20) >/dev/null 2>&1 & echo $! > ${pidFile}; exit 0`],
      timeoutMs: 10_000,
      syncFd3: true,
      outputFile: path.join(dir, 'daemon.log'),
    });
    const elapsed = Date.now() - t;
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); // the subshell this test started
    expect(r).toMatchObject({ state: 'sync', timedOut: false, sync: '{"data": 1}\n' });
    expect(elapsed).toBeGreaterThanOrEqual(2400);
  });

  it('sync mode: a daemon that never answers on fd 3 ends the wait at the timeout', async () => {
    const pidFile = path.join(dir, 'silent.pid');
    const r = await helper().run({ file: '/bin/sh', args: ['-c', `sleep 20 & echo $! > ${pidFile}; exit 0`], timeoutMs: 2500, syncFd3: true, outputFile: path.join(dir, 'silent.log') });
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
    expect(r).toMatchObject({ state: 'sync', timedOut: true, sync: '' });
  });

  it('sync mode: a program that never answers on fd 3 is killed at its timeout', async () => {
    const r = await helper().run({ file: '/bin/sleep', args: ['30'], timeoutMs: 300, syncFd3: true, outputFile: path.join(dir, 'x.log') });
    expect(r).toMatchObject({ state: 'sync', timedOut: true });
  });

  it('keeps concurrent requests apart', async () => {
    const h = helper();
    const rs = await Promise.all(Array.from({ length: 40 }, (_, i) => h.run({ file: '/bin/sh', args: ['-c', `sleep 0.0${i % 10}; echo ${i}`], timeoutMs: 10_000 })));
    expect(rs.map((r) => r.stdout)).toEqual(Array.from({ length: 40 }, (_, i) => `${i}\n`));
  });

  it('caps captured output at 1 MiB per stream', async () => {
    const r = await helper().run({ file: '/bin/sh', args: ['-c', 'head -c 3000000 /dev/zero | tr "\\0" a'], timeoutMs: 10_000 });
    expect(r.exitCode).toBe(0);
    expect(r.stdout.length).toBe(1 << 20);
  });
});

describe('run() through the shared helper', () => {
  it('starts programs from the helper, not by forking this process', async () => {
    const h = sharedHelper();
    expect(h).toBeDefined();
    const r = await run('/bin/sh', ['-c', 'echo $PPID']);
    expect(Number(r.stdout)).toBe(h!.pid);
    expect(Number(r.stdout)).not.toBe(process.pid);
  });

  it('keeps run() semantics: non-zero exit throws ExecError naming the program, allowFailure returns it', async () => {
    await expect(run('/bin/sh', ['-c', 'echo boom >&2; exit 4'])).rejects.toThrow(/\/bin\/sh -c .*exit 4: boom/);
    await expect(run('/bin/sh', ['-c', 'exit 4'], { allowFailure: true })).resolves.toMatchObject({ exitCode: 4 });
    await expect(run('/bin/sleep', ['30'], { timeoutMs: 200 })).rejects.toThrow(/timed out after 200 ms/);
    const err = await run(path.join(dir, 'missing'), []).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect((err as Error).message).toMatch(/missing: spawn .*ENOENT/);
  });

  it('discardOutput: a background child that inherits stdout does not hold the answer (runc run --detach does this)', async () => {
    const pidFile = path.join(dir, 'bg.pid');
    const t = Date.now();
    const r = await run('/bin/sh', ['-c', `sleep 20 & echo $! > ${pidFile}; echo hi`], { discardOutput: true });
    const elapsed = Date.now() - t;
    process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL'); // the sleep this test started
    expect(r).toMatchObject({ exitCode: 0, stdout: '' });
    expect(elapsed).toBeLessThan(1500);
  });

  it('without a helper (DENV_SPAWN_HELPER=off) run() forks this process instead, with the same results', async () => {
    closeSharedHelper();
    process.env.DENV_SPAWN_HELPER = 'off';
    try {
      expect(sharedHelper()).toBeUndefined();
      const r = await run('/bin/sh', ['-c', 'echo $PPID; echo e >&2']);
      expect(r).toMatchObject({ exitCode: 0, stdout: String(process.pid), stderr: 'e' });
      await expect(run('/bin/sh', ['-c', 'kill -9 $$'])).rejects.toThrow(/killed by SIGKILL/);
    } finally {
      delete process.env.DENV_SPAWN_HELPER;
    }
    expect(sharedHelper()).toBeDefined();
  });

  it('survives the helper dying: the next call gets a new one', async () => {
    const h = sharedHelper()!;
    const pid = h.pid!;
    process.kill(pid, 'SIGKILL'); // the helper this process started
    for (let i = 0; i < 100 && h.alive; i++) await new Promise((r) => setTimeout(r, 50));
    expect(h.alive).toBe(false);
    const r = await run('/bin/sh', ['-c', 'echo $PPID']);
    const h2 = sharedHelper()!;
    expect(h2.pid).not.toBe(pid);
    expect(Number(r.stdout)).toBe(h2.pid);
  });
});
