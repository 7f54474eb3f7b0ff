/**
 * The controller benchmark's lower bound: the fastest any controller could bind
 * on this API server with the two writes a binding takes. It does no
 * validation, no scheduling, no bookkeeping, no Events and no retries: every env
 * it sees without a node gets the controller's own bound status (one
 * server-side apply of the status subresource) and then the node label and
 * finalizer (one apply of the object), nodes taken round-robin, at most 64 envs
 * in flight (the controller's own client limit). Runs in its own process, as the
 * controller does. Prints `ready` once its watch is synced; exits on SIGTERM.
 *
 *   tsx bench/controller-binder.ts KUBECONFIG NAMESPACE NODE_PREFIX NODE_COUNT
 */
import { KubeConfig } from '@kubernetes/client-node';
import winston from 'winston';
import { API_VERSION, ENV_KIND, FINALIZER, GROUP, NODE_LABEL, VERSION } from '../src/api/constants.js';
import { Informer } from '../src/controller/informer.js';
import { KubeClient } from '../src/controller/kube-client.js';
import { NOTHING_OWNED, type EnvObject } from '../src/controller/model.js';
import { desiredStatus } from '../src/controller/status.js';

const [kubeconfig, namespace, nodePrefix, nodeCount] = process.argv.slice(2);
if (!kubeconfig || !namespace || !nodePrefix || !(Number(nodeCount) > 0)) {
  console.error('usage: controller-binder.ts KUBECONFIG NAMESPACE NODE_PREFIX NODE_COUNT');
  process.exit(2);
}
const MANAGER = 'bench-ideal-binder';
const IN_FLIGHT = 64;
const kc = new KubeConfig();
kc.loadFromFile(kubeconfig);
const client = await KubeClient.fromKubeConfig(kc, { maxInFlight: IN_FLIGHT });
const envs = `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/disposableenvs`;
const informer = new Informer<EnvObject>(client, { name: 'bench-binder', path: envs, logger: winston.createLogger({ silent: true, transports: [new winston.transports.Console()] }) });

const waiting: EnvObject[] = [];
const seen = new Set<string>();
let next = 0;
let inFlight = 0;
let failures = 0;

async function bind(env: EnvObject): Promise<void> {
  const { name } = env.metadata;
  const node = `${nodePrefix}${next++ % Number(nodeCount)}`;
  const status = desiredStatus({ kind: 'bound', node }, env.status, NOTHING_OWNED, env.metadata.generation ?? 1, Date.now());
  await client.apply(`${envs}/${name}/status`, { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace, resourceVersion: env.metadata.resourceVersion }, status }, MANAGER);
  await client.apply(`${envs}/${name}`, { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace, labels: { [NODE_LABEL]: node }, finalizers: [FINALIZER] } }, MANAGER);
}

function pump(): void {
  while (inFlight < IN_FLIGHT && waiting.length > 0) {
    const env = waiting.shift()!;
    inFlight++;
    bind(env)
      .catch((err: unknown) => {
        failures++;
        process.stderr.write(`[bench:binder] ${env.metadata.name}: ${String(err)}\n`);
      })
      .finally(() => {
        inFlight--;
        pump();
      });
  }
}

const see = (e: EnvObject): void => {
  if (e.metadata.deletionTimestamp || e.metadata.labels?.[NODE_LABEL] || seen.has(e.metadata.name)) return;
  seen.add(e.metadata.name);
  waiting.push(e);
  pump();
};
informer.on({ add: see, update: see });
informer.start();
await informer.waitForSync();
console.log('ready');

const stop = (): void => {
  void informer.stop().then(() => {
    client.close();
    process.exit(failures > 0 ? 1 : 0);
  });
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// The parent's lifetime cap: never outlive a hung benchmark.
setTimeout(() => process.exit(1), 60 * 60_000).unref();
setInterval(() => undefined, 60_000);
