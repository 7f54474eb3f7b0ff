/**
 * The one way the node runtime runs another program: an argv array (never a
 * shell string), a timeout, no stdin, and errors that name the program, its
 * arguments and what it printed. Keeping this in one place is what lets us say
 * "nothing user-supplied reaches a shell".
 *
 * Also the one way it tells whether a process it knows is still there: by
 * {@link ProcessId} (pid plus start time), never by a bare pid or a name.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { GONE_START_TICKS, identityFromStat, sameProcessInStat, type ProcessId } from '../src/core/procfs.js';
import { sharedHelper, type SpawnHelper } from './spawner.js';

/** Result of a program that ran to completion (any exit code). */
export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options for {@link run}. */
export interface ExecOptions {
  /** Kill the program after this long. Every call has one; default 30 s. */
  readonly timeoutMs?: number;
  /** Non-zero exit is returned instead of thrown. */
  readonly allowFailure?: boolean;
  /** Extra environment; PATH may be overridden to choose which binaries are found. */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** stdout and stderr go to /dev/null (for a program whose children keep them open, like `runc run --detach`). */
  readonly discardOutput?: boolean;
}

/** A program failed, timed out or could not be started; the message says which and why. */
export class ExecError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = 'ExecError';
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Output beyond this many characters per stream is dropped (the tail is what errors need). */
const MAX_OUTPUT = 1 << 20;

/**
 * Run `file` with `args` and wait for it; throws ExecError on failure unless allowFailure.
 * Uses child_process.spawn directly rather than execa: this runs several times per
 * env on the create/teardown path, where execa's per-call bookkeeping showed up as
 * a few ms of main-thread time per env (docs/decisions.md).
 */
export async function run(file: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const argv = [file, ...args];
  const shown = argv.join(' ');
  const helper = sharedHelper();
  const raw = (helper && (await viaHelper(helper, file, args, timeout, opts))) || (await direct(file, args, timeout, opts));
  // one trailing newline is not part of the answer
  const trim = (s: string): string => s.replace(/\r?\n$/, '');
  const r = { ...raw, stdout: trim(raw.stdout), stderr: trim(raw.stderr) };
  if (r.timedOut) throw new ExecError(argv, undefined, r.stderr, `${shown}: timed out after ${timeout} ms`);
  if (r.code === null || r.error) {
    // could not start (ENOENT) or died by a signal
    const why = r.error ? r.error.message : `killed by ${r.signal ?? 'a signal'}`;
    throw new ExecError(argv, undefined, r.stderr, `${shown}: ${why}`);
  }
  const res: ExecResult = { exitCode: r.code, stdout: r.stdout, stderr: r.stderr };
  if (r.code !== 0 && !opts.allowFailure) {
    const detail = res.stderr.trim() || res.stdout.trim();
    throw new ExecError(argv, r.code, res.stderr, `${shown}: exit ${r.code}${detail ? `: ${detail}` : ''}`);
  }
  return res;
}

/** How one program ended, whichever way it was started. */
interface Outcome {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  error?: Error;
}

/** Through the spawn helper; undefined when the helper died under us (the caller then spawns directly). */
async function viaHelper(helper: SpawnHelper, file: string, args: readonly string[], timeout: number, opts: ExecOptions): Promise<Outcome | undefined> {
  let r;
  try {
    r = await helper.run({ file, args, timeoutMs: timeout, ...(opts.env ? { env: opts.env } : {}), ...(opts.cwd ? { cwd: opts.cwd } : {}), ...(opts.discardOutput ? { outputFile: '/dev/null' } : {}) });
  } catch {
    return undefined;
  }
  if (r.state === 'error') return { code: null, signal: null, stdout: '', stderr: '', timedOut: false, error: new Error(`spawn ${file} ${r.errno ?? 'failed'}`) };
  return { code: r.exitCode, signal: r.signal ? signalName(r.signal) : null, stdout: r.stdout, stderr: r.stderr, timedOut: r.timedOut };
}

/** SIGKILL for 9, as Node names the signal of a child it started itself. */
function signalName(n: number): string {
  return Object.entries(constants.signals).find(([, v]) => v === n)?.[0] ?? `signal ${n}`;
}

/** child_process.spawn: forks this process (the fallback when there is no helper). */
async function direct(file: string, args: readonly string[], timeout: number, opts: ExecOptions): Promise<Outcome> {
  return new Promise<Outcome>((resolve) => {
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    let error: Error | undefined;
    const child = spawn(file, [...args], { stdio: opts.discardOutput ? 'ignore' : ['ignore', 'pipe', 'pipe'], env: opts.env ? { ...process.env, ...opts.env } : process.env, ...(opts.cwd ? { cwd: opts.cwd } : {}) });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeout);
    child.stdout?.setEncoding('utf8').on('data', (d: string) => {
      if (stdout.length < MAX_OUTPUT) stdout += d;
    });
    child.stderr?.setEncoding('utf8').on('data', (d: string) => {
      if (stderr.length < MAX_OUTPUT) stderr += d;
    });
    let done = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, timedOut, ...(error ? { error } : {}) });
    };
    child.on('error', (e) => {
      error = e;
    });
    // 'close' waits for the output pipes too; a grandchild that kept them open must not hang us past the exit
    child.on('exit', (code, signal) => setTimeout(() => finish(code, signal), 2000).unref());
    child.on('close', finish);
  });
}

/**
 * True while process `pid` exists (EPERM: it exists but is not ours to signal).
 * A bare pid says nothing about which process holds it: only for pids we have
 * no start time for (another program's lock file); everything the runtime
 * records goes through {@link isSameProcess}.
 */
export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** /proc/PID/stat of `pid`, '' when there is no such process. A few hundred bytes of procfs: a synchronous read. */
function readStat(pid: number, procDir: string): string {
  if (!Number.isInteger(pid) || pid <= 0) return '';
  try {
    return readFileSync(`${procDir}/${pid}/stat`, 'utf8');
  } catch {
    return '';
  }
}

/** The identity (pid plus start time) of process `pid` now, zombie or not; undefined when there is no such process. */
export function processIdentity(pid: number, procDir = '/proc'): ProcessId | undefined {
  return identityFromStat(pid, readStat(pid, procDir));
}

let self: ProcessId | undefined;

/** This process's identity (read once: it never changes). */
export function selfIdentity(): ProcessId {
  if (self?.pid === process.pid) return self;
  const id = processIdentity(process.pid);
  if (!id) throw new Error(`cannot read /proc/${process.pid}/stat: is /proc mounted?`);
  return (self = id);
}

/**
 * The identity of `pid` for recording: read now, or, when the process is
 * already gone, an identity that matches no process ({@link GONE_START_TICKS}).
 */
export function recordIdentity(pid: number, procDir = '/proc'): ProcessId {
  return processIdentity(pid, procDir) ?? { pid, startTicks: GONE_START_TICKS };
}

/**
 * True while the process `id` names is alive: a process with its pid exists,
 * started at the same clock tick (else the pid was reused: a different
 * process, so the recorded one is dead) and is not a zombie.
 */
export function isSameProcess(id: ProcessId | undefined, procDir = '/proc'): boolean {
  if (!id || id.startTicks < 0) return false;
  return sameProcessInStat(id, readStat(id.pid, procDir));
}

/** Linux reports start times in USER_HZ ticks, 100 per second on every architecture Node runs on. */
const TICKS_PER_SECOND = 100;

/** Boot time (wall clock, whole seconds) from /proc/stat; 0 when unreadable. */
function bootTimeSeconds(procDir: string): number {
  try {
    return Number(/^btime (\d+)/m.exec(readFileSync(`${procDir}/stat`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

/**
 * Slack when comparing a process start (boot time, kept by the kernel in whole
 * seconds, plus ticks) with a wall-clock time another process wrote: the
 * truncated boot second and small clock steps.
 */
const START_SLACK_MS = 2000;

/**
 * The identity of a bare pid that was written down at `writtenAtMs` (a journal
 * of version 1, a pid file): the process holding `pid` now if it had started
 * by then, else a gone identity. A process that started after the pid was
 * written cannot be the one it names. A process that started before may still
 * be another one (the named one died and the pid came round before the write);
 * the host cannot tell, so it is taken to be the one named: a bare pid is
 * judged alive rather than dead when in doubt.
 */
export function identityWrittenAt(pid: number, writtenAtMs: number, procDir = '/proc'): ProcessId {
  const id = processIdentity(pid, procDir);
  if (!id || !Number.isFinite(writtenAtMs)) return id ?? { pid, startTicks: GONE_START_TICKS };
  const btime = bootTimeSeconds(procDir);
  // without a boot time the start cannot be placed in wall-clock time: keep the process (conservative)
  if (!btime) return id;
  const startedMs = (btime + id.startTicks / TICKS_PER_SECOND) * 1000;
  return startedMs <= writtenAtMs + START_SLACK_MS ? id : { pid, startTicks: GONE_START_TICKS };
}
