/**
 * One GC pass (DESIGN "On the node"): take the inventory of everything on the
 * host that carries our prefix, decide which of it no live env owns (journal
 * plus, in the agent, the API's view passed in as `liveIds`) and is older than
 * the minimum age, reclaim those env by env with verified removal, and run the
 * read-only audit of foreign leaks. Feeds NodeMetrics. A torn or corrupt
 * journal never stops the pass: it is reported and the env's objects are
 * found by name.
 */
import type { Runtime } from '../runtime.js';
import type { NodeMetrics } from '../metrics.js';
import { findExecutable } from '../probe.js';
import { auditForeignLeaks, type ForeignLeak } from './audit.js';
import { takeInventory } from './inventory.js';
import { classify, envsToReclaim, oldestOrphanAge, type HostObject, type OrphanKind } from './plan.js';
import { reclaimEnv, type ReclaimContext } from './reclaim.js';
import { HOST_PREFIX, STATE_REGISTRY_DIR } from '../names.js';
import { registeredStateDirs } from '../state-registry.js';
import path from 'node:path';

/** Settings of one pass. */
export interface GcOptions {
  readonly now?: number;
  /** Default 60 s. */
  readonly minAgeSeconds?: number;
  /** Env ids owned by something alive beyond this state dir's journal (the agent passes the API's view). */
  readonly liveIds?: Iterable<string>;
  /** Report what would be reclaimed, change nothing. */
  readonly dryRun?: boolean;
  /** Only consider env ids this accepts (tests and benchmarks restrict the pass to their own ids). */
  readonly scope?: (envId: string) => boolean;
  /** Also run the read-only foreign-leak audit (default true). */
  readonly audit?: boolean;
  /** Empty foreign cgroups younger than this are not reported (default 30 min, seed 000). */
  readonly foreignMinAgeSeconds?: number;
  readonly metrics?: NodeMetrics;
  /** Extra state dirs whose journals and env dirs count (default: the runtime's). */
  readonly stateDirs?: readonly string[];
  /**
   * Also reclaim the state dir's shared host root when no env can use it (default:
   * true unless `scope` restricts the pass to some envs).
   */
  readonly sharedRoot?: boolean;
}

/** One line of the report. */
export interface GcRow {
  readonly kind: OrphanKind | ForeignLeak['kind'];
  readonly path: string;
  readonly ageSeconds?: number;
  readonly envId?: string;
  readonly action: 'reclaimed' | 'would reclaim' | 'young' | 'reported (foreign)' | 'stuck';
  readonly detail?: string;
}

/** Result of a pass. */
export interface GcReport {
  readonly rows: GcRow[];
  readonly seconds: number;
  readonly corruptJournals: { dir: string; error: string }[];
  readonly reclaimedEnvs: string[];
  readonly stuckEnvs: string[];
}

/** The hierarchy roots of a runtime's cgroup layout (v1 mount points and the v2 tree). */
export function hierarchies(rt: Runtime): string[] {
  return [...rt.layout.v1.map((h) => h.mountPoint), ...(rt.layout.v2Root ? [rt.layout.v2Root] : [])];
}

/** Orphan envs reclaimed concurrently in one pass. */
const RECLAIM_CONCURRENCY = 8;

const SYSTEM_PATH = `${process.env.PATH ?? ''}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`;

async function context(rt: Runtime): Promise<ReclaimContext> {
  const find = async (n: string): Promise<string> => (await findExecutable(n, SYSTEM_PATH)) ?? n;
  return {
    driver: rt.driver,
    hierarchies: hierarchies(rt),
    runc: (await findExecutable('runc', rt.options.runtimePath ?? SYSTEM_PATH)) ?? 'runc',
    runcRoot: rt.runcRoot,
    tools: { ip: await find('ip'), mount: await find('mount'), umount: await find('umount') },
    emptyTimeoutMs: rt.options.emptyTimeoutMs ?? 5000,
  };
}

/** Run one pass over the host for runtime `rt`. */
export async function gcPass(rt: Runtime, opts: GcOptions = {}): Promise<GcReport> {
  const t0 = Date.now();
  const now = opts.now ?? t0;
  const ctx = await context(rt);
  const stateDirs = opts.stateDirs ?? [rt.stateDir];
  const own = new Set(stateDirs.map((x) => path.resolve(x)));
  const others = (await registeredStateDirs(rt.options.stateRegistryDir ?? STATE_REGISTRY_DIR, { prune: !opts.dryRun })).filter((d) => !own.has(d));
  const inv = await takeInventory({
    now,
    hierarchies: ctx.hierarchies,
    cgroupRoot: rt.cgroupRoot,
    stateDirs,
    otherStateDirs: others,
    runc: ctx.runc,
    runcRoot: rt.runcRoot,
    idmapDir: rt.idmapDir,
  });
  const scope = opts.scope ?? (() => true);
  const objects = inv.objects.filter((o) => scope(o.envId));
  const liveIds = new Set<string>([...inv.journalLive, ...(opts.liveIds ?? [])]);
  const decisions = classify(objects, { liveIds, minAgeSeconds: opts.minAgeSeconds ?? 60 });
  const rows: GcRow[] = [];
  const m = opts.metrics;
  if (inv.corrupt.length) m?.journalCorrupt.inc(inv.corrupt.length);
  for (const d of decisions) if (d.action !== 'owned') m?.orphansFound.inc({ kind: d.object.kind });
  m?.oldestOrphanAge.set(oldestOrphanAge(decisions));
  const reclaimed: string[] = [];
  const stuck: string[] = [];
  for (const d of decisions.filter((x) => x.action === 'young')) rows.push(rowOf(d.object, 'young', d.why));
  const byEnv = new Map<string, HostObject[]>();
  for (const d of decisions) if (d.action === 'reclaim') byEnv.set(d.object.envId, [...(byEnv.get(d.object.envId) ?? []), d.object]);
  const queue = envsToReclaim(decisions);
  const reclaimOne = async (envId: string): Promise<void> => {
    const objs = byEnv.get(envId) ?? [];
    if (opts.dryRun) {
      for (const o of objs) rows.push(rowOf(o, 'would reclaim'));
      return;
    }
    const t = Date.now();
    const results = await reclaimEnv(ctx, envId, objs);
    m?.teardownDuration.observe((Date.now() - t) / 1000);
    let ok = true;
    for (const r of results) {
      if (r.gone) m?.orphansReclaimed.inc({ kind: r.object.kind });
      else ok = false;
      rows.push(rowOf(r.object, r.gone ? 'reclaimed' : 'stuck', r.error));
    }
    (ok ? reclaimed : stuck).push(envId);
  };
  // envs are independent: a few at a time, so one slow teardown does not hold up the rest
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(RECLAIM_CONCURRENCY, queue.length) }, async () => {
      while (next < queue.length) await reclaimOne(queue[next++]!);
    }),
  );
  if (opts.sharedRoot ?? opts.scope === undefined) {
    rows.push(...(await reclaimSharedRoot(rt, opts, now)));
    rows.push(...(await pruneSharedParents(rt, opts)));
  }
  reclaimed.sort();
  stuck.sort();
  if (opts.audit ?? true) {
    const foreign = await auditForeignLeaks({ now: new Date(now), minCgroupAgeSeconds: opts.foreignMinAgeSeconds ?? 1800, isOurs: (_k, p) => p.includes(`/${HOST_PREFIX}`) || p.includes(`/${rt.cgroupRoot}`) || p.startsWith(`${rt.stateDir}/`) });
    const byKind = new Map<string, number>();
    for (const f of foreign) {
      byKind.set(f.kind, (byKind.get(f.kind) ?? 0) + 1);
      rows.push({ kind: f.kind, path: f.path, ...(f.ageSeconds !== undefined ? { ageSeconds: f.ageSeconds } : {}), action: 'reported (foreign)', detail: f.detail });
    }
    for (const k of ['cgroup', 'netns', 'mount']) m?.foreignLeaks.set({ kind: k }, byKind.get(k) ?? 0);
  }
  const journalLeaked = (await rt.journal.list()).records.filter((r) => r.reason === 'Leaked' && r.resources.some((x) => x.state !== 'removed')).length;
  m?.leakedEnvs.set(stuck.length + journalLeaked);
  const seconds = (Date.now() - t0) / 1000;
  m?.gcPassDuration.observe(seconds);
  return { rows, seconds, corruptJournals: inv.corrupt, reclaimedEnvs: reclaimed, stuckEnvs: stuck };
}

function rowOf(o: HostObject, action: GcRow['action'], detail?: string): GcRow {
  const d = detail ?? o.detail;
  return { kind: o.kind, path: o.path, envId: o.envId, ...(o.ageSeconds !== undefined && Number.isFinite(o.ageSeconds) ? { ageSeconds: Math.floor(o.ageSeconds) } : {}), action, ...(d ? { detail: d } : {}) };
}

/**
 * Empty shared cgroup parents (`<root>/<class>`, `<root>`): teardown leaves
 * them for the next env, the pass removes the ones nothing uses. Housekeeping,
 * not leaks: reported in the table, not counted as orphans.
 */
async function pruneSharedParents(rt: Runtime, opts: GcOptions): Promise<GcRow[]> {
  const detail = 'empty shared cgroup parent';
  try {
    const dirs = await rt.pruneParents({ dryRun: opts.dryRun ?? false });
    return dirs.map((d) => ({ kind: 'cgroup', path: d, action: opts.dryRun ? 'would reclaim' : 'reclaimed', detail }));
  } catch (err) {
    return [{ kind: 'cgroup', path: rt.cgroupRoot, action: 'stuck', detail: `${detail}: ${(err as Error).message}` }];
  }
}

/**
 * The shared host root (node-agent/hostroot.ts) is an orphan when no env of the
 * state dir is live and it was last handed out at least min-age ago, or when it
 * is half-built (its builder died: no marker). Checked and removed under the
 * tree's lock, so a create that is building or using it is never disturbed.
 */
async function reclaimSharedRoot(rt: Runtime, opts: GcOptions, now: number): Promise<GcRow[]> {
  const hr = rt.hostRoot;
  if (!(await hr.present())) return [];
  const minAge = opts.minAgeSeconds ?? 60;
  const liveElsewhere = [...(opts.liveIds ?? [])].length > 0;
  const idleFor = await hr.idleSeconds(now);
  const ageSeconds = idleFor !== undefined ? Math.floor(idleFor) : undefined;
  const row = (action: GcRow['action'], detail: string): GcRow => ({ kind: 'mount', path: hr.paths.anchor, ...(ageSeconds !== undefined ? { ageSeconds } : {}), action, detail });
  const orphan = async (): Promise<boolean> => !liveElsewhere && (await rt.idle()) && (idleFor === undefined || !(await hr.ready()) || idleFor >= minAge);
  if (!(await orphan())) return [];
  const m = opts.metrics;
  m?.orphansFound.inc({ kind: 'mount' });
  if (opts.dryRun) return [row('would reclaim', 'shared host root, no live env')];
  try {
    const removed = await hr.release(orphan);
    if (!removed) return [];
    m?.orphansReclaimed.inc({ kind: 'mount' });
    return [row('reclaimed', 'shared host root, no live env')];
  } catch (err) {
    return [row('stuck', (err as Error).message)];
  }
}
