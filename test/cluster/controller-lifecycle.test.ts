/**
 * Lifecycle backstops of the real `denv controller` process against the real
 * API server, with FakeAgent nodes: TTL deletion, finalizer handling for unbound
 * and bound envs, the deadline backstop when the agent never ends an env, node
 * loss (Failed/NodeLost, then finalizer release after the grace), observedGeneration
 * on spec edits, and no writes on resyncs of a settled env.
 */
import { jest } from '@jest/globals';
import { FINALIZER, NODE_LABEL } from '../../src/api/constants.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { withTestNamespace } from '../helpers/kube.js';
import {
  createEnv,
  envsPath,
  getEnv,
  listEvents,
  settled,
  startSuite,
  stopSuite,
  TestNodes,
  waitFor,
  waitForEnv,
  waitForGone,
  type ControllerProcess,
} from './controller-harness.js';

jest.setTimeout(120_000);

const cond = (e: EnvObject | undefined, type: string): NonNullable<NonNullable<EnvObject['status']>['conditions']>[number] | undefined =>
  e?.status?.conditions?.find((c) => c.type === type);
const phase = (p: string) => (e: EnvObject): boolean => e.status?.phase === p;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('controller lifecycle backstops', () => {
  const ns = withTestNamespace('ctl-life');
  const nodes = new TestNodes(ns);
  let ctl: ControllerProcess;
  let client: KubeClient;
  const node = (s: string): string => nodes.node(s);
  const envWrites = async (): Promise<number> => {
    let n = 0;
    for (const resource of ['disposableenvs', 'disposableenvs/status']) {
      for (const verb of ['apply', 'patch', 'update', 'delete', 'create']) n += await ctl.metric('disposable_env_api_requests_total', { verb, resource });
    }
    return n;
  };

  beforeAll(async () => {
    ({ client, ctl } = await startSuite(
      nodes,
      async () => {
        await nodes.add('live', { runMs: 300, reclaimDelayMs: 1500 });
        await nodes.add('hang', { hang: true });
        await nodes.add('slow', { hang: true, reclaimDelayMs: 2500 });
        await nodes.add('silent', { passive: true });
        await nodes.add('doomed', { hang: true });
      },
      [
        '--node-lease-timeout=3s',
        '--node-lost-finalizer-grace=2s',
        '--deadline-slack=1s',
        '--resync-period=1s',
      ],
    ));
  });

  afterAll(() => stopSuite(nodes, { client, ctl }));

  it('deletes a finished env ttlSecondsAfterFinished after its finishTime, holding the finalizer until Reclaimed=True', async () => {
    await createEnv(client, ns(), 'ttl', { nodeName: node('live'), lifecycle: { ttlSecondsAfterFinished: 2 } });
    const done = await waitForEnv(client, ns(), 'ttl', phase('Succeeded'), 'Succeeded (agent)');
    const finishedAt = Date.parse(done.status!.finishTime!);
    // The TTL delete happens; the agent reclaims 1.5 s later, so for a while the env is deleting with its finalizer.
    const deleting = await waitForEnv(client, ns(), 'ttl', (e) => e.metadata.deletionTimestamp !== undefined, 'TTL deletion', 10_000);
    expect(Date.parse(deleting.metadata.deletionTimestamp!)).toBeGreaterThanOrEqual(finishedAt + 2000);
    expect(deleting.metadata.finalizers).toContain(FINALIZER);
    expect(cond(deleting, 'Reclaimed')?.status).not.toBe('True');
    await waitForGone(client, ns(), 'ttl', 10_000);
    // Events are sent in the background (held back while the controller is busy): wait for them.
    const events = await settled(
      async () => (await listEvents(client, ns())).filter((e) => e.regarding === 'ttl').map((e) => e.reason),
      (reasons) => reasons.includes('Scheduled') && reasons.includes('TTLExpired'),
    );
    expect(events).toEqual(expect.arrayContaining(['Scheduled', 'TTLExpired']));
  });

  it('removes an unbound env at once: no finalizer, or ours released immediately', async () => {
    await createEnv(client, ns(), 'unbound', { nodeName: 'no-such-node' });
    await waitForEnv(client, ns(), 'unbound', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable');
    await client.delete(envsPath(ns(), 'unbound'));
    expect(await getEnv(client, ns(), 'unbound')).toBeUndefined();

    // A manifest that already carries the finalizer (copied from a live object): the controller lets go at once.
    await createEnv(client, ns(), 'unbound-fin', { nodeName: 'no-such-node' }, { finalizers: [FINALIZER] });
    await waitForEnv(client, ns(), 'unbound-fin', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable');
    const t0 = Date.now();
    await client.delete(envsPath(ns(), 'unbound-fin'));
    await waitForGone(client, ns(), 'unbound-fin', 5_000);
    expect(Date.now() - t0).toBeLessThan(3_000);
  });

  it('keeps a bound env’s finalizer until its agent has torn the env down and released it', async () => {
    await createEnv(client, ns(), 'bound-del', { nodeName: node('slow') });
    await waitForEnv(client, ns(), 'bound-del', phase('Running'), 'Running');
    await client.delete(envsPath(ns(), 'bound-del'));
    await sleep(1500);
    const held = await getEnv(client, ns(), 'bound-del');
    expect(held?.metadata.deletionTimestamp).toBeDefined();
    expect(held?.metadata.finalizers).toContain(FINALIZER);
    await waitForGone(client, ns(), 'bound-del', 10_000);
  });

  it('fails an env its agent never ends: DeadlineExceeded after timeout + grace + slack', async () => {
    await createEnv(client, ns(), 'late', { nodeName: node('silent'), lifecycle: { timeoutSeconds: 1, gracePeriodSeconds: 0 } });
    const sched = await waitForEnv(client, ns(), 'late', (e) => e.status?.nodeName !== undefined, 'bound');
    const e = await waitForEnv(client, ns(), 'late', (x) => x.status?.reason === 'DeadlineExceeded', 'DeadlineExceeded', 10_000);
    expect(e.status?.phase).toBe('Failed');
    expect(Date.parse(e.status!.finishTime!)).toBeGreaterThanOrEqual(Date.parse(sched.status!.scheduledTime!) + 2000);
    expect(cond(e, 'Ready')).toMatchObject({ status: 'False', reason: 'DeadlineExceeded' });
    expect(cond(e, 'Scheduled')?.status).toBe('True');
    const ev = await waitFor(async () => (await listEvents(client, ns())).find((x) => x.regarding === 'late' && x.reason === 'DeadlineExceeded'), { what: 'DeadlineExceeded event' });
    expect(ev.type).toBe('Warning');
  });

  it('updates observedGeneration on status and conditions when the spec changes', async () => {
    await createEnv(client, ns(), 'gen', { nodeName: node('hang') });
    await waitForEnv(client, ns(), 'gen', phase('Running'), 'Running');
    await client.mergePatch(envsPath(ns(), 'gen'), { spec: { lifecycle: { ttlSecondsAfterFinished: 60 } } });
    const e = await waitForEnv(client, ns(), 'gen', (x) => x.status?.observedGeneration === 2, 'observedGeneration 2');
    expect(e.metadata.generation).toBe(2);
    expect(cond(e, 'Scheduled')?.observedGeneration).toBe(2);
    expect(e.status?.phase).toBe('Running');
  });

  it('writes nothing when resyncs reconcile a settled env again and again', async () => {
    await createEnv(client, ns(), 'steady', { nodeName: node('hang') });
    await waitForEnv(client, ns(), 'steady', phase('Running'), 'Running');
    await sleep(1000);
    const writes = await envWrites();
    const reconciles = await ctl.metric('disposable_env_reconciles_total');
    await sleep(3500);
    expect(await ctl.metric('disposable_env_reconciles_total')).toBeGreaterThan(reconciles + 3);
    expect(await envWrites()).toBe(writes);
  });

  it('stops an env that was never scheduled when spec.stop is set', async () => {
    await createEnv(client, ns(), 'stopme', { nodeName: 'no-such-node' });
    await waitForEnv(client, ns(), 'stopme', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable');
    await client.mergePatch(envsPath(ns(), 'stopme'), { spec: { stop: true } });
    const e = await waitForEnv(client, ns(), 'stopme', (x) => x.status?.reason === 'Stopped', 'Stopped');
    expect(e.status?.phase).toBe('Failed');
    expect(e.status?.finishTime).toBeDefined();
  });

  it('declares a node lost when its Lease expires: its envs fail with NodeLost, nothing new goes there, finalizers are released after the grace', async () => {
    await createEnv(client, ns(), 'orphan', { nodeName: node('doomed') });
    await waitForEnv(client, ns(), 'orphan', phase('Running'), 'Running');
    const killedAt = Date.now();
    await nodes.agents.get('doomed')!.kill();
    const lost = await waitForEnv(client, ns(), 'orphan', (e) => e.status?.reason === 'NodeLost', 'NodeLost', 15_000);
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(2_000);
    expect(lost.status?.phase).toBe('Failed');
    expect(lost.status?.message).toMatch(new RegExp(`^node ${node('doomed')} is lost: its agent last renewed Lease`));
    expect(cond(lost, 'Ready')).toMatchObject({ status: 'False', reason: 'NodeLost' });
    expect(lost.metadata.labels?.[NODE_LABEL]).toBe(node('doomed'));

    await createEnv(client, ns(), 'after-loss', { nodeName: node('doomed') });
    const refused = await waitForEnv(client, ns(), 'after-loss', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable');
    expect(refused.status?.message).toContain('1 agent not alive (Lease expired)');

    // Deleting waits for Reclaimed=True, which never comes: the finalizer goes after --node-lost-finalizer-grace.
    await client.delete(envsPath(ns(), 'orphan'));
    await waitForGone(client, ns(), 'orphan', 10_000);
    // Events are sent in the background (held back while the controller is busy): wait for them.
    const events = await settled(
      async () => (await listEvents(client, ns())).filter((e) => e.regarding === 'orphan'),
      (evs) => evs.some((e) => e.reason === 'NodeLost') && evs.some((e) => e.reason === 'FinalizerReleased'),
    );
    expect(events.map((e) => e.reason)).toEqual(expect.arrayContaining(['NodeLost', 'FinalizerReleased']));
    expect(events.find((e) => e.reason === 'FinalizerReleased')?.type).toBe('Warning');
  });

  it('counts its API requests by verb', async () => {
    expect(await ctl.metric('disposable_env_api_requests_total', { verb: 'apply', resource: 'disposableenvs/status' })).toBeGreaterThan(0);
    expect(await ctl.metric('disposable_env_api_requests_total', { verb: 'delete', resource: 'disposableenvs' })).toBeGreaterThan(0);
    expect(await ctl.metric('disposable_env_backstop_actions_total', { action: 'node_lost' })).toBe(1);
    expect(await ctl.metric('disposable_env_backstop_actions_total', { action: 'deadline_exceeded' })).toBe(1);
    expect(await ctl.metric('disposable_env_backstop_actions_total', { action: 'ttl_deleted' })).toBeGreaterThanOrEqual(1);
    expect(await ctl.metric('disposable_env_envs', { phase: 'Running' })).toBeGreaterThanOrEqual(2);
  });
});
