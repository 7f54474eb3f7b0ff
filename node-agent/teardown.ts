/**
 * Teardown's steps: remove every host object a journal record lists, in order
 * — kill what is left and wait for the cgroup to empty, then (independent once
 * the processes are gone) the runc container and its conmon, the mounts and
 * the netns, then the cgroups and the uid range. Each step verifies its
 * removal and names what it removed; nothing is retried forever, and what
 * could not be removed comes back as a leak. The runtime journals the result
 * (runtime.ts `teardownThen`).
 */
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { procState } from '../src/core/procfs.js';
import type { CgroupDriver, KillMethod } from './cgroup/types.js';
import { conmonFromPidFile, isConmonOf, removeContainer } from './conmon.js';
import { outstanding, type EnvRecord, type LeakReport, type ResourceRef } from './env-record.js';
import { releaseIdRange, reservationsOwnedBy } from './idmap.js';
import { unmountTree } from './mounts.js';
import { deleteNetns } from './netns.js';

/** What the steps need from the runtime. */
export interface TeardownContext {
  readonly driver: CgroupDriver;
  readonly killMethod: KillMethod;
  /** How long to wait for the cgroup to empty after SIGKILL before reporting a leak. */
  readonly emptyTimeoutMs: number;
  /** The owner line of an env's uid range reservation. */
  readonly idOwner: (id: string) => string;
  readonly tools: () => Promise<{ ip: string; mount: string; umount: string }>;
}

/** Remove what `r` lists; returns what is verified gone and what could not be removed. */
export async function removeEnvObjects(ctx: TeardownContext, r: EnvRecord): Promise<{ gone: ResourceRef[]; leaks: LeakReport[] }> {
  const leaks: LeakReport[] = [];
  const gone: ResourceRef[] = [];
  const stuck = await killAndWait(ctx, r);
  if (stuck) leaks.push(stuck);
  // with the processes gone these are independent: the container (then its conmon), mounts, the netns
  await Promise.all([
    tryStep(leaks, 'container', () => removeContainerStep(r, gone)).then(() => tryStep(leaks, 'conmon', () => reapConmon(r, gone))),
    tryStep(leaks, 'mount', () => removeMounts(ctx, r, gone)),
    tryStep(leaks, 'netns', () => removeNetns(ctx, r, gone)),
  ]);
  if (!stuck) {
    await tryStep(leaks, 'cgroup', () => removeCgroups(ctx, r, gone));
    await tryStep(leaks, 'idRange', () => releaseIds(ctx, r, gone));
  } else {
    leaks.push({ what: 'cgroup', detail: `${r.cgroupPath} kept: processes are still inside` });
  }
  return { gone, leaks };
}

async function tryStep(leaks: LeakReport[], what: string, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    leaks.push({ what, detail: (err as Error).message });
  }
}

function has(r: EnvRecord, kind: string): boolean {
  return outstanding(r).some((x) => x.kind === kind);
}

/** Kill whatever is left and wait for the cgroup to empty; a report of stuck processes if it does not. */
async function killAndWait(ctx: TeardownContext, r: EnvRecord): Promise<LeakReport | undefined> {
  if (!has(r, 'cgroup')) return undefined;
  if (!(await ctx.driver.populated(r.cgroupPath).catch(() => false))) return undefined;
  await ctx.driver.kill(r.cgroupPath, ctx.killMethod).catch(() => undefined);
  const waitMs = ctx.emptyTimeoutMs;
  if (await ctx.driver.waitEmpty(r.cgroupPath, waitMs)) return undefined;
  const pids = await ctx.driver.procs(r.cgroupPath);
  const states = await Promise.all(pids.map(async (p) => `${p}:${procState(await readFile(`/proc/${p}/stat`, 'utf8').catch(() => '')) ?? '?'}`));
  const inD = states.filter((s) => s.endsWith(':D')).length;
  return { what: 'processes', pids, detail: `${pids.length} process(es) survived SIGKILL for ${waitMs} ms (${inD} in uninterruptible sleep): ${states.join(' ')}` };
}

async function removeContainerStep(r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  const c = outstanding(r).find((x) => x.kind === 'container');
  if (!c) return;
  // the cgroup step after this one removes and verifies every cgroup dir the journal lists
  const ours = new Set(r.resources.filter((x) => x.kind === 'cgroup').map((x) => x.hostId));
  const by = await removeContainer(r.runtime.runc, r.runtime.runcRoot, c.hostId, ours);
  gone.push({ kind: 'container', hostId: c.hostId, detail: { removedBy: by } });
}

async function reapConmon(r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  const c = outstanding(r).find((x) => x.kind === 'conmon');
  if (!c) return;
  // a creator that died before recording conmon still left conmon's own pid file
  const pidFile = typeof c.detail?.pidFile === 'string' ? c.detail.pidFile : undefined;
  const id = r.processes.conmon ?? (pidFile ? await conmonFromPidFile(pidFile) : undefined);
  if (await isConmonOf(id, c.hostId)) {
    // conmon exits by itself once the container is gone and the exit file is written
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && (await isConmonOf(id, c.hostId))) await sleep(5);
    if (await isConmonOf(id, c.hostId)) {
      process.kill(id!.pid, 'SIGKILL');
      await sleep(50);
      if (await isConmonOf(id, c.hostId)) throw new Error(`conmon pid ${id!.pid} did not exit`);
    }
  }
  gone.push({ kind: 'conmon', hostId: c.hostId });
}

async function removeMounts(ctx: TeardownContext, r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  const kinds = ['mount', 'mountAnchor'] as const; // mounts first, then the anchor they sit under
  if (!outstanding(r).some((x) => (kinds as readonly string[]).includes(x.kind))) return;
  const tools = await ctx.tools();
  for (const kind of kinds) {
    for (const m of outstanding(r).filter((x) => x.kind === kind)) {
      await unmountTree(tools, m.hostId);
      gone.push({ kind, hostId: m.hostId });
    }
  }
}

async function removeNetns(ctx: TeardownContext, r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  const list = outstanding(r).filter((x) => x.kind === 'netns');
  if (!list.length) return;
  const tools = await ctx.tools();
  for (const n of list) {
    await deleteNetns(tools.ip, path.basename(n.hostId));
    gone.push({ kind: 'netns', hostId: n.hostId });
  }
}

async function removeCgroups(ctx: TeardownContext, r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  const entries = outstanding(r).filter((x) => x.kind === 'cgroup');
  if (!entries.length) return;
  // The shared parents stay for the next env (making them again costs a create most of its cgroup
  // step: on v1 a new cpuset level must copy cpus and mems); close() and the GC pass prune them.
  await ctx.driver.remove(r.cgroupPath, { budgetMs: 5000, removeParents: false });
  // leaves must be gone; parents are shared and may stay while other envs use them
  const leaves = new Set(ctx.driver.directories(r.cgroupPath).map((chain) => chain[chain.length - 1]));
  const still: string[] = [];
  await Promise.all(
    entries.map(async (e) => {
      const exists = (await stat(e.hostId).catch(() => undefined)) !== undefined;
      if (exists && leaves.has(e.hostId)) still.push(e.hostId);
      else gone.push({ kind: 'cgroup', hostId: e.hostId });
    }),
  );
  if (still.length) throw new Error(`cgroup directories still exist: ${still.join(', ')}`);
}

async function releaseIds(ctx: TeardownContext, r: EnvRecord, gone: ResourceRef[]): Promise<void> {
  for (const x of outstanding(r).filter((e) => e.kind === 'idRange')) {
    // `<dir>/?`: reserved (maybe) but not recorded yet: the reservation names its owner
    const files = x.hostId.endsWith('/?') ? await reservationsOwnedBy(path.dirname(x.hostId), ctx.idOwner(r.id)) : [x.hostId];
    for (const f of files) await releaseIdRange(f);
    gone.push({ kind: 'idRange', hostId: x.hostId });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
