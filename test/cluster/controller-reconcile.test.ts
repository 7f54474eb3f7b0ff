/**
 * The reconciler called directly, twice, against the real API server: the first
 * call converges the env (binding = 2 writes; Unschedulable = 1 write), the
 * second and third write nothing. A second call before the cache has shown the
 * first call's writes waits instead of deciding again from stale facts. Writes
 * are counted by the controller's own API client (disposable_env_api_requests_total).
 */
import { jest } from '@jest/globals';
import winston from 'winston';
import { NODE_LABEL } from '../../src/api/constants.js';
import { parseConfig, type ControllerConfig } from '../../src/controller/config.js';
import { Controller } from '../../src/controller/controller.js';
import { loadConnection } from '../../src/controller/kubeconfig.js';
import { isGone, type KubeClient } from '../../src/controller/kube-client.js';
import { FakeAgent } from './fake-agent.js';
import { kubeConfig, kubeconfigPath, withTestNamespace } from '../helpers/kube.js';
import { RUN_LABEL, createEnv, runId, testClient, waitFor } from './controller-harness.js';

jest.setTimeout(60_000);

const quiet = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

describe('Reconciler.reconcile called twice', () => {
  const ns = withTestNamespace('ctl-twice');
  const run = runId();
  let agent: FakeAgent;
  let ctl: Controller;
  let client: KubeClient;

  /** Writes to DisposableEnvs (and their status) by the controller's client. */
  const writes = async (): Promise<number> => {
    const { values } = await ctl.metrics.apiRequests.get();
    return values
      .filter((v) => String(v.labels.resource).startsWith('disposableenvs') && ['apply', 'patch', 'update', 'create', 'delete'].includes(String(v.labels.verb)))
      .reduce((n, v) => n + v.value, 0);
  };

  beforeAll(async () => {
    client = await testClient();
    agent = await FakeAgent.start(kubeConfig(), { name: `${run}-n1`, leaseNamespace: ns(), labels: { [RUN_LABEL]: run }, passive: true, maxEnvs: 1 });
    const config = parseConfig(
      [
        `--kubeconfig=${kubeconfigPath()}`,
        `--watch-namespace=${ns()}`,
        `--node-lease-namespace=${ns()}`,
        `--disposable-node-selector=${RUN_LABEL}=${run}`,
        '--http-addr=127.0.0.1:0',
      ],
      {},
    ) as ControllerConfig;
    ctl = new Controller(config, loadConnection({ kubeconfig: kubeconfigPath() }), quiet, () => undefined, true);
    await ctl.start();
  });

  afterAll(async () => {
    await ctl?.stop();
    await agent?.cleanup();
    client?.close();
  });

  it('binds with two writes the first time and writes nothing the second and third time', async () => {
    await createEnv(client, ns(), 'twice');
    const key = `${ns()}/twice`;
    await waitFor(() => ctl.envs.get(key), { what: 'env in the controller cache' });

    const w0 = await writes();
    const first = await ctl.reconciler.reconcile(key, quiet);
    expect((await writes()) - w0).toBe(2);
    // Bound: the next look is the deadline backstop, scheduledTime + timeout 3600 s + grace 30 s + slack 30 s.
    expect(first.result).toBe('requeue');
    expect(first.requeueAfterMs).toBeGreaterThan(3_655_000);
    expect(first.requeueAfterMs).toBeLessThanOrEqual(3_660_000);

    // Before the cache shows those writes, a reconcile must not decide again (that could bind twice).
    const early = await ctl.reconciler.reconcile(key, quiet);
    const cached = ctl.envs.get(key)!;
    if (cached.metadata.labels?.[NODE_LABEL] === undefined) expect(early.result).toBe('waiting');
    expect((await writes()) - w0).toBe(2);

    await waitFor(() => ctl.envs.get(key)?.metadata.labels?.[NODE_LABEL] === `${run}-n1`, { what: 'cache shows the binding' });
    const w1 = await writes();
    expect((await ctl.reconciler.reconcile(key, quiet)).result).toBe('requeue');
    expect((await ctl.reconciler.reconcile(key, quiet)).result).toBe('requeue');
    expect(await writes()).toBe(w1);
    expect(ctl.envs.get(key)?.status).toMatchObject({ phase: 'Scheduled', nodeName: `${run}-n1`, observedGeneration: 1 });
  });

  it('writes an Unschedulable status once, then nothing while nothing changes', async () => {
    // The only node has room for one env, and 'twice' holds it.
    await createEnv(client, ns(), 'nofit');
    const key = `${ns()}/nofit`;
    await waitFor(() => ctl.envs.get(key), { what: 'env in the controller cache' });
    const w0 = await writes();
    expect((await ctl.reconciler.reconcile(key, quiet)).result).toBe('success');
    expect((await writes()) - w0).toBe(1);
    await waitFor(() => ctl.envs.get(key)?.status?.reason === 'Unschedulable', { what: 'cache shows Unschedulable' });
    expect(ctl.envs.get(key)?.status?.message).toBe('0/1 nodes available: 1 too many envs.');
    const w1 = await writes();
    await ctl.reconciler.reconcile(key, quiet);
    await ctl.reconciler.reconcile(key, quiet);
    expect(await writes()).toBe(w1);
    expect(ctl.unschedulable.has(key)).toBe(true);
  });

  it('gets a 410 Gone from the real API server for a resourceVersion older than its window (what makes the informer relist)', async () => {
    const ac = new AbortController();
    const err = await client
      .watch(`/apis/disposable.dev/v1alpha1/namespaces/${ns()}/disposableenvs`, { resourceVersion: '1', timeoutSeconds: 5 }, () => undefined, ac.signal)
      .then(() => undefined, (e: unknown) => e);
    expect(isGone(err)).toBe(true);
  });
});
