/**
 * Read-only audit of leaks that are not ours (seed 000 "资源泄漏检测"): empty
 * cgroups older than a threshold anywhere in the tree, network namespaces that no
 * process uses, and mounts whose source is gone. It only reports; it never
 * removes anything. Resources carrying the project's names are excluded here —
 * the GC pass reclaims those.
 *
 * The seed's `find /sys/fs/cgroup -type d -empty -mmin +30` can never match on
 * cgroupfs (every cgroup directory holds control files), so "empty" here means:
 * no child cgroups and no processes in `cgroup.procs`.
 */
import { lstat, readFile, readdir, readlink, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { nsInode, parseMountinfo, type MountEntry } from '../../src/core/procfs.js';

/** One foreign leak, with enough to find it by hand. */
export interface ForeignLeak {
  readonly kind: 'cgroup' | 'netns' | 'mount';
  readonly path: string;
  readonly ageSeconds?: number;
  readonly detail: string;
}

/** Where to look and what to skip. Paths are parameters so tests can point at fixtures. */
export interface AuditOptions {
  readonly now: Date;
  /** Empty cgroups younger than this are normal churn. Default 30 min, as in seed 000. */
  readonly minCgroupAgeSeconds?: number;
  readonly procDir?: string;
  readonly netnsDir?: string;
  /** True for a path our own GC owns; those are never reported as foreign. */
  readonly isOurs: (kind: ForeignLeak['kind'], path: string) => boolean;
  /** Stop walking after this many cgroup directories (a bound on one pass). */
  readonly maxCgroups?: number;
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch {
    return undefined;
  }
}

/** Mounted cgroup hierarchies (v1 and v2) from the process's mountinfo. */
export function cgroupMounts(mounts: readonly MountEntry[]): string[] {
  return mounts.filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint);
}

async function auditCgroupTree(root: string, opts: AuditOptions, out: ForeignLeak[], budget: { left: number }): Promise<void> {
  const minAge = opts.minCgroupAgeSeconds ?? 1800;
  const walk = async (dir: string, isRoot: boolean): Promise<void> => {
    if (budget.left-- <= 0) return;
    let entries;
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch {
      return; // removed while we walked
    }
    const children = entries.filter((e) => e.isDirectory());
    for (const c of children) {
      const child = join(dir, c.name);
      if (opts.isOurs('cgroup', child)) continue;
      await walk(child, false);
    }
    if (isRoot || children.length) return;
    const procs = await readText(join(dir, 'cgroup.procs'));
    if (procs === undefined || procs.trim() !== '') return;
    const st = await stat(dir).catch(() => undefined);
    if (!st) return;
    // kernfs stamps an inode with the time it was (re)instantiated, which can be after `now`
    const age = Math.max(0, (opts.now.getTime() - st.mtimeMs) / 1000);
    if (age >= minAge) out.push({ kind: 'cgroup', path: dir, ageSeconds: Math.floor(age), detail: 'no processes and no child cgroups' });
  };
  await walk(root, true);
}

async function netnsInUse(procDir: string): Promise<Set<number>> {
  const used = new Set<number>();
  const pids = (await readdir(procDir).catch(() => [] as string[])).filter((p) => /^\d+$/.test(p));
  await Promise.all(
    pids.map(async (pid) => {
      const target = await readlink(join(procDir, pid, 'ns', 'net')).catch(() => undefined);
      const ino = target ? nsInode(target) : undefined;
      if (ino !== undefined) used.add(ino);
    }),
  );
  return used;
}

async function auditNetns(opts: AuditOptions, out: ForeignLeak[]): Promise<void> {
  const dir = opts.netnsDir ?? '/run/netns';
  const names = await readdir(dir).catch(() => [] as string[]);
  if (!names.length) return;
  const used = await netnsInUse(opts.procDir ?? '/proc');
  for (const name of names) {
    const path = join(dir, name);
    if (opts.isOurs('netns', path)) continue;
    const st = await stat(path).catch(() => undefined);
    if (!st || used.has(st.ino)) continue;
    const lst = await lstat(path).catch(() => undefined);
    const age = lst ? Math.floor((opts.now.getTime() - lst.mtimeMs) / 1000) : undefined;
    out.push({ kind: 'netns', path, ...(age !== undefined ? { ageSeconds: age } : {}), detail: 'no process is in this network namespace' });
  }
}

/** Mounts whose source was deleted (`//deleted`) or whose mount point no longer resolves. */
export async function staleMounts(mounts: readonly MountEntry[]): Promise<MountEntry[]> {
  const stale: MountEntry[] = [];
  for (const m of mounts) {
    if (m.root.endsWith('//deleted') || m.mountPoint.endsWith('//deleted')) {
      stale.push(m);
      continue;
    }
    const ok = await stat(m.mountPoint).then(
      () => true,
      (e: NodeJS.ErrnoException) => e.code !== 'ENOENT',
    );
    if (!ok) stale.push(m);
  }
  return stale;
}

/** Run the whole audit. Never throws for a resource that vanished meanwhile. */
export async function auditForeignLeaks(opts: AuditOptions): Promise<ForeignLeak[]> {
  const out: ForeignLeak[] = [];
  const mountinfo = (await readText(join(opts.procDir ?? '/proc', 'self', 'mountinfo'))) ?? '';
  const mounts = parseMountinfo(mountinfo);
  const budget = { left: opts.maxCgroups ?? 100_000 };
  for (const root of cgroupMounts(mounts)) await auditCgroupTree(root, opts, out, budget);
  await auditNetns(opts, out);
  for (const m of await staleMounts(mounts)) {
    if (opts.isOurs('mount', m.mountPoint)) continue;
    out.push({ kind: 'mount', path: m.mountPoint, detail: `source ${m.source}${m.root} is gone (${m.fsType})` });
  }
  return out;
}
