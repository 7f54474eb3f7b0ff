/**
 * The agent's writes to DisposableEnv objects: the status apply (its own field
 * manager, force, guarded by the object's uid so a re-created env of the same
 * name never receives an old env's status) and the finalizer release (a JSON
 * patch that tests the uid and the list entry first).
 */
import { API_VERSION, ENV_KIND, ENV_PLURAL, FINALIZER, GROUP, VERSION } from '../../src/api/constants.js';
import { isNotFound, type KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import type { NodeMetrics } from '../metrics.js';
import type { AgentStatus } from './env-status.js';
import { AGENT_FIELD_MANAGER } from './registration.js';

function envPath(namespace: string, name: string): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${namespace}/${ENV_PLURAL}/${name}`;
}

/** Server-side apply of the agent's status fields. */
export async function applyEnvStatus(client: KubeClient, env: EnvObject, status: AgentStatus, metrics?: NodeMetrics): Promise<EnvObject> {
  const { name, namespace = 'default', uid } = env.metadata;
  metrics?.apiWrites.inc({ kind: 'status' });
  return client.apply<EnvObject>(
    `${envPath(namespace, name)}/status`,
    { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace, ...(uid ? { uid } : {}) }, status },
    AGENT_FIELD_MANAGER,
  );
}

/**
 * Remove exactly the finalizer `disposable.dev/cleanup` of this env (same uid).
 * True when removed, false when it was not there or the env is already gone.
 */
export async function releaseFinalizer(client: KubeClient, env: EnvObject, metrics?: NodeMetrics): Promise<boolean> {
  const i = env.metadata.finalizers?.indexOf(FINALIZER) ?? -1;
  if (i < 0) return false;
  const { name, namespace = 'default', uid } = env.metadata;
  metrics?.apiWrites.inc({ kind: 'finalizer' });
  try {
    await client.jsonPatch(envPath(namespace, name), [
      ...(uid ? [{ op: 'test', path: '/metadata/uid', value: uid }] : []),
      { op: 'test', path: `/metadata/finalizers/${i}`, value: FINALIZER },
      { op: 'remove', path: `/metadata/finalizers/${i}` },
    ]);
    return true;
  } catch (err) {
    if (isNotFound(err)) return false;
    throw err;
  }
}
