/**
 * Jest global teardown for the `cluster` project: stops the control plane the
 * setup started (by its pidfiles) and removes its state. A cluster given
 * through TEST_KUBECONFIG is left alone. DENV_KEEP_TEST_CLUSTER=1 keeps it
 * running for inspection and prints how to reach and stop it.
 */
import path from 'node:path';
import { CLUSTER_SCRIPT, ENV_CLUSTER_DIR, stopCluster } from './cluster-script.js';

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
  await stopCluster(dir);
  delete process.env[ENV_CLUSTER_DIR];
}
