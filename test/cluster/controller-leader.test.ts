/**
 * Two real controller replicas with leader election on a Lease: exactly one
 * leads; SIGKILL of the leader hands over to the standby within the lease
 * duration (plus one retry period); no env is ever bound twice (every env keeps
 * the node, label and scheduledTime it first got, and gets one Scheduled Event);
 * and SIGTERM makes the leader release the Lease on its way out.
 */
import { jest } from '@jest/globals';
import winston from 'winston';
import { NODE_LABEL } from '../../src/api/constants.js';
import { Informer } from '../../src/controller/informer.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject, LeaseObject } from '../../src/controller/model.js';
import { FakeAgent } from './fake-agent.js';
import { kubeConfig, withTestNamespace } from '../helpers/kube.js';
import { RUN_LABEL, createEnv, listEvents, runId, startController, testClient, waitFor, type ControllerProcess } from './controller-harness.js';

jest.setTimeout(120_000);

const LEASE_DURATION_MS = 4000;
const RETRY_PERIOD_MS = 500;
const quiet = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });

describe('leader election and failover', () => {
  const ns = withTestNamespace('ctl-leader');
  const run = runId();
  const agents: FakeAgent[] = [];
  const replicas: ControllerProcess[] = [];
  let client: KubeClient;
  let watcher: Informer<EnvObject>;
  /** Every distinct binding each env was ever seen with: node label, status.nodeName and scheduledTime. */
  const seen = new Map<string, Set<string>>();

  const isLeader = async (c: ControllerProcess): Promise<boolean> => c.child.exitCode === null && c.child.signalCode === null && (await c.metric('disposable_env_leader')) === 1;
  const boundCount = (): number => [...watcher.list()].filter((e) => e.metadata.labels?.[NODE_LABEL] && e.status?.phase === 'Scheduled').length;

  beforeAll(async () => {
    client = await testClient();
    for (const i of [1, 2, 3]) {
      agents.push(await FakeAgent.start(kubeConfig(), { name: `${run}-n${i}`, leaseNamespace: ns(), labels: { [RUN_LABEL]: run }, passive: true, maxEnvs: 100 }));
    }
    watcher = new Informer<EnvObject>(client, { name: 'test-watch', path: `/apis/disposable.dev/v1alpha1/namespaces/${ns()}/disposableenvs`, logger: quiet });
    const record = (e: EnvObject): void => {
      const node = e.metadata.labels?.[NODE_LABEL];
      if (node === undefined && e.status?.nodeName === undefined) return;
      const s = seen.get(e.metadata.name) ?? new Set<string>();
      s.add(`${node ?? '-'}|${e.status?.nodeName ?? '-'}|${e.status?.scheduledTime ?? '-'}`);
      seen.set(e.metadata.name, s);
    };
    watcher.on({ add: record, update: record });
    watcher.start();
    await watcher.waitForSync();
    const args = [
      `--watch-namespace=${ns()}`,
      `--node-lease-namespace=${ns()}`,
      `--leader-election-namespace=${ns()}`,
      `--disposable-node-selector=${RUN_LABEL}=${run}`,
      `--lease-duration=${LEASE_DURATION_MS}ms`,
      '--renew-deadline=3s',
      `--retry-period=${RETRY_PERIOD_MS}ms`,
    ];
    replicas.push(await startController([...args, '--identity=replica-a']), await startController([...args, '--identity=replica-b']));
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop('SIGKILL')));
    await watcher?.stop();
    await Promise.all(agents.map((a) => a.cleanup()));
    client?.close();
  });

  it('one replica leads; after SIGKILL the other takes over within the lease duration and nothing is bound twice', async () => {
    const leaders = await waitFor(
      async () => {
        const flags = await Promise.all(replicas.map(isLeader));
        return flags.filter(Boolean).length === 1 ? flags : undefined;
      },
      { what: 'exactly one leader' },
    );
    const leader = replicas[leaders.indexOf(true)]!;
    const standby = replicas[leaders.indexOf(false)]!;
    // The standby stays a standby while the leader renews.
    await new Promise((r) => setTimeout(r, LEASE_DURATION_MS + 1000));
    expect(await isLeader(standby)).toBe(false);
    expect(await standby.metric('disposable_env_api_requests_total', { resource: 'disposableenvs/status' })).toBe(0);

    await Promise.all(Array.from({ length: 20 }, (_, i) => createEnv(client, ns(), `before-${i}`)));
    await waitFor(() => boundCount() === 20, { what: '20 envs bound by the first leader' });

    const killedAt = Date.now();
    await leader.stop('SIGKILL');
    const creating = Promise.all(Array.from({ length: 20 }, (_, i) => createEnv(client, ns(), `after-${i}`)));
    await waitFor(() => isLeader(standby), { timeoutMs: 15_000, everyMs: 50, what: 'standby to take over' });
    const takeoverMs = Date.now() - killedAt;
    expect(takeoverMs).toBeLessThanOrEqual(LEASE_DURATION_MS + 1.2 * RETRY_PERIOD_MS + 500);
    await creating;
    await waitFor(() => boundCount() === 40, { timeoutMs: 20_000, what: '40 envs bound' });

    // No env was bound twice: one label, one nodeName, one scheduledTime each, ever.
    expect(seen.size).toBe(40);
    for (const [name, bindings] of seen) expect([name, [...bindings].filter((b) => !b.startsWith('-|')).length]).toEqual([name, 1]);
    // The new leader wrote status for exactly the 20 envs it bound, not for the 20 already bound.
    expect(await standby.metric('disposable_env_api_requests_total', { verb: 'apply', resource: 'disposableenvs/status' })).toBe(20);
    // Scheduled Events: the new leader's all arrive; the killed leader may have lost the few it had queued
    // (Events are written asynchronously). No env ever gets two.
    const perEnv = await waitFor(
      async () => {
        const counts = new Map<string, number>();
        for (const e of (await listEvents(client, ns())).filter((ev) => ev.reason === 'Scheduled')) counts.set(e.regarding, (counts.get(e.regarding) ?? 0) + e.count);
        return Array.from({ length: 20 }, (_, i) => `after-${i}`).every((n) => counts.has(n)) ? counts : undefined;
      },
      { what: 'Scheduled events of the envs bound by the new leader' },
    );
    expect([...perEnv.values()].every((n) => n === 1)).toBe(true);
    expect(perEnv.size).toBeGreaterThanOrEqual(20);
  });

  it('releases the Lease on SIGTERM so a successor need not wait for it to expire', async () => {
    const leader = (await Promise.all(replicas.map(async (r) => ((await isLeader(r)) ? r : undefined)))).find(Boolean)!;
    expect(await leader.stop('SIGTERM')).toBe(0);
    const lease = await client.get<LeaseObject>(`/apis/coordination.k8s.io/v1/namespaces/${ns()}/leases/disposable-env-controller`);
    expect(lease.spec?.holderIdentity ?? '').toBe('');
    expect(leader.logs.some((l) => l.includes('released the Lease'))).toBe(true);
  });
});
