/**
 * The simulated nodes of the controller benchmark, in their own process so that
 * their watch handling and status writes do not delay the benchmark's own
 * observations. Prints `ready` on stdout once every node is registered; stops
 * (and removes its nodes) on SIGTERM.
 *
 *   tsx bench/controller-agents.ts KUBECONFIG LEASE_NS RUN_ID COUNT POOL MODE
 *   MODE: life (run 1 s, then Succeeded; on delete: tear down, remove the finalizer) | passive (keep envs bound)
 */
import { KubeConfig } from '@kubernetes/client-node';
import { FakeAgent } from '../test/cluster/fake-agent.js';

const [kubeconfig, leaseNamespace, id, count, pool, mode] = process.argv.slice(2);
if (!kubeconfig || !leaseNamespace || !id || !count || !pool || (mode !== 'life' && mode !== 'passive')) {
  console.error('usage: controller-agents.ts KUBECONFIG LEASE_NS RUN_ID COUNT POOL life|passive');
  process.exit(2);
}
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const agents: FakeAgent[] = [];
for (let i = 0; i < Number(count); i++) {
  agents.push(
    await FakeAgent.start(kc, {
      name: `bench-${id}-${pool}-${i}`,
      leaseNamespace,
      labels: { 'disposable.dev/bench-run': id },
      nodeLabels: { pool },
      memoryBytes: 256 * 1024 ** 3,
      runMs: 1000,
      renewEveryMs: 5000,
      passive: mode === 'passive',
    }),
  );
}
console.log('ready');
const stop = (): void => {
  void Promise.all(agents.map((a) => a.cleanup().catch(() => undefined))).then(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The parent's lifetime cap: never outlive a hung benchmark.
setTimeout(() => process.exit(1), 60 * 60_000).unref();
setInterval(() => undefined, 60_000);
