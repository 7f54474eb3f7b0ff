/**
 * Pure decisions of the GC pass and of adoption: which host objects are
 * orphans, which are too young to touch, and what a restarted runtime must do
 * with each journaled env. No I/O here, and `now` is always a parameter, so
 * every rule is unit-tested without a kernel or a clock.
 */
import type { Phase } from '../../src/api/constants.js';
import type { ProcessId } from '../../src/core/procfs.js';

/** Kinds of host objects the GC pass knows. */
export const ORPHAN_KINDS = ['cgroup', 'netns', 'mount', 'container', 'bundle', 'conmon', 'process', 'zombie', 'idRange'] as const;
export type OrphanKind = (typeof ORPHAN_KINDS)[number];

/** One host object carrying the project's prefix, as the inventory found it. */
export interface HostObject {
  readonly kind: OrphanKind;
  /** Path, netns path, container id, or `pid N` — what a human searches for. */
  readonly path: string;
  /** The env id in the object's name (every object of ours has one). */
  readonly envId: string;
  /** Seconds since the object was made; undefined when the host cannot say (treated as old). */
  readonly ageSeconds?: number;
  /** For conmon, process and zombie objects: the process, by pid plus start time, as the inventory saw it. */
  readonly process?: ProcessId;
  readonly detail?: string;
}

/** What the pass does with one object. */
export type Action = 'reclaim' | 'young' | 'owned';

/** An object and the decision about it. */
export interface Decision {
  readonly object: HostObject;
  readonly action: Action;
  readonly why: string;
}

/** Inputs of {@link classify}. */
export interface ClassifyInput {
  /** Env ids that something alive owns: journal records still in play, plus the API's view in the agent. */
  readonly liveIds: ReadonlySet<string>;
  /** Objects younger than this are never reclaimed (they may belong to a create in flight elsewhere). */
  readonly minAgeSeconds: number;
}

/**
 * Decide for every object. An env is judged as a whole by its youngest
 * object: if any of its objects is younger than the minimum age, none is
 * touched (a create in progress makes several objects over a few hundred ms,
 * and reclaiming the old half of it would break it).
 */
export function classify(objects: readonly HostObject[], input: ClassifyInput): Decision[] {
  const youngest = new Map<string, number>();
  for (const o of objects) {
    const age = o.ageSeconds ?? Number.POSITIVE_INFINITY;
    youngest.set(o.envId, Math.min(youngest.get(o.envId) ?? Number.POSITIVE_INFINITY, age));
  }
  return objects.map((object) => {
    if (input.liveIds.has(object.envId)) return { object, action: 'owned', why: `env ${object.envId} is live` };
    const age = youngest.get(object.envId) ?? Number.POSITIVE_INFINITY;
    if (age < input.minAgeSeconds) {
      return { object, action: 'young', why: `env ${object.envId} has an object only ${Math.floor(age)}s old (min age ${input.minAgeSeconds}s)` };
    }
    return { object, action: 'reclaim', why: `no live env ${object.envId}` };
  });
}

/** Env ids to reclaim, in a stable order. */
export function envsToReclaim(decisions: readonly Decision[]): string[] {
  return [...new Set(decisions.filter((d) => d.action === 'reclaim').map((d) => d.object.envId))].sort();
}

/** Age of the oldest orphan (0 when none): the `oldest_orphan_age_seconds` gauge. */
export function oldestOrphanAge(decisions: readonly Decision[]): number {
  let max = 0;
  for (const d of decisions) {
    if (d.action === 'owned') continue;
    const a = d.object.ageSeconds;
    if (a !== undefined && Number.isFinite(a) && a > max) max = a;
  }
  return max;
}

/** Parse a duration flag such as `60s`, `5m`, `1h`, `250ms` or a bare number of seconds. */
export function parseDuration(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) throw new Error(`invalid duration ${JSON.stringify(text)}: use e.g. 30s, 5m, 1h, 250ms`);
  const n = Number(m[1]);
  const unit = m[2] ?? 's';
  const factor = unit === 'ms' ? 0.001 : unit === 's' ? 1 : unit === 'm' ? 60 : 3600;
  return n * factor;
}

/** Seconds between a process start (clock ticks since boot) and `nowMs`, given the boot time. */
export function processAgeSeconds(startTicks: number, bootTimeSec: number, nowMs: number, ticksPerSec = 100): number {
  return nowMs / 1000 - (bootTimeSec + startTicks / ticksPerSec);
}

/** What a restarted runtime does with one journaled env. */
export type AdoptAction =
  | 'none' // finished and clean, or someone alive is handling it
  | 'rollback' // half-created: tear down and mark Failed
  | 'supervise' // still running under conmon: re-attach a supervisor (same limits and deadline)
  | 'finish' // the workload is gone (conmon exited): collect the exit code and tear down
  | 'teardown'; // finished but resources outstanding: finish the teardown

/** Facts about one env that adoption decides on. */
export interface AdoptFacts {
  readonly phase: Phase;
  readonly outstanding: number;
  /** The creator or supervisor of the env is still alive: the process its journal names by pid plus start time. */
  readonly ownerAlive: boolean;
  /** Its conmon, by pid plus start time, is still alive (the workload may run). */
  readonly conmonAlive: boolean;
}

/** Decide what adoption does with one env (see {@link AdoptAction}). */
export function adoptAction(f: AdoptFacts): AdoptAction {
  const finished = f.phase === 'Succeeded' || f.phase === 'Failed';
  if (finished) return f.outstanding > 0 ? 'teardown' : 'none';
  if (f.ownerAlive) return 'none';
  if (f.phase === 'Running' || f.phase === 'Terminating') return f.conmonAlive ? 'supervise' : 'finish';
  return 'rollback'; // Pending, Scheduled, Creating: nobody will finish creating it
}
