/**
 * What of ours is on the host, found by name alone (never by the journal), so
 * the GC pass still works when a journal is torn, corrupt or missing: cgroup
 * leaves `<root>/<class>/denv-<id>` in every hierarchy and the processes in
 * them, `/run/netns/denv-<id>`, mounts under `<state-dir>/envs/<id>/`, runc
 * containers `denv-<id>` in our runc root, env directories without a readable
 * journal, conmon/runc processes whose argv names `denv-<id>`, zombies whose
 * parent is one of those processes, and uid-range reservations. Read-only.
 * Every process is recorded by identity (pid plus start time), so reclaim never
 * acts on a process that took a pid over after the inventory.
 */
import { lstat, readdir, readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { parseMountinfo, parseProcStat } from '../../src/core/procfs.js';
import { processIdentity, run } from '../exec.js';
import { accountsForHostObjects, Journal } from '../journal.js';
import { envIdFromHostName, isEnvId } from '../names.js';
import { processAgeSeconds, type HostObject } from './plan.js';

/** Where to look. */
export interface InventoryOptions {
  readonly now: number;
  /** Every cgroup hierarchy root (v1 mount points and the v2 tree). */
  readonly hierarchies: readonly string[];
  /** Cgroup root below each hierarchy, e.g. `disposable.slice`. */
  readonly cgroupRoot: string;
  readonly stateDirs: readonly string[];
  /**
   * Other state dirs on this host (the registry): only read, to learn which env ids they still
   * account for (live, or a journal that cannot be read); their dirs and mounts are left alone.
   */
  readonly otherStateDirs?: readonly string[];
  readonly runc: string;
  readonly runcRoot: string;
  readonly idmapDir?: string;
  readonly netnsDir?: string;
  readonly procDir?: string;
}

/** What the inventory found, plus the journal-derived facts the pass needs. */
export interface Inventory {
  readonly objects: HostObject[];
  /** Env ids the journals of the state dirs still account for (not finished, or resources outstanding). */
  readonly journalLive: Set<string>;
  /** Env dirs whose journal was unreadable (reported; GC fell back to names). */
  readonly corrupt: { dir: string; error: string }[];
}

const ageOf = (now: number, ms: number): number => Math.max(0, (now - ms) / 1000);

async function dirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((e) => e.isDirectory()).map((e) => e.name);
  } catch {
    return [];
  }
}

async function cgroupObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  const seenPids = new Set<number>();
  for (const h of o.hierarchies) {
    const base = path.join(h, o.cgroupRoot);
    for (const klass of await dirs(base)) {
      for (const leaf of await dirs(path.join(base, klass))) {
        const envId = envIdFromHostName(leaf);
        if (!envId) continue; // not ours, even below our root
        const dir = path.join(base, klass, leaf);
        const st = await stat(dir).catch(() => undefined);
        if (!st) continue;
        out.push({ kind: 'cgroup', path: dir, envId, ageSeconds: ageOf(o.now, st.mtimeMs) });
        const procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
        for (const p of procs.split('\n').filter(Boolean).map(Number)) {
          if (seenPids.has(p)) continue;
          seenPids.add(p);
          const proc = processIdentity(p, o.procDir);
          if (!proc) continue; // exited since cgroup.procs was read
          out.push({ kind: 'process', path: `pid ${p}`, process: proc, envId, detail: `in ${dir}` });
        }
      }
    }
  }
}

async function netnsObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  const dir = o.netnsDir ?? '/run/netns';
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    const envId = envIdFromHostName(name);
    if (!envId) continue;
    const p = path.join(dir, name);
    const st = await lstat(p).catch(() => undefined);
    if (st) out.push({ kind: 'netns', path: p, envId, ageSeconds: ageOf(o.now, st.mtimeMs) });
  }
}

async function mountObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  const table = parseMountinfo(await readFile(path.join(o.procDir ?? '/proc', 'self', 'mountinfo'), 'utf8').catch(() => ''));
  for (const sd of o.stateDirs) {
    const envs = path.join(path.resolve(sd), 'envs') + '/';
    const top: string[] = [];
    for (const m of table.map((x) => x.mountPoint).filter((p) => p.startsWith(envs)).sort((a, b) => a.length - b.length)) {
      if (top.some((t) => m === t || m.startsWith(`${t}/`))) continue;
      top.push(m);
    }
    for (const mp of top) {
      const envId = mp.slice(envs.length).split('/')[0] ?? '';
      if (!isEnvId(envId)) continue;
      const st = await lstat(path.join(envs, envId)).catch(() => undefined);
      out.push({ kind: 'mount', path: mp, envId, ...(st ? { ageSeconds: ageOf(o.now, st.ctimeMs) } : {}) });
    }
  }
}

interface RuncListEntry {
  id: string;
  status?: string;
  created?: string;
  bundle?: string;
}

async function containerObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  const r = await run(o.runc, ['--root', o.runcRoot, 'list', '--format', 'json'], { timeoutMs: 15_000, allowFailure: true });
  if (r.exitCode !== 0) return;
  let list: RuncListEntry[] = [];
  try {
    list = (JSON.parse(r.stdout || '[]') as RuncListEntry[] | null) ?? [];
  } catch {
    return;
  }
  for (const c of list) {
    const envId = envIdFromHostName(c.id);
    if (!envId) continue;
    const created = c.created ? Date.parse(c.created) : NaN;
    out.push({ kind: 'container', path: c.id, envId, ...(Number.isFinite(created) ? { ageSeconds: ageOf(o.now, created) } : {}), detail: `${c.status ?? '?'} bundle ${c.bundle ?? '?'}` });
  }
}

async function journalObjects(o: InventoryOptions, out: HostObject[], live: Set<string>, corrupt: Inventory['corrupt']): Promise<void> {
  for (const sd of o.stateDirs) {
    const j = new Journal(sd);
    const listing = await j.list();
    for (const r of listing.records) {
      if (accountsForHostObjects(r)) live.add(r.id);
    }
    for (const inc of listing.incomplete) {
      if (inc.error !== 'no journal.json') corrupt.push({ dir: inc.dir, error: inc.error });
      const st = await lstat(inc.dir).catch(() => undefined);
      out.push({ kind: 'bundle', path: inc.dir, envId: inc.id, ...(st ? { ageSeconds: ageOf(o.now, st.ctimeMs) } : {}), detail: inc.error });
    }
  }
}

/** Env ids another state dir may still own: its live envs, and every env dir whose journal it cannot read. */
async function otherOwners(o: InventoryOptions, live: Set<string>): Promise<void> {
  for (const sd of o.otherStateDirs ?? []) {
    const listing = await new Journal(sd).list().catch(() => ({ records: [], incomplete: [] }));
    for (const r of listing.records) {
      if (accountsForHostObjects(r)) live.add(r.id);
    }
    for (const inc of listing.incomplete) live.add(inc.id);
  }
}

async function bootTime(procDir: string): Promise<number> {
  const text = await readFile(path.join(procDir, 'stat'), 'utf8').catch(() => '');
  return Number(/^btime (\d+)/m.exec(text)?.[1] ?? 0);
}

/** conmon/runc processes naming one of our containers, and zombies whose parent is one of ours. */
async function processObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  const proc = o.procDir ?? '/proc';
  const btime = await bootTime(proc);
  // by pid for lookups, each with the start time that makes it the process the inventory saw
  const ours = new Map<number, { envId: string; startTicks: number }>(out.filter((x) => x.process !== undefined).map((x) => [x.process!.pid, { envId: x.envId, startTicks: x.process!.startTicks }]));
  const ourProcess = (pid: number, startTicks: number): string | undefined => (ours.get(pid)?.startTicks === startTicks ? ours.get(pid)!.envId : undefined);
  const stats = new Map<number, { state: string; ppid: number; startTicks: number }>();
  for (const name of await readdir(proc).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const pid = Number(name);
    const st = parseProcStat(await readFile(path.join(proc, name, 'stat'), 'utf8').catch(() => ''));
    if (!st) continue;
    stats.set(pid, st);
    const argv = (await readFile(path.join(proc, name, 'cmdline'), 'utf8').catch(() => '')).split('\0');
    const bin = path.basename(argv[0] ?? '');
    if (bin !== 'conmon' && bin !== 'runc') continue;
    const envId = argv.map((a) => envIdFromHostName(a)).find((x) => x !== undefined);
    if (!envId || ourProcess(pid, st.startTicks)) continue;
    ours.set(pid, { envId, startTicks: st.startTicks });
    out.push({ kind: bin === 'conmon' ? 'conmon' : 'process', path: `pid ${pid}`, process: { pid, startTicks: st.startTicks }, envId, ageSeconds: processAgeSeconds(st.startTicks, btime, o.now), detail: argv.join(' ').slice(0, 120) });
  }
  for (const x of out) {
    if (x.process === undefined || x.ageSeconds !== undefined) continue;
    (x as { ageSeconds?: number }).ageSeconds = processAgeSeconds(x.process.startTicks, btime, o.now);
  }
  for (const [pid, st] of stats) {
    if (st.state !== 'Z') continue;
    const parent = stats.get(st.ppid);
    const owner = parent && ourProcess(st.ppid, parent.startTicks);
    if (owner) out.push({ kind: 'zombie', path: `pid ${pid}`, process: { pid, startTicks: st.startTicks }, envId: owner, ageSeconds: processAgeSeconds(st.startTicks, btime, o.now), detail: `unreaped child of our pid ${st.ppid}` });
  }
}

async function idRangeObjects(o: InventoryOptions, out: HostObject[]): Promise<void> {
  if (!o.idmapDir) return;
  for (const name of await readdir(o.idmapDir).catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const file = path.join(o.idmapDir, name);
    const owner = (await readFile(file, 'utf8').catch(() => '')).split(/\s/)[0] ?? '';
    if (!isEnvId(owner)) continue;
    const st = await lstat(file).catch(() => undefined);
    out.push({ kind: 'idRange', path: file, envId: owner, ...(st ? { ageSeconds: ageOf(o.now, st.mtimeMs) } : {}) });
  }
}

/** Take the inventory. Never throws for an object that vanished meanwhile. */
export async function takeInventory(o: InventoryOptions): Promise<Inventory> {
  const objects: HostObject[] = [];
  const journalLive = new Set<string>();
  const corrupt: Inventory['corrupt'] = [];
  await journalObjects(o, objects, journalLive, corrupt);
  await otherOwners(o, journalLive);
  await cgroupObjects(o, objects);
  await netnsObjects(o, objects);
  await mountObjects(o, objects);
  await containerObjects(o, objects);
  await idRangeObjects(o, objects);
  await processObjects(o, objects);
  return { objects, journalLive, corrupt };
}
