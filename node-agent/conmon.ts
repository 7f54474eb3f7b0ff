/**
 * Launching and driving the workload through conmon and runc. conmon runs
 * `runc create`, reports the container pid on a sync pipe, then stays behind as
 * the container's monitor: it writes the log (CRI format, size-capped) and the
 * exit code file even if the runtime that started it dies. The caller then
 * `runc start`s. Everything runs against the project's runc root.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, rmSync, unlinkSync } from 'node:fs';
import { constants } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseProcStat, type ProcessId } from '../src/core/procfs.js';
import { ExecError, identityWrittenAt, isSameProcess, recordIdentity, run } from './exec.js';
import { sharedHelper } from './spawner.js';

/** What conmon needs for one container. */
export interface ConmonLaunch {
  readonly conmon: string;
  readonly runc: string;
  readonly runcRoot: string;
  readonly containerId: string;
  readonly name: string;
  readonly bundle: string;
  readonly logPath: string;
  readonly logSizeMax: number;
  readonly exitDir: string;
  readonly conmonPidFile: string;
  readonly containerPidFile: string;
  readonly socketDir: string;
  /** conmon's own output (its errors), a file in the env dir. */
  readonly conmonLog: string;
  /** conmon's working and persist dir (it writes an `oom` marker there): the env dir. */
  readonly persistDir: string;
  /** conmon kills the container after this many seconds: a backstop if every supervisor is gone. */
  readonly backstopSeconds: number;
  readonly timeoutMs?: number;
}

/** conmon's argv for `launch`. */
export function conmonArgs(l: ConmonLaunch): string[] {
  return [
    '--api-version', '1',
    '-c', l.containerId,
    '-u', l.containerId,
    '-n', l.name,
    '-r', l.runc,
    '-b', l.bundle,
    '-p', l.containerPidFile,
    '-P', l.conmonPidFile,
    '--exit-dir', l.exitDir,
    '-l', `k8s-file:${l.logPath}`,
    '--log-size-max', String(l.logSizeMax),
    '--socket-dir-path', l.socketDir,
    '--persist-dir', l.persistDir,
    '--runtime-arg', '--root',
    '--runtime-arg', l.runcRoot,
    '-T', String(l.backstopSeconds),
  ];
}

/**
 * conmon's environment on top of the agent's: the sync pipe on fd 3, and the C
 * locale, which glibc has built in. Under the agent's UTF-8 locale conmon maps
 * a dozen locale files at startup: ~0.25 ms per create on this VM (paired
 * runs), where page faults are dear. runc ignores the locale; the workload's
 * environment comes from config.json, not from here.
 */
const CONMON_ENV = { _OCI_SYNCPIPE: '3', LC_ALL: 'C' } as const;

/** conmon could not create the container; `message` carries runc's error. */
export class LaunchError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LaunchError';
  }
}

/**
 * Start conmon (which daemonises) and wait for `runc create` to finish: through
 * the spawn helper when there is one, else with child_process.spawn (not execa:
 * the sync pipe must be fd 3). Either way an argv array with a timeout, in a
 * session of its own. Resolves with both processes' identities (pid plus start
 * time), read at once: both are alive here unless the workload already ran and
 * exited (an identity that matches no process then). `conmonPid` and
 * `containerPid` are the same pids bare, for callers that only show them.
 */
export async function conmonCreate(l: ConmonLaunch): Promise<{ conmon: ProcessId; container: ProcessId; conmonPid: number; containerPid: number }> {
  const timeoutMs = l.timeoutMs ?? 30_000;
  const message = (await syncViaHelper(l, timeoutMs)) ?? (await syncDirect(l, timeoutMs));
  let parsed: { data?: number; message?: string };
  try {
    parsed = JSON.parse(message) as { data?: number; message?: string };
  } catch {
    const log = await readFile(l.conmonLog, 'utf8').catch(() => '');
    throw new LaunchError(`conmon: runc create failed: ${lastLines(log, 5) || 'no message on the sync pipe'}`);
  }
  if (typeof parsed.data !== 'number' || parsed.data <= 0) {
    const log = await readFile(l.conmonLog, 'utf8').catch(() => '');
    throw new LaunchError(`runc create failed: ${parsed.message ?? ''} ${lastLines(log, 5)}`.trim());
  }
  // conmon wrote it before it answered; a few bytes on a local disk: synchronous, like the journal's small files
  const conmonPid = pidOf(l.conmonPidFile, readFileSync(l.conmonPidFile, 'utf8'));
  return { conmon: recordIdentity(conmonPid), container: recordIdentity(parsed.data), conmonPid, containerPid: parsed.data };
}

/** conmon through the spawn helper (its own session, fd 3 the sync pipe); undefined without a helper. */
async function syncViaHelper(l: ConmonLaunch, timeoutMs: number): Promise<string | undefined> {
  const helper = sharedHelper();
  if (!helper) return undefined;
  let r;
  try {
    r = await helper.run({ file: l.conmon, args: conmonArgs(l), timeoutMs, env: CONMON_ENV, cwd: l.persistDir, newSession: true, syncFd3: true, outputFile: l.conmonLog });
  } catch {
    return undefined; // the helper died under us: start conmon directly
  }
  if (r.state === 'error') throw new LaunchError(`conmon: cannot start ${l.conmon}: ${r.errno ?? 'spawn failed'}`);
  if (r.timedOut) throw new LaunchError(`conmon: no answer on the sync pipe within ${timeoutMs} ms`);
  return r.sync.split('\n')[0] ?? '';
}

/** conmon started with child_process.spawn (the fallback without a helper). */
async function syncDirect(l: ConmonLaunch, timeoutMs: number): Promise<string> {
  const logFd = openSync(l.conmonLog, 'a', 0o600);
  let message: string;
  try {
    message = await new Promise<string>((resolve, reject) => {
      const child = spawn(l.conmon, conmonArgs(l), {
        stdio: ['ignore', logFd, logFd, 'pipe'],
        cwd: l.persistDir,
        env: { ...process.env, ...CONMON_ENV },
        detached: true, // its own session: a Ctrl-C of the CLI must not reach the monitor
      });
      const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
      let buf = '';
      const timer = setTimeout(() => {
        reject(new LaunchError(`conmon: no answer on the sync pipe within ${timeoutMs} ms`));
        pipe?.removeAllListeners();
      }, timeoutMs);
      child.on('error', (err) => {
        clearTimeout(timer);
        reject(new LaunchError(`conmon: cannot start ${l.conmon}: ${err.message}`, { cause: err }));
      });
      pipe?.on('data', (chunk: Buffer) => {
        buf += chunk.toString('utf8');
        if (buf.includes('\n')) {
          clearTimeout(timer);
          (pipe as NodeJS.ReadableStream & { destroy(): void }).destroy();
          resolve(buf.split('\n')[0] ?? '');
        }
      });
      pipe?.on('end', () => {
        clearTimeout(timer);
        resolve(buf);
      });
      child.unref();
    });
  } finally {
    closeSync(logFd);
  }
  return message;
}

function lastLines(text: string, n: number): string {
  return text.trim().split('\n').slice(-n).join(' | ');
}

/** Read a pid file written by conmon or runc. */
export async function readPidFile(file: string): Promise<number> {
  return pidOf(file, await readFile(file, 'utf8'));
}

function pidOf(file: string, content: string): number {
  const text = content.trim();
  const pid = Number.parseInt(text, 10);
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`pid file ${file} holds ${JSON.stringify(text)}`);
  return pid;
}

/** How often FifoStart.early() looks for the fifo: runc makes it well before its init, tens of ms into create, needs a reader. */
const EARLY_POLL_MS = 2;

/** `runc start`: the workload's first instruction runs after this (it is already in its cgroup). */
async function runcStart(runc: string, root: string, id: string): Promise<void> {
  await run(runc, ['--root', root, 'start', id], { timeoutMs: 30_000 });
}

/**
 * Start a created container the way `runc start` does, without a second runc
 * process: runc's init waits, at the end of `runc create`, until someone opens
 * `<root>/<id>/exec.fifo` for reading; it then writes one byte and execs the
 * workload, and the starter removes the fifo (runc reports a container whose
 * fifo is gone as running). The fifo is opened non-blocking and polled, so an
 * init that died can never hang us. When the fifo is not there (another runc
 * layout) or anything is unexpected, finish() falls back to `runc start`.
 *
 * The reader can be there before the init needs it: runc makes the fifo early
 * in create, and its init opens it for writing only at the very end, once the
 * container is set up and runc has saved its state. With a reader already
 * there the init does not wait for one: it writes its byte into the pipe and
 * execs the workload at once, while runc create exits and conmon reports,
 * instead of after them. `early()` looks for the fifo every 2 ms (a stat)
 * until it can open it, and then stops; the byte waits in the pipe. `finish()`
 * is called once conmon reported the init's pid: it reads the byte, removes
 * the fifo and returns how the container was started. `cancel()` closes the
 * fifo when the create failed (runc then removes the container, init and fifo
 * included). The fifo file is removed only in finish(), after `runc create`
 * has exited.
 */
export class FifoStart {
  private fd: number | undefined;
  private got = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly fifo: string;

  constructor(
    private readonly root: string,
    private readonly id: string,
  ) {
    this.fifo = path.join(root, id, 'exec.fifo');
  }

  /** Open the fifo as soon as runc has made it, until finish() or cancel(). */
  early(): this {
    const tick = (): void => {
      this.timer = undefined;
      if (existsSync(this.fifo) && this.open()) return;
      this.timer = setTimeout(tick, EARLY_POLL_MS);
    };
    this.timer = setTimeout(tick, EARLY_POLL_MS);
    return this;
  }

  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.close();
  }

  /**
   * Finish the start of a created container whose init is `init`; falls back to `runc start` without a fifo.
   * A bare pid (callers that kept only conmon's answer) names the process holding it now.
   */
  async finish(runc: string, initProcess: ProcessId | number | undefined, timeoutMs = 10_000): Promise<'fifo' | 'runc start'> {
    const init = typeof initProcess === 'number' ? (initProcess > 0 ? recordIdentity(initProcess) : undefined) : initProcess;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    // Non-blocking open and reads never wait in the kernel, so they are plain synchronous calls: the
    // init's byte usually arrives tens of microseconds after the open, and thread-pool round trips
    // plus a 1 ms timer cost more than the wait itself.
    try {
      if (this.fd === undefined && !this.open()) {
        await runcStart(runc, this.root, this.id);
        return 'runc start';
      }
      const started = Date.now();
      const deadline = started + timeoutMs;
      for (;;) {
        if (this.poll()) break;
        // a short workload may have started, run and exited since the read: its byte is still in the fifo
        if (init && !isSameProcess(init)) {
          if (this.poll()) break;
          throw new Error(`start ${this.id}: the container's init (pid ${init.pid}) died before it could start`);
        }
        if (Date.now() > deadline) throw new Error(`start ${this.id}: the container's init did not report on ${this.fifo} within ${timeoutMs} ms`);
        // poll at event-loop speed for the first few ms (the usual case), then every ms
        await new Promise((r) => (Date.now() - started < 5 ? setImmediate(r) : setTimeout(r, 1)));
      }
    } finally {
      this.close();
    }
    unlinkSync(this.fifo); // one metadata call on the runc root (tmpfs on a normal host)
    return 'fifo';
  }

  /** Open the fifo if it can be opened yet (else false: not there yet, or finish() falls back to `runc start`). */
  private open(): boolean {
    try {
      this.fd = openSync(this.fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      return true;
    } catch {
      return false;
    }
  }

  /** True once the init's byte was read (it is checked to be runc's '0'). */
  private poll(): boolean {
    if (this.got) return true;
    if (this.fd === undefined && !this.open()) return false;
    const buf = Buffer.alloc(1);
    let n: number;
    try {
      n = readSync(this.fd!, buf, 0, 1, null);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      return false;
    }
    if (n !== 1) return false; // no writer yet (EOF)
    if (buf[0] !== 0x30) throw new Error(`start ${this.id}: unexpected byte ${buf[0]} on ${this.fifo}`);
    this.got = true;
    return true;
  }

  private close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }
}

/** `runc kill <id> <signal>`; a container that is no longer running is not an error. */
export async function runcKill(runc: string, root: string, id: string, signal: string): Promise<void> {
  const r = await run(runc, ['--root', root, 'kill', id, signal], { timeoutMs: 10_000, allowFailure: true });
  if (r.exitCode !== 0 && !/not running|does not exist|process already finished|no such process/i.test(r.stderr)) {
    throw new ExecError([runc, 'kill', id, signal], r.exitCode, r.stderr, `runc kill ${id} ${signal}: ${r.stderr.trim()}`);
  }
}

/** `runc state` status (`created`, `running`, `stopped`), or undefined when runc does not know the container. */
export async function runcStatus(runc: string, root: string, id: string): Promise<string | undefined> {
  const r = await run(runc, ['--root', root, 'state', id], { timeoutMs: 10_000, allowFailure: true });
  if (r.exitCode !== 0) return undefined;
  try {
    return (JSON.parse(r.stdout) as { status?: string }).status;
  } catch {
    return undefined;
  }
}

/**
 * `runc delete --force`, then prove runc no longer knows the container: runc
 * keeps each container's state in `<root>/<id>/` (what `runc list` reads), and
 * delete removes it. Checking the directory saves a second runc process.
 */
export async function runcDelete(runc: string, root: string, id: string): Promise<void> {
  const r = await run(runc, ['--root', root, 'delete', '--force', id], { timeoutMs: 30_000, allowFailure: true });
  const left = await stat(path.join(root, id)).then(
    () => true,
    () => false,
  );
  if (left) throw new Error(`runc: container ${id} still exists after delete (exit ${r.exitCode}: ${r.stderr.trim()})`);
}

/** `<root>/<id>`, for an id runc accepts (letters, digits, `_+-.`; never `.` or `..`): a single entry of its root. */
function containerDir(root: string, id: string): string {
  if (!/^[\w+.-]+$/.test(id) || id === '.' || id === '..') throw new Error(`invalid container id ${JSON.stringify(id)}`);
  return path.join(root, id);
}

/** What {@link stoppedContainer} found: nothing, a stopped container whose state dir is all that is left, or one that needs runc. */
export type ContainerCheck = { readonly state: 'absent' } | { readonly state: 'stopped' } | { readonly state: 'needs runc'; readonly why: string };

/**
 * Whether `runc delete` of container `id` would do no more than remove its
 * state dir `<root>/<id>/` and the cgroup dirs in `ours` (which the caller
 * removes and verifies itself). That is libcontainer's destroy() for a stopped
 * container: its init is gone (no process with the recorded pid and start
 * time, or only its zombie), it has no hooks and no Intel RDT group, and every
 * cgroup it joined is one of `ours`. Anything else, or a state file that
 * cannot be read, needs runc.
 */
export function stoppedContainer(root: string, id: string, ours: ReadonlySet<string>): ContainerCheck {
  const dir = containerDir(root, id);
  let text: string;
  try {
    text = readFileSync(path.join(dir, 'state.json'), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' && !existsSync(dir)) return { state: 'absent' };
    return { state: 'needs runc', why: `state.json: ${(err as Error).message}` };
  }
  let st: { init_process_pid?: unknown; init_process_start?: unknown; cgroup_paths?: unknown; intel_rdt_path?: unknown; config?: { hooks?: unknown } };
  try {
    st = JSON.parse(text) as typeof st;
  } catch (err) {
    return { state: 'needs runc', why: `state.json: ${(err as Error).message}` };
  }
  const pid = st.init_process_pid;
  if (typeof pid !== 'number' || !Number.isInteger(pid) || pid <= 0) return { state: 'needs runc', why: 'no init pid in state.json' };
  let proc: ReturnType<typeof parseProcStat>;
  try {
    proc = parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    proc = undefined; // no such process
  }
  if (proc && proc.startTicks === st.init_process_start && proc.state !== 'Z' && proc.state !== 'X') {
    return { state: 'needs runc', why: `init ${pid} is alive` };
  }
  const hooks = st.config?.hooks;
  if (hooks !== undefined && hooks !== null && Object.values(hooks as Record<string, unknown>).some((h) => Array.isArray(h) && h.length > 0)) {
    return { state: 'needs runc', why: 'it has hooks' };
  }
  if (typeof st.intel_rdt_path === 'string' && st.intel_rdt_path !== '') return { state: 'needs runc', why: 'it has an Intel RDT group' };
  const cgroups = st.cgroup_paths && typeof st.cgroup_paths === 'object' ? Object.values(st.cgroup_paths as Record<string, unknown>) : [];
  const foreign = cgroups.find((c) => typeof c !== 'string' || !ours.has(c));
  if (foreign !== undefined) return { state: 'needs runc', why: `cgroup ${JSON.stringify(foreign)} is not the env's` };
  return { state: 'stopped' };
}

/**
 * Remove container `id` from runc's root: by hand when {@link stoppedContainer}
 * says its state dir is all that `runc delete` would remove (the common case at
 * teardown, when the workload has exited: it saves a runc process, about 9 ms of
 * CPU), else `runc delete --force`. Either way the state dir is verified gone.
 */
export async function removeContainer(runc: string, root: string, id: string, ourCgroups: ReadonlySet<string>): Promise<'absent' | 'state dir' | 'runc delete'> {
  const check = stoppedContainer(root, id, ourCgroups);
  if (check.state === 'absent') return 'absent';
  if (check.state === 'stopped') {
    const dir = containerDir(root, id);
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // e.g. EBUSY on something mounted inside: runc delete below, and its error if that fails too
    }
    if (!existsSync(dir)) return 'state dir';
  }
  await runcDelete(runc, root, id);
  return 'runc delete';
}

/** The exit code conmon recorded (128+signal for a signal), or undefined while the workload runs. */
export async function readExitCode(exitFile: string): Promise<number | undefined> {
  let text: string;
  try {
    text = (await readFile(exitFile, 'utf8')).trim();
  } catch {
    return undefined;
  }
  if (!text) return undefined; // conmon creates then writes; try again next tick
  const n = Number.parseInt(text, 10);
  return Number.isInteger(n) ? n : undefined;
}

/** One line of a CRI log: `<time> <stream> <P|F> <message>`. */
export interface LogLine {
  readonly time: string;
  readonly stream: 'stdout' | 'stderr';
  readonly message: string;
}

/** Parse a CRI-format log; partial (`P`) records are joined with their continuation. */
export function parseCriLog(text: string): LogLine[] {
  const out: LogLine[] = [];
  let pending: { time: string; stream: 'stdout' | 'stderr'; parts: string[] } | undefined;
  for (const raw of text.split('\n')) {
    const m = /^(\S+) (stdout|stderr) ([PF]) ?(.*)$/.exec(raw);
    if (!m) continue;
    const [, time = '', stream, tag, msg = ''] = m;
    const s = stream as 'stdout' | 'stderr';
    if (!pending || pending.stream !== s) {
      if (pending) out.push({ time: pending.time, stream: pending.stream, message: pending.parts.join('') });
      pending = { time, stream: s, parts: [] };
    }
    pending.parts.push(msg);
    if (tag === 'F') {
      out.push({ time: pending.time, stream: pending.stream, message: pending.parts.join('') });
      pending = undefined;
    }
  }
  if (pending) out.push({ time: pending.time, stream: pending.stream, message: pending.parts.join('') });
  return out;
}

/** The last `maxLines` lines of a CRI log, at most `maxBytes` characters (the API's logTail). */
export function logTail(text: string, maxLines = 50, maxBytes = 16384): string {
  const lines = parseCriLog(text).map((l) => l.message);
  let tail = lines.slice(-maxLines).join('\n');
  if (tail.length > maxBytes) tail = tail.slice(tail.length - maxBytes);
  return tail;
}

/**
 * True while `id` is alive (same pid and start time: a reused pid is another
 * process) and is a conmon for container `cid` (a recorded pid that named
 * something else never passes).
 */
export async function isConmonOf(id: ProcessId | undefined, cid: string): Promise<boolean> {
  if (!isSameProcess(id)) return false;
  try {
    const cmd = (await readFile(`/proc/${id!.pid}/cmdline`, 'utf8')).split('\0');
    return path.basename(cmd[0] ?? '') === 'conmon' && cmd.includes(cid) && isSameProcess(id);
  } catch {
    return false;
  }
}

/** The conmon a pid file names: the process with that pid if it started before conmon wrote the file. */
export async function conmonFromPidFile(file: string): Promise<ProcessId | undefined> {
  try {
    const [pid, st] = await Promise.all([readPidFile(file), stat(file)]);
    return identityWrittenAt(pid, st.mtimeMs);
  } catch {
    return undefined;
  }
}
