/**
 * The agent's part of a DisposableEnv's status, computed in one pure function
 * from what the node knows about the env (its journal record, or a refusal
 * before anything was made) and the status the API shows.
 *
 * Conditions are chosen for the tools that judge health: kstatus (Flux, kpt,
 * Argo CD's health checks follow the same idea) reads `Stalled=True` as Failed,
 * `Ready=False` as InProgress and `Ready=True` as Current, so an env is
 * InProgress while Creating, Current while Running and once Succeeded (Ready
 * stays True: a finished job is healthy), and Failed once Failed. `Finished`
 * turns True for both outcomes, so `kubectl wait --for=condition=Finished`
 * returns for either.
 *
 * Every apply carries the agent's whole set of fields: server-side apply
 * removes what a manager owned and no longer sends.
 */
import type { Condition, EnvStatus, Usage } from '../../src/api/env.js';
import { isTerminalPhase, type Phase, type Reason } from '../../src/api/constants.js';
import { condition } from '../../src/controller/status.js';
import { conditionOf } from '../../src/controller/model.js';
import type { LeakReport } from '../journal.js';

/** What the node knows about one env, from its journal or from a refusal. */
export interface EnvFacts {
  readonly phase: Phase;
  readonly reason?: Reason;
  readonly message?: string;
  readonly cgroupPath?: string;
  readonly netns?: string;
  readonly startTime?: string;
  readonly finishTime?: string;
  readonly exitCode?: number;
  readonly usage?: Usage;
  readonly logTail?: string;
  /** Teardown verified that every host resource of the env is gone. */
  readonly reclaimed?: boolean;
  readonly leaks?: readonly LeakReport[];
}

/** The body of the agent's status apply. */
export interface AgentStatus {
  phase?: Phase;
  reason?: Reason;
  message?: string;
  cgroupPath?: string;
  netns?: string;
  startTime?: string;
  finishTime?: string;
  exitCode?: number;
  usage?: Usage;
  logTail?: string;
  observedGeneration: number;
  conditions: Condition[];
}

/** Reasons of the agent's conditions that are not status reasons. */
export const CONDITION_REASONS = {
  creating: 'Creating',
  running: 'Running',
  terminating: 'Terminating',
  reclaimed: 'Reclaimed',
} as const;

/**
 * The controller ended this env by a backstop (it owns `phase` again, see
 * docs/controller.md): the agent must not write phase, reason or the health
 * conditions for it any more, only host facts and Reclaimed/Leaked.
 */
export interface StatusContext {
  readonly current: EnvStatus | undefined;
  readonly generation: number;
  readonly now: number;
  readonly controllerEnded: boolean;
}

/** The agent's desired `.status` for one env. Pure: same inputs, same output. */
export function agentStatus(f: EnvFacts, ctx: StatusContext): AgentStatus {
  const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition =>
    condition(ctx.current, type, status, reason, message, ctx.generation, ctx.now);
  const out: AgentStatus = { observedGeneration: ctx.generation, conditions: [] };
  if (f.cgroupPath !== undefined) out.cgroupPath = f.cgroupPath;
  if (f.netns !== undefined) out.netns = f.netns;
  if (f.startTime !== undefined) out.startTime = f.startTime;
  if (f.exitCode !== undefined) out.exitCode = f.exitCode;
  if (f.usage !== undefined && Object.keys(f.usage).length) out.usage = f.usage;
  if (f.logTail) out.logTail = f.logTail.slice(-16384);
  const finished = isTerminalPhase(f.phase);
  if (!ctx.controllerEnded) {
    out.phase = f.phase;
    if (f.reason !== undefined) out.reason = f.reason;
    if (f.message !== undefined) out.message = f.message.slice(0, 32768);
    if (f.finishTime !== undefined) out.finishTime = f.finishTime;
    out.conditions.push(...healthConditions(f, cond));
  }
  if (finished || f.reclaimed) {
    if (f.leaks?.length) {
      const what = f.leaks.map((l) => `${l.what}: ${l.detail}`).join('; ');
      out.conditions.push(cond('Reclaimed', 'False', 'Leaked', `teardown could not remove everything: ${what}`));
      out.conditions.push(cond('Leaked', 'True', 'Leaked', what));
    } else if (f.reclaimed) {
      out.conditions.push(cond('Reclaimed', 'True', CONDITION_REASONS.reclaimed, 'every host resource of the env is gone (verified)'));
    } else if (conditionOf(ctx.current, 'Reclaimed')) {
      out.conditions.push(cond('Reclaimed', 'False', CONDITION_REASONS.terminating, 'teardown in progress'));
    }
  }
  return out;
}

type Cond = (type: string, status: Condition['status'], reason: string, message: string) => Condition;

/** Ready, Finished and Stalled for the phase (see the module comment for why these values). */
function healthConditions(f: EnvFacts, cond: Cond): Condition[] {
  const msg = f.message ?? '';
  switch (f.phase) {
    case 'Pending':
    case 'Scheduled':
    case 'Creating':
      return [
        cond('Ready', 'False', CONDITION_REASONS.creating, msg || 'creating namespaces, cgroups and the container'),
        cond('Finished', 'False', CONDITION_REASONS.creating, 'not started yet'),
      ];
    case 'Running':
      return [cond('Ready', 'True', CONDITION_REASONS.running, 'the workload is running'), cond('Finished', 'False', CONDITION_REASONS.running, 'the workload is running')];
    case 'Terminating':
      return [
        cond('Ready', 'False', f.reason ?? CONDITION_REASONS.terminating, msg || 'terminating'),
        cond('Finished', 'False', CONDITION_REASONS.terminating, msg || 'terminating'),
      ];
    case 'Succeeded': {
      const reason = f.reason ?? 'Completed';
      const m = msg || `the workload exited ${f.exitCode ?? 0}`;
      return [cond('Ready', 'True', reason, m), cond('Finished', 'True', reason, m)];
    }
    case 'Failed': {
      const reason = f.reason ?? 'Error';
      const m = msg || `the workload failed${f.exitCode !== undefined ? ` with exit code ${f.exitCode}` : ''}`;
      return [cond('Ready', 'False', reason, m), cond('Finished', 'True', reason, m), cond('Stalled', 'True', reason, m)];
    }
  }
}

/** Top-level fields compared to decide whether an apply would change anything. */
const KEYS = ['phase', 'reason', 'message', 'cgroupPath', 'netns', 'startTime', 'finishTime', 'exitCode', 'logTail', 'observedGeneration'] as const;

/**
 * Whether applying `desired` changes anything the API shows. Fields the agent
 * stops sending are not compared: the agent always sends its whole set, so it
 * only stops sending a field when the controller took it over.
 */
export function agentStatusDiffers(current: EnvStatus | undefined, desired: AgentStatus): boolean {
  for (const k of KEYS) {
    if (desired[k] !== undefined && current?.[k] !== desired[k]) return true;
  }
  if (desired.usage && JSON.stringify(sortKeys(current?.usage ?? {})) !== JSON.stringify(sortKeys(desired.usage))) return true;
  for (const c of desired.conditions) {
    const cur = conditionOf(current, c.type);
    if (!cur || cur.status !== c.status || cur.reason !== c.reason || cur.message !== c.message || cur.observedGeneration !== c.observedGeneration) return true;
  }
  return false;
}

function sortKeys(o: object): object {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => a.localeCompare(b)));
}
