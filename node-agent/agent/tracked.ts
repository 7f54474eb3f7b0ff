/**
 * What the agent remembers about one env of its node between reconciles: which
 * journal record runs it, the supervision in flight, usage samples, the Events
 * already recorded, and the status it last applied (the informer's cache lags
 * the agent's own writes).
 */
import { createHash } from 'node:crypto';
import type { Condition, Usage } from '../../src/api/env.js';
import type { EnvRecord } from '../journal.js';
import type { Verdict } from '../lifecycle.js';
import type { EnvFacts } from './env-status.js';

/**
 * The env id on this node for an API object: derived from its uid, so one
 * object maps to one journal record whatever happens to the agent, and a
 * create for an object that already ran finds its record instead of running it again.
 */
export function envIdForUid(uid: string): string {
  return `k${createHash('sha256').update(uid).digest('hex').slice(0, 15)}`;
}

/** One env of this node. */
export interface Tracked {
  readonly id: string;
  readonly uid: string;
  readonly namespace: string;
  readonly name: string;
  readonly klass: string;
  /** The journal record as last seen (phase changes arrive through the runtime's listener). */
  record?: EnvRecord;
  /** Refused before anything was made on the host (policy, invalid spec, preflight). */
  refusal?: EnvFacts;
  /** The create in flight (run outside the work queue's workers). */
  creating?: Promise<void>;
  /** The supervision running in this process. */
  supervision?: Promise<void>;
  /** A stop the agent asked for (deletion, spec.stop, the controller ended it). */
  stop?: Verdict;
  /** Set once a create was begun here: the env is never created twice. */
  createBegun?: number;
  usage?: Usage;
  /** When status.usage was last written, and the usage written. */
  usageWrittenAt: number;
  lastActivityMs?: number;
  memoryMaxBytes?: number;
  /** Events already recorded for this env (reason → true). */
  readonly events: Set<string>;
  /** Key of the last status applied (see `statusKey`) and its conditions. */
  appliedKey?: string;
  appliedConditions?: Condition[];
  /** The finalizer was released. */
  released?: boolean;
}

/** A new entry. */
export function track(id: string, uid: string, namespace: string, name: string, klass: string): Tracked {
  return { id, uid, namespace, name, klass, usageWrittenAt: 0, events: new Set() };
}

/** `namespace/name` of an entry, the work queue's key. */
export function keyOfTracked(t: Pick<Tracked, 'namespace' | 'name'>): string {
  return `${t.namespace}/${t.name}`;
}
