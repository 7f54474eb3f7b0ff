/**
 * The processes of the end-to-end benchmark (bench/e2e.ts): its own control
 * plane (hack/cluster.sh on free loopback ports, in a state dir of its own, as
 * bench/controller.ts starts one), and the real `denv controller` and `denv agent`
 * processes, started the way the cluster tests start them
 * (test/cluster/controller-harness.ts `startDenv`: node + tsx on src/cli/bin.ts),
 * each by PID with a lifetime cap, stopped by PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { sumMetric } from '../test/helpers/prom-text.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** Repository root. */
export const REPO = path.resolve(here, '..');
/** No process of the bench outlives it by more than this. */
const LIFETIME_CAP_MS = 60 * 60_000;

/** The controller's writes to DisposableEnvs, by the labels of its disposable_env_api_requests_total. */
export const CONTROLLER_ENV_WRITES: readonly [string, string][] = [
  ['apply', 'disposableenvs/status'],
  ['apply', 'disposableenvs'],
  ['patch', 'disposableenvs'],
  ['patch', 'disposableenvs/status'],
  ['update', 'disposableenvs'],
  ['update', 'disposableenvs/status'],
  ['delete', 'disposableenvs'],
];

/** `n` free loopback ports (bound, read, released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<net.Server>((resolve, reject) => {
          const s = net.createServer();
          s.once('error', reject);
          s.listen(0, '127.0.0.1', () => resolve(s));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** A control plane started for the run. */
export interface ControlPlane {
  readonly kubeconfig: string;
  readonly dir: string;
  /** kube-apiserver's and etcd's PIDs (for CPU figures). */
  pids(): { apiserver?: number; etcd?: number };
  down(): Promise<void>;
}

function pidFile(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * etcd + kube-apiserver with the project's CRDs, in `dir`, on free ports (hack/cluster.sh up; `down` stops it by its
 * pidfiles and removes `dir`). etcd fsyncs as in production unless DENV_ETCD_UNSAFE_NO_FSYNC says otherwise, as in
 * bench/controller.ts.
 */
export async function startControlPlane(dir: string): Promise<ControlPlane> {
  const [etcdClient, etcdPeer, apiserver] = await freePorts(3);
  const env = {
    ...process.env,
    DENV_CLUSTER_DIR: dir,
    DENV_ETCD_CLIENT_PORT: String(etcdClient),
    DENV_ETCD_PEER_PORT: String(etcdPeer),
    DENV_APISERVER_PORT: String(apiserver),
    DENV_ETCD_UNSAFE_NO_FSYNC: process.env.DENV_ETCD_UNSAFE_NO_FSYNC ?? 'false',
  };
  const script = path.join(REPO, 'hack/cluster.sh');
  const down = async (): Promise<void> => {
    await execa('bash', [script, 'down'], { env, timeout: 120_000, stdin: 'ignore', stdout: 'ignore', stderr: 'inherit', reject: false });
  };
  try {
    await execa('bash', [script, 'up'], { env, timeout: 45 * 60_000, stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' });
  } catch (err) {
    await down();
    throw new Error('bench e2e: control plane did not start', { cause: err });
  }
  return {
    kubeconfig: path.join(dir, 'kubeconfig'),
    dir,
    pids: () => ({ apiserver: pidFile(path.join(dir, 'run/kube-apiserver.pid')), etcd: pidFile(path.join(dir, 'run/etcd.pid')) }),
    down,
  };
}

/** The cached kubectl that hack/cluster.sh built (never builds: `up` already did). */
export async function kubectlPath(): Promise<string> {
  const r = await execa('bash', [path.join(REPO, 'hack/cluster.sh'), 'path', 'kubectl'], { timeout: 30_000, stdin: 'ignore' });
  return String(r.stdout).trim();
}

/** A running `denv controller` or `denv agent`. */
export interface DenvProcess {
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
  /** The last lines it logged (JSON, stdout and stderr). */
  readonly logs: string[];
  /** Sum of a metric's samples whose labels include `labels`, from its /metrics. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  metricsText(): Promise<string>;
  /** SIGTERM, SIGKILL after 30 s; resolves once it has exited. */
  stop(): Promise<void>;
}

const KEEP_LOG_LINES = 5000;

/** Spawns `denv COMMAND --kubeconfig K --http-addr 127.0.0.1:<free> ARGS` and waits until its /readyz answers 200. */
export async function startDenv(command: 'controller' | 'agent', kubeconfig: string, args: string[]): Promise<DenvProcess> {
  const [port] = await freePorts(1);
  const argv = ['--import', 'tsx/esm', path.join(REPO, 'src/cli/bin.ts'), command, `--kubeconfig=${kubeconfig}`, `--http-addr=127.0.0.1:${port}`, ...args];
  const child = spawn(process.execPath, argv, { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  if (child.pid === undefined) throw new Error(`bench e2e: spawning denv ${command} failed`);
  const logs: string[] = [];
  const keep = (b: Buffer): void => {
    for (const l of b.toString('utf8').split('\n')) {
      if (!l.trim()) continue;
      logs.push(l);
      if (logs.length > KEEP_LOG_LINES) logs.shift();
    }
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const cap = setTimeout(() => child.kill('SIGKILL'), LIFETIME_CAP_MS);
  cap.unref();
  const exited = new Promise<void>((r) =>
    child.once('exit', () => {
      clearTimeout(cap);
      r();
    }),
  );
  // stdout and stderr may still hold output when 'exit' fires; 'close' comes once they are drained
  const closed = new Promise<void>((r) => child.once('close', () => r()));
  const base = `http://127.0.0.1:${port}`;
  const proc: DenvProcess = {
    pid: child.pid,
    port: port!,
    child,
    logs,
    async metricsText() {
      const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(10_000) });
      return res.text();
    },
    async metric(name, labels) {
      return sumMetric(await proc.metricsText(), name, labels);
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
    },
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      await Promise.race([closed, new Promise((r) => setTimeout(r, 2000))]);
      throw new Error(`bench e2e: denv ${command} exited (${child.exitCode ?? child.signalCode}) before it was ready:\n${logs.slice(-20).join('\n')}`);
    }
    const ok = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) }).then(
      (r) => r.status === 200,
      () => false,
    );
    if (ok) return proc;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`bench e2e: denv ${command} not ready in 120 s:\n${logs.slice(-20).join('\n')}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** CPU seconds (user + system) process `pid` has used so far; NaN when it cannot be read. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // utime and stime: fields 14 and 15 of /proc/PID/stat (11 and 12 after the command), in USER_HZ (100/s)
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}

/** The machine's busy CPU time so far, in ms (every process and the kernel: /proc/stat's cpu line less idle and iowait). */
export function hostBusyMs(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1000) / 100;
}
