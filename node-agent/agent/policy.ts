/**
 * The node's policy, checked before anything is made for an env: what the
 * agent's flags allow (rootfs host paths, how many envs, how much memory).
 * Pure: the agent passes in what this node already runs. A spec outside the
 * policy ends as Failed/PolicyDenied with every problem naming its field.
 */
import path from 'node:path';
import type { EnvSpec } from '../../src/api/env.js';
import { toBytes } from '../../src/core/quantity.js';

const mi = (b: number): string => `${Math.floor(b / 1048576)}Mi`;

/** The policy settings (from the agent's configuration). */
export interface NodePolicy {
  readonly allowedHostPaths: readonly string[];
  readonly maxEnvs: number;
  /** Memory offered to envs: the sum of their memory.max may not pass it. */
  readonly memoryBytes: number;
}

/** What this node holds now (envs not yet finished). */
export interface Allocation {
  readonly envs: number;
  readonly memoryBytes: number;
}

/** True when `p` is `dir` or below it (both normalised absolute paths). */
export function isWithin(p: string, dir: string): boolean {
  const rel = path.relative(dir, path.normalize(p));
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** memory.max of a spec in bytes (0 when it has none: it reserves nothing). */
export function memoryOf(spec: EnvSpec): number {
  const max = spec.resources.memory?.max;
  return max === undefined ? 0 : Number(toBytes(max));
}

/** Every way `spec` breaks the node's policy; empty when it may run. */
export function policyProblems(spec: EnvSpec, policy: NodePolicy, held: Allocation): string[] {
  const problems: string[] = [];
  const hp = spec.rootfs?.hostPath;
  if (hp !== undefined && !policy.allowedHostPaths.some((d) => isWithin(hp, d))) {
    problems.push(
      policy.allowedHostPaths.length
        ? `spec.rootfs.hostPath: ${hp} is not under a path this node allows (${policy.allowedHostPaths.join(', ')})`
        : `spec.rootfs.hostPath: ${hp} is not allowed: this node allows no host paths (agent flag --allowed-host-paths)`,
    );
  }
  if (held.envs + 1 > policy.maxEnvs) problems.push(`node: already runs ${held.envs} envs, its limit is ${policy.maxEnvs} (agent flag --max-envs)`);
  const mem = memoryOf(spec);
  if (mem > 0 && held.memoryBytes + mem > policy.memoryBytes) {
    problems.push(
      `spec.resources.memory.max: ${mi(mem)} does not fit: the node offers ${mi(policy.memoryBytes)} to envs and ${mi(held.memoryBytes)} is held`,
    );
  }
  return problems;
}
