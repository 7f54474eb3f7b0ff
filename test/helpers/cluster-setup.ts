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
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

// Jest loads global setup/teardown with Node's own ESM resolver, not through
// moduleNameMapper, so this file imports no sibling .ts module; the names below
// are repeated in cluster-teardown.ts and kube.ts.
const CLUSTER_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'cluster.sh');
/** Kubeconfig of the cluster under test; read by test/helpers/kube.ts. */
const ENV_KUBECONFIG_PATH = 'TEST_KUBECONFIG_PATH';
/** kubectl to use: the cached build, or `kubectl` on PATH with TEST_KUBECONFIG. */
const ENV_KUBECTL = 'TEST_KUBECTL';
/** State dir of the control plane started here; teardown stops it. Unset with TEST_KUBECONFIG. */
const ENV_CLUSTER_DIR = 'DENV_TEST_CLUSTER_DIR';
/** Test control planes live in <tmpdir>/<prefix><jest pid>. */
const TEST_CLUSTER_PREFIX = 'denv-test-cluster-';

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

/** Environment for hack/cluster.sh with the given state dir (the dev cluster's when undefined). */
function clusterScriptEnv(stateDir: string | undefined): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.DENV_CLUSTER_DIR;
  if (stateDir !== undefined) env.DENV_CLUSTER_DIR = stateDir;
  return env;
}

async function stopCluster(stateDir: string): Promise<void> {
  await execa('bash', [CLUSTER_SCRIPT, 'down'], { env: clusterScriptEnv(stateDir), timeout: 60_000, stdin: 'ignore', stderr: ['inherit'] });
}

function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
