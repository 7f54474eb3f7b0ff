/**
 * Jest global teardown for the `cluster` project: stops the control plane the
 * setup started (by its pidfiles) and removes its state. A cluster given
 * through TEST_KUBECONFIG is left alone. DENV_KEEP_TEST_CLUSTER=1 keeps it
 * running for inspection and prints how to reach and stop it.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

// Loaded by Node's own ESM resolver (see cluster-setup.ts): no sibling imports.
const CLUSTER_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'cluster.sh');
const ENV_CLUSTER_DIR = 'DENV_TEST_CLUSTER_DIR';
const STOP_TIMEOUT_MS = 60_000;

/** Stops the test control plane, unless asked to keep it. */
export default async function clusterTeardown(): Promise<void> {
  const dir = process.env[ENV_CLUSTER_DIR];
  if (!dir) return;
  if (process.env.DENV_KEEP_TEST_CLUSTER === '1') {
    process.stderr.write(
      `[cluster-teardown] DENV_KEEP_TEST_CLUSTER=1: left running.\n` +
        `  export KUBECONFIG=${path.join(dir, 'kubeconfig')}\n` +
        `  stop: DENV_CLUSTER_DIR=${dir} bash ${CLUSTER_SCRIPT} down\n`,
    );
    return;
  }
  await execa('bash', [CLUSTER_SCRIPT, 'down'], {
    env: { ...process.env, DENV_CLUSTER_DIR: dir },
    timeout: STOP_TIMEOUT_MS,
    stdin: 'ignore',
    stderr: ['inherit'],
  });
  delete process.env[ENV_CLUSTER_DIR];
}
