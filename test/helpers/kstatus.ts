/**
 * Runs kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status, the rules Flux and
 * kpt use to decide whether a resource is healthy) on Kubernetes objects, so
 * tests can check that the status the controller writes reads as intended to
 * those tools. The Go program is hack/kstatus, built and cached by
 * hack/cluster.sh like the control-plane binaries; this helper never builds
 * it (a cold build takes about a minute) and fails loudly when it is missing.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const CLUSTER_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'hack', 'cluster.sh');
const TIMEOUT_MS = 30_000;

/** kstatus' verdict on one object, as printed by hack/kstatus. */
export interface KstatusResult {
  name: string;
  /** InProgress, Current, Failed, Terminating, NotFound or Unknown. */
  status: string;
  message: string;
}

let binary: Promise<string> | undefined;

/**
 * kstatus' verdict for each object, in order. Objects must be complete
 * (apiVersion, kind, metadata.name, and the status to judge).
 */
export async function kstatus(objects: object[]): Promise<KstatusResult[]> {
  binary ??= cachedKstatus();
  const bin = await binary;
  const run = await execa(bin, [], { input: JSON.stringify(objects), timeout: TIMEOUT_MS, reject: false });
  if (run.failed) {
    // shortMessage names the command and the exit code or timeout; stderr says what was wrong.
    throw new Error(`kstatus: ${run.shortMessage ?? bin}${run.stderr ? `\n${run.stderr}` : ''}`);
  }
  const stdout = run.stdout;
  const results = stdout
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => parseResult(line, bin));
  if (results.length !== objects.length) {
    throw new Error(`kstatus: ${bin} printed ${results.length} results for ${objects.length} objects:\n${stdout}`);
  }
  return results;
}

/**
 * Path of the cached binary, asked of hack/cluster.sh (`path` never builds),
 * so the version-and-recipe cache key and DENV_CACHE_DIR are read in one place.
 */
async function cachedKstatus(): Promise<string> {
  const { stdout } = await execa('bash', [CLUSTER_SCRIPT, 'path', 'kstatus'], { timeout: TIMEOUT_MS, stdin: 'ignore' });
  const bin = stdout.trim();
  if (!existsSync(bin)) {
    throw new Error(
      `kstatus: ${bin} is missing; build it with \`bash hack/cluster.sh build\` (or \`bash hack/cluster.sh build kstatus\`), which hack/setup.sh runs`,
    );
  }
  return bin;
}

function parseResult(line: string, bin: string): KstatusResult {
  const r = JSON.parse(line) as Partial<KstatusResult>;
  if (typeof r.name !== 'string' || typeof r.status !== 'string' || typeof r.message !== 'string') {
    throw new Error(`kstatus: unexpected line from ${bin}: ${line}`);
  }
  return { name: r.name, status: r.status, message: r.message };
}
