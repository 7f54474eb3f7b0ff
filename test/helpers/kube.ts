/**
 * Helpers for tests that talk to the real control plane started by
 * test/helpers/cluster-setup.ts (or the cluster in TEST_KUBECONFIG): a
 * KubeConfig, a kubectl wrapper with a timeout, and a Kubernetes namespace per
 * test so tests never see each other's objects.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CoreV1Api, KubeConfig } from '@kubernetes/client-node';
import { execa, type Result } from 'execa';

/** Repository root, found from this file so tests may run from any cwd. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
/** Set by cluster-setup.ts: kubeconfig of the cluster under test. */
const ENV_KUBECONFIG_PATH = 'TEST_KUBECONFIG_PATH';
/** Set by cluster-setup.ts: the kubectl binary to use. */
const ENV_KUBECTL = 'TEST_KUBECTL';

/** Label on every namespace these helpers create, to find leftovers. */
export const TEST_NAMESPACE_LABEL = 'disposable.dev/test';
const KUBECTL_TIMEOUT_MS = 30_000;

/** Path of the kubeconfig for the cluster under test; fails loudly outside the `cluster` project. */
export function kubeconfigPath(): string {
  const p = process.env[ENV_KUBECONFIG_PATH];
  if (!p) {
    throw new Error(
      `${ENV_KUBECONFIG_PATH} is not set: run this test in the jest 'cluster' project (its global setup starts a control plane) or set TEST_KUBECONFIG`,
    );
  }
  return p;
}

/** A KubeConfig for the cluster under test. */
export function kubeConfig(): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath());
  return kc;
}

export interface KubectlOptions {
  /** Written to kubectl's stdin (for `-f -`). */
  input?: string;
  /** Default 30 s. */
  timeoutMs?: number;
  /** When false, a non-zero exit resolves instead of throwing (to assert on rejections). Default true. */
  reject?: boolean;
}

export interface KubectlResult {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs kubectl against the cluster under test with an argv array and a timeout. */
export async function kubectl(args: readonly string[], opts: KubectlOptions = {}): Promise<KubectlResult> {
  const bin = process.env[ENV_KUBECTL] ?? 'kubectl';
  const result: Result = await execa(bin, ['--kubeconfig', kubeconfigPath(), ...args], {
    input: opts.input,
    timeout: opts.timeoutMs ?? KUBECTL_TIMEOUT_MS,
    reject: opts.reject ?? true,
    stripFinalNewline: true,
  });
  if (result.timedOut) throw new Error(`kubectl ${args.join(' ')}: timed out`);
  return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
}

/** Turns a test name into a DNS-label prefix for a namespace. */
function namespacePrefix(prefix: string): string {
  const cleaned = prefix
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 40);
  return cleaned || 'test';
}

/** Creates a namespace named `<prefix>-<random>` for one test and returns its name. */
export async function createTestNamespace(prefix: string): Promise<string> {
  const name = `${namespacePrefix(prefix)}-${randomBytes(4).toString('hex')}`;
  const core = kubeConfig().makeApiClient(CoreV1Api);
  await core.createNamespace({
    body: { metadata: { name, labels: { [TEST_NAMESPACE_LABEL]: 'true' } } },
  });
  return name;
}

/**
 * Deletes a test namespace. Without kube-controller-manager (the local control
 * plane) it stays Terminating with its objects; on a full cluster it goes away.
 */
export async function deleteTestNamespace(name: string): Promise<void> {
  const core = kubeConfig().makeApiClient(CoreV1Api);
  try {
    await core.deleteNamespace({ name });
  } catch (err) {
    if ((err as { code?: number }).code !== 404) throw err;
  }
}

/**
 * Gives the enclosing describe block its own namespace: created in beforeAll,
 * deleted in afterAll. Call the returned function inside tests for its name.
 */
export function withTestNamespace(prefix: string): () => string {
  let name: string | undefined;
  beforeAll(async () => {
    name = await createTestNamespace(prefix);
  });
  afterAll(async () => {
    if (name !== undefined) await deleteTestNamespace(name);
  });
  return () => {
    if (name === undefined) throw new Error('withTestNamespace: the namespace exists only inside tests (after beforeAll)');
    return name;
  };
}
