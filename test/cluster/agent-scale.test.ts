/**
 * Fifty DisposableEnvs applied at once, spread by the real controller over two
 * real agents on this host: every one converges to Succeeded with its own
 * output, the agents' writes per env stay within budget, and once they are
 * deleted nothing of them is left on the host or in the API.
 */
import { jest } from '@jest/globals';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { withTestNamespace } from '../helpers/kube.js';
import { findLeaks } from '../node/helpers.js';
import { AgentNodes } from './agent-harness.js';
import { createEnv, envsPath, startController, testClient, waitFor, type ControllerProcess } from './controller-harness.js';

jest.setTimeout(300_000);

const N = 50;

describe('node agents under a burst', () => {
  const ns = withTestNamespace('agent-scale');
  const nodes = new AgentNodes(ns);
  let client: KubeClient;
  let ctl: ControllerProcess;

  beforeAll(async () => {
    client = await testClient();
    await Promise.all([nodes.add('a'), nodes.add('b')]);
    ctl = await startController([...nodes.controllerScope(), '--node-lease-timeout=30s']);
  });

  afterAll(async () => {
    await ctl?.stop('SIGTERM');
    await nodes.cleanup(client);
    client?.close();
    expect(await findLeaks()).toEqual([]);
  });

  it(`${N} envs applied at once across two agents all converge, and afterwards nothing is left`, async () => {
    const names = Array.from({ length: N }, (_, i) => `burst-${i}`);
    await Promise.all(names.map((n) => createEnv(client, ns(), n, { class: 'batch-jobs', workload: { command: ['/bin/sh', '-c', `echo out-${n}; sleep 1`] }, resources: { memory: { max: '32Mi' }, pids: { max: 32 } } })));
    const done = await waitFor(
      async () => {
        const { items } = await client.list<EnvObject>(envsPath(ns()));
        const ended = items.filter((e) => e.status?.phase === 'Succeeded' || e.status?.phase === 'Failed');
        return ended.length === N ? items : undefined;
      },
      { timeoutMs: 240_000, everyMs: 500, what: `all ${N} envs finished` },
    );
    for (const e of done) {
      expect(e.status).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
      expect(e.status?.logTail).toContain(`out-${e.metadata.name}`);
      expect(e.status?.conditions?.find((c) => c.type === 'Reclaimed')?.status).toBe('True');
    }
    const perNode = new Map<string, number>();
    for (const e of done) perNode.set(e.status!.nodeName!, (perNode.get(e.status!.nodeName!) ?? 0) + 1);
    expect([...perNode.keys()].sort()).toEqual([nodes.node('a'), nodes.node('b')].sort());
    expect(Math.min(...perNode.values())).toBeGreaterThanOrEqual(N / 4);

    await Promise.all(names.map((n) => client.delete(envsPath(ns(), n))));
    await waitFor(async () => (await client.list<EnvObject>(envsPath(ns()))).items.length === 0, { timeoutMs: 60_000, everyMs: 500, what: 'every env deleted' });
    // an env shorter than the usage interval costs its agent at most 3 writes: Running, the end, the finalizer release
    let writes = 0;
    for (const n of nodes.nodes.values()) writes += await n.proc.metric('disposable_env_agent_env_writes_total');
    expect(writes / N).toBeLessThanOrEqual(3);
    expect(writes / N).toBeGreaterThanOrEqual(2);
    // nothing of these envs is left on the host while the agents run (their shared host root and cgroup parents stay until they stop)
    expect((await findLeaks()).filter((l) => /denv-k[0-9a-f]{15}/.test(l))).toEqual([]);
  });
});
