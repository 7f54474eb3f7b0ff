/**
 * Controller benchmark, one run against a real kube-apiserver (its own, started
 * with hack/cluster.sh on free loopback ports, or the one in DENV_BENCH_KUBECONFIG):
 *
 * - baseline: the raw API server create → watch-event round trip for bursts of
 *   100 and 1,000 DisposableEnvs, with no controller running;
 * - time to bound (create sent → watch shows label + phase Scheduled) for the same
 *   bursts across 10 simulated nodes whose agents run each env to the end, and the
 *   ratio against the ideal binder below;
 * - a lower bound for it, before the controller starts: the ideal binder (bench/controller-binder.ts),
 *   which only makes the two bind writes per env as soon as it sees the env, on the same nodes;
 * - the controller's share of it: watch ADDED → watch bound, both seen by the same watch;
 * - API writes per env by the controller over the whole lifecycle (bind, TTL
 *   delete; the agents release the finalizer themselves, as docs/controller.md
 *   asks), counted by the controller's own client;
 * - controller RSS with 10,000 envs in its cache, and a full resync (cold start:
 *   list + reconcile all 10,000) draining, with the writes it made (should be 0).
 *
 * `npm run bench -- controller` (bench/index.ts) or standalone `tsx bench/controller.ts`.
 * Options through the environment: DENV_BENCH_KUBECONFIG, DENV_BENCH_CACHE_ENVS (10000),
 * DENV_BENCH_WORKERS (the controller's --workers; default: its default).
 */
import { CONTROLLER_ENV_WRITES, cpuSeconds, freePorts } from './e2e-procs.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { KubeConfig } from '@kubernetes/client-node';
import { execa } from 'execa';
import winston from 'winston';
import { API_VERSION, ENV_KIND, GROUP, NODE_LABEL, VERSION } from '../src/api/constants.js';
import { Informer } from '../src/controller/informer.js';
import { KubeClient, isConflict } from '../src/controller/kube-client.js';
import type { EnvObject } from '../src/controller/model.js';
import { sumMetric } from '../test/helpers/prom-text.js';
import { percentile, renderTable, row, type BenchRow, type BenchTable } from './table.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const REPO = path.resolve(here, '..');
const quiet = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });
const RUN_LABEL = 'disposable.dev/bench-run';

export interface BenchControllerOptions {
  /** Use this cluster instead of starting one. */
  readonly kubeconfig?: string;
  /** Envs kept in the cache for the RSS and resync figures. Default 10,000. */
  readonly cacheEnvs?: number;
  /** Simulated nodes running envs. Default 10. */
  readonly nodes?: number;
  /** Progress lines on stderr. Default true. */
  readonly verbose?: boolean;
}

function log(verbose: boolean, msg: string): void {
  if (verbose) process.stderr.write(`[bench:controller] ${msg}\n`);
}


interface Cluster {
  readonly kubeconfig: string;
  /** State dir of a control plane started here (pki, pids); undefined for a given kubeconfig. */
  readonly dir?: string;
  readonly apiserverUrl?: string;
  down(): Promise<void>;
}

/** A control plane for the run: the given kubeconfig, or one started here (and stopped by `down`). */
async function cluster(opts: BenchControllerOptions, verbose: boolean, profiling: boolean): Promise<Cluster> {
  const given = opts.kubeconfig ?? process.env.DENV_BENCH_KUBECONFIG;
  if (given) return { kubeconfig: given, down: (): Promise<void> => Promise.resolve() };
  const dir = path.join(os.tmpdir(), `denv-bench-cluster-${process.pid}`);
  const [etcdClient, etcdPeer, apiserver] = await freePorts(3);
  const env = {
    ...process.env,
    DENV_CLUSTER_DIR: dir,
    DENV_ETCD_CLIENT_PORT: String(etcdClient),
    DENV_ETCD_PEER_PORT: String(etcdPeer),
    DENV_APISERVER_PORT: String(apiserver),
    DENV_APISERVER_PROFILING: String(profiling),
    // etcd fsyncs as in production unless asked otherwise: dev and test clusters skip it (docs/dev-cluster.md),
    // the benchmark's headline does not.
    DENV_ETCD_UNSAFE_NO_FSYNC: process.env.DENV_ETCD_UNSAFE_NO_FSYNC ?? 'false',
  };
  log(verbose, `starting a control plane in ${dir}${profiling ? ' (kube-apiserver profiling on)' : ''}`);
  await execa('bash', [path.join(REPO, 'hack/cluster.sh'), 'up'], { env, timeout: 45 * 60_000, stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' });
  return {
    kubeconfig: path.join(dir, 'kubeconfig'),
    dir,
    apiserverUrl: `https://127.0.0.1:${apiserver}`,
    down: async () => {
      await execa('bash', [path.join(REPO, 'hack/cluster.sh'), 'down'], { env, timeout: 60_000, stdin: 'ignore', stdout: 'ignore', stderr: 'inherit' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}


function pidFile(file: string): number | undefined {
  try {
    return Number(readFileSync(file, 'utf8').trim()) || undefined;
  } catch {
    return undefined;
  }
}

/** CPU used by the control plane, the controller and the bench's own processes between `start()` and `stop()`. */
class CpuMeter {
  private before: Record<string, number> = {};
  constructor(private readonly pids: () => Record<string, number | undefined>) {}
  start(): void {
    this.before = Object.fromEntries(Object.entries(this.pids()).map(([k, pid]) => [k, cpuSeconds(pid)]));
  }
  stop(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [k, pid] of Object.entries(this.pids())) out[k] = Math.round((cpuSeconds(pid) - (this.before[k] ?? NaN)) * 100) / 100;
    return out;
  }
}

/**
 * A CPU profile of kube-apiserver (pprof, `seconds` long) written to `file`; only for a control plane
 * started here with DENV_BENCH_PROFILE_DIR set (cluster.sh then turns --profiling on).
 */
async function apiserverProfile(cl: Cluster, seconds: number, file: string): Promise<void> {
  if (!cl.dir || !cl.apiserverUrl) return;
  const pki = path.join(cl.dir, 'pki');
  await execa(
    'curl',
    ['--silent', '--show-error', '--fail', '--max-time', String(seconds + 30), '--cacert', path.join(pki, 'ca.crt'), '--cert', path.join(pki, 'admin.crt'), '--key', path.join(pki, 'admin.key'), '--output', file, `${cl.apiserverUrl}/debug/pprof/profile?seconds=${seconds}`],
    { timeout: (seconds + 40) * 1000, stdin: 'ignore' },
  );
}

interface ControllerProc {
  metricsText(): Promise<string>;
  readonly child: ChildProcess;
  readonly port: number;
  readonly logs: string[];
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  rssBytes(): number;
  stop(): Promise<void>;
}


/**
 * The controller as production runs it: compiled JavaScript (`npm run build` → dist/), not
 * through tsx, whose loader would add its own memory to the RSS figure. Falls back to tsx
 * (and says so) when the build does not produce the entry point.
 */
async function controllerEntry(verbose: boolean): Promise<{ argv: string[]; built: boolean }> {
  const bin = path.join(REPO, 'dist/src/cli/bin.js');
  log(verbose, 'building dist/ (npm run build) to run the controller as compiled JavaScript');
  await execa(process.execPath, [path.join(REPO, 'node_modules/typescript/bin/tsc'), '-p', path.join(REPO, 'tsconfig.build.json')], {
    cwd: REPO,
    timeout: 10 * 60_000,
    reject: false,
    stdin: 'ignore',
  });
  try {
    readFileSync(bin);
    return { argv: [bin], built: true };
  } catch {
    log(verbose, 'build produced no dist/src/cli/bin.js; running through tsx instead');
    return { argv: ['--import', 'tsx/esm', path.join(REPO, 'src/cli/bin.ts')], built: false };
  }
}

async function startController(entry: string[], kubeconfig: string, args: string[]): Promise<ControllerProc> {
  const [port] = await freePorts(1);
  const child = spawn(process.execPath, [...entry, 'controller', `--kubeconfig=${kubeconfig}`, `--http-addr=127.0.0.1:${port}`, ...args], {
    cwd: REPO,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: string[] = [];
  const keep = (b: Buffer): void => {
    for (const l of b.toString('utf8').split('\n')) if (l.trim() && logs.length < 5000) logs.push(l);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const cap = setTimeout(() => child.kill('SIGKILL'), 30 * 60_000);
  cap.unref();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  const proc: ControllerProc = {
    child,
    port: port!,
    logs,
    async metricsText() {
      const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
      return res.text();
    },
    async metric(name, labels) {
      return sumMetric(await proc.metricsText(), name, labels);
    },
    rssBytes() {
      const status = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      const kb = /VmRSS:\s+([0-9]+) kB/.exec(status)?.[1];
      return Number(kb ?? 0) * 1024;
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 30_000);
      await exited;
      clearTimeout(t);
      clearTimeout(cap);
    },
  };
  const deadline = Date.now() + 120_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`controller exited:\n${logs.slice(-20).join('\n')}`);
    const ok = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) }).then((r) => r.status === 200, () => false);
    if (ok) return proc;
    if (Date.now() > deadline) throw new Error('controller not ready in 120 s');
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts one of the bench's helper scripts (bench/controller-*.ts) in a child process through tsx; resolves once it
 * prints `ready`. It is SIGKILLed after an hour whatever happens.
 */
async function startScript(script: string, args: string[], what: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx/esm', path.join(here, script), ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  const cap = setTimeout(() => child.kill('SIGKILL'), 60 * 60_000);
  cap.unref();
  child.once('exit', () => clearTimeout(cap));
  await new Promise<void>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`bench: ${what} not ready in 120 s`)), 120_000);
    child.stdout?.on('data', (b: Buffer) => {
      if (b.toString().includes('ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => reject(new Error(`bench: ${what} exited with ${code}`)));
  });
  return child;
}

/** Starts `count` simulated nodes in a child process (bench/controller-agents.ts); resolves once they are registered. */
function startAgents(kubeconfig: string, leaseNs: string, id: string, count: number, pool: string, mode: 'life' | 'passive'): Promise<ChildProcess> {
  return startScript('controller-agents.ts', [kubeconfig, leaseNs, id, String(count), pool, mode], `${pool} agents`);
}

async function waitUntil(what: string, fn: () => boolean | Promise<boolean>, timeoutMs: number, everyMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`bench: timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** Runs `n` tasks with at most `limit` in flight. */
async function pool(n: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, n) }, async () => {
      for (let i = next++; i < n; i = next++) await task(i);
    }),
  );
}

const envsPath = (ns: string): string => `/apis/${GROUP}/${VERSION}/namespaces/${ns}/disposableenvs`;

function envBody(name: string, spec: Record<string, unknown>): Record<string, unknown> {
  return { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name }, spec: { workload: { command: ['/bin/true'] }, ...spec } };
}

async function ensureNamespace(client: KubeClient, name: string): Promise<void> {
  try {
    await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

/** Creates `n` envs in a burst, recording when each create was sent. */
async function burst(client: KubeClient, ns: string, prefix: string, n: number, spec: Record<string, unknown>, sent: Map<string, number>): Promise<number> {
  const t0 = performance.now();
  await pool(n, 64, async (i) => {
    const name = `${prefix}-${i}`;
    sent.set(name, performance.now());
    await client.create(envsPath(ns), envBody(name, spec));
  });
  return performance.now() - t0;
}

/** Watches one namespace and records, per env, when it was first seen and first seen bound. */
class Observer {
  readonly added = new Map<string, number>();
  readonly bound = new Map<string, number>();
  readonly nodes = new Map<string, string>();
  readonly informer: Informer<EnvObject>;
  constructor(client: KubeClient, ns: string) {
    this.informer = new Informer<EnvObject>(client, { name: `bench-${ns}`, path: envsPath(ns), logger: quiet });
    const see = (e: EnvObject): void => {
      const now = performance.now();
      const name = e.metadata.name;
      if (!this.added.has(name)) this.added.set(name, now);
      const node = e.metadata.labels?.[NODE_LABEL];
      if (node && e.status?.nodeName === node && !this.bound.has(name)) {
        this.bound.set(name, now);
        this.nodes.set(name, node);
      }
    };
    this.informer.on({ add: see, update: see });
  }
  async start(): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync();
  }
  latencies(sent: Map<string, number>, of: Map<string, number>): number[] {
    return [...sent].filter(([n]) => of.has(n)).map(([n, t]) => of.get(n)! - t);
  }
}

/**
 * A fresh watch can lag its first events by seconds (the API server's watch cache
 * catching up to the list's resourceVersion): create one env and wait until the
 * observer (and, with `bound`, the controller) has handled it, before measuring.
 */
async function warmUp(client: KubeClient, ns: string, obs: Observer, spec: Record<string, unknown>, bound: boolean): Promise<void> {
  const name = `warmup-${randomBytes(2).toString('hex')}`;
  await client.create(envsPath(ns), envBody(name, spec));
  await waitUntil(`warm-up ${ns}`, () => (bound ? obs.bound.has(name) : obs.added.has(name)), 60_000);
  if (bound) await waitUntil(`warm-up ${ns} gone`, () => obs.informer.get(`${ns}/${name}`) === undefined, 60_000);
}

/** Phase counts of what is left in an observer's cache (for error messages). */
function leftovers(obs: Observer): string {
  const counts = new Map<string, number>();
  for (const e of obs.informer.list()) {
    const k = `${e.status?.phase ?? '-'}/${e.status?.reason ?? '-'}${e.metadata.deletionTimestamp ? '/deleting' : ''}`;
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return JSON.stringify(Object.fromEntries(counts));
}


async function envWrites(ctl: ControllerProc): Promise<number> {
  let n = 0;
  for (const [verb, resource] of CONTROLLER_ENV_WRITES) n += await ctl.metric('disposable_env_api_requests_total', { verb, resource });
  return n;
}

const NAMESPACES = ['base', 'ideal', 'b100', 'b1000', 'cache', 'sys'];

/** Starts the ideal binder (bench/controller-binder.ts) on one namespace; resolves once its watch is synced. */
function startBinder(kubeconfig: string, ns: string, nodePrefix: string, nodeCount: number): Promise<ChildProcess> {
  return startScript('controller-binder.ts', [kubeconfig, ns, nodePrefix, String(nodeCount)], 'ideal binder');
}

/** SIGTERM, then SIGKILL after 30 s; resolves when the child has exited. */
function stopChild(p: ChildProcess): Promise<void> {
  return new Promise<void>((resolve) => {
    if (p.exitCode !== null || p.signalCode !== null) return resolve();
    const t = setTimeout(() => p.kill('SIGKILL'), 30_000);
    p.once('exit', () => {
      clearTimeout(t);
      resolve();
    });
    p.kill('SIGTERM');
  });
}

/** The controller benchmark; returns one table (also written to bench/results/controller.json when run standalone). */
export async function benchController(opts: BenchControllerOptions = {}): Promise<BenchTable> {
  const verbose = opts.verbose ?? true;
  const cacheEnvs = opts.cacheEnvs ?? Number(process.env.DENV_BENCH_CACHE_ENVS ?? 10_000);
  const nodeCount = opts.nodes ?? 10;
  const id = randomBytes(3).toString('hex');
  const entry = await controllerEntry(verbose);
  const profileDir = process.env.DENV_BENCH_PROFILE_DIR;
  if (profileDir) mkdirSync(profileDir, { recursive: true });
  const cl = await cluster(opts, verbose, profileDir !== undefined);
  const kc = new KubeConfig();
  kc.loadFromFile(cl.kubeconfig);
  const client = await KubeClient.fromKubeConfig(kc, { maxInFlight: 64 });
  const agentProcs: ChildProcess[] = [];
  let binder: ChildProcess | undefined;
  const observers: Observer[] = [];
  let ctl: ControllerProc | undefined;
  const rows: BenchRow[] = [];
  const cpu = new CpuMeter(() => ({
    apiserver: cl.dir ? pidFile(path.join(cl.dir, 'run/kube-apiserver.pid')) : undefined,
    etcd: cl.dir ? pidFile(path.join(cl.dir, 'run/etcd.pid')) : undefined,
    controller: ctl?.child.pid,
    agents: agentProcs[0]?.pid,
    bench: process.pid,
  }));
  const profile = (name: string, seconds: number): Promise<void> =>
    profileDir ? apiserverProfile(cl, seconds, path.join(profileDir, `${name}.pprof`)).catch((err: unknown) => log(verbose, `profile ${name} failed: ${String(err)}`)) : Promise.resolve();
  const meta: Record<string, unknown> = {
    cpus: os.cpus().length,
    node: process.version,
    nodes: nodeCount,
    cacheEnvs,
    controllerBuilt: entry.built,
    loadAverageAtStart: os.loadavg(),
    etcdUnsafeNoFsync: cl.dir ? (process.env.DENV_ETCD_UNSAFE_NO_FSYNC ?? 'false') : 'unknown (given cluster)',
    controlPlaneGOGC: process.env.GOGC ?? 'default',
  };
  const ns = (s: string): string => `bench-${s}-${id}`;
  let writesPerSecondBase = NaN;
  try {
    for (const s of NAMESPACES) await ensureNamespace(client, ns(s));

    // Baseline: create → ADDED watch event, no controller running.
    const base: Record<number, number[]> = {};
    const baseObs = new Observer(client, ns('base'));
    observers.push(baseObs);
    await baseObs.start();
    await warmUp(client, ns('base'), baseObs, {}, false);
    for (const n of [100, 1000]) {
      const sent = new Map<string, number>();
      await burst(client, ns('base'), `b${n}`, n, {}, sent);
      await waitUntil(`baseline ${n} watched`, () => [...sent.keys()].every((k) => baseObs.added.has(k)), 120_000);
      base[n] = baseObs.latencies(sent, baseObs.added);
      log(verbose, `baseline create→watch, burst ${n}: p50 ${percentile(base[n], 50).toFixed(1)} ms, p99 ${percentile(base[n], 99).toFixed(1)} ms`);
    }
    // Baseline throughput: how many DisposableEnv status writes per second this API server takes
    // (server-side apply, 64 in flight — what binding costs), on the envs just created.
    const names = [...baseObs.added.keys()].filter((k) => k.startsWith('b1000-')).slice(0, 600);
    const tw = performance.now();
    await pool(names.length, 64, async (i) => {
      await client.apply(
        `${envsPath(ns('base'))}/${names[i]}/status`,
        { apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name: names[i], namespace: ns('base') }, status: { phase: 'Pending', observedGeneration: 1 } },
        'bench-baseline',
      );
    });
    const writesPerSecond = names.length / ((performance.now() - tw) / 1000);
    log(verbose, `baseline: ${writesPerSecond.toFixed(0)} DisposableEnv status applies per second`);
    meta.apiServerStatusAppliesPerSecond = Math.round(writesPerSecond);
    writesPerSecondBase = writesPerSecond;
    await client.request('DELETE', envsPath(ns('base')), { verb: 'deletecollection' });

    // Nodes: `life` ones run envs to the end (Running after create, Succeeded 1 s later; on delete they tear down and
    // remove the finalizer);
    // `cache` ones keep envs bound (they only hold the 10,000 envs of the cache figures). They run in their own
    // processes, so their work does not delay this process's observations.
    agentProcs.push(await startAgents(cl.kubeconfig, ns('sys'), id, nodeCount, 'life', 'life'));
    agentProcs.push(await startAgents(cl.kubeconfig, ns('sys'), id, nodeCount, 'cache', 'passive'));

    // Bursts with a full lifecycle: bound, run, finish, TTL 0 → deleted, torn down, finalizer released by the agent.
    const lifeSpec = { nodeSelector: { pool: 'life' }, resources: { memory: { max: '256Mi' } }, lifecycle: { ttlSecondsAfterFinished: 0 } };
    // Lower bound, same nodes and agents, no controller yet: the ideal binder (bench/controller-binder.ts) makes
    // the two bind writes for each env as soon as its watch shows it, and nothing else.
    const ideal: Record<number, number[]> = {};
    binder = await startBinder(cl.kubeconfig, ns('ideal'), `bench-${id}-life-`, nodeCount);
    {
      const obs = new Observer(client, ns('ideal'));
      observers.push(obs);
      await obs.start();
      // Warm-up (see warmUp): one env bound through both watches; deleted with the first burst.
      const warm = `warmup-${randomBytes(2).toString('hex')}`;
      await client.create(envsPath(ns('ideal')), envBody(warm, lifeSpec));
      await waitUntil('warm-up of the ideal binder', () => obs.bound.has(warm), 60_000);
      for (const n of [100, 1000]) {
        const sent = new Map<string, number>();
        await burst(client, ns('ideal'), `i${n}`, n, lifeSpec, sent);
        await waitUntil(`ideal burst ${n} bound`, () => [...sent.keys()].every((k) => obs.bound.has(k)), 300_000);
        ideal[n] = obs.latencies(sent, obs.bound);
        log(verbose, `ideal binder, burst ${n}: bound p50 ${percentile(ideal[n], 50).toFixed(1)} ms, p99 ${percentile(ideal[n], 99).toFixed(1)} ms`);
        // Nothing deletes finished envs without the controller: delete them (the agents release the finalizers).
        await waitUntil(`ideal burst ${n} finished`, () => [...obs.informer.list()].every((e) => e.status?.phase === 'Succeeded'), 300_000, 200);
        await client.request('DELETE', envsPath(ns('ideal')), { verb: 'deletecollection' });
        await waitUntil(`ideal burst ${n} deleted`, () => obs.informer.size === 0, 300_000, 200);
      }
      await obs.informer.stop();
    }
    await stopChild(binder);
    binder = undefined;

    const ctlArgs = [`--node-lease-namespace=${ns('sys')}`, `--leader-election-namespace=${ns('sys')}`, `--disposable-node-selector=${RUN_LABEL}=${id}`, '--log-level=warn'];
    if (process.env.DENV_BENCH_WORKERS) ctlArgs.push(`--workers=${process.env.DENV_BENCH_WORKERS}`);
    meta.controllerArgs = ctlArgs;
    ctl = await startController(entry.argv, cl.kubeconfig, ctlArgs);

    for (const n of [100, 1000]) {
      const obs = new Observer(client, ns(`b${n}`));
      observers.push(obs);
      await obs.start();
      await warmUp(client, ns(`b${n}`), obs, lifeSpec, true);
      const writes0 = await envWrites(ctl);
      const events0 = await ctl.metric('disposable_env_events_total', { result: 'created' });
      const sent = new Map<string, number>();
      cpu.start();
      const profiled = profile(`burst${n}`, n === 100 ? 5 : 20);
      const createMs = await burst(client, ns(`b${n}`), `e`, n, lifeSpec, sent);
      await waitUntil(`burst ${n} bound`, () => obs.bound.size >= n, 300_000);
      const lat = obs.latencies(sent, obs.bound);
      await waitUntil(`burst ${n} deleted`, () => obs.informer.size === 0, 300_000, 200).catch((err: unknown) => {
        throw new Error(`${(err as Error).message}; left: ${leftovers(obs)}; controller log tail:\n${ctl!.logs.slice(-10).join('\n')}`);
      });
      const cpuUsed = cpu.stop();
      await profiled;
      const writes = (await envWrites(ctl)) - writes0;
      // Events are sent in the background and held back while the controller is busy: by the end of a burst some
      // are still queued. Shown by result, so "not yet written" is told apart from dropped or failed.
      const eventResults: Record<string, number> = {};
      for (const result of ['created', 'series', 'dropped', 'failed']) eventResults[result] = await ctl.metric('disposable_env_events_total', { result });
      const events = eventResults.created! - events0;
      const perNode = new Map<string, number>();
      for (const node of obs.nodes.values()) perNode.set(node, (perNode.get(node) ?? 0) + 1);
      const b = base[n]!;
      const p50 = percentile(lat, 50);
      const p99 = percentile(lat, 99);
      const lo = ideal[n]!;
      rows.push(row({ name: `API floor: create → watch p99, burst of ${n} (no controller)`, value: percentile(b, 99), unit: 'ms' }));
      rows.push(row({ name: `ideal binder: time to bound p50, burst of ${n} (2 writes, nothing else)`, value: percentile(lo, 50), unit: 'ms', baseline: { name: 'create→watch p50', value: percentile(b, 50) } }));
      rows.push(row({ name: `ideal binder: time to bound p99, burst of ${n} (2 writes, nothing else)`, value: percentile(lo, 99), unit: 'ms', baseline: { name: 'create→watch p99', value: percentile(b, 99) } }));
      rows.push(row({ name: `time to bound p50, burst of ${n}`, value: p50, unit: 'ms', baseline: { name: 'ideal binder p50', value: percentile(lo, 50) } }));
      rows.push(
        row({
          name: `time to bound p99, burst of ${n}`,
          value: p99,
          unit: 'ms',
          baseline: { name: 'ideal binder p99', value: percentile(lo, 99) },
          target: n === 100 ? '≤ 100 ms' : '≤ 1000 ms',
          pass: p99 <= (n === 100 ? 100 : 1000),
        }),
      );
      // The controller's own share, both ends seen through the same watch: first seen (ADDED) → first seen bound.
      // The API server's create latency and watch delivery of the create are not in it; its write latency is.
      const own = [...sent.keys()].filter((k) => obs.added.has(k) && obs.bound.has(k)).map((k) => obs.bound.get(k)! - obs.added.get(k)!);
      rows.push(row({ name: `watch ADDED → watch bound p50, burst of ${n} (controller's share)`, value: percentile(own, 50), unit: 'ms' }));
      rows.push(row({ name: `watch ADDED → watch bound p99, burst of ${n} (controller's share)`, value: percentile(own, 99), unit: 'ms' }));
      rows.push(row({ name: `controller API writes per env, whole lifecycle (burst of ${n})`, value: writes / n, unit: 'writes', target: '≤ 3', pass: writes / n <= 3 }));
      rows.push(row({ name: `Events written per env by the end of the burst (burst of ${n}; the rest still queued)`, value: events / n, unit: 'events' }));
      if (n === 1000) {
        rows.push(row({ name: `envs per node, max/min over ${nodeCount} nodes (spread)`, value: Math.max(...perNode.values()) / Math.min(...perNode.values()), unit: '×', target: '≤ 1.1', pass: Math.max(...perNode.values()) / Math.min(...perNode.values()) <= 1.1 }));
      }
      const requests = (await ctl.metricsText())
        .split('\n')
        .filter((l) => l.startsWith('disposable_env_api_requests_total{') && l.includes('resource="disposableenvs'))
        .map((l) => l.replace('disposable_env_api_requests_total', ''));
      meta[`burst${n}`] = { createMs: Math.round(createMs), boundP50: p50, boundP99: p99, idealP50: percentile(lo, 50), idealP99: percentile(lo, 99), apiFloorP99: percentile(b, 99), ownP50: percentile(own, 50), ownP99: percentile(own, 99), writes, events, cpuSeconds: cpuUsed, perNode: Object.fromEntries(perNode), controllerEnvRequestsSoFar: requests, eventsSoFarByResult: eventResults };
      log(verbose, `burst ${n}: bound p50 ${p50.toFixed(1)} ms p99 ${p99.toFixed(1)} ms (create took ${createMs.toFixed(0)} ms); ${writes} controller writes, ${events} events; CPU s ${JSON.stringify(cpuUsed)}`);
      await obs.informer.stop();
    }

    // 10,000 envs in the cache (bound to the passive nodes).
    const cacheObs = new Observer(client, ns('cache'));
    observers.push(cacheObs);
    await cacheObs.start();
    await warmUp(client, ns('cache'), cacheObs, { nodeSelector: { pool: 'cache' }, stop: false, lifecycle: { ttlSecondsAfterFinished: 0 } }, false);
    const sent = new Map<string, number>();
    cpu.start();
    const cacheProfiled = profile('cache', 30);
    const createMs = await burst(client, ns('cache'), 'c', cacheEnvs, { nodeSelector: { pool: 'cache' }, resources: { memory: { max: '64Mi' } } }, sent);
    await waitUntil(`${cacheEnvs} envs bound`, () => cacheObs.bound.size >= cacheEnvs, 900_000, 250);
    const cacheCpu = cpu.stop();
    await cacheProfiled;
    const cacheLat = cacheObs.latencies(sent, cacheObs.bound);
    const lastBound = Math.max(...cacheObs.bound.values());
    const firstSent = Math.min(...sent.values());
    const boundPerSecond = cacheEnvs / ((lastBound - firstSent) / 1000);
    // Each env costs the API server 3 writes here (create, status, label+finalizer): the ceiling is throughput / 3.
    rows.push(
      row({
        name: `envs bound per second, ${cacheEnvs} created in a burst (create + 2 bind writes each)`,
        value: boundPerSecond,
        unit: 'envs/s',
        baseline: { name: 'API server DisposableEnv writes/s ÷ 3', value: writesPerSecondBase / 3 },
      }),
    );
    meta.cache = { createMs: Math.round(createMs), createPerSecond: Math.round(cacheEnvs / (createMs / 1000)), boundP99: percentile(cacheLat, 99), boundPerSecond, cpuSeconds: cacheCpu };
    log(verbose, `${cacheEnvs} envs created in ${(createMs / 1000).toFixed(1)} s and bound (p99 ${percentile(cacheLat, 99).toFixed(0)} ms); CPU s ${JSON.stringify(cacheCpu)}`);
    await new Promise((r) => setTimeout(r, 3000));
    const rssWarm = ctl.rssBytes();

    // Full resync: a fresh controller lists and reconciles all of them (cold start, the worst case).
    await ctl.stop();
    const total = cacheEnvs; // the burst namespaces are empty again
    const t0 = performance.now();
    ctl = await startController(entry.argv, cl.kubeconfig, ctlArgs);
    const readyMs = performance.now() - t0;
    await waitUntil(
      'resync drained',
      async () => (await ctl!.metric('disposable_env_reconciles_total')) >= total && (await ctl!.metric('disposable_env_workqueue_depth')) === 0,
      300_000,
      100,
    );
    const drainMs = performance.now() - t0;
    const resyncWrites = await envWrites(ctl);
    await new Promise((r) => setTimeout(r, 2000));
    const rss = ctl.rssBytes();
    rows.push(row({ name: `full resync of ${cacheEnvs} envs (cold start: list + reconcile all)`, value: drainMs / 1000, unit: 's', target: '< 60 s', pass: drainMs < 60_000 }));
    rows.push(row({ name: `API writes during that resync`, value: resyncWrites, unit: 'writes', target: '0', pass: resyncWrites === 0 }));
    rows.push(row({ name: `controller RSS with ${cacheEnvs} envs in the cache`, value: rss / 1024 ** 2, unit: 'MiB', target: '≤ 250 MB', pass: rss <= 250e6 }));
    meta.resync = { readyMs: Math.round(readyMs), drainMs: Math.round(drainMs), rssAfterResyncMiB: rss / 1024 ** 2, rssAfterBurstMiB: rssWarm / 1024 ** 2 };
    log(verbose, `resync: ready ${readyMs.toFixed(0)} ms, drained ${drainMs.toFixed(0)} ms, ${resyncWrites} writes; RSS ${(rss / 1024 ** 2).toFixed(0)} MiB (${(rssWarm / 1024 ** 2).toFixed(0)} MiB in the first controller)`);
    meta.loadAverageAtEnd = os.loadavg();
  } finally {
    await ctl?.stop();
    for (const o of observers) await o.informer.stop();
    if (binder) await stopChild(binder);
    await Promise.all(agentProcs.map(stopChild));
    if (!(opts.kubeconfig ?? process.env.DENV_BENCH_KUBECONFIG)) {
      await cl.down();
    } else {
      for (const s of NAMESPACES) await client.delete(`/api/v1/namespaces/${ns(s)}`).catch(() => undefined);
    }
    client.close();
  }
  return { title: 'Controller: scheduling latency, writes, memory, resync', rows, meta };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  benchController().then(
    (table) => {
      console.log(renderTable(table));
      mkdirSync(path.join(here, 'results'), { recursive: true });
      writeFileSync(path.join(here, 'results', 'controller.json'), JSON.stringify({ part: 'controller', tables: [table] }, null, 2));
      process.exitCode = table.rows.some((r) => r.pass === false) ? 1 : 0;
    },
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}
