/**
 * Jest global setup for the `cluster` project: one real control plane (etcd +
 * kube-apiserver, built from their Go modules by hack/cluster.sh) per test run,
 * on free loopback ports and in its own state dir, so a developer's
 * `npm run cluster:up` keeps running undisturbed. With TEST_KUBECONFIG set, the
 * suite runs against that cluster (kind, a real one) and nothing is started.
 *
 * Tests find the cluster through TEST_KUBECONFIG_PATH and kubectl through
 * TEST_KUBECTL; both are set here in process.env, which the workers inherit.
 */
import { existsSync, readdirSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import {
  CLUSTER_SCRIPT,
  ENV_CLUSTER_DIR,
  ENV_KUBECONFIG_PATH,
  ENV_KUBECTL,
  TEST_CLUSTER_PREFIX,
  clusterScriptEnv,
  stopCluster,
} from './cluster-script.js';

/** Generous: the first run on a fresh machine builds etcd, kube-apiserver and kubectl (~10 min on 2 cores). */
const UP_TIMEOUT_MS = 45 * 60_000;
const PROBE_TIMEOUT_MS = 30_000;

/** Starts (or adopts via TEST_KUBECONFIG) the control plane the cluster tests use. */
export default async function clusterSetup(): Promise<void> {
  const external = process.env.TEST_KUBECONFIG;
  if (external) {
    await useExternalCluster(external);
    return;
  }
  await reapStaleTestClusters();
  const dir = path.join(os.tmpdir(), `${TEST_CLUSTER_PREFIX}${process.pid}`);
  const [etcdClient, etcdPeer, apiserver] = await freeLoopbackPorts(3);
  const env = {
    ...clusterScriptEnv(dir),
    DENV_ETCD_CLIENT_PORT: String(etcdClient),
    DENV_ETCD_PEER_PORT: String(etcdPeer),
    DENV_APISERVER_PORT: String(apiserver),
  };
  process.stderr.write(`\n[cluster-setup] starting a test control plane in ${dir}\n`);
  const started = Date.now();
  try {
    // Build output and progress go straight to the terminal: a cold build takes minutes.
    await execa('bash', [CLUSTER_SCRIPT, 'up'], {
      env,
      timeout: UP_TIMEOUT_MS,
      stdin: 'ignore',
      stdout: ['pipe'],
      stderr: ['inherit'],
    });
  } catch (cause) {
    throw new Error(`cluster-setup: hack/cluster.sh up failed (state and logs in ${dir})`, { cause });
  }
  process.env[ENV_CLUSTER_DIR] = dir;
  process.env[ENV_KUBECONFIG_PATH] = path.join(dir, 'kubeconfig');
  process.env[ENV_KUBECTL] = await cachedBinary('kubectl');
  process.stderr.write(`[cluster-setup] control plane ready in ${((Date.now() - started) / 1000).toFixed(1)}s\n`);
}

async function useExternalCluster(kubeconfig: string): Promise<void> {
  if (!existsSync(kubeconfig)) {
    throw new Error(`cluster-setup: TEST_KUBECONFIG=${kubeconfig} does not exist`);
  }
  process.env[ENV_KUBECONFIG_PATH] = path.resolve(kubeconfig);
  process.env[ENV_KUBECTL] ??= (await onPath('kubectl')) ? 'kubectl' : await cachedBinary('kubectl');
  try {
    await execa(process.env[ENV_KUBECTL], ['--kubeconfig', kubeconfig, 'get', '--raw', '/readyz'], {
      timeout: PROBE_TIMEOUT_MS,
    });
  } catch (cause) {
    throw new Error(`cluster-setup: the cluster in TEST_KUBECONFIG=${kubeconfig} is not ready`, { cause });
  }
  process.stderr.write(`\n[cluster-setup] using the existing cluster in TEST_KUBECONFIG=${kubeconfig}\n`);
}

/** Path of a binary in the version-keyed cache, building it if missing. */
async function cachedBinary(name: string): Promise<string> {
  const { stdout } = await execa('bash', [CLUSTER_SCRIPT, 'bin', name], {
    env: clusterScriptEnv(undefined),
    timeout: UP_TIMEOUT_MS,
    stdin: 'ignore',
    stderr: ['inherit'],
  });
  return stdout.trim();
}

async function onPath(program: string): Promise<boolean> {
  const { exitCode } = await execa('bash', ['-c', 'command -v "$1"', 'bash', program], { reject: false, timeout: 5_000 });
  return exitCode === 0;
}

/**
 * Asks the kernel for `count` distinct free ports on 127.0.0.1 by holding them
 * all open at once, then releasing them for etcd and kube-apiserver.
 */
async function freeLoopbackPorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  return ports;
}

/**
 * A test run killed before its teardown leaves its control plane running.
 * The state dir carries the jest process's pid; when that process is gone,
 * `cluster.sh down` stops the processes recorded in its pidfiles (and only
 * those: it checks each pid still runs our binary with that state dir).
 */
async function reapStaleTestClusters(): Promise<void> {
  const tmp = os.tmpdir();
  for (const entry of readdirSync(tmp)) {
    if (!entry.startsWith(TEST_CLUSTER_PREFIX)) continue;
    const owner = Number(entry.slice(TEST_CLUSTER_PREFIX.length));
    if (!Number.isInteger(owner) || owner === process.pid || processExists(owner)) continue;
    process.stderr.write(`[cluster-setup] removing stale test control plane ${path.join(tmp, entry)}\n`);
    await stopCluster(path.join(tmp, entry));
  }
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
