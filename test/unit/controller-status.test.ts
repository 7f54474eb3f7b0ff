import type { EnvStatus } from '../../src/api/env.js';
import { NOTHING_OWNED, ownedStatusOf, type ManagedFieldsEntry, type OwnedStatus } from '../../src/controller/model.js';
import { desiredStatus, holdsPhase, statusNeedsWrite, type ControllerStatus } from '../../src/controller/status.js';

const T0 = Date.parse('2026-01-01T00:00:00Z');
const iso = (s: number): string => new Date(T0 + s * 1000).toISOString().replace(/\.000Z$/, 'Z');

/** What the API server holds after the controller applied `desired` over `current` (it owns exactly those fields). */
function applied(current: EnvStatus | undefined, desired: ControllerStatus): { status: EnvStatus; owned: OwnedStatus } {
  const others = (current?.conditions ?? []).filter((c) => !desired.conditions.some((d) => d.type === c.type));
  const status: EnvStatus = { ...(current ?? {}), ...desired, conditions: [...others, ...desired.conditions] };
  const owned: OwnedStatus = {
    fields: new Set(Object.entries(desired).filter(([, v]) => v !== undefined).map(([k]) => k)),
    conditions: new Set(desired.conditions.map((c) => c.type)),
  };
  return { status, owned };
}

describe('ownedStatusOf', () => {
  it('reads the controller manager’s status fields and condition types from managedFields', () => {
    const mf: ManagedFieldsEntry[] = [
      {
        manager: 'disposable-env-controller',
        operation: 'Apply',
        subresource: 'status',
        fieldsV1: {
          'f:status': {
            'f:phase': {},
            'f:nodeName': {},
            'f:conditions': {
              'k:{"type":"Scheduled"}': { '.': {}, 'f:status': {}, 'f:reason': {} },
              // the agent took Ready over (force): the controller is left co-owning only the parts with equal values
              'k:{"type":"Ready"}': { '.': {}, 'f:type': {}, 'f:observedGeneration': {} },
            },
          },
        },
      },
      { manager: 'disposable-env-agent', operation: 'Apply', subresource: 'status', fieldsV1: { 'f:status': { 'f:startTime': {} } } },
      { manager: 'disposable-env-controller', operation: 'Apply', fieldsV1: { 'f:metadata': { 'f:labels': {} } } },
    ];
    const owned = ownedStatusOf(mf);
    expect([...owned.fields].sort()).toEqual(['conditions', 'nodeName', 'phase']);
    expect([...owned.conditions]).toEqual(['Scheduled']);
    expect(ownedStatusOf(undefined)).toEqual({ fields: new Set(), conditions: new Set() });
  });
});

describe('desiredStatus and statusNeedsWrite', () => {
  it('unschedulable: Pending/Unschedulable with the counted message, Scheduled=False and Ready=False', () => {
    const d = desiredStatus({ kind: 'unschedulable', message: '0/1 nodes available: 1 too many envs.' }, undefined, NOTHING_OWNED, 1, T0);
    expect(d).toMatchObject({ phase: 'Pending', reason: 'Unschedulable', message: '0/1 nodes available: 1 too many envs.', observedGeneration: 1 });
    expect(d.conditions.map((c) => [c.type, c.status, c.reason, c.observedGeneration])).toEqual([
      ['Scheduled', 'False', 'Unschedulable', 1],
      ['Ready', 'False', 'Unschedulable', 1],
    ]);
    expect(statusNeedsWrite(undefined, NOTHING_OWNED, d)).toBe(true);
  });

  it('computing again from what was written changes nothing (no second write), and lastTransitionTime stays', () => {
    const v = { kind: 'unschedulable', message: '0/1 nodes available: 1 too many envs.' } as const;
    const first = applied(undefined, desiredStatus(v, undefined, NOTHING_OWNED, 1, T0));
    const again = desiredStatus(v, first.status, first.owned, 1, T0 + 60_000);
    expect(statusNeedsWrite(first.status, first.owned, again)).toBe(false);
    expect(again.conditions[0]!.lastTransitionTime).toBe(iso(0));
  });

  it('binding replaces Pending: phase Scheduled, nodeName, scheduledTime, Scheduled=True, Ready=False/Scheduled; the controller drops the reason', () => {
    const pending = applied(undefined, desiredStatus({ kind: 'unschedulable', message: 'm' }, undefined, NOTHING_OWNED, 1, T0));
    const d = desiredStatus({ kind: 'bound', node: 'n1' }, pending.status, pending.owned, 1, T0 + 5000);
    expect(d).toMatchObject({ phase: 'Scheduled', nodeName: 'n1', scheduledTime: iso(5), observedGeneration: 1 });
    expect(d.reason).toBeUndefined();
    expect(d.message).toBeUndefined();
    expect(d.conditions).toEqual([
      { type: 'Scheduled', status: 'True', reason: 'Scheduled', message: 'bound to node n1', observedGeneration: 1, lastTransitionTime: iso(5) },
      // Ready stays False (kstatus: InProgress) until the agent reports Running; its status did not flip
      { type: 'Ready', status: 'False', reason: 'Scheduled', message: 'waiting for the agent on node n1 to start it', observedGeneration: 1, lastTransitionTime: iso(0) },
    ]);
    // The apply must happen even though every asserted value could match: owned fields (reason) are dropped.
    expect(statusNeedsWrite(pending.status, pending.owned, d)).toBe(true);
  });

  it('lets go of the phase once the agent owns it, and never writes again while it runs', () => {
    const bound = applied(undefined, desiredStatus({ kind: 'bound', node: 'n1' }, undefined, NOTHING_OWNED, 1, T0));
    // The agent force-applied phase Running and Ready=True: server-side apply moved both to the agent.
    const agentReady = { type: 'Ready', status: 'True', reason: 'Running', message: 'the workload is running', observedGeneration: 1, lastTransitionTime: iso(1) } as const;
    const running: EnvStatus = { ...bound.status, phase: 'Running', startTime: iso(1), conditions: [...(bound.status.conditions ?? []).filter((c) => c.type !== 'Ready'), agentReady] };
    const owned: OwnedStatus = { fields: new Set([...bound.owned.fields].filter((f) => f !== 'phase')), conditions: new Set([...bound.owned.conditions].filter((c) => c !== 'Ready')) };
    expect(holdsPhase(running, owned)).toBe(false);
    const d = desiredStatus({ kind: 'bound', node: 'n1' }, running, owned, 1, T0 + 10_000);
    expect(d.phase).toBeUndefined();
    expect(statusNeedsWrite(running, owned, d)).toBe(false);
  });

  it('a spec edit moves observedGeneration on the status and on the conditions', () => {
    const bound = applied(undefined, desiredStatus({ kind: 'bound', node: 'n1' }, undefined, NOTHING_OWNED, 1, T0));
    const d = desiredStatus({ kind: 'bound', node: 'n1' }, bound.status, bound.owned, 2, T0 + 1000);
    expect(d.observedGeneration).toBe(2);
    expect(d.conditions[0]!.observedGeneration).toBe(2);
    expect(d.conditions[0]!.lastTransitionTime).toBe(iso(0));
    expect(statusNeedsWrite(bound.status, bound.owned, d)).toBe(true);
  });

  it('a backstop ends a running env: Failed with the reason, finishTime, Ready=False; then keeps asserting the same', () => {
    const running: EnvStatus = { phase: 'Running', nodeName: 'n1', scheduledTime: iso(0), startTime: iso(1) };
    const owned: OwnedStatus = { fields: new Set(['nodeName', 'scheduledTime', 'observedGeneration', 'conditions']), conditions: new Set(['Scheduled']) };
    const v = { kind: 'bound', node: 'n1', backstop: { reason: 'NodeLost', message: 'node n1 is lost' } } as const;
    const d = desiredStatus(v, running, owned, 1, T0 + 100_000);
    expect(d).toMatchObject({ phase: 'Failed', reason: 'NodeLost', message: 'node n1 is lost', finishTime: iso(100) });
    expect(d.conditions.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'NodeLost' });
    const after = applied(running, d);
    // Later reconciles: the env is finished, the backstop no longer fires, but the controller still owns the end it declared.
    const again = desiredStatus({ kind: 'bound', node: 'n1' }, after.status, after.owned, 1, T0 + 200_000);
    expect(statusNeedsWrite(after.status, after.owned, again)).toBe(false);
    expect(again.phase).toBe('Failed');
  });

  it('does not override an end the agent reported', () => {
    const done: EnvStatus = { phase: 'Succeeded', reason: 'Completed', nodeName: 'n1', scheduledTime: iso(0), finishTime: iso(5) };
    const owned: OwnedStatus = { fields: new Set(['nodeName', 'scheduledTime', 'observedGeneration', 'conditions']), conditions: new Set(['Scheduled']) };
    const d = desiredStatus({ kind: 'bound', node: 'n1', backstop: { reason: 'DeadlineExceeded', message: 'late' } }, done, owned, 1, T0 + 1e9);
    expect(d.phase).toBeUndefined();
    expect(d.reason).toBeUndefined();
  });

  it('an invalid spec is terminal: Failed/InvalidSpec naming the fields, Ready=False/InvalidSpec', () => {
    const d = desiredStatus({ kind: 'invalid', problems: ['spec.resources.memory.max: must be at least 4Mi (got 1048576 bytes)'] }, undefined, NOTHING_OWNED, 3, T0);
    expect(d).toMatchObject({ phase: 'Failed', reason: 'InvalidSpec', observedGeneration: 3, finishTime: iso(0) });
    expect(d.message).toBe('invalid spec: spec.resources.memory.max: must be at least 4Mi (got 1048576 bytes)');
    expect(d.conditions.map((c) => `${c.type}=${c.status}/${c.reason}`)).toEqual(['Scheduled=False/InvalidSpec', 'Ready=False/InvalidSpec', 'Finished=True/InvalidSpec', 'Stalled=True/InvalidSpec']);
  });

  it('an env ended before binding stays ended (verdict ended), with no write when nothing changed', () => {
    const inv = applied(undefined, desiredStatus({ kind: 'invalid', problems: ['x'] }, undefined, NOTHING_OWNED, 1, T0));
    const d = desiredStatus({ kind: 'ended' }, inv.status, inv.owned, 1, T0 + 5000);
    expect(statusNeedsWrite(inv.status, inv.owned, d)).toBe(false);
    const d2 = desiredStatus({ kind: 'ended' }, inv.status, inv.owned, 2, T0 + 5000);
    expect(d2).toMatchObject({ phase: 'Failed', reason: 'InvalidSpec', observedGeneration: 2 });
    expect(statusNeedsWrite(inv.status, inv.owned, d2)).toBe(true);
  });
});
