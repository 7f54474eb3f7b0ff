/**
 * The format of an env's journal record (journal.ts stores and reads it): the
 * host resources it lists and their states, the processes it names by pid plus
 * start time, and the pure helpers that read and change a record in place.
 * See journal.ts for how records are written and how old ones are upgraded.
 */
import type { EnvSpec, Usage } from '../src/api/env.js';
import type { Phase, Reason } from '../src/api/constants.js';
import type { CgroupStats } from './cgroup/types.js';
import type { ProcessId } from '../src/core/procfs.js';
import { identityWrittenAt } from './exec.js';

/** Journal format version; bump on incompatible changes (readers refuse newer versions). */
export const JOURNAL_VERSION = 1;

/** The kinds of host objects an env can own. */
export type ResourceKind =
  | 'idRange' // a uid/gid range reservation file (hostId: the reservation file path)
  | 'cgroup' // one cgroup directory in one hierarchy (hostId: absolute directory)
  | 'netns' // a named network namespace (hostId: /run/netns/<name>)
  | 'mountAnchor' // the state dir's private, unbindable self-bind that holds rootfs mounts
  | 'mount' // a mount point the env owns (hostId: absolute mount point)
  | 'bundle' // the OCI bundle directory
  | 'container' // a runc container (hostId: container id; detail.root: runc --root)
  | 'conmon'; // the conmon monitor process (hostId: pid as string)

/** Lifecycle of one resource in the journal. */
export type ResourceState = 'intended' | 'created' | 'removed';

/** One host resource of an env. `kind` + `hostId` identify it. */
export interface ResourceEntry {
  readonly kind: ResourceKind;
  readonly hostId: string;
  state: ResourceState;
  /** False when the object already existed (e.g. a shared cgroup parent): created by someone else. */
  madeByUs?: boolean;
  intendedAt: string;
  createdAt?: string;
  removedAt?: string;
  detail?: Record<string, string | number | boolean>;
}

/** Names one resource in calls to the journal. */
export interface ResourceRef {
  readonly kind: ResourceKind;
  readonly hostId: string;
  readonly madeByUs?: boolean;
  readonly detail?: ResourceEntry['detail'];
}

/** Who asked for this env. */
export type EnvSource = { readonly kind: 'cli' } | { readonly kind: 'kubernetes'; readonly namespace: string; readonly name: string; readonly uid: string };

/** A leak that teardown could not remove (e.g. a process stuck in D state). */
export interface LeakReport {
  readonly what: string;
  readonly pids?: number[];
  readonly detail: string;
}

/** Everything the node knows about one env; the journal file's content. */
export interface EnvRecord {
  version: number;
  id: string;
  name: string;
  class: string;
  source: EnvSource;
  spec: EnvSpec;
  /** Absolute state dir this record lives in. */
  stateDir: string;
  /** cgroup path relative to each hierarchy root, e.g. `disposable.slice/ci-jobs/denv-<id>`. */
  cgroupPath: string;
  cgroupMode: string;
  netns?: string;
  phase: Phase;
  reason?: Reason;
  message?: string;
  createdAt: string;
  startTime?: string;
  finishTime?: string;
  /** Absolute deadlines (RFC 3339), so a restarted supervisor enforces the same ones. */
  deadlines: { timeoutAt?: string; killAt?: string };
  /**
   * Processes that matter for adoption, by identity (pid plus start time): conmon keeps the workload
   * alive on its own; the creator (the process running create()) and the supervisor own the env while
   * they live (adoption rolls a Creating env back only once its creator is gone). Set with {@link recordProcess}.
   */
  processes: Partial<Record<ProcessRole, ProcessId>>;
  /** The same pids, bare: the version 1 field, kept for older readers. Never used to decide liveness. */
  pids: Partial<Record<ProcessRole, number>>;
  idRange?: { start: number; size: number };
  /** Runtime settings needed to tear the env down with the same tools that built it. */
  runtime: { runc: string; conmon: string; init: string; runcRoot: string };
  resources: ResourceEntry[];
  exitCode?: number;
  usage?: Usage;
  /** The env cgroup's last stats before teardown (throttling, OOM and pids events the API usage omits). */
  stats?: CgroupStats;
  logTail?: string;
  leaks?: LeakReport[];
  /**
   * Milliseconds spent in each create/teardown step, create's to 0.1 ms: preflight, journalBegin, the
   * parallel steps (idRange, cgroup, netns, rootfs, dirs) and `prepare` for all of them together, bundle,
   * runcCreate (conmon + `runc create`), runcStart, createToRunning (from after preflight); teardown.
   */
  timings?: Record<string, number>;
  /** How the created container was started: runc's exec fifo directly, or `runc start` (fallback). */
  startedBy?: 'fifo' | 'runc start';
  /** Increments on every write: lets a reader notice it raced a writer. */
  seq: number;
  updatedAt: string;
}

/** The processes an env record names. */
export const PROCESS_ROLES = ['conmon', 'container', 'supervisor', 'attachedTo', 'creator'] as const;
export type ProcessRole = (typeof PROCESS_ROLES)[number];

/** The fields a caller supplies to start a record (`processes`, not `pids`); the journal fills in the rest. */
export type NewEnvRecord = Omit<EnvRecord, 'version' | 'resources' | 'seq' | 'updatedAt' | 'createdAt' | 'stateDir' | 'pids'> & { createdAt?: string };

/** Record process `id` as the env's `role` (in place, for a journal update): its identity and its bare pid. */
export function recordProcess(r: EnvRecord, role: ProcessRole, id: ProcessId): void {
  r.processes = { ...r.processes, [role]: { pid: id.pid, startTicks: id.startTicks } };
  r.pids = { ...r.pids, [role]: id.pid };
}

export function pidsOf(processes: EnvRecord['processes']): EnvRecord['pids'] {
  const pids: EnvRecord['pids'] = {};
  for (const role of PROCESS_ROLES) {
    const p = processes[role];
    if (p) pids[role] = p.pid;
  }
  return pids;
}

/**
 * Make `processes` account for every pid in `pids` (in place): an entry without
 * a matching identity was written by a runtime that recorded no start times,
 * and becomes {@link identityWrittenAt} the record's last write (see the module
 * comment). Reads /proc for such entries only.
 */
export function upgradeProcesses(r: EnvRecord): void {
  const processes: EnvRecord['processes'] = { ...(r.processes ?? {}) };
  const pids: EnvRecord['pids'] = { ...(r.pids ?? {}) };
  const writtenAt = Date.parse(r.updatedAt);
  for (const role of PROCESS_ROLES) {
    const pid = pids[role];
    const known = processes[role];
    if (pid === undefined) {
      if (known) pids[role] = known.pid;
      continue;
    }
    if (known?.pid !== pid) processes[role] = identityWrittenAt(pid, writtenAt);
  }
  r.processes = processes;
  r.pids = pids;
}

/** Resources of a record that may still exist on the host (intended or created, not removed). */
export function outstanding(record: EnvRecord): ResourceEntry[] {
  return record.resources.filter((r) => r.state !== 'removed');
}

/** True while an env may still own host objects: not finished, or something not yet verified gone. */
export function accountsForHostObjects(record: EnvRecord): boolean {
  return !isFinished(record) || outstanding(record).length > 0;
}

/** True when a record's phase is final (the workload is gone and teardown ran). */
export function isFinished(record: EnvRecord): boolean {
  return record.phase === 'Succeeded' || record.phase === 'Failed';
}

/** Mark `refs` created in `r` (in place): for callers that record them in a write that changes more. */
export function markCreated(r: EnvRecord, refs: readonly ResourceRef[], at: string): void {
  for (const ref of refs) {
    const e = findOrAdd(r, ref.kind, ref.hostId);
    e.state = 'created';
    e.createdAt = at;
    if (ref.madeByUs !== undefined) e.madeByUs = ref.madeByUs;
    if (ref.detail) e.detail = { ...e.detail, ...ref.detail };
  }
}

/** Mark `refs` removed in `r` (in place), with their detail (e.g. how); an entry already removed keeps its time. */
export function markRemoved(r: EnvRecord, refs: readonly ResourceRef[], at: string): void {
  for (const ref of refs) {
    const e = r.resources.find((x) => x.kind === ref.kind && x.hostId === ref.hostId);
    if (!e || e.state === 'removed') continue;
    e.state = 'removed';
    e.removedAt = at;
    if (ref.detail) e.detail = { ...e.detail, ...ref.detail };
  }
}

function findOrAdd(r: EnvRecord, kind: ResourceKind, hostId: string): ResourceEntry {
  let e = r.resources.find((x) => x.kind === kind && x.hostId === hostId);
  if (!e) {
    // created without a prior intend: still recorded (e.g. the uid range file, named only once it exists)
    e = { kind, hostId, state: 'intended', intendedAt: new Date().toISOString() };
    r.resources.push(e);
  }
  return e;
}
