/**
 * Reclaim every host object of one orphan env, found by name, with the same
 * provable order as teardown: end our conmon/runc processes → kill the cgroup
 * and wait until it is empty → runc delete → unmount → delete the netns →
 * remove the cgroup leaves (and empty parents) → release the uid range →
 * remove the env dir. Then every object is checked again: it is reported
 * `reclaimed` only when it is verifiably gone, `stuck` otherwise.
 *
 * Only objects that carry `denv-<id>` (or live under `<state-dir>/envs/<id>`)
 * reach this module; a process is ended only after its identity (pid plus start
 * time, as the inventory saw it) and its argv or cgroup are re-checked right
 * before the signal, and it is verified gone once no process has that identity
 * (a pid reused meanwhile belongs to another process: ours is gone).
 */
import { access, readFile, rm, unlink } from 'node:fs/promises';
import path from 'node:path';
import { parseMountinfo, type ProcessId } from '../../src/core/procfs.js';
import { killPids } from '../cgroup/common.js';
import { removeCgroupDir } from '../cgroup/fs.js';
import type { CgroupDriver } from '../cgroup/types.js';
import { runcDelete } from '../conmon.js';
import { isSameProcess, processIdentity } from '../exec.js';
import { unmountTree, type MountTools } from '../mounts.js';
import { deleteNetns } from '../netns.js';
import { hostName } from '../names.js';
import type { HostObject } from './plan.js';

/** What reclaiming needs. */
export interface ReclaimContext {
  readonly driver: CgroupDriver;
  readonly hierarchies: readonly string[];
  readonly runc: string;
  readonly runcRoot: string;
  readonly tools: MountTools & { readonly ip: string };
  /** How long to wait for a killed cgroup to empty before calling it stuck. */
  readonly emptyTimeoutMs?: number;
}

/** Outcome for one object. */
export interface ReclaimResult {
  readonly object: HostObject;
  readonly gone: boolean;
  readonly error?: string;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function exists(p: string): Promise<boolean> {
  return access(p).then(
    () => true,
    () => false,
  );
}

/** True while process `p` exists at all, zombie or not (a zombie is gone once its parent or init reaps it). */
function processExists(p: ProcessId): boolean {
  return processIdentity(p.pid)?.startTicks === p.startTicks;
}

/** Still the same process of ours: the identity the inventory saw, and argv names the container or it is in one of the env's cgroups. */
async function stillOurs(p: ProcessId, cid: string, cgroupDirs: readonly string[]): Promise<boolean> {
  if (!isSameProcess(p)) return false;
  const argv = (await readFile(`/proc/${p.pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
  const cg = await readFile(`/proc/${p.pid}/cgroup`, 'utf8').catch(() => '');
  // read after argv and cgroup: both came from this process, not from one that took its pid over
  if (!isSameProcess(p)) return false;
  if (argv.includes(cid)) return true;
  if (!cgroupDirs.length) return false;
  return cg.split("\n").some((line) => line.endsWith(`/${cid}`) || line.includes(`/${cid}/`));
}

function relPaths(ctx: ReclaimContext, cgroupDirs: readonly string[]): string[] {
  const rels = new Set<string>();
  for (const d of cgroupDirs) {
    const h = ctx.hierarchies.find((x) => d.startsWith(`${x}/`));
    if (h) rels.add(path.relative(h, d));
  }
  return [...rels];
}

async function endProcesses(ctx: ReclaimContext, envId: string, objs: readonly HostObject[], cgroupDirs: string[]): Promise<void> {
  const cid = hostName(envId);
  // monitors and runc first, so nothing recreates what we remove next
  for (const o of objs.filter((x) => (x.kind === 'conmon' || x.kind === 'process') && x.process !== undefined)) {
    if (await stillOurs(o.process!, cid, cgroupDirs)) killPids([o.process!.pid]);
  }
  for (const rel of relPaths(ctx, cgroupDirs)) {
    await ctx.driver.kill(rel, 'auto').catch(() => undefined);
  }
  // v1-only leftovers (a dir in some hierarchies only): SIGKILL what their cgroup.procs list
  const deadline = Date.now() + (ctx.emptyTimeoutMs ?? 5000);
  for (;;) {
    let left = 0;
    for (const d of cgroupDirs) {
      const pids = (await readFile(path.join(d, 'cgroup.procs'), 'utf8').catch(() => ''))
        .split('\n')
        .filter(Boolean)
        .map(Number);
      killPids(pids);
      left += pids.length;
    }
    if (!left || Date.now() > deadline) break;
    await sleep(20);
  }
}

async function verify(o: HostObject, ctx: ReclaimContext): Promise<boolean> {
  switch (o.kind) {
    case 'cgroup':
    case 'netns':
    case 'bundle':
    case 'idRange':
      return !(await exists(o.path));
    case 'mount': {
      const table = parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
      return !table.some((m) => m.mountPoint === o.path || m.mountPoint.startsWith(`${o.path}/`));
    }
    case 'container': {
      const { runcStatus } = await import('../conmon.js');
      return (await runcStatus(ctx.runc, ctx.runcRoot, o.path)) === undefined;
    }
    case 'zombie':
      return !o.process || !processExists(o.process);
    case 'conmon':
    case 'process':
      return !isSameProcess(o.process);
  }
}

async function step(errors: string[], what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    errors.push(`${what}: ${(err as Error).message}`);
  }
}

/** Reclaim all objects of orphan env `envId`; returns one result per object. */
export async function reclaimEnv(ctx: ReclaimContext, envId: string, objs: readonly HostObject[]): Promise<ReclaimResult[]> {
  const errors: string[] = [];
  const of = (k: HostObject['kind']): HostObject[] => objs.filter((o) => o.kind === k);
  const cgroupDirs = of('cgroup').map((o) => o.path);
  await step(errors, 'processes', () => endProcesses(ctx, envId, objs, cgroupDirs));
  for (const c of of('container')) await step(errors, `container ${c.path}`, () => runcDelete(ctx.runc, ctx.runcRoot, c.path));
  const mounts = of('mount').sort((a, b) => b.path.length - a.path.length);
  for (const m of mounts) await step(errors, `mount ${m.path}`, () => unmountTree(ctx.tools, m.path));
  for (const n of of('netns')) await step(errors, `netns ${n.path}`, () => deleteNetns(ctx.tools.ip, path.basename(n.path)));
  for (const rel of relPaths(ctx, cgroupDirs)) {
    await step(errors, `cgroup ${rel}`, async () => {
      await ctx.driver.remove(rel, { budgetMs: 3000, removeParents: true });
    });
  }
  for (const d of cgroupDirs) if (await exists(d)) await step(errors, `cgroup ${d}`, () => removeCgroupDir(d, { budgetMs: 2000 }));
  for (const f of of('idRange')) await step(errors, `idRange ${f.path}`, () => unlink(f.path).catch((e: NodeJS.ErrnoException) => (e.code === 'ENOENT' ? undefined : Promise.reject(e))));
  for (const b of of('bundle')) {
    await step(errors, `bundle ${b.path}`, async () => {
      // never rm -r through a mount: unmount anything still below the dir first
      await unmountTree(ctx.tools, b.path);
      await rm(b.path, { recursive: true, force: true });
    });
  }
  // zombies go away once their (ended) parent is gone and init reaps them
  const zombies = of('zombie');
  if (zombies.length) {
    const until = Date.now() + 2000;
    while (Date.now() < until && zombies.some((z) => z.process && processExists(z.process))) await sleep(20);
  }
  const results: ReclaimResult[] = [];
  for (const o of objs) {
    let gone = await verify(o, ctx);
    if (!gone && (o.kind === 'process' || o.kind === 'conmon')) {
      await sleep(50);
      gone = await verify(o, ctx);
    }
    results.push({ object: o, gone, ...(gone || !errors.length ? {} : { error: errors.join('; ') }) });
  }
  return results;
}
