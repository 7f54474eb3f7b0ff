/**
 * Placement, as pure functions: which nodes can take an env (filter, with one
 * reason per rejected node) and which of those to pick (score by strategy).
 * Everything the decision needs is passed in — node facts and the allocation
 * view — so tests need no cluster and the reconciler stays the only I/O.
 */
import type { EnvSpec } from '../api/env.js';
import type { CgroupMode } from '../api/node.js';
import { toBytes } from '../core/quantity.js';
import type { Strategy } from './config.js';

/** What the scheduler knows about one node. */
export interface NodeInfo {
  readonly name: string;
  /** Labels of the core/v1 Node of the same name ({} if there is none). */
  readonly labels: Readonly<Record<string, string>>;
  /** The agent's Lease is fresh. */
  readonly alive: boolean;
  /** Cordoned: DisposableNode spec.unschedulable or Node spec.unschedulable. */
  readonly unschedulable: boolean;
  readonly cgroupMode?: CgroupMode;
  readonly controllers?: readonly string[];
  readonly features?: readonly string[];
  /** Envs the node accepts at once; undefined = no limit. */
  readonly maxEnvs?: number;
  /** Memory available to envs; undefined = not limited. */
  readonly memoryBytes?: number;
  /** Envs bound to the node and not finished (the controller's allocation view). */
  readonly allocatedEnvs: number;
  /** Sum of memory.max of those envs. */
  readonly allocatedMemory: number;
}

/** Something the node must be able to enforce, and the field that asks for it. */
export type Requirement =
  | { readonly kind: 'controller'; readonly controller: 'memory' | 'cpu' | 'pids' | 'io'; readonly field: string }
  | { readonly kind: 'cgroupV2'; readonly field: string };

/** What an env asks of a node. */
export interface EnvRequest {
  readonly nodeName?: string;
  readonly nodeSelector?: Readonly<Record<string, string>>;
  /** memory.max in bytes (0 when unlimited: it reserves nothing). */
  readonly memoryBytes: number;
  readonly requirements: readonly Requirement[];
}

/** Why a node was filtered out; the text is what the Unschedulable message counts. */
export const FILTER_REASONS = {
  nodeName: 'node name mismatch',
  nodeSelector: 'node selector mismatch',
  unschedulable: 'unschedulable',
  notAlive: 'agent not alive (Lease expired)',
  tooManyEnvs: 'too many envs',
  insufficientMemory: 'insufficient memory',
} as const;

/** Controller names a node may report for each abstract controller (v2 name first, then v1). */
const CONTROLLER_ALIASES: Record<string, readonly string[]> = {
  memory: ['memory'],
  cpu: ['cpu', 'cpuacct'],
  pids: ['pids'],
  io: ['io', 'blkio'],
};

/** The requirements of a validated spec; none when resources.bestEffort (limits the node lacks are skipped). */
export function requirementsOf(spec: EnvSpec): Requirement[] {
  const r = spec.resources;
  if (r.bestEffort) return [];
  const out: Requirement[] = [];
  if (r.memory?.max !== undefined || r.memory?.swapMax !== undefined || r.memory?.high !== undefined) {
    out.push({ kind: 'controller', controller: 'memory', field: 'spec.resources.memory' });
  }
  if (r.memory?.high !== undefined) out.push({ kind: 'cgroupV2', field: 'spec.resources.memory.high' });
  if (r.cpu?.max !== undefined || r.cpu?.weight !== undefined) out.push({ kind: 'controller', controller: 'cpu', field: 'spec.resources.cpu' });
  if (r.pids?.max !== undefined) out.push({ kind: 'controller', controller: 'pids', field: 'spec.resources.pids.max' });
  if (r.io?.weight !== undefined || (r.io?.max?.length ?? 0) > 0) out.push({ kind: 'controller', controller: 'io', field: 'spec.resources.io' });
  return out;
}

/** The scheduling request of a validated spec. */
export function requestOf(spec: EnvSpec): EnvRequest {
  const max = spec.resources.memory?.max;
  return {
    nodeName: spec.nodeName,
    nodeSelector: spec.nodeSelector,
    memoryBytes: max === undefined ? 0 : Number(toBytes(max)),
    requirements: requirementsOf(spec),
  };
}

function requirementMiss(node: NodeInfo, req: Requirement): string | undefined {
  if (req.kind === 'cgroupV2') {
    if (node.cgroupMode === 'v2' || node.features?.includes('memory.high')) return undefined;
    return `cannot enforce ${req.field.replace(/^spec\.resources\./, '')} (needs cgroup v2)`;
  }
  const names = CONTROLLER_ALIASES[req.controller] ?? [req.controller];
  if (node.controllers?.some((c) => names.includes(c))) return undefined;
  return `no ${req.controller} controller`;
}

/** The first reason `node` cannot take `req`, or undefined if it fits. */
export function filterNode(node: NodeInfo, req: EnvRequest): string | undefined {
  if (req.nodeName !== undefined && req.nodeName !== node.name) return FILTER_REASONS.nodeName;
  for (const [k, v] of Object.entries(req.nodeSelector ?? {})) {
    if (node.labels[k] !== v) return FILTER_REASONS.nodeSelector;
  }
  if (node.unschedulable) return FILTER_REASONS.unschedulable;
  if (!node.alive) return FILTER_REASONS.notAlive;
  for (const r of req.requirements) {
    const miss = requirementMiss(node, r);
    if (miss) return miss;
  }
  if (node.maxEnvs !== undefined && node.allocatedEnvs + 1 > node.maxEnvs) return FILTER_REASONS.tooManyEnvs;
  if (node.memoryBytes !== undefined && node.allocatedMemory + req.memoryBytes > node.memoryBytes) return FILTER_REASONS.insufficientMemory;
  return undefined;
}

/** How full a node would be after placing the env: the larger of its env-count and memory fractions. */
export function utilization(node: NodeInfo, req: EnvRequest): number {
  const byCount = node.maxEnvs ? (node.allocatedEnvs + 1) / node.maxEnvs : 0;
  const byMemory = node.memoryBytes ? (node.allocatedMemory + req.memoryBytes) / node.memoryBytes : 0;
  return Math.max(byCount, byMemory);
}

/** Orders feasible nodes best first for `strategy`; ties break by name so decisions are reproducible. */
export function compareNodes(strategy: Strategy, req: EnvRequest): (a: NodeInfo, b: NodeInfo) => number {
  const sign = strategy === 'spread' ? 1 : -1;
  return (a, b) =>
    sign * (utilization(a, req) - utilization(b, req)) ||
    sign * (a.allocatedEnvs - b.allocatedEnvs) ||
    sign * (a.allocatedMemory - b.allocatedMemory) ||
    (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
}

/** A placement decision. */
export type Placement = { readonly ok: true; readonly node: string } | { readonly ok: false; readonly message: string; readonly reasons: Readonly<Record<string, number>> };

/**
 * Filters and scores. On no fit, the message counts why, like kube-scheduler:
 * `0/3 nodes available: 2 insufficient memory, 1 node selector mismatch.`
 */
export function schedule(nodes: readonly NodeInfo[], req: EnvRequest, strategy: Strategy): Placement {
  const feasible: NodeInfo[] = [];
  const reasons: Record<string, number> = {};
  for (const n of nodes) {
    const why = filterNode(n, req);
    if (why === undefined) feasible.push(n);
    else reasons[why] = (reasons[why] ?? 0) + 1;
  }
  if (feasible.length > 0) {
    let best = feasible[0] as NodeInfo;
    const cmp = compareNodes(strategy, req);
    for (const n of feasible) if (cmp(n, best) < 0) best = n;
    return { ok: true, node: best.name };
  }
  return { ok: false, message: unschedulableMessage(nodes.length, reasons), reasons };
}

/** `0/N nodes available: <count> <reason>, …` — most frequent reason first. */
export function unschedulableMessage(total: number, reasons: Readonly<Record<string, number>>): string {
  if (total === 0) return '0/0 nodes available: no DisposableNode is registered (is the node agent running?).';
  const parts = Object.entries(reasons)
    .sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1))
    .map(([why, n]) => `${n} ${why}`);
  return `0/${total} nodes available: ${parts.join(', ')}.`;
}
