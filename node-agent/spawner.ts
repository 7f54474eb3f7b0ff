/**
 * The agent side of `denv-spawn` (node-agent/native/spawn-helper.c): one small
 * long-lived helper process that starts the runtime's programs with
 * posix_spawn, so the agent never forks itself on the create and teardown
 * paths. A fork of the agent costs time in proportion to its resident size
 * (page tables are copied) and blocks the event loop while it runs; the
 * helper's cost does not grow with the agent. See docs/decisions.md.
 *
 * The helper is optional: without the binary (not built, or a platform
 * without gcc) every call falls back to child_process.spawn, with the same
 * argv array, timeout and output handling. The helper never sees a shell
 * string either.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** What the helper reports for one program. */
export interface SpawnResult {
  /** exit: ran to the end (code or signal); sync: answered on fd 3; error: could not start. */
  readonly state: 'exit' | 'sync' | 'error';
  readonly exitCode: number | null;
  readonly signal: number;
  readonly timedOut: boolean;
  /** errno name when state is error (ENOENT, EACCES, …). */
  readonly errno?: string;
  readonly stdout: string;
  readonly stderr: string;
  /** What the program wrote on fd 3 (sync mode). */
  readonly sync: string;
}

/** One request. */
export interface SpawnRequest {
  readonly file: string;
  readonly args: readonly string[];
  readonly timeoutMs: number;
  /** Environment entries that replace the helper's (which is the agent's at start). */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
  /** Start the program in a new session (it must not get the agent's signals). */
  readonly newSession?: boolean;
  /** fd 3 is a pipe; the answer comes with its first line, without waiting for the exit. */
  readonly syncFd3?: boolean;
  /** stdout and stderr are appended to this file instead of being captured. */
  readonly outputFile?: string;
  /**
   * No program: `file` is an existing empty file, and a child of the helper makes a new
   * network namespace, bind-mounts it there and sets its loopback up (exit 0, or non-zero
   * with the failing step on stderr). A helper built before this existed answers `error`.
   */
  readonly netns?: boolean;
  /**
   * No program: `file` is a netns handle, and a child of the helper detaches its mount and
   * removes it, as `ip netns delete` does (exit 0, or non-zero with the failing step on stderr).
   * A helper built before this existed answers `error`.
   */
  readonly netnsDelete?: boolean;
}

const ERRNO: Record<number, string> = { 1: 'EPERM', 2: 'ENOENT', 7: 'E2BIG', 8: 'ENOEXEC', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES', 20: 'ENOTDIR', 22: 'EINVAL', 24: 'EMFILE', 40: 'ELOOP' };

/** Where the helper binary is looked for: $DENV_SPAWN_HELPER, then the build output next to this module. */
export function helperCandidates(): string[] {
  const here = path.dirname(fileURLToPath(import.meta.url));
  const fromEnv = process.env.DENV_SPAWN_HELPER;
  return [
    ...(fromEnv ? [fromEnv] : []),
    path.join(here, '..', 'native', 'denv-spawn'), // dist/node-agent/spawner.js → dist/native
    path.join(here, '..', 'dist', 'native', 'denv-spawn'), // node-agent/spawner.ts (tsx, jest) → dist/native
  ];
}

/** The helper binary to use, or undefined (DENV_SPAWN_HELPER=off disables it). */
export function findHelper(): string | undefined {
  if (process.env.DENV_SPAWN_HELPER === 'off') return undefined;
  for (const c of helperCandidates()) {
    try {
      accessSync(c, constants.X_OK);
      return c;
    } catch {
      // next
    }
  }
  return undefined;
}

/** A running helper; requests are multiplexed by id over its stdin/stdout. */
export class SpawnHelper {
  private readonly child: ChildProcess;
  private readonly pending = new Map<number, { resolve: (r: SpawnResult) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private inbuf: Buffer = Buffer.alloc(0);
  private dead?: Error;

  constructor(readonly binary: string) {
    this.child = spawn(binary, [], { stdio: ['pipe', 'pipe', 'inherit'] });
    this.child.on('error', (err) => this.fail(new Error(`denv-spawn (${binary}): ${err.message}`)));
    this.child.on('exit', (code, signal) => this.fail(new Error(`denv-spawn (${binary}) exited (${signal ?? `code ${code}`})`)));
    this.child.stdin!.on('error', (err) => this.fail(new Error(`denv-spawn (${binary}): ${err.message}`)));
    this.child.stdout!.on('data', (d: Buffer) => this.onData(d));
    this.idle();
  }

  /** False once the helper is gone; callers then spawn directly. */
  get alive(): boolean {
    return this.dead === undefined;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Run one program through the helper. Rejects only when the helper itself fails. */
  run(req: SpawnRequest): Promise<SpawnResult> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextId++;
    const env = Object.entries(req.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const flags = (req.newSession ? 1 : 0) | (req.syncFd3 ? 2 : 0) | (req.outputFile ? 4 : 0) | (req.netns ? 8 : 0) | (req.netnsDelete ? 16 : 0);
    const fields = ['1', String(id), String(Math.max(1, Math.round(req.timeoutMs))), String(flags), req.cwd ?? '', req.outputFile ?? '', String(env.length), ...env, String(1 + req.args.length), req.file, ...req.args];
    for (const f of fields) if (f.includes('\0')) return Promise.reject(new Error(`denv-spawn: argument contains a NUL byte: ${JSON.stringify(f)}`));
    const payload = Buffer.from(fields.map((f) => `${f}\0`).join(''), 'utf8');
    const frame = Buffer.allocUnsafe(4 + payload.length);
    frame.writeUInt32LE(payload.length, 0);
    payload.copy(frame, 4);
    return new Promise<SpawnResult>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.busy();
      this.child.stdin!.write(frame);
    });
  }

  /** Close the helper's stdin: it finishes what it waits for and exits. */
  close(): void {
    this.child.stdin?.end();
    this.fail(new Error('denv-spawn: closed'));
  }

  private onData(d: Buffer): void {
    this.inbuf = this.inbuf.length ? Buffer.concat([this.inbuf, d]) : d;
    for (;;) {
      if (this.inbuf.length < 4) return;
      const n = this.inbuf.readUInt32LE(0);
      if (this.inbuf.length < 4 + n) return;
      const frame = this.inbuf.subarray(4, 4 + n);
      this.inbuf = this.inbuf.subarray(4 + n);
      this.answer(frame);
    }
  }

  private answer(frame: Buffer): void {
    const nl = frame.indexOf(10);
    const head = frame.subarray(0, nl).toString('utf8').split(' ');
    const [id, state, code, sig, timedOut, errno, outLen, errLen, syncLen] = head;
    const lens = [Number(outLen), Number(errLen), Number(syncLen)];
    let at = nl + 1;
    const part = (n: number): string => {
      const s = frame.subarray(at, at + n).toString('utf8');
      at += n;
      return s;
    };
    const stdout = part(lens[0]!);
    const stderr = part(lens[1]!);
    const sync = part(lens[2]!);
    const p = this.pending.get(Number(id));
    if (!p) return;
    this.pending.delete(Number(id));
    if (!this.pending.size) this.idle();
    const errnoNum = Number(errno);
    p.resolve({
      state: state as SpawnResult['state'],
      exitCode: Number(code) >= 0 ? Number(code) : null,
      signal: Number(sig),
      timedOut: timedOut === '1',
      ...(errnoNum ? { errno: ERRNO[errnoNum] ?? `errno ${errnoNum}` } : {}),
      stdout,
      stderr,
      sync,
    });
  }

  private fail(err: Error): void {
    if (this.dead) return;
    this.dead = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    this.idle();
  }

  /** With nothing pending the helper must not keep the process alive (a CLI exits when its work is done). */
  private idle(): void {
    this.child.unref();
    (this.child.stdout as unknown as { unref?: () => void } | null)?.unref?.();
    (this.child.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  }

  private busy(): void {
    this.child.ref();
    (this.child.stdout as unknown as { ref?: () => void } | null)?.ref?.();
  }
}

let shared: SpawnHelper | undefined;
let deaths = 0;
/** After this many helpers died unasked, the process spawns directly for good. */
const MAX_DEATHS = 3;

/**
 * The process-wide helper, started on first use; undefined when there is no
 * binary, or when helpers kept dying (callers then spawn directly). A helper
 * that died is replaced on the next call.
 */
export function sharedHelper(): SpawnHelper | undefined {
  if (shared?.alive) return shared;
  if (shared) {
    deaths++;
    shared = undefined;
  }
  if (deaths >= MAX_DEATHS) return undefined;
  const bin = findHelper();
  if (!bin) return undefined;
  shared = new SpawnHelper(bin);
  return shared;
}

/** Stop the process-wide helper (tests; the CLI's exit does it implicitly). */
export function closeSharedHelper(): void {
  shared?.close();
  shared = undefined;
}

/** Whether programs go through the helper in this process, and which binary (for `denv doctor` and the bench). */
export function helperStatus(): { binary?: string; active: boolean } {
  const bin = findHelper();
  return { ...(bin ? { binary: bin } : {}), active: bin !== undefined && deaths < MAX_DEATHS };
}
