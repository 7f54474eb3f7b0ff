/**
 * The deletion contract (docs/controller.md, "Deletion and the finalizer") with
 * the real `denv controller` process: the agent removes `disposable.dev/cleanup`
 * itself once its teardown is done, so a whole lifecycle costs the controller
 * exactly 3 API writes per env (bind status, bind label + finalizer, TTL delete),
 * counted by its own client. The controller releases only where the agent
 * cannot — an agent that only reports Reclaimed=True (after
 * --reclaimed-finalizer-grace), and an agent that dies before it finished
 * (after the node is lost and --node-lost-finalizer-grace) — so deletion never hangs.
 */
import { jest } from '@jest/globals';
import { FINALIZER } from '../../src/api/constants.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { withTestNamespace } from '../helpers/kube.js';
import {
  createEnv,
  envsPath,
  getEnv,
  settled,
  startSuite,
  stopSuite,
  TestNodes,
  waitFor,
  waitForEnv,
  waitForGone,
  type ControllerProcess,
} from './controller-harness.js';

jest.setTimeout(90_000);

const reclaimed = (e: EnvObject): boolean => e.status?.conditions?.some((c) => c.type === 'Reclaimed' && c.status === 'True') ?? false;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The controller's writes to DisposableEnvs, by `verb resource`. */
type WriteCounts = Record<string, number>;
const WRITE_KINDS = ['apply disposableenvs/status', 'apply disposableenvs', 'patch disposableenvs', 'patch disposableenvs/status', 'update disposableenvs', 'update disposableenvs/status', 'delete disposableenvs', 'create disposableenvs'];

describe('deletion: the agent releases the finalizer, the controller only where the agent cannot', () => {
  const ns = withTestNamespace('ctl-fin');
  const nodes = new TestNodes(ns);
  let ctl: ControllerProcess;
  let client: KubeClient;
  const node = (s: string): string => nodes.node(s);
  const writes = async (): Promise<WriteCounts> => {
    const out: WriteCounts = {};
    for (const k of WRITE_KINDS) {
      const [verb, resource] = k.split(' ') as [string, string];
      out[k] = await ctl.metric('disposable_env_api_requests_total', { verb, resource });
    }
    return out;
  };
  const delta = (a: WriteCounts, b: WriteCounts): WriteCounts => {
    const out: WriteCounts = {};
    for (const k of WRITE_KINDS) if ((b[k] ?? 0) !== (a[k] ?? 0)) out[k] = (b[k] ?? 0) - (a[k] ?? 0);
    return out;
  };
  const total = (w: WriteCounts): number => Object.values(w).reduce((a, b) => a + b, 0);

  beforeAll(async () => {
    ({ client, ctl } = await startSuite(
      nodes,
      async () => {
        await nodes.add('live', { runMs: 200, reclaimDelayMs: 300 });
        await nodes.add('legacy', { runMs: 200, releaseFinalizer: false });
        await nodes.add('dying', { hang: true, reclaimDelayMs: 600_000 });
      },
      [
        '--node-lease-timeout=3s',
        '--node-lost-finalizer-grace=2s',
        '--reclaimed-finalizer-grace=2s',
      ],
    ));
  });

  afterAll(() => stopSuite(nodes, { client, ctl }));

  it('costs the controller exactly 3 API writes per env over a whole lifecycle (bind: status + label/finalizer; TTL delete); the agent releases the finalizer', async () => {
    const names = ['w0', 'w1', 'w2', 'w3', 'w4'];
    const before = await writes();
    const released = await ctl.metric('disposable_env_backstop_actions_total');
    await Promise.all(names.map((n) => createEnv(client, ns(), n, { nodeName: node('live'), lifecycle: { ttlSecondsAfterFinished: 0 } })));
    await Promise.all(names.map((n) => waitForGone(client, ns(), n, 30_000)));
    await sleep(500); // anything late would show up now
    const d = delta(before, await writes());
    expect(d).toEqual({ 'apply disposableenvs/status': 5, 'apply disposableenvs': 5, 'delete disposableenvs': 5 });
    expect(total(d) / names.length).toBe(3);
    // Only TTL deletions among the backstops: no finalizer was released by the controller.
    expect((await ctl.metric('disposable_env_backstop_actions_total')) - released).toBe(5);
    expect(await ctl.metric('disposable_env_backstop_actions_total', { action: 'ttl_deleted' })).toBe(5);
  });

  it('releases the finalizer itself for an agent that reported Reclaimed=True but did not release it, after --reclaimed-finalizer-grace', async () => {
    const before = await writes();
    await createEnv(client, ns(), 'legacy', { nodeName: node('legacy'), lifecycle: { ttlSecondsAfterFinished: 0 } });
    const held = await waitForEnv(client, ns(), 'legacy', (e) => e.metadata.deletionTimestamp !== undefined && reclaimed(e), 'deleting with Reclaimed=True', 20_000);
    const seenAt = Date.now();
    expect(held.metadata.finalizers).toContain(FINALIZER);
    // Within the grace the controller leaves the release to the agent.
    await sleep(800);
    expect((await getEnv(client, ns(), 'legacy'))?.metadata.finalizers).toContain(FINALIZER);
    await waitForGone(client, ns(), 'legacy', 10_000);
    expect(Date.now() - seenAt).toBeGreaterThanOrEqual(800);
    // counted once the controller has the patch's answer, which can come a moment after the object is gone
    expect(await settled(() => ctl.metric('disposable_env_backstop_actions_total', { action: 'finalizer_released_reclaimed' }), (n) => n >= 1, 5_000)).toBe(1);
    expect(delta(before, await writes())).toEqual({ 'apply disposableenvs/status': 1, 'apply disposableenvs': 1, 'delete disposableenvs': 1, 'patch disposableenvs': 1 });
  });

  it('never hangs when the agent dies in the middle of a teardown: released after the node is lost and the grace', async () => {
    await createEnv(client, ns(), 'midway', { nodeName: node('dying') });
    await waitForEnv(client, ns(), 'midway', (e) => e.status?.phase === 'Running', 'Running');
    await client.delete(envsPath(ns(), 'midway'));
    await sleep(1000);
    expect((await getEnv(client, ns(), 'midway'))?.metadata.finalizers).toContain(FINALIZER);
    await nodes.agents.get('dying')!.kill();
    const killedAt = Date.now();
    await waitForGone(client, ns(), 'midway', 20_000);
    // Lease timeout 3 s (from the last renewal, ≤ 0.5 s before the kill) + grace 2 s.
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(4_000);
    expect(await settled(() => ctl.metric('disposable_env_backstop_actions_total', { action: 'finalizer_released_node_lost' }), (n) => n >= 1, 5_000)).toBe(1);
  });

  it('never hangs for an env no agent could see: the finalizer a manifest brought along is released at once', async () => {
    await createEnv(client, ns(), 'nobody', { nodeName: 'no-such-node' }, { finalizers: [FINALIZER] });
    await waitForEnv(client, ns(), 'nobody', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable');
    const t0 = Date.now();
    await client.delete(envsPath(ns(), 'nobody'));
    await waitForGone(client, ns(), 'nobody', 5_000);
    expect(Date.now() - t0).toBeLessThan(3_000);
    await waitFor(async () => (await ctl.metric('disposable_env_backstop_actions_total', { action: 'finalizer_released_unbound' })) === 1, { what: 'unbound release counted' });
  });
});
