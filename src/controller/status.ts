/**
 * The controller's part of a DisposableEnv's status, computed in one pure
 * function from what the reconcile found (the verdict), the current status, the
 * fields the controller already owns, and `now`; and the comparison that decides
 * whether anything must be written at all.
 *
 * Ownership (see docs/controller.md): the controller writes with server-side
 * apply as field manager `disposable-env-controller`. It always owns
 * observedGeneration, nodeName, scheduledTime and the Scheduled condition. It
 * owns phase/reason/message (and Ready, finishTime) only while it "holds" the
 * phase: before an agent took the env over (Pending, Scheduled), or when it ended
 * the env by a backstop. Fields it owned but no longer asserts are removed by the
 * API server on the next apply, which is why the comparison also looks at
 * ownership, not only values.
 */
import type { Condition, EnvStatus } from '../api/env.js';
import type { Reason } from '../api/constants.js';
import { conditionOf, isFinished, rfc3339, type OwnedStatus } from './model.js';

/** Condition reason of a successful binding (the other reasons are status reasons from src/api/constants.ts). */
export const SCHEDULED_REASON = 'Scheduled';

/** Reasons with which the controller itself ends an env. */
export const CONTROLLER_TERMINAL_REASONS: readonly Reason[] = ['InvalidSpec', 'NodeLost', 'DeadlineExceeded', 'Stopped'];

/** What one reconcile concluded about an env. */
export type Verdict =
  /** The spec fails zod validation: terminal, never retried. */
  | { readonly kind: 'invalid'; readonly problems: readonly string[] }
  /** `spec.stop` on an env no agent has seen: the controller ends it. */
  | { readonly kind: 'stopped' }
  /** Ended by the controller before it was bound (InvalidSpec, Stopped) and still valid now: stays as it is. */
  | { readonly kind: 'ended' }
  /** No node fits. */
  | { readonly kind: 'unschedulable'; readonly message: string }
  /** Bound to `node`; a backstop may end it. */
  | {
      readonly kind: 'bound';
      readonly node: string;
      readonly backstop?: { readonly reason: 'NodeLost' | 'DeadlineExceeded'; readonly message: string };
    };

/** The controller-owned fields of `.status`: the body of its server-side apply. */
export interface ControllerStatus {
  phase?: EnvStatus['phase'];
  reason?: Reason;
  message?: string;
  nodeName?: string;
  scheduledTime?: string;
  finishTime?: string;
  observedGeneration: number;
  conditions: Condition[];
}

/** Top-level status keys the controller may assert (everything else is the agent's). */
const CONTROLLER_KEYS = ['phase', 'reason', 'message', 'nodeName', 'scheduledTime', 'finishTime', 'observedGeneration'] as const;

/**
 * The controller holds the phase before any agent took over, and after it ended
 * the env itself (it still owns `phase` then). Once the agent applies a phase of
 * its own, server-side apply moves ownership to the agent and the controller lets go.
 */
export function holdsPhase(current: EnvStatus | undefined, owned: OwnedStatus): boolean {
  const phase = current?.phase;
  return phase === undefined || phase === 'Pending' || phase === 'Scheduled' || owned.fields.has('phase');
}

/** A condition whose lastTransitionTime moves only when its status flips. */
export function condition(
  current: EnvStatus | undefined,
  type: string,
  status: Condition['status'],
  reason: string,
  message: string,
  generation: number,
  now: number,
): Condition {
  const prev = conditionOf(current, type);
  const lastTransitionTime = prev && prev.status === status ? prev.lastTransitionTime : rfc3339(now);
  return { type, status, observedGeneration: generation, lastTransitionTime, reason, message };
}

/** The controller's desired `.status` fields for one env. Pure: same inputs, same output. */
export function desiredStatus(
  verdict: Verdict,
  current: EnvStatus | undefined,
  owned: OwnedStatus,
  generation: number,
  now: number,
): ControllerStatus {
  const out: ControllerStatus = { observedGeneration: generation, conditions: [] };
  const cond = (type: string, status: Condition['status'], reason: string, message: string): Condition =>
    condition(current, type, status, reason, message, generation, now);
  const holds = holdsPhase(current, owned);

  const end = (reason: Reason, message: string, scheduled?: Condition): void => {
    out.phase = 'Failed';
    out.reason = reason;
    out.message = message;
    out.finishTime = current?.finishTime ?? rfc3339(now);
    if (scheduled) out.conditions.push(scheduled);
    // Stalled=True makes kstatus (Flux, kpt) report Failed; Finished lets `kubectl wait` return for any end
    out.conditions.push(cond('Ready', 'False', reason, message), cond('Finished', 'True', reason, message), cond('Stalled', 'True', reason, message));
  };

  switch (verdict.kind) {
    case 'invalid': {
      const message = `invalid spec: ${verdict.problems.join('; ')}`;
      if (holds) end('InvalidSpec', message, cond('Scheduled', 'False', 'InvalidSpec', message));
      break;
    }
    case 'stopped': {
      const message = 'stopped (spec.stop) before it was scheduled';
      if (holds) end('Stopped', message, cond('Scheduled', 'False', 'Stopped', message));
      break;
    }
    case 'ended': {
      const reason = current?.reason;
      if (!holds || !isFinished(current) || reason === undefined) break;
      const prev = conditionOf(current, 'Scheduled');
      end(reason, current?.message ?? '', cond('Scheduled', prev?.status ?? 'False', prev?.reason ?? reason, prev?.message ?? current?.message ?? ''));
      break;
    }
    case 'unschedulable': {
      if (!holds) break;
      out.phase = 'Pending';
      out.reason = 'Unschedulable';
      out.message = verdict.message;
      out.conditions.push(cond('Scheduled', 'False', 'Unschedulable', verdict.message));
      out.conditions.push(cond('Ready', 'False', 'Unschedulable', verdict.message));
      break;
    }
    case 'bound': {
      out.nodeName = verdict.node;
      out.scheduledTime = current?.scheduledTime ?? rfc3339(now);
      const scheduled = cond('Scheduled', 'True', SCHEDULED_REASON, `bound to node ${verdict.node}`);
      if (verdict.backstop && !isFinished(current)) {
        end(verdict.backstop.reason, verdict.backstop.message, scheduled);
      } else if (holds && isFinished(current) && current?.reason !== undefined && CONTROLLER_TERMINAL_REASONS.includes(current.reason)) {
        // An end the controller declared earlier: keep asserting exactly what is there.
        end(current.reason, current.message ?? '', scheduled);
      } else {
        out.conditions.push(scheduled);
        if (holds && !isFinished(current)) {
          out.phase = 'Scheduled';
          // present from the first status write, so health tools see InProgress until the agent reports Running
          out.conditions.push(cond('Ready', 'False', SCHEDULED_REASON, `waiting for the agent on node ${verdict.node} to start it`));
        }
      }
      break;
    }
  }
  return out;
}

function sameCondition(a: Condition | undefined, b: Condition): boolean {
  return (
    a !== undefined &&
    a.status === b.status &&
    a.reason === b.reason &&
    a.message === b.message &&
    a.observedGeneration === b.observedGeneration &&
    a.lastTransitionTime === b.lastTransitionTime
  );
}

/**
 * Whether applying `desired` would change anything: a value differs, or the
 * controller owns a field or condition it no longer asserts (the apply removes it).
 */
export function statusNeedsWrite(current: EnvStatus | undefined, owned: OwnedStatus, desired: ControllerStatus): boolean {
  for (const k of CONTROLLER_KEYS) {
    const want = desired[k];
    if (want === undefined) {
      if (owned.fields.has(k)) return true;
      continue;
    }
    if (current?.[k] !== want) return true;
  }
  const wanted = new Set(desired.conditions.map((c) => c.type));
  for (const c of desired.conditions) {
    if (!sameCondition(conditionOf(current, c.type), c)) return true;
  }
  for (const t of owned.conditions) if (!wanted.has(t)) return true;
  return false;
}
