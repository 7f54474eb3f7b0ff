// The node runtime's one way to run a program (node-agent/exec.ts): argv array,
// timeout, no stdin, errors that name the program and what it printed.
import { ExecError, run } from '../../node-agent/exec.js';

describe('run', () => {
  it('returns stdout and stderr without the final newline', async () => {
    const r = await run('/bin/sh', ['-c', 'printf "a\\nb\\n"; echo err >&2']);
    expect(r).toEqual({ exitCode: 0, stdout: 'a\nb', stderr: 'err' });
  });

  it('passes arguments verbatim, never through a shell', async () => {
    const r = await run('/bin/echo', ['$(id)', '; rm -rf /', '"q"']);
    expect(r.stdout).toBe('$(id) ; rm -rf / "q"');
  });

  it('throws ExecError naming the program, the exit code and stderr on a non-zero exit', async () => {
    const err = await run('/bin/sh', ['-c', 'echo broken >&2; exit 3']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect((err as ExecError).exitCode).toBe(3);
    expect((err as ExecError).message).toBe('/bin/sh -c echo broken >&2; exit 3: exit 3: broken');
  });

  it('returns a non-zero exit with allowFailure', async () => {
    expect(await run('/bin/sh', ['-c', 'exit 5'], { allowFailure: true })).toEqual({ exitCode: 5, stdout: '', stderr: '' });
  });

  it('kills a program that outlives its timeout', async () => {
    const t = Date.now();
    const err = await run('/bin/sleep', ['10'], { timeoutMs: 200 }).catch((e: unknown) => e);
    expect((err as ExecError).message).toBe('/bin/sleep 10: timed out after 200 ms');
    expect(Date.now() - t).toBeLessThan(5000);
  });

  it('reports a program that cannot start', async () => {
    const err = await run('/nonexistent/prog', ['x']).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ExecError);
    expect((err as ExecError).message).toMatch(/^\/nonexistent\/prog x: spawn \/nonexistent\/prog ENOENT/);
  });

  it('reports death by a signal', async () => {
    const err = await run('/bin/sh', ['-c', 'kill -9 $$']).catch((e: unknown) => e);
    expect((err as ExecError).message).toBe('/bin/sh -c kill -9 $$: killed by SIGKILL');
  });

  it('adds env to the inherited environment and runs in cwd', async () => {
    const r = await run('/bin/sh', ['-c', 'echo "$DENV_T:$PWD:${PATH:+haspath}"'], { env: { DENV_T: 'x1' }, cwd: '/tmp' });
    expect(r.stdout).toBe('x1:/tmp:haspath');
  });

  it('gives the program no stdin', async () => {
    const r = await run('/bin/sh', ['-c', 'cat; echo "rc=$?"']);
    expect(r.stdout).toBe('rc=0');
  });
});

describe('run, with a grandchild that keeps the output open', () => {
  it('returns after the program exits, not when the grandchild closes its copy of stdout', async () => {
    const t = Date.now();
    // the shell exits at once; its background sleep holds stdout for 20 s
    const r = await run('/bin/sh', ['-c', 'sleep 20 & echo $!'], { timeoutMs: 30_000 });
    const grandchild = Number(r.stdout);
    try {
      expect(r.exitCode).toBe(0);
      expect(grandchild).toBeGreaterThan(0);
      expect(Date.now() - t).toBeLessThan(10_000);
    } finally {
      if (grandchild > 0) process.kill(grandchild, 'SIGKILL');
    }
  });
});
