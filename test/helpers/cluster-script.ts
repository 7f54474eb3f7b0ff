/**
 * What the cluster global setup and teardown share: where hack/cluster.sh is,
 * the env vars that carry the test cluster to the workers, and how to stop one.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

/** Repository root, found from this file so tests may run from any cwd. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const CLUSTER_SCRIPT = path.join(REPO_ROOT, 'hack', 'cluster.sh');

/** Kubeconfig of the cluster under test; read by test/helpers/kube.ts. */
export const ENV_KUBECONFIG_PATH = 'TEST_KUBECONFIG_PATH';
/** kubectl binary to use (the cached build, or `kubectl` on PATH for TEST_KUBECONFIG). */
export const ENV_KUBECTL = 'TEST_KUBECTL';
/** State dir of the control plane the setup started; unset when TEST_KUBECONFIG is used. */
export const ENV_CLUSTER_DIR = 'DENV_TEST_CLUSTER_DIR';
/** Test control planes live in <tmpdir>/<prefix><jest pid>. */
export const TEST_CLUSTER_PREFIX = 'denv-test-cluster-';

const STOP_TIMEOUT_MS = 60_000;

/** Environment for hack/cluster.sh with the given state dir (the dev cluster's when undefined). */
export function clusterScriptEnv(stateDir: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DENV_CLUSTER_DIR;
  if (stateDir !== undefined) env.DENV_CLUSTER_DIR = stateDir;
  return env;
}

/** Stops the control plane whose state is in `stateDir` and removes that dir. */
export async function stopCluster(stateDir: string): Promise<void> {
  await execa('bash', [CLUSTER_SCRIPT, 'down'], {
    env: clusterScriptEnv(stateDir),
    timeout: STOP_TIMEOUT_MS,
    stdin: 'ignore',
    stdout: ['inherit'],
    stderr: ['inherit'],
  });
}
