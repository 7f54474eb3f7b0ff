/**
 * Limits by default: an env that leaves a resource unset runs under the node's
 * default for it (so no job runs without a pids or memory bound), and an env
 * may not ask more than the node's cap. Pure: the caller says which limits this
 * host can enforce (a default it cannot enforce is skipped and reported, never
 * a reason to refuse the env). Both `denv agent` and `denv run` apply it after
 * the spec is parsed and before anything is made, so the journal's spec holds
 * the effective limits.
 */
import { EnvSpecSchema, type EnvSpec, type Resources } from '../src/api/env.js';
import { compareQuantities } from '../src/core/quantity.js';

/** The limits a node sets by default or caps, in flag order. */
export const LIMIT_KEYS = ['memory', 'memory.high', 'swap', 'cpu', 'pids', 'io.weight'] as const;
export type LimitKey = (typeof LIMIT_KEYS)[number];

/** A value per limit (quantities as written; pids and io.weight as integers). */
export type Limits = Partial<Record<LimitKey, string>>;

/** The spec field each limit fills. */
export const LIMIT_FIELDS: Readonly<Record<LimitKey, string>> = {
  memory: 'spec.resources.memory.max',
  'memory.high': 'spec.resources.memory.high',
  swap: 'spec.resources.memory.swapMax',
  cpu: 'spec.resources.cpu.max',
  pids: 'spec.resources.pids.max',
  'io.weight': 'spec.resources.io.weight',
};

/** The node defaults when none are configured (the template of seed 000). */
export const DEFAULT_LIMITS_FLAG = 'memory=1Gi,memory.high=800Mi,swap=500Mi,cpu=500m,pids=100,io.weight=100';

const INTEGER_KEYS: ReadonlySet<LimitKey> = new Set(['pids', 'io.weight']);

/** The value of one limit in `r` (undefined when unset). */
function get(r: Resources | undefined, key: LimitKey): string | undefined {
  const v = ((): string | number | undefined => {
    switch (key) {
      case 'memory':
        return r?.memory?.max;
      case 'memory.high':
        return r?.memory?.high;
      case 'swap':
        return r?.memory?.swapMax;
      case 'cpu':
        return r?.cpu?.max;
      case 'pids':
        return r?.pids?.max;
      case 'io.weight':
        return r?.io?.weight;
    }
  })();
  return v === undefined ? undefined : String(v);
}

/** `r` with one limit set (a copy; `r` is not changed). */
function set(r: Resources, key: LimitKey, value: string): Resources {
  switch (key) {
    case 'memory':
      return { ...r, memory: { ...r.memory, max: value } };
    case 'memory.high':
      return { ...r, memory: { ...r.memory, high: value } };
    case 'swap':
      return { ...r, memory: { ...r.memory, swapMax: value } };
    case 'cpu':
      return { ...r, cpu: { ...r.cpu, max: value } };
    case 'pids':
      return { ...r, pids: { ...r.pids, max: Number(value) } };
    case 'io.weight':
      return { ...r, io: { ...r.io, weight: Number(value) } };
  }
}

/** Resources holding only `limits` (what a host is asked whether it can enforce, or what a flag is validated as). */
export function limitResources(limits: Limits): Resources {
  let r: Resources = { bestEffort: false };
  for (const k of LIMIT_KEYS) {
    const v = limits[k];
    if (v !== undefined) r = set(r, k, v);
  }
  return r;
}

/**
 * Parse `memory=1Gi,pids=100,...` (the --default-limits / --max-limits syntax).
 * Throws an Error naming the bad entry; values are checked by the same schema as
 * an env's spec.resources.
 */
export function parseLimits(text: string): Limits {
  const out: Limits = {};
  for (const pair of text.split(',').map((p) => p.trim()).filter(Boolean)) {
    const i = pair.indexOf('=');
    const k = (i < 0 ? pair : pair.slice(0, i)).trim();
    const v = i < 0 ? '' : pair.slice(i + 1).trim();
    if (!(LIMIT_KEYS as readonly string[]).includes(k)) throw new Error(`${JSON.stringify(pair)}: unknown limit ${JSON.stringify(k)} (expected ${LIMIT_KEYS.join(', ')})`);
    const key = k as LimitKey;
    if (i < 0 || !v) throw new Error(`${JSON.stringify(pair)}: expected ${key}=VALUE`);
    if (out[key] !== undefined) throw new Error(`${key} is given twice`);
    if (INTEGER_KEYS.has(key) && !/^[0-9]+$/.test(v)) throw new Error(`${JSON.stringify(pair)}: ${key} must be an integer`);
    out[key] = v;
  }
  // checked as an env's spec would be (its cross-field rules too: cpu ≥ 10m, memory ≥ 4Mi)
  const parsed = EnvSpecSchema.safeParse({ workload: { command: ['/bin/true'] }, resources: limitResources(out) });
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const path = `spec.${issue.path.join('.')}`;
    const key = LIMIT_KEYS.find((k) => LIMIT_FIELDS[k] === path);
    throw new Error(`${key ?? path}: ${issue.message}`);
  }
  return out;
}

/** Every default above its cap (a node configured so would refuse every env that leaves the limit unset). */
export function defaultsAboveCaps(defaults: Limits, caps: Limits): string[] {
  return LIMIT_KEYS.flatMap((k) => {
    const d = defaults[k];
    const c = caps[k];
    return d !== undefined && c !== undefined && compareQuantities(d, c) > 0 ? [`default ${k}=${d} is above its cap ${c}`] : [];
  });
}

/** A default the env did not get, and why. */
export interface SkippedLimit {
  readonly key: LimitKey;
  readonly field: string;
  readonly why: string;
}

/** The spec with the node's defaults filled in, which defaults were applied and which were skipped. */
export interface DefaultedSpec {
  readonly spec: EnvSpec;
  readonly applied: LimitKey[];
  readonly skipped: SkippedLimit[];
}

/**
 * Fill each limit `spec` leaves unset from `defaults`, unless this host cannot
 * enforce it (`unenforceable` maps such a limit to the reason, e.g. memory.high
 * on cgroup v1) or it would contradict what the env set (a default memory.high
 * above the env's own memory.max). A limit the env set is never changed.
 */
export function applyDefaultLimits(spec: EnvSpec, defaults: Limits, unenforceable: ReadonlyMap<LimitKey, string>): DefaultedSpec {
  let r = spec.resources;
  const applied: LimitKey[] = [];
  const skipped: SkippedLimit[] = [];
  for (const key of LIMIT_KEYS) {
    const value = defaults[key];
    if (value === undefined || get(r, key) !== undefined) continue;
    const why = unenforceable.get(key);
    if (why !== undefined) {
      skipped.push({ key, field: LIMIT_FIELDS[key], why: `this node cannot enforce it: ${why}` });
      continue;
    }
    const max = get(r, 'memory');
    if (key === 'memory.high' && max !== undefined && compareQuantities(value, max) > 0) {
      skipped.push({ key, field: LIMIT_FIELDS[key], why: `the default ${value} is above the env's memory.max ${max}` });
      continue;
    }
    r = set(r, key, value);
    applied.push(key);
  }
  return { spec: applied.length ? { ...spec, resources: r } : spec, applied, skipped };
}

/**
 * Every limit of `spec` above the node's cap, naming the field and the cap; empty
 * when it may run. A limit left unset is not checked (apply the defaults first).
 */
export function limitProblems(spec: EnvSpec, caps: Limits): string[] {
  const problems: string[] = [];
  for (const key of LIMIT_KEYS) {
    const cap = caps[key];
    const asked = get(spec.resources, key);
    if (cap === undefined || asked === undefined) continue;
    if (compareQuantities(asked, cap) > 0) problems.push(`${LIMIT_FIELDS[key]}: ${asked} is above this node's cap ${cap} (flag --max-limits)`);
  }
  return problems;
}

/** One line per skipped default, for logs and `denv run`'s stderr. */
export function skippedText(skipped: readonly SkippedLimit[]): string[] {
  return skipped.map((s) => `default ${s.key} not applied to ${s.field}: ${s.why}`);
}
