/**
 * Low-level cgroupfs I/O shared by the v1 and v2 drivers: one write function
 * whose errors name the path and the value, mkdir that says whether it made the
 * directory, and removal with the semantics runc and containerd use (ENOENT is
 * success, EBUSY retried with doubling backoff bounded in total time).
 *
 * Reads, writes and mkdir of control files are synchronous calls behind the
 * async signatures: cgroupfs is kernfs, with no disk I/O, and one call takes
 * tens of microseconds, while the promise API costs three or four thread-pool
 * round trips per file (open, fstat, read, close), each waiting for a free
 * event loop. On create's path that was most of the cgroup step
 * (docs/decisions.md). Removal stays asynchronous: rmdir may wait on the kernel.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { readdir, rmdir } from 'node:fs/promises';
import path from 'node:path';

/** A cgroup file write or read failed; names the file and the value. */
export class CgroupError extends Error {
  constructor(
    message: string,
    readonly code?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CgroupError';
  }
}

function errCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

/** `fn`'s result or error as a settled promise (the sync calls behind the async API). */
function settled<T>(fn: () => T): Promise<T> {
  try {
    return Promise.resolve(fn());
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

/** Write `value` to a cgroup control file (one write(2), as the kernel expects). */
export function writeCgroupFile(file: string, value: string): Promise<void> {
  return settled(() => writeCgroupFileSync(file, value));
}

function writeCgroupFileSync(file: string, value: string): void {
  try {
    writeFileSync(file, value, { flag: 'w' });
  } catch (err) {
    throw new CgroupError(`cgroup: cannot write ${JSON.stringify(value)} to ${file}: ${errCode(err) ?? (err as Error).message}`, errCode(err), { cause: err });
  }
}

/** Read a cgroup file, trimmed. */
export function readCgroupFile(file: string): Promise<string> {
  return settled(() => readCgroupFileSync(file));
}

function readCgroupFileSync(file: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new CgroupError(`cgroup: cannot read ${file}: ${errCode(err) ?? (err as Error).message}`, errCode(err), { cause: err });
  }
}

/** Read a cgroup file, or undefined when it does not exist (a controller not present here). */
export function readOptional(file: string): Promise<string | undefined> {
  return settled(() => readOptionalSync(file));
}

function readOptionalSync(file: string): string | undefined {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch (err) {
    if (errCode(err) === 'ENOENT' || errCode(err) === 'ENODEV' || errCode(err) === 'EOPNOTSUPP') return undefined;
    throw new CgroupError(`cgroup: cannot read ${file}: ${errCode(err) ?? (err as Error).message}`, errCode(err), { cause: err });
  }
}

/** mkdir one cgroup directory; true when we made it, false when it already existed. */
export function mkdirCgroup(dir: string): Promise<boolean> {
  return settled(() => mkdirCgroupSync(dir));
}

function mkdirCgroupSync(dir: string): boolean {
  try {
    mkdirSync(dir);
    return true;
  } catch (err) {
    if (errCode(err) === 'EEXIST') return false;
    throw new CgroupError(`cgroup: cannot create ${dir}: ${errCode(err) ?? (err as Error).message}`, errCode(err), { cause: err });
  }
}

/** Process ids listed in a cgroup.procs (or tasks) file; empty when the cgroup is gone. */
export async function readPids(file: string): Promise<number[]> {
  const text = await readOptional(file);
  if (!text) return [];
  return text
    .split('\n')
    .map((l) => Number.parseInt(l, 10))
    .filter((n) => Number.isInteger(n) && n > 0);
}

/** Bounds for {@link removeCgroupDir}. */
export interface RemoveOptions {
  /** Total time spent retrying EBUSY. Default 5000 ms. */
  readonly budgetMs?: number;
  /** First backoff; doubles each retry up to 500 ms. Default 10 ms. */
  readonly initialDelayMs?: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * Remove a cgroup directory and its child cgroups (children first). ENOENT is
 * success. EBUSY (a process is still exiting) is retried with doubling backoff
 * until the budget is spent; then the last error is thrown.
 */
export async function removeCgroupDir(dir: string, opts: RemoveOptions = {}): Promise<void> {
  const deadline = Date.now() + (opts.budgetMs ?? 5000);
  let delay = opts.initialDelayMs ?? 10;
  for (;;) {
    try {
      await removeTree(dir);
      return;
    } catch (err) {
      const code = errCode(err);
      if (code !== 'EBUSY' || Date.now() + delay > deadline) {
        throw new CgroupError(`cgroup: cannot remove ${dir}: ${code ?? (err as Error).message}`, code, { cause: err });
      }
      await sleep(delay);
      delay = Math.min(delay * 2, 500);
    }
  }
}

async function removeTree(dir: string): Promise<void> {
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errCode(err) === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
  try {
    await rmdir(dir);
  } catch (err) {
    if (errCode(err) === 'ENOENT') return;
    throw err;
  }
}

/**
 * Remove `dir` only if it is an empty cgroup (no children, no processes).
 * Returns true when it is gone. Never throws for "still in use".
 */
export async function removeIfUnused(dir: string): Promise<boolean> {
  try {
    await rmdir(dir);
    return true;
  } catch (err) {
    const code = errCode(err);
    if (code === 'ENOENT') return true;
    if (code === 'EBUSY' || code === 'ENOTEMPTY' || code === 'EEXIST') return false;
    throw new CgroupError(`cgroup: cannot remove ${dir}: ${code ?? (err as Error).message}`, code, { cause: err });
  }
}

/** True when `p` exists. */
export function exists(p: string): Promise<boolean> {
  return settled(() => existsSync(p)); // kernfs: synchronous, like the reads and writes above
}
