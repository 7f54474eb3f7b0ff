/**
 * Scheduling by the real `denv controller` process against the real API server:
 * pinned nodeName, nodeSelector against Node labels, feature fit (io
 * controller, memory.high on cgroup v2, bestEffort), capacity, the counted
 * Unschedulable message, rescheduling when a node appears, an invalid spec the
 * CRD accepts but zod rejects, and spread / bin-pack each on 5 nodes. Nodes are
 * played by FakeAgent; each describe block has its own controller, nodes (selected
 * with --disposable-node-selector) and namespace, so blocks never see each other.
 */
import { jest } from '@jest/globals';
import { NODE_LABEL } from '../../src/api/constants.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { withTestNamespace } from '../helpers/kube.js';
import {
  createEnv,
  listEvents,
  startController,
  settled,
  startSuite,
  stopSuite,
  TestNodes,
  testClient,
  waitFor,
  waitForEnv,
  type ControllerProcess,
} from './controller-harness.js';

jest.setTimeout(120_000);

const GiB = 1024 ** 3;
const nodeOf = (e: EnvObject): string | undefined => e.status?.nodeName;
const scheduled = (e: EnvObject): boolean => e.status?.phase === 'Scheduled' && e.metadata.labels?.[NODE_LABEL] !== undefined;

describe('controller scheduling', () => {
  const ns = withTestNamespace('ctl-sched');
  const nodes = new TestNodes(ns, { passive: true });
  let ctl: ControllerProcess;
  let client: KubeClient;
  const node = (s: string): string => nodes.node(s);

  beforeAll(async () => {
    ({ client, ctl } = await startSuite(
      nodes,
      async () => {
        await nodes.add('a', { nodeLabels: { pool: 'ci' }, cgroupMode: 'v2', controllers: ['cpu', 'memory', 'io', 'pids'], maxEnvs: 10, memoryBytes: GiB });
        await nodes.add('b', { nodeLabels: { pool: 'ci' }, cgroupMode: 'hybrid', controllers: ['cpu', 'memory', 'pids'], maxEnvs: 10, memoryBytes: GiB });
        await nodes.add('c', { nodeLabels: { pool: 'batch' }, cgroupMode: 'v2', controllers: ['cpu', 'memory', 'io', 'pids'], maxEnvs: 10, memoryBytes: 4 * GiB });
      },
      [
        '--node-lease-timeout=5s',
        '--resync-period=1s',
      ],
    ));
  });

  afterAll(() => stopSuite(nodes, { client, ctl }));

  it('binds an env pinned with nodeName to that node: label, status.nodeName, phase Scheduled, Scheduled condition', async () => {
    await createEnv(client, ns(), 'pinned', { nodeName: node('b') });
    const e = await waitForEnv(client, ns(), 'pinned', scheduled, 'bound');
    expect(e.metadata.labels?.[NODE_LABEL]).toBe(node('b'));
    expect(nodeOf(e)).toBe(node('b'));
    expect(e.metadata.finalizers).toContain('disposable.dev/cleanup');
    expect(e.status?.scheduledTime).toBeDefined();
    expect(e.status?.observedGeneration).toBe(e.metadata.generation);
    expect(e.status?.conditions?.find((c) => c.type === 'Scheduled')).toMatchObject({
      status: 'True',
      reason: 'Scheduled',
      message: `bound to node ${node('b')}`,
      observedGeneration: e.metadata.generation,
    });
  });

  it('honours nodeSelector against the Node labels', async () => {
    await createEnv(client, ns(), 'batch', { nodeSelector: { pool: 'batch' } });
    expect(nodeOf(await waitForEnv(client, ns(), 'batch', scheduled, 'bound'))).toBe(node('c'));
  });

  it('binds only to nodes that can enforce the limits: io needs the io controller, memory.high needs cgroup v2', async () => {
    await createEnv(client, ns(), 'io', { nodeSelector: { pool: 'ci' }, resources: { io: { weight: 200 } } });
    await createEnv(client, ns(), 'high', { nodeSelector: { pool: 'ci' }, resources: { memory: { max: '64Mi', high: '32Mi' } } });
    expect(nodeOf(await waitForEnv(client, ns(), 'io', scheduled, 'bound'))).toBe(node('a'));
    expect(nodeOf(await waitForEnv(client, ns(), 'high', scheduled, 'bound'))).toBe(node('a'));
  });

  it('lets resources.bestEffort go to a node that cannot enforce everything', async () => {
    await createEnv(client, ns(), 'besteffort', { nodeName: node('b'), resources: { memory: { high: '32Mi' }, io: { weight: 10 }, bestEffort: true } });
    expect(nodeOf(await waitForEnv(client, ns(), 'besteffort', scheduled, 'bound'))).toBe(node('b'));
    await createEnv(client, ns(), 'strict', { nodeName: node('b'), resources: { memory: { high: '32Mi' } } });
    const e = await waitForEnv(client, ns(), 'strict', (x) => x.status?.reason === 'Unschedulable', 'Unschedulable');
    expect(e.status?.message).toBe('0/3 nodes available: 2 node name mismatch, 1 cannot enforce memory.high (needs cgroup v2).');
  });

  it('reports Unschedulable with a message that counts why, like kube-scheduler', async () => {
    await createEnv(client, ns(), 'toobig', { nodeSelector: { pool: 'ci' }, resources: { memory: { max: '2Gi' } } });
    const e = await waitForEnv(client, ns(), 'toobig', (x) => x.status?.reason === 'Unschedulable', 'Unschedulable');
    expect(e.status?.phase).toBe('Pending');
    expect(e.status?.message).toBe('0/3 nodes available: 2 insufficient memory, 1 node selector mismatch.');
    expect(e.metadata.labels?.[NODE_LABEL]).toBeUndefined();
    expect(e.metadata.finalizers ?? []).not.toContain('disposable.dev/cleanup');
    expect(e.status?.conditions?.find((c) => c.type === 'Scheduled')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    expect(e.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Unschedulable' });
    const events = await waitFor(async () => (await listEvents(client, ns())).filter((ev) => ev.regarding === 'toobig' && ev.reason === 'FailedScheduling'), {
      what: 'FailedScheduling event',
    });
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: 'Warning', note: '0/3 nodes available: 2 insufficient memory, 1 node selector mismatch.' });
  });

  it('counts envs already bound: memory and maxEnvs fill up', async () => {
    // a has 1 GiB; 'high' holds 64Mi there. Three 300Mi envs fit (964Mi), the fourth does not.
    for (const i of [1, 2, 3, 4]) await createEnv(client, ns(), `fill-${i}`, { nodeName: node('a'), resources: { memory: { max: '300Mi' } } });
    for (const i of [1, 2, 3]) expect(nodeOf(await waitForEnv(client, ns(), `fill-${i}`, scheduled, 'bound'))).toBe(node('a'));
    const e = await waitForEnv(client, ns(), 'fill-4', (x) => x.status?.reason === 'Unschedulable', 'Unschedulable');
    expect(e.status?.message).toBe('0/3 nodes available: 2 node name mismatch, 1 insufficient memory.');
  });

  it('schedules a waiting env as soon as a node that fits appears', async () => {
    await createEnv(client, ns(), 'gpu', { nodeSelector: { pool: 'gpu' } });
    const pending = await waitForEnv(client, ns(), 'gpu', (x) => x.status?.reason === 'Unschedulable', 'Unschedulable');
    expect(pending.status?.message).toBe('0/3 nodes available: 3 node selector mismatch.');
    await nodes.add('d', { nodeLabels: { pool: 'gpu' }, maxEnvs: 1, memoryBytes: GiB });
    const e = await waitForEnv(client, ns(), 'gpu', scheduled, 'bound after the node appeared');
    expect(nodeOf(e)).toBe(node('d'));
    expect(e.status?.reason).toBeUndefined();
    expect(e.status?.message).toBeUndefined();
    // Ready stays False (health tools: InProgress) until the node's agent reports Running
    expect(e.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'Scheduled' });
  });

  it('marks a spec the CRD accepts but zod rejects as terminal InvalidSpec, and never retries it', async () => {
    // memory.max below 4Mi is a zod-only rule (docs/decisions.md): the API server stores it.
    await createEnv(client, ns(), 'tiny', { resources: { memory: { max: '1Mi' } } });
    const e = await waitForEnv(client, ns(), 'tiny', (x) => x.status?.reason === 'InvalidSpec', 'InvalidSpec');
    expect(e.status?.phase).toBe('Failed');
    expect(e.status?.message).toMatch(/^invalid spec: spec\.resources\.memory\.max: must be at least 4Mi\b/);
    expect(e.status?.conditions?.find((c) => c.type === 'Ready')).toMatchObject({ status: 'False', reason: 'InvalidSpec', observedGeneration: 1 });
    expect(e.status?.observedGeneration).toBe(1);
    expect(e.metadata.labels?.[NODE_LABEL]).toBeUndefined();
    // Terminal: resyncs (every 1 s here) reconcile it but write nothing.
    const writes = async (): Promise<number> => (await ctl.metric('disposable_env_api_requests_total', { verb: 'apply' })) + (await ctl.metric('disposable_env_api_requests_total', { verb: 'patch' }));
    const invalidBefore = await ctl.metric('disposable_env_reconciles_total', { result: 'invalid' });
    const before = await writes();
    await new Promise((r) => setTimeout(r, 2500));
    expect(await writes()).toBe(before);
    expect(await ctl.metric('disposable_env_reconciles_total', { result: 'invalid' })).toBeGreaterThan(invalidBefore);
    // Events are sent in the background: wait for the first, then check no second one was made.
    const invalidEvents = await settled(async () => (await listEvents(client, ns())).filter((ev) => ev.regarding === 'tiny' && ev.reason === 'InvalidSpec'), (evs) => evs.length > 0);
    expect(invalidEvents).toHaveLength(1);
  });
});

/** Five nodes with room for 4 envs each; 10 envs created in one burst. */
async function placementOnFiveNodes(strategy: 'spread' | 'binpack', ns: string): Promise<Record<string, number>> {
  const nodes = new TestNodes(() => ns, { passive: true, maxEnvs: 4, memoryBytes: 8 * GiB });
  const client = await testClient();
  let ctl: ControllerProcess | undefined;
  try {
    for (const i of [1, 2, 3, 4, 5]) await nodes.add(`n${i}`);
    ctl = await startController([...nodes.controllerScope(), `--scheduling-strategy=${strategy}`]);
    await Promise.all(Array.from({ length: 10 }, (_, i) => createEnv(client, ns, `${strategy}-${i}`, { resources: { memory: { max: '512Mi' } } })));
    const bound = await waitFor(
      async () => {
        const { items } = await client.list<EnvObject>(`/apis/disposable.dev/v1alpha1/namespaces/${ns}/disposableenvs`);
        const mine = items.filter((e) => e.metadata.name.startsWith(`${strategy}-`));
        return mine.length === 10 && mine.every(scheduled) ? mine : undefined;
      },
      { what: `10 ${strategy} envs bound` },
    );
    const counts: Record<string, number> = {};
    for (const e of bound) {
      const n = nodeOf(e)!.slice(nodes.run.length + 1);
      counts[n] = (counts[n] ?? 0) + 1;
    }
    return counts;
  } finally {
    await ctl?.stop('SIGTERM');
    await nodes.cleanup();
    client.close();
  }
}

describe('placement strategies on 5 nodes (10 envs in a burst, room for 4 per node)', () => {
  const ns = withTestNamespace('ctl-strategy');

  it('spread puts 2 envs on each node', async () => {
    expect(await placementOnFiveNodes('spread', ns())).toEqual({ n1: 2, n2: 2, n3: 2, n4: 2, n5: 2 });
  });

  it('bin-pack fills nodes in turn: 4, 4, 2 and two empty nodes', async () => {
    expect(await placementOnFiveNodes('binpack', ns())).toEqual({ n1: 4, n2: 4, n3: 2 });
  });
});
