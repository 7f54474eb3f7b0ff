/**
 * The exec-fifo start (node-agent/conmon.ts FifoStart) against real fifos and
 * real writer processes that play runc's init: it opens `<root>/<id>/exec.fifo`
 * for writing (blocking until there is a reader), writes one byte, and exits
 * in place of exec'ing the workload. Started early, the reader is there before
 * the init gets to the fifo, so the init never waits; started late (as
 * `runc start` does) the init waits until finish().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { FifoStart } from '../../node-agent/conmon.js';
import { recordIdentity } from '../../node-agent/exec.js';
import type { ProcessId } from '../../src/core/procfs.js';
import { closeSharedHelper } from '../../node-agent/spawner.js';

let root: string;
const children: ChildProcess[] = [];
let n = 0;

beforeAll(() => {
  root = mkdtempSync(path.join(tmpdir(), 'denv-fifo-'));
});
afterAll(() => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  rmSync(root, { recursive: true, force: true });
  closeSharedHelper(); // the fallback's `runc start` ran through it
});

/** A container dir with its exec fifo, as runc create leaves it. */
async function fifoFor(id: string): Promise<string> {
  mkdirSync(path.join(root, id));
  const fifo = path.join(root, id, 'exec.fifo');
  await execa('mkfifo', ['-m', '0622', fifo], { timeout: 5000 });
  return fifo;
}

/** A stand-in init: open the fifo for writing (waits for a reader), write `byte`, exit. `identity` as conmon's answer gives it. */
function init(fifo: string, byte: string): ChildProcess & { exited: Promise<number | null>; identity: ProcessId } {
  const c = spawn('/bin/sh', ['-c', 'printf "$1" > "$2"', 'init', byte, fifo], { stdio: 'ignore' });
  children.push(c);
  const identity = recordIdentity(c.pid!); // not reaped before this event loop turns
  const exited = new Promise<number | null>((resolve) => c.once('exit', (code) => resolve(code)));
  return Object.assign(c, { exited, identity });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** `p`'s value, or 'still waiting' after `ms` (the timer cleared either way). */
async function within<T>(p: Promise<T>, ms: number): Promise<T | 'still waiting'> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([p, new Promise<'still waiting'>((r) => (timer = setTimeout(() => r('still waiting'), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}
const alive = (c: ChildProcess): boolean => c.exitCode === null && c.signalCode === null;
const nextId = (): string => `c${n++}`;

describe('FifoStart', () => {
  it('started early, is the reader before the init gets there: the init never waits, and finish() then removes the fifo', async () => {
    const id = nextId();
    const start = new FifoStart(root, id).early(); // before runc create has even made the fifo
    await sleep(20);
    const fifo = await fifoFor(id);
    const c = init(fifo, '0');
    // the init writes its byte and goes on with no finish() call at all
    expect(await within(c.exited, 3000)).toBe(0);
    expect(existsSync(fifo)).toBe(true); // removed only by finish(), once runc create is done
    expect(await start.finish('/nonexistent/runc', c.identity)).toBe('fifo');
    expect(existsSync(fifo)).toBe(false);
  });

  it('without early(), the init waits for finish(), as for `runc start`', async () => {
    const id = nextId();
    const fifo = await fifoFor(id);
    const c = init(fifo, '0');
    await sleep(200);
    expect(alive(c)).toBe(true); // blocked in open(O_WRONLY): nobody reads
    expect(await new FifoStart(root, id).finish('/nonexistent/runc', c.identity)).toBe('fifo');
    expect(await c.exited).toBe(0);
    expect(existsSync(fifo)).toBe(false);
  });

  it('refuses a byte that is not runc\'s, found early or late', async () => {
    for (const early of [true, false]) {
      const id = nextId();
      const fifo = await fifoFor(id);
      const start = new FifoStart(root, id);
      if (early) start.early();
      const c = init(fifo, 'x');
      if (early) await c.exited;
      await expect(start.finish('/nonexistent/runc', c.identity)).rejects.toThrow(`start ${id}: unexpected byte 120`);
    }
  });

  it('reports an init that died before it wrote, instead of waiting', async () => {
    const id = nextId();
    await fifoFor(id);
    const start = new FifoStart(root, id).early();
    const c = spawn('/bin/true', { stdio: 'ignore' });
    children.push(c);
    const identity = recordIdentity(c.pid!);
    await new Promise((r) => c.once('exit', r));
    await expect(start.finish('/nonexistent/runc', identity, 2000)).rejects.toThrow(`start ${id}: the container's init (pid ${c.pid}) died before it could start`);
  });

  it('cancel() closes the reader: an init then waits again, and the fifo is left for runc to remove', async () => {
    const id = nextId();
    const fifo = await fifoFor(id);
    const start = new FifoStart(root, id).early();
    await sleep(20); // opened by now
    start.cancel();
    const c = init(fifo, '0');
    await sleep(200);
    expect(alive(c)).toBe(true);
    expect(existsSync(fifo)).toBe(true);
    c.kill('SIGKILL');
    await c.exited;
  });

  it('falls back to `runc start` when there is no fifo', async () => {
    const id = nextId();
    const fake = path.join(root, 'fake-runc');
    const argsFile = path.join(root, 'fake-runc.args');
    writeFileSync(fake, `#!/bin/sh\necho "$@" > ${argsFile}\n`);
    chmodSync(fake, 0o755);
    const start = new FifoStart(root, id).early();
    await sleep(10);
    expect(await start.finish(fake, 0)).toBe('runc start');
    expect(readFileSync(argsFile, 'utf8').trim()).toBe(`--root ${root} start ${id}`);
  });
});
