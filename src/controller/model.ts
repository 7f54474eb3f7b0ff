/**
 * The shapes of the Kubernetes objects the controller reads (only the fields it
 * uses), and small pure helpers over them: cache keys, which node an env is bound
 * to, and which status fields the controller's field manager owns.
 */
import { FINALIZER, NODE_LABEL } from '../api/constants.js';
import type { EnvStatus } from '../api/env.js';
import type { NodeSpec, NodeStatus } from '../api/node.js';

/** The field manager of every controller write; `kubectl get --show-managed-fields` shows it. */
export const FIELD_MANAGER = 'disposable-env-controller';
/** `reportingController` of the controller's Events. */
export const REPORTING_CONTROLLER = 'disposable.dev/controller';

export interface ManagedFieldsEntry {
  manager?: string;
  operation?: string;
  subresource?: string;
  fieldsType?: string;
  fieldsV1?: Record<string, unknown>;
  time?: string;
  apiVersion?: string;
}

export interface ObjectMeta {
  name: string;
  namespace?: string;
  uid?: string;
  generation?: number;
  resourceVersion?: string;
  creationTimestamp?: string;
  deletionTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
  managedFields?: ManagedFieldsEntry[];
}

export interface KubeObject {
  apiVersion?: string;
  kind?: string;
  metadata: ObjectMeta;
}

export interface EnvObject extends KubeObject {
  spec?: unknown;
  status?: EnvStatus;
}

export interface DisposableNodeObject extends KubeObject {
  spec?: Partial<NodeSpec>;
  status?: NodeStatus;
}

export interface LeaseSpec {
  holderIdentity?: string | null;
  leaseDurationSeconds?: number | null;
  acquireTime?: string | null;
  renewTime?: string | null;
  leaseTransitions?: number | null;
}

export interface LeaseObject extends KubeObject {
  spec?: LeaseSpec;
}

export interface NodeObject extends KubeObject {
  spec?: { unschedulable?: boolean };
}

/** `namespace/name` (or `name` for cluster-scoped objects): the work-queue key. */
export function keyOf(meta: Pick<ObjectMeta, 'name' | 'namespace'>): string {
  return meta.namespace ? `${meta.namespace}/${meta.name}` : meta.name;
}

/** Splits a key back into namespace and name. */
export function splitKey(key: string): { namespace: string; name: string } {
  const i = key.indexOf('/');
  return i < 0 ? { namespace: '', name: key } : { namespace: key.slice(0, i), name: key.slice(i + 1) };
}

/**
 * The node an env is bound to. The label is what agents act on, so it wins;
 * `status.nodeName` alone means the controller persisted a decision but has not
 * set the label yet (it crashed in between) — still bound, to that node.
 */
export function boundNode(env: EnvObject): string | undefined {
  return env.metadata.labels?.[NODE_LABEL] ?? env.status?.nodeName;
}

/** True once an agent can see the env (the node label is set): host resources may exist. */
export function visibleToAgent(env: EnvObject): boolean {
  return env.metadata.labels?.[NODE_LABEL] !== undefined;
}

export function hasFinalizer(env: EnvObject): boolean {
  return env.metadata.finalizers?.includes(FINALIZER) ?? false;
}

/** Terminal phases: the workload is over (host resources are being or have been torn down). */
export function isFinished(status: EnvStatus | undefined): boolean {
  return status?.phase === 'Succeeded' || status?.phase === 'Failed';
}

/** The condition of `type`, if present. */
export function conditionOf(status: EnvStatus | undefined, type: string): NonNullable<EnvStatus['conditions']>[number] | undefined {
  return status?.conditions?.find((c) => c.type === type);
}

/** What the controller's field manager owns in `.status`: top-level keys and condition types. */
export interface OwnedStatus {
  readonly fields: ReadonlySet<string>;
  readonly conditions: ReadonlySet<string>;
}

export const NOTHING_OWNED: OwnedStatus = { fields: new Set(), conditions: new Set() };

/** Reads the controller's status ownership out of managedFields (server-side apply bookkeeping). */
export function ownedStatusOf(managedFields: readonly ManagedFieldsEntry[] | undefined, manager = FIELD_MANAGER): OwnedStatus {
  const fields = new Set<string>();
  const conditions = new Set<string>();
  for (const e of managedFields ?? []) {
    if (e.manager !== manager) continue;
    const status = e.fieldsV1?.['f:status'];
    if (!status || typeof status !== 'object') continue;
    for (const [k, v] of Object.entries(status as Record<string, unknown>)) {
      if (!k.startsWith('f:')) continue;
      const field = k.slice(2);
      fields.add(field);
      if (field === 'conditions' && v && typeof v === 'object') {
        for (const [ck, cv] of Object.entries(v as Record<string, unknown>)) {
          if (!ck.startsWith('k:')) continue;
          // A condition another manager took over (force apply) can leave this manager co-owning the parts with
          // equal values (type, observedGeneration); it is ours only while we own its reason.
          if (!cv || typeof cv !== 'object' || !('f:reason' in cv)) continue;
          try {
            const parsed = JSON.parse(ck.slice(2)) as { type?: unknown };
            if (typeof parsed.type === 'string') conditions.add(parsed.type);
          } catch {
            // a malformed key is not ours to interpret
          }
        }
      }
    }
  }
  return { fields, conditions };
}

/** Milliseconds since the epoch of an RFC 3339 time; undefined when absent or unparsable. */
export function timeOf(t: string | null | undefined): number | undefined {
  if (!t) return undefined;
  const ms = Date.parse(t);
  return Number.isNaN(ms) ? undefined : ms;
}

/** RFC 3339 with second precision, as metav1.Time serialises. */
export function rfc3339(ms: number): string {
  return new Date(Math.floor(ms / 1000) * 1000).toISOString().replace(/\.000Z$/, 'Z');
}

/** RFC 3339 with microseconds, as metav1.MicroTime serialises. */
export function microTime(ms: number): string {
  return new Date(ms).toISOString().replace(/Z$/, '000Z');
}
