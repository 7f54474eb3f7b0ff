/**
 * Pieces both drivers need: applying a plan's writes with read-back, waiting
 * for a cgroup2 directory to become unpopulated, and the freeze + SIGKILL kill.
 */
import path from 'node:path';
import { parseFlatKeyed } from '../../src/core/procfs.js';
import type { CgroupWrite } from '../../src/core/cgroup-values.js';
import { CgroupError, readCgroupFile, readOptional, readPids, writeCgroupFile } from './fs.js';
import { readbackMatches } from './parse.js';
import { readdir } from 'node:fs/promises';

/** Sleep helper. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Write one planned value into `dir` and prove the kernel holds it. */
export async function applyWrite(dir: string, w: CgroupWrite): Promise<void> {
  const file = path.join(dir, w.file);
  await writeCgroupFile(file, w.value);
  const shown = await readCgroupFile(file);
  if (!readbackMatches(w.file, w.value, shown)) {
    throw new CgroupError(`cgroup: wrote ${JSON.stringify(w.value)} to ${file} but the kernel shows ${JSON.stringify(shown)}`);
  }
}

/** Whether a cgroup2 directory still has processes (cgroup.events `populated`); gone counts as empty. */
export async function v2Populated(dir: string): Promise<boolean> {
  const text = await readOptional(path.join(dir, 'cgroup.events'));
  if (text === undefined) return false;
  return parseFlatKeyed(text).populated === 1;
}

/** Poll `check` until it returns false or the timeout passes; true when it became false. */
export async function waitUntilFalse(check: () => Promise<boolean>, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (!(await check())) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(intervalMs, Math.max(1, deadline - Date.now())));
  }
}

/** Every pid in `dir`'s cgroup.procs and in all its child cgroups. */
export async function subtreePids(dir: string): Promise<number[]> {
  const out = await readPids(path.join(dir, 'cgroup.procs'));
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) if (e.isDirectory()) out.push(...(await subtreePids(path.join(dir, e.name))));
  return out;
}

/** SIGKILL each pid; a pid that is already gone is fine. */
export function killPids(pids: readonly number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
