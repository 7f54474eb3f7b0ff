/**
 * The node keeps its promises while the API server is unreachable: a real
 * agent reaches the real kube-apiserver only through a loopback TCP relay the
 * test can cut. With the relay cut, an env's deadline is still enforced on
 * the node (SIGTERM, grace, kill, verified teardown); once the relay is back,
 * the agent reports what happened (Failed/DeadlineExceeded, Reclaimed=True).
 * Also: per-env gauges on /metrics and status.usage while an env runs.
 */
import { jest } from '@jest/globals';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { kubeconfigPath, withTestNamespace } from '../helpers/kube.js';
import { findLeaks } from '../node/helpers.js';
import { AgentNodes } from './agent-harness.js';
import { createEnv, getEnv, startController, testClient, waitFor, waitForEnv, type ControllerProcess } from './controller-harness.js';

jest.setTimeout(180_000);

/** A TCP relay on loopback that can be cut (every connection dropped, new ones refused) and restored on the same port. */
class Relay {
  private server: net.Server | undefined;
  private readonly sockets = new Set<net.Socket>();
  port = 0;

  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async open(): Promise<void> {
    const server = net.createServer((client) => {
      const upstream = net.connect(this.targetPort, this.host);
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on('close', () => this.sockets.delete(s));
        s.on('error', () => s.destroy());
      }
      client.pipe(upstream).pipe(client);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    this.port = (server.address() as net.AddressInfo).port;
    this.server = server;
  }

  async cut(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((resolve) => (s ? s.close(() => resolve()) : resolve()));
  }
}

describe('node agent while the API server is unreachable', () => {
  const ns = withTestNamespace('agent-outage');
  const nodes = new AgentNodes(ns);
  let client: KubeClient;
  let ctl: ControllerProcess;
  let relay: Relay;
  const kubeconfigFile = path.join(tmpdir(), `denv-agent-relay-${process.pid}.kubeconfig`);

  beforeAll(async () => {
    client = await testClient();
    const kc = parse(readFileSync(kubeconfigPath(), 'utf8')) as { clusters: { cluster: { server: string } }[] };
    const server = new URL(kc.clusters[0]!.cluster.server);
    relay = new Relay(server.hostname, Number(server.port));
    await relay.open();
    kc.clusters[0]!.cluster.server = `https://127.0.0.1:${relay.port}`;
    writeFileSync(kubeconfigFile, stringify(kc), { mode: 0o600 });
    await nodes.add('a', [`--kubeconfig=${kubeconfigFile}`, '--usage-interval=2s']);
    // a long node-lease timeout: the outage must not make the controller declare the node lost
    ctl = await startController([...nodes.controllerScope(), '--node-lease-timeout=60s']);
  });

  afterAll(async () => {
    await relay?.open().catch(() => undefined);
    await ctl?.stop('SIGTERM');
    await nodes.cleanup(client);
    await relay?.cut();
    rmSync(kubeconfigFile, { force: true });
    client?.close();
    expect(await findLeaks()).toEqual([]);
  });

  it('exports per-env gauges and writes status.usage while the env runs', async () => {
    await createEnv(client, ns(), 'busy', { class: 'ci-jobs', workload: { command: ['/bin/sh', '-c', 'sleep 20'] }, resources: { memory: { max: '64Mi' } } });
    await waitForEnv(client, ns(), 'busy', (e) => e.status?.phase === 'Running', 'Running', 60_000);
    const a = nodes.get('a');
    const labels = { namespace: ns(), name: 'busy', class: 'ci-jobs' };
    await waitFor(async () => (await a.proc.metric('disposable_env_memory_max_bytes', labels)) === 64 * 1024 * 1024, { timeoutMs: 20_000, what: 'memory max gauge' });
    expect(await a.proc.metric('disposable_env_memory_current_bytes', labels)).toBeGreaterThan(0);
    expect(await a.proc.metric('disposable_env_pids', labels)).toBeGreaterThanOrEqual(1);
    expect(await a.proc.metric('disposable_env_last_activity_timestamp_seconds', labels)).toBeGreaterThan(Date.now() / 1000 - 60);
    const text = await a.proc.metrics();
    expect(text).toMatch(/# TYPE disposable_env_cpu_seconds_total counter/);
    expect(text).toMatch(/disposable_env_cpu_seconds_total\{[^}]*name="busy"[^}]*\} [0-9.e-]+/);
    expect(text).toMatch(/disposable_env_oom_kills_total\{[^}]*name="busy"[^}]*\} 0/);
    const withUsage = await waitForEnv(client, ns(), 'busy', (e) => (e.status?.usage?.memoryCurrentBytes ?? 0) > 0, 'status.usage', 30_000);
    expect(withUsage.status?.phase).toBe('Running');
    await client.delete(`/apis/disposable.dev/v1alpha1/namespaces/${ns()}/disposableenvs/busy`);
    await waitFor(async () => (await getEnv(client, ns(), 'busy')) === undefined, { timeoutMs: 30_000, what: 'busy deleted' });
    await waitFor(async () => (await a.proc.metrics()).includes('name="busy"') === false, { timeoutMs: 20_000, what: 'the series of a gone env dropped' });
  });

  it('enforces a deadline with the API unreachable, then reports it once the API is back', async () => {
    await createEnv(client, ns(), 'cutoff', { workload: { command: ['/bin/sleep', '300'] }, lifecycle: { timeoutSeconds: 4, gracePeriodSeconds: 1 } });
    const running = await waitForEnv(client, ns(), 'cutoff', (e) => e.status?.phase === 'Running', 'Running', 60_000);
    const cgroup = path.join('/sys/fs/cgroup/pids', running.status!.cgroupPath!);
    expect(existsSync(cgroup)).toBe(true);
    await relay.cut();
    // the deadline passes while the agent cannot reach the API: the node still ends and tears the env down
    await waitFor(() => !existsSync(cgroup), { timeoutMs: 30_000, what: 'the env torn down on the node during the outage' });
    expect((await getEnv(client, ns(), 'cutoff'))?.status?.phase).toBe('Running');
    await relay.open();
    const e = await waitForEnv(client, ns(), 'cutoff', (x: EnvObject) => x.status?.phase === 'Failed', 'Failed after the outage', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
    expect(e.status?.conditions?.find((c) => c.type === 'Reclaimed')?.status).toBe('True');
    expect(nodes.get('a').proc.logs.some((l) => l.includes('reconcile failed; retrying'))).toBe(true);
  });
});
