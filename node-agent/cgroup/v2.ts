/**
 * cgroup v2 driver (unified hosts): controllers enabled top-down through
 * cgroup.subtree_control, limits from planV2 written and read back, stats from
 * memory.* / pids.* / cpu.stat / io.stat, kill through cgroup.kill (or freeze +
 * SIGKILL), emptiness from cgroup.events.
 */
import path from 'node:path';
import type { Resources } from '../../src/api/env.js';
import { planV2, type Unenforceable } from '../../src/core/cgroup-values.js';
import { applyWrite, killPids, sleep, subtreePids, v2Populated, waitUntilFalse } from './common.js';
import { CgroupError, readOptional, writeCgroupFile } from './fs.js';
import { statsFromV2, type V2Files } from './parse.js';
import { chains, makeTree, removeTreeEverywhere } from './tree.js';
import type { CgroupDriver, CgroupStats, CreatedCgroup, CreateHooks, KillMethod } from './types.js';

/** Controllers the runtime turns on for every env when available (limits or just stats). */
const WANTED = ['memory', 'pids', 'cpu', 'io'];

const V2_STAT_FILES: (keyof V2Files)[] = ['memory.current', 'memory.peak', 'memory.max', 'memory.events', 'pids.current', 'pids.max', 'pids.events', 'cpu.stat', 'io.stat'];

/** The driver for a host whose /sys/fs/cgroup is cgroup2. */
export class V2Driver implements CgroupDriver {
  readonly mode = 'unified' as const;

  constructor(readonly root: string = '/sys/fs/cgroup') {}

  private leaf(rel: string): string {
    return path.join(this.root, rel);
  }

  /** Controllers the top of our tree can have (the v2 root's subtree_control). */
  private async available(): Promise<Set<string>> {
    const text = (await readOptional(path.join(this.root, 'cgroup.subtree_control'))) ?? '';
    return new Set(text.split(/\s+/).filter(Boolean));
  }

  async unenforceable(resources: Resources): Promise<Unenforceable[]> {
    const plan = planV2(resources);
    const have = await this.available();
    return plan.controllers
      .filter((c) => !have.has(c))
      .map((c) => ({ field: `spec.resources (${c})`, why: `the ${c} controller is not enabled in ${this.root}/cgroup.subtree_control` }));
  }

  directories(rel: string): string[][] {
    return chains([this.root], rel);
  }

  async create(rel: string, resources: Resources, opts: { bestEffort: boolean; hooks: CreateHooks }): Promise<CreatedCgroup> {
    const plan = planV2(resources);
    const missing = await this.unenforceable(resources);
    if (missing.length && !opts.bestEffort) throw new CgroupError(describe(missing));
    const skippedControllers = new Set(plan.controllers.filter((c) => missing.some((m) => m.field.includes(`(${c})`))));
    const have = await this.available();
    const enable = WANTED.filter((c) => have.has(c));
    const made = await makeTree([this.root], rel, opts.hooks, async (dirs, isLeaf) => {
      if (isLeaf) return;
      for (const { dir } of dirs) await enableControllers(dir, enable);
    });
    const applied = [];
    const skipped: Unenforceable[] = [...missing];
    try {
      for (const w of plan.writes) {
        const controller = w.file.split('.')[0] ?? '';
        if (skippedControllers.has(controller)) continue;
        try {
          await applyWrite(this.leaf(rel), w);
          applied.push(w);
        } catch (err) {
          if (!opts.bestEffort) throw err;
          skipped.push({ field: w.file, why: (err as Error).message });
        }
      }
    } catch (err) {
      await this.remove(rel, { budgetMs: 2000, removeParents: made.length > 1 }).catch(() => undefined);
      throw err;
    }
    return { applied, skipped };
  }

  async stats(rel: string): Promise<CgroupStats> {
    const files: V2Files = {};
    for (const f of V2_STAT_FILES) files[f] = await readOptional(path.join(this.leaf(rel), f));
    return statsFromV2(files);
  }

  async procs(rel: string): Promise<number[]> {
    return subtreePids(this.leaf(rel));
  }

  async populated(rel: string): Promise<boolean> {
    return v2Populated(this.leaf(rel));
  }

  async freeze(rel: string, frozen: boolean): Promise<void> {
    await writeCgroupFile(path.join(this.leaf(rel), 'cgroup.freeze'), frozen ? '1' : '0');
  }

  async kill(rel: string, method: KillMethod = 'auto'): Promise<'cgroup.kill' | 'freeze'> {
    return killUnified(this.leaf(rel), method);
  }

  async waitEmpty(rel: string, timeoutMs: number): Promise<boolean> {
    return waitUntilFalse(() => this.populated(rel), timeoutMs);
  }

  async remove(rel: string, opts: { budgetMs?: number; removeParents?: boolean } = {}): Promise<{ removed: string[] }> {
    return removeTreeEverywhere([this.root], rel, opts);
  }

  hierarchyRoots(): readonly string[] {
    return [this.root];
  }

  runcPath(rel: string): string {
    return `/${rel}`;
  }
}

/** `+c` for each controller not yet in `dir`'s subtree_control. */
async function enableControllers(dir: string, controllers: readonly string[]): Promise<void> {
  const current = new Set(((await readOptional(path.join(dir, 'cgroup.subtree_control'))) ?? '').split(/\s+/).filter(Boolean));
  const todo = controllers.filter((c) => !current.has(c));
  if (!todo.length) return;
  await writeCgroupFile(path.join(dir, 'cgroup.subtree_control'), todo.map((c) => `+${c}`).join(' '));
}

/** Kill everything in a cgroup2 directory: cgroup.kill, or freeze + SIGKILL each pid + thaw. */
export async function killUnified(dir: string, method: KillMethod): Promise<'cgroup.kill' | 'freeze'> {
  const killFile = path.join(dir, 'cgroup.kill');
  if (method !== 'freeze') {
    try {
      await writeCgroupFile(killFile, '1');
      return 'cgroup.kill';
    } catch (err) {
      const code = (err as CgroupError).code;
      // the whole directory is gone: nothing left to kill
      if (code === 'ENOENT' && (await readOptional(path.join(dir, 'cgroup.events'))) === undefined) return 'cgroup.kill';
      if (method === 'cgroup.kill' || (code !== 'ENOENT' && code !== 'EINVAL')) throw err;
    }
  }
  await writeCgroupFile(path.join(dir, 'cgroup.freeze'), '1');
  await waitFrozen(dir, 1000);
  killPids(await subtreePids(dir));
  await writeCgroupFile(path.join(dir, 'cgroup.freeze'), '0');
  return 'freeze';
}

async function waitFrozen(dir: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const ev = (await readOptional(path.join(dir, 'cgroup.events'))) ?? '';
    if (/^frozen 1$/m.test(ev) || !/^populated 1$/m.test(ev)) return;
    await sleep(10);
  }
  // not frozen in time (a task in D state): kill anyway, the signal is delivered when it wakes
}

function describe(missing: Unenforceable[]): string {
  return `this host cannot enforce: ${missing.map((m) => `${m.field}: ${m.why}`).join('; ')} (set spec.resources.bestEffort: true to run without them)`;
}

export { describe as describeUnenforceable };
