/**
 * cgroup v1 driver for legacy and hybrid hosts. The env directory is made in
 * every mounted v1 hierarchy — runc joins all of them, so any we skipped would
 * be created by runc and could leak — and, on hybrid hosts, in the cgroup2
 * `unified` tree too. Limits go to the v1 controllers (planV1); placement,
 * cgroup.kill, freeze and cgroup.events come from `unified` when it exists,
 * from the freezer hierarchy and cgroup.procs polling otherwise.
 */
import path from 'node:path';
import type { Resources } from '../../src/api/env.js';
import { planV1, type CgroupWrite, type Unenforceable } from '../../src/core/cgroup-values.js';
import type { CgroupLayout } from '../probe.js';
import { applyWrite, killPids, sleep, subtreePids, v2Populated, waitUntilFalse } from './common.js';
import { CgroupError, exists, readOptional, writeCgroupFile } from './fs.js';
import { statsFromV1, type V1Files } from './parse.js';
import { chains, makeTree, removeTreeEverywhere } from './tree.js';
import type { CgroupDriver, CgroupStats, CreatedCgroup, CreateHooks, KillMethod } from './types.js';
import { describeUnenforceable, killUnified } from './v2.js';

/** Files that exist in a v1 hierarchy's root too, so their presence there shows kernel support. */
const ROOT_HAS_FILE = (file: string): boolean => !file.startsWith('pids.');

/** The driver for hybrid (v1 + unified) and legacy (v1 only) hosts. */
export class V1Driver implements CgroupDriver {
  readonly mode: 'hybrid' | 'legacy';
  private readonly roots: string[];

  constructor(private readonly layout: CgroupLayout) {
    this.mode = layout.mode === 'hybrid' ? 'hybrid' : 'legacy';
    this.roots = [...layout.v1.map((h) => h.mountPoint), ...(layout.v2Root ? [layout.v2Root] : [])];
  }

  /** Mount point of the hierarchy with `controller` (the cgroup-values name; `blkio` for io). */
  private hierarchy(controller: string): string | undefined {
    return this.layout.v1.find((h) => h.controllers.includes(controller))?.mountPoint;
  }

  private dirOf(controller: string, rel: string): string | undefined {
    const h = this.hierarchy(controller);
    return h ? path.join(h, rel) : undefined;
  }

  async unenforceable(resources: Resources): Promise<Unenforceable[]> {
    const plan = planV1(resources);
    const out = [...plan.unenforceable];
    for (const w of plan.writes) {
      const why = await this.whyNot(w);
      if (why) out.push({ field: fieldOf(w), why });
    }
    return dedupe(out);
  }

  private async whyNot(w: CgroupWrite): Promise<string | undefined> {
    const h = w.controller ? this.hierarchy(w.controller) : undefined;
    if (!h) return `the ${w.controller ?? '?'} cgroup v1 hierarchy is not mounted`;
    if (ROOT_HAS_FILE(w.file) && !(await exists(path.join(h, w.file)))) return `${w.file} does not exist on this kernel (${h})`;
    return undefined;
  }

  directories(rel: string): string[][] {
    return chains(this.roots, rel);
  }

  async create(rel: string, resources: Resources, opts: { bestEffort: boolean; hooks: CreateHooks }): Promise<CreatedCgroup> {
    const plan = planV1(resources);
    const missing = await this.unenforceable(resources);
    if (missing.length && !opts.bestEffort) throw new CgroupError(describeUnenforceable(missing));
    const cpuset = this.hierarchy('cpuset');
    const made = await makeTree(this.roots, rel, opts.hooks, async (dirs) => {
      for (const { dir, made: m } of dirs) if (m && cpuset && dir.startsWith(`${cpuset}/`)) await inheritCpuset(dir);
    });
    const applied: CgroupWrite[] = [];
    const skipped: Unenforceable[] = [...missing];
    try {
      for (const w of plan.writes) {
        if (await this.whyNot(w)) continue; // already listed in `missing` (best effort)
        const dir = this.dirOf(w.controller ?? '', rel);
        if (!dir) continue;
        try {
          await applyWrite(dir, w);
          applied.push(w);
        } catch (err) {
          if (!opts.bestEffort) throw err;
          skipped.push({ field: fieldOf(w), why: (err as Error).message });
        }
      }
    } catch (err) {
      await this.remove(rel, { budgetMs: 2000, removeParents: made.length > this.roots.length }).catch(() => undefined);
      throw err;
    }
    return { applied, skipped };
  }

  async stats(rel: string): Promise<CgroupStats> {
    const want: [keyof V1Files, string | undefined][] = [
      ['memory/memory.usage_in_bytes', this.dirOf('memory', rel)],
      ['memory/memory.max_usage_in_bytes', this.dirOf('memory', rel)],
      ['memory/memory.limit_in_bytes', this.dirOf('memory', rel)],
      ['memory/memory.failcnt', this.dirOf('memory', rel)],
      ['memory/memory.oom_control', this.dirOf('memory', rel)],
      ['pids/pids.current', this.dirOf('pids', rel)],
      ['pids/pids.max', this.dirOf('pids', rel)],
      ['pids/pids.events', this.dirOf('pids', rel)],
      ['cpuacct/cpuacct.usage', this.dirOf('cpuacct', rel)],
      ['cpu/cpu.stat', this.dirOf('cpu', rel)],
      ['blkio/blkio.throttle.io_service_bytes_recursive', this.dirOf('blkio', rel)],
      ['unified/cpu.stat', this.layout.v2Root ? path.join(this.layout.v2Root, rel) : undefined],
    ];
    const files: V1Files = {};
    for (const [key, dir] of want) {
      if (!dir) continue;
      files[key] = await readOptional(path.join(dir, key.split('/')[1] ?? ''));
    }
    return statsFromV1(files);
  }

  /** The directory that tells us which processes are in the env. */
  private placementDir(rel: string): string {
    if (this.layout.v2Root) return path.join(this.layout.v2Root, rel);
    const h = this.hierarchy('pids') ?? this.hierarchy('memory') ?? this.roots[0];
    if (!h) throw new CgroupError('cgroup: no hierarchy mounted');
    return path.join(h, rel);
  }

  async procs(rel: string): Promise<number[]> {
    if (this.layout.v2Root) return subtreePids(this.placementDir(rel));
    const all = new Set<number>();
    for (const root of this.roots) for (const p of await subtreePids(path.join(root, rel))) all.add(p);
    return [...all];
  }

  async populated(rel: string): Promise<boolean> {
    if (this.layout.v2Root) return v2Populated(this.placementDir(rel));
    return (await this.procs(rel)).length > 0;
  }

  async freeze(rel: string, frozen: boolean): Promise<void> {
    if (this.layout.v2Root) {
      await writeCgroupFile(path.join(this.layout.v2Root, rel, 'cgroup.freeze'), frozen ? '1' : '0');
      return;
    }
    const dir = this.dirOf('freezer', rel);
    if (!dir) throw new CgroupError('cgroup: cannot freeze: no freezer hierarchy and no cgroup2 tree');
    await writeCgroupFile(path.join(dir, 'freezer.state'), frozen ? 'FROZEN' : 'THAWED');
  }

  async kill(rel: string, method: KillMethod = 'auto'): Promise<'cgroup.kill' | 'freeze'> {
    if (this.layout.v2Root) return killUnified(path.join(this.layout.v2Root, rel), method);
    if (method === 'cgroup.kill') throw new CgroupError('cgroup: cgroup.kill needs a cgroup2 tree; this host is legacy v1');
    await this.freeze(rel, true);
    await this.waitFreezer(rel, 1000);
    killPids(await this.procs(rel));
    await this.freeze(rel, false);
    return 'freeze';
  }

  /** Wait for FROZEN; while FREEZING, write FROZEN again (a task caught mid-fork or mid-exec is retried, as runc does). */
  private async waitFreezer(rel: string, timeoutMs: number): Promise<void> {
    const dir = this.dirOf('freezer', rel);
    if (!dir) return;
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if ((await readOptional(path.join(dir, 'freezer.state'))) !== 'FREEZING') return;
      await sleep(10);
      await writeCgroupFile(path.join(dir, 'freezer.state'), 'FROZEN').catch(() => undefined); // gone: nothing left to freeze
    }
  }

  async waitEmpty(rel: string, timeoutMs: number): Promise<boolean> {
    return waitUntilFalse(() => this.populated(rel), timeoutMs);
  }

  async remove(rel: string, opts: { budgetMs?: number; removeParents?: boolean } = {}): Promise<{ removed: string[] }> {
    return removeTreeEverywhere(this.roots, rel, opts);
  }

  hierarchyRoots(): readonly string[] {
    return this.roots;
  }

  runcPath(rel: string): string {
    return `/${rel}`;
  }
}

/** A new v1 cpuset cgroup starts with no cpus/mems; copy the parent's so tasks can join. */
async function inheritCpuset(dir: string): Promise<void> {
  for (const f of ['cpuset.cpus', 'cpuset.mems']) {
    const own = await readOptional(path.join(dir, f));
    if (own) continue;
    const parent = await readOptional(path.join(path.dirname(dir), f));
    if (parent) await writeCgroupFile(path.join(dir, f), parent);
  }
}

function fieldOf(w: CgroupWrite): string {
  if (w.file.startsWith('memory.memsw')) return 'spec.resources.memory.swapMax';
  if (w.file.startsWith('memory.')) return 'spec.resources.memory.max';
  if (w.file.startsWith('cpu.cfs')) return 'spec.resources.cpu.max';
  if (w.file === 'cpu.shares') return 'spec.resources.cpu.weight';
  if (w.file.startsWith('pids.')) return 'spec.resources.pids.max';
  if (w.file === 'blkio.weight') return 'spec.resources.io.weight';
  return `spec.resources.io.max (${w.file})`;
}

function dedupe(list: Unenforceable[]): Unenforceable[] {
  const seen = new Set<string>();
  return list.filter((u) => {
    const k = `${u.field}|${u.why}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}
