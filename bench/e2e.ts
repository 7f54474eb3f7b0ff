/**
 * `npm run bench -- e2e`: apply → Running through the whole system, against a
 * floor measured in the same run.
 *
 * One run starts its own control plane (hack/cluster.sh, bench/e2e-procs.ts), the
 * real controller and ONE real agent on this host (one node, so the floor's
 * runtime concurrency is the agent's), and measures per env the time from the
 * create request to the moment the bench's own watch shows `status.phase=Running`:
 *  - 1 env at a time (API create, and `kubectl apply -f`, whose own start-up is in it);
 *  - 50 created at once (API creates, all in flight together; and one
 *    `kubectl apply -f` of 50 manifests, which kubectl sends one after another).
 * The floor, taken in the same run and interleaved with the measured samples
 * (the sides of a round run in an order that rotates every round, each after the
 * same pause, as bench/node.ts does), is per percentile the sum of
 *  (1) the API server's own create → watch ADDED latency for the same
 *      DisposableEnv objects at the same concurrency, created in a namespace the
 *      controller does not watch (same CRD, schema defaulting, CEL rules, etcd
 *      write and watch fan-out; no controller or agent acts on them), and
 *  (2) the same envs created straight through the node runtime (`Runtime.create`
 *      in this process, a state dir and cgroup root of the bench) at the same
 *      concurrency, call → Running.
 * It also counts the agent's and the controller's API writes per env over the
 * measured envs' whole lifecycle (each runs `/bin/sleep 2`, shorter than the
 * agent's usage interval, and is deleted once it has Succeeded), splits each
 * measured env's time into its stages (the bench's watch, and the agent's journal:
 * when its runtime began the create and when the workload started), and checks
 * that nothing is left on the host afterwards.
 *
 * Options through the environment: BENCH_E2E_SAMPLES (1-env samples, 15), BENCH_E2E_ROUNDS
 * (rounds of 50 at once, 4), BENCH_E2E_BURST (50), BENCH_E2E_SETTLE_MS (pause before every side, 250);
 * BENCH_E2E_AGENT_ARGS and BENCH_E2E_CONTROLLER_ARGS (extra flags, space-separated, e.g. `--events=false`,
 * for what-if runs; the table's meta records them).
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import winston from 'winston';
import { stringify } from 'yaml';
import { envIdForUid } from '../node-agent/agent/tracked.js';
import { hierarchies } from '../node-agent/gc/pass.js';
import { Journal, outstanding, type EnvRecord } from '../node-agent/journal.js';
import { RUNC_ROOT, STATE_REGISTRY_DIR } from '../node-agent/names.js';
import { Runtime } from '../node-agent/runtime.js';
import { helperStatus } from '../node-agent/spawner.js';
import { API_VERSION, ENV_KIND, GROUP, NODE_LABEL, VERSION } from '../src/api/constants.js';
import { parseSpec } from '../src/api/validate.js';
import { Informer } from '../src/controller/informer.js';
import { KubeClient, isConflict } from '../src/controller/kube-client.js';
import type { EnvObject } from '../src/controller/model.js';
import { parseMountinfo } from '../src/core/procfs.js';
import { CONTROLLER_ENV_WRITES, cpuSeconds, hostBusyMs, kubectlPath, startControlPlane, startDenv, type ControlPlane, type DenvProcess } from './e2e-procs.js';
import { percentile, row, type BenchRow, type BenchTable } from './table.js';

const SAMPLES = Number(process.env.BENCH_E2E_SAMPLES ?? 15);
const ROUNDS = Number(process.env.BENCH_E2E_ROUNDS ?? 4);
const BURST = Number(process.env.BENCH_E2E_BURST ?? 50);
const SETTLE_MS = Number(process.env.BENCH_E2E_SETTLE_MS ?? 250);
const WAIT_MS = 180_000;
const EXTRA_AGENT_ARGS = (process.env.BENCH_E2E_AGENT_ARGS ?? '').split(' ').filter(Boolean);
const EXTRA_CONTROLLER_ARGS = (process.env.BENCH_E2E_CONTROLLER_ARGS ?? '').split(' ').filter(Boolean);
const RUN_LABEL = 'disposable.dev/bench-run';
/** Every env of the bench, measured or floor: a short sleep with memory and pids limits, lifecycle defaults. */
const SPEC = { workload: { command: ['/bin/sleep', '2'] }, resources: { memory: { max: '64Mi' }, pids: { max: 64 } } };

const quiet = winston.createLogger({ silent: true, transports: [new winston.transports.Console()] });
/** A high-resolution wall clock in ms (comparable with the agent journal's RFC 3339 times, to their 1 ms). */
const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const log = (msg: string): void => void process.stderr.write(`[bench:e2e] ${msg}\n`);
const envsPath = (ns: string, name?: string): string => `/apis/${GROUP}/${VERSION}/namespaces/${ns}/disposableenvs${name ? `/${name}` : ''}`;
const envBody = (ns: string, name: string): Record<string, unknown> => ({ apiVersion: API_VERSION, kind: ENV_KIND, metadata: { name, namespace: ns }, spec: SPEC });

async function waitUntil(what: string, fn: () => boolean, timeoutMs = WAIT_MS, everyMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!fn()) {
    if (Date.now() > deadline) throw new Error(`bench e2e: timed out waiting for ${what}`);
    await sleep(everyMs);
  }
}

/** What the bench's watch saw of one env, in {@link now} ms. */
interface Seen {
  sent?: number;
  added?: number;
  /** Label and status.nodeName both set. */
  bound?: number;
  running?: number;
  /** The watch showed the end (Succeeded/Failed) before any Running: `running` is that first sight. */
  runningSkipped?: boolean;
  ended?: number;
  gone?: number;
  uid?: string;
  phase?: string;
  message?: string;
}

/** One namespace's envs as the bench's own watch sees them; handlers only record times. */
class EnvWatch {
  readonly seen = new Map<string, Seen>();
  readonly informer: Informer<EnvObject>;
  constructor(client: KubeClient, ns: string) {
    this.informer = new Informer<EnvObject>(client, { name: `bench-${ns}`, path: envsPath(ns), logger: quiet });
    const see = (e: EnvObject): void => {
      const t = now();
      const s = this.of(e.metadata.name);
      s.added ??= t;
      s.uid ??= e.metadata.uid;
      const node = e.metadata.labels?.[NODE_LABEL];
      if (node && e.status?.nodeName === node) s.bound ??= t;
      const phase = e.status?.phase;
      if (phase === 'Running') s.running ??= t;
      if (phase === 'Succeeded' || phase === 'Failed') {
        if (s.running === undefined) {
          s.running = t;
          s.runningSkipped = true;
        }
        s.ended ??= t;
        s.phase = phase;
        s.message = `${e.status?.reason ?? ''} ${e.status?.message ?? ''}`.trim();
      }
    };
    this.informer.on({ add: see, update: see, delete: (e) => void (this.of(e.metadata.name).gone ??= now()) });
  }
  of(name: string): Seen {
    let s = this.seen.get(name);
    if (!s) this.seen.set(name, (s = {}));
    return s;
  }
  async start(): Promise<void> {
    this.informer.start();
    await this.informer.waitForSync();
  }
}

/** One measured env's time split into stages, in ms. */
interface Stages {
  /** create sent → bound seen: the create, the controller's watch and its two bind writes, the bench's watch. */
  bind: number;
  /** bound seen → the agent's runtime began the create (journal createdAt): the agent's watch and queue. */
  pickup: number;
  /** the agent's runtime: create begun → workload started (journal startTime). */
  runtime: number;
  /** workload started → Running seen: the agent's status write and the bench's watch. */
  report: number;
}

const STAGES: { key: keyof Stages; what: string; floor: 'api' | 'rt' | undefined }[] = [
  { key: 'bind', what: 'create sent → bound seen (create, controller watch, its 2 bind writes, bench watch)', floor: 'api' },
  { key: 'pickup', what: "bound seen → agent's runtime begins the create (agent watch and queue)", floor: undefined },
  { key: 'runtime', what: "agent's runtime create → workload started (journal)", floor: 'rt' },
  { key: 'report', what: 'workload started → Running seen (agent status write, bench watch)', floor: 'api' },
];

/** CPU readings at one moment: the machine's busy time and each process's, in ms. */
interface CpuSnap {
  readonly at: number;
  readonly hostMs: number;
  readonly procs: Record<string, number>;
}

/** What one kind of interval (a side, or a side's create → Running window) cost, summed over its samples. */
interface CpuSum {
  samples: number;
  envs: number;
  wallMs: number;
  hostMs: number;
  procs: Record<string, number>;
}

/** CPU used per side of the bench: the machine's (every process and the kernel) and each named process's. */
class CpuBook {
  readonly sums = new Map<string, CpuSum>();
  constructor(private readonly pids: () => Record<string, number | undefined>) {}
  snap(): CpuSnap {
    return { at: now(), hostMs: hostBusyMs(), procs: Object.fromEntries(Object.entries(this.pids()).map(([k, p]) => [k, cpuSeconds(p) * 1000])) };
  }
  /** Adds what was used since `from` to `what`, for `envs` envs. */
  add(what: string, envs: number, from: CpuSnap): void {
    const to = this.snap();
    const e = this.sums.get(what) ?? { samples: 0, envs: 0, wallMs: 0, hostMs: 0, procs: {} };
    e.samples++;
    e.envs += envs;
    e.wallMs += to.at - from.at;
    e.hostMs += to.hostMs - from.hostMs;
    for (const [k, v] of Object.entries(to.procs)) e.procs[k] = (e.procs[k] ?? 0) + v - (from.procs[k] ?? NaN);
    this.sums.set(what, e);
  }
  async measure<T>(what: string, envs: number, fn: () => Promise<T>): Promise<T> {
    const from = this.snap();
    const out = await fn();
    this.add(what, envs, from);
    return out;
  }
  perEnv(what: string): number {
    const e = this.sums.get(what);
    return e ? e.hostMs / e.envs : NaN;
  }
  /** The share of the machine's CPUs that was busy during `what`. */
  busy(what: string): number {
    const e = this.sums.get(what);
    return e ? e.hostMs / (e.wallMs * os.cpus().length) : NaN;
  }
}

interface Ctx {
  readonly id: string;
  readonly work: string;
  readonly client: KubeClient;
  readonly kubectl: string;
  readonly kubeconfig: string;
  readonly measured: EnvWatch;
  readonly floor: EnvWatch;
  readonly nsMeasured: string;
  readonly nsFloor: string;
  readonly agentJournal: Journal;
  readonly rt: Runtime;
  readonly spec: ReturnType<typeof parseSpec>;
  readonly cpu: CpuBook;
  /** Every env id this run made on the host (agent and floor), for the leak check. */
  readonly ids: Set<string>;
  n: number;
}

/** The agent's create and start times of a measured env, from its journal (read before the env is deleted). */
interface AgentTimes {
  createBegun: number;
  started: number;
  timings: Record<string, number>;
}

async function agentTimes(c: Ctx, uid: string | undefined): Promise<AgentTimes | undefined> {
  if (!uid) return undefined;
  const id = envIdForUid(uid);
  c.ids.add(id);
  const r = await c.agentJournal.read(id).catch(() => undefined);
  if (!r?.startTime) return undefined;
  return { createBegun: Date.parse(r.createdAt), started: Date.parse(r.startTime), timings: r.timings ?? {} };
}

/** The measured side's result for a set of envs. */
interface Measured {
  latencies: number[];
  /** Per env whose stages could be read: its latency and its stages. */
  stages: (Stages & { total: number })[];
  agentSteps: Record<string, number>[];
  skipped: number;
  /** Envs that had already ended when the last one was seen Running (their teardown ran among the creates). */
  endedBeforeLastRunning: number;
  /** kubectl start → exit, when created with kubectl. */
  kubectlMs?: number;
}

/**
 * Creates `names` in the measured namespace all at once (API creates in flight together, or one `kubectl apply -f`
 * of all of them), waits until each has been seen Running and then ended, reads each one's stages, deletes them and
 * waits until they are gone (the agent has torn down and released the finalizer).
 */
async function measuredEnvs(c: Ctx, names: string[], via: 'api' | 'kubectl', side: string): Promise<Measured> {
  const w = c.measured;
  let kubectlMs: number | undefined;
  const from = c.cpu.snap();
  if (via === 'api') {
    await Promise.all(
      names.map(async (n) => {
        w.of(n).sent = now();
        await c.client.create(envsPath(c.nsMeasured), envBody(c.nsMeasured, n));
      }),
    );
  } else {
    const file = path.join(c.work, `apply-${names[0]}.yaml`);
    writeFileSync(file, names.map((n) => stringify(envBody(c.nsMeasured, n))).join('---\n'));
    const t = now();
    for (const n of names) w.of(n).sent = t;
    await execa(c.kubectl, ['--kubeconfig', c.kubeconfig, '--cache-dir', path.join(c.work, 'kubectl-cache'), 'apply', '-f', file], { timeout: 60_000, stdin: 'ignore' });
    kubectlMs = now() - t;
    rmSync(file, { force: true });
  }
  await waitUntil(`${names.length} envs running`, () => names.every((n) => w.of(n).running !== undefined));
  c.cpu.add(`${side}: create → last Running`, names.length, from);
  await waitUntil(`${names.length} envs ended`, () => names.every((n) => w.of(n).ended !== undefined));
  const failed = names.filter((n) => w.of(n).phase !== 'Succeeded');
  if (failed.length) throw new Error(`bench e2e: ${failed.length} env(s) did not succeed, e.g. ${failed[0]}: ${w.of(failed[0]!).phase} ${w.of(failed[0]!).message}`);
  const out: Measured = { latencies: [], stages: [], agentSteps: [], skipped: 0, endedBeforeLastRunning: 0, ...(kubectlMs !== undefined ? { kubectlMs } : {}) };
  const lastRunning = Math.max(...names.map((n) => w.of(n).running!));
  for (const n of names) {
    const s = w.of(n);
    out.latencies.push(s.running! - s.sent!);
    if (s.runningSkipped) out.skipped++;
    if (s.ended! < lastRunning) out.endedBeforeLastRunning++;
    const a = await agentTimes(c, s.uid);
    if (a && s.bound !== undefined && !s.runningSkipped) {
      out.stages.push({ total: s.running! - s.sent!, bind: s.bound - s.sent!, pickup: a.createBegun - s.bound, runtime: a.started - a.createBegun, report: s.running! - a.started });
      out.agentSteps.push(a.timings);
    }
  }
  if (names.length === 1) await c.client.delete(envsPath(c.nsMeasured, names[0]));
  else await c.client.request('DELETE', envsPath(c.nsMeasured), { verb: 'deletecollection' });
  await waitUntil(`${names.length} envs gone`, () => names.every((n) => w.of(n).gone !== undefined));
  return out;
}

/** Floor (1): create → watch ADDED for `names`, all in flight together, in the namespace no controller watches. */
async function floorApi(c: Ctx, names: string[], side: string): Promise<number[]> {
  const w = c.floor;
  const from = c.cpu.snap();
  await Promise.all(
    names.map(async (n) => {
      w.of(n).sent = now();
      await c.client.create(envsPath(c.nsFloor), envBody(c.nsFloor, n));
    }),
  );
  await waitUntil(`${names.length} floor envs seen`, () => names.every((n) => w.of(n).added !== undefined));
  c.cpu.add(`${side}: create → last seen`, names.length, from);
  const out = names.map((n) => w.of(n).added! - w.of(n).sent!);
  if (names.length === 1) await c.client.delete(envsPath(c.nsFloor, names[0]));
  else await c.client.request('DELETE', envsPath(c.nsFloor), { verb: 'deletecollection' });
  await waitUntil(`${names.length} floor envs gone`, () => names.every((n) => w.of(n).gone !== undefined));
  return out;
}

/** Floor (2): `count` envs created straight through the node runtime at once, call → Running each; then torn down. */
async function floorRuntime(c: Ctx, count: number, side: string): Promise<{ latencies: number[]; steps: Record<string, number>[] }> {
  const made: EnvRecord[] = [];
  const latencies: number[] = [];
  const steps: Record<string, number>[] = [];
  const from = c.cpu.snap();
  try {
    await Promise.all(
      Array.from({ length: count }, async () => {
        const id = `b${c.id}x${c.n++}`;
        c.ids.add(id);
        const t = now();
        const r = await c.rt.create({ id, name: id, spec: c.spec });
        latencies.push(now() - t);
        steps.push(r.timings ?? {});
        made.push(r);
      }),
    );
    c.cpu.add(`${side}: create → last Running`, count, from);
  } finally {
    await endFloorEnvs(c, made);
  }
  return { latencies, steps };
}

async function endFloorEnvs(c: Ctx, made: EnvRecord[]): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let i = next++; i < made.length; i = next++) {
        const r = made[i]!;
        await c.rt.killAll(r).catch(() => undefined);
        await c.rt.finish(r.id, { reason: 'Stopped', message: 'bench' });
        await c.rt.journal.forget(r.id);
      }
    }),
  );
}

async function ensureNamespace(client: KubeClient, name: string): Promise<void> {
  try {
    await client.create('/api/v1/namespaces', { apiVersion: 'v1', kind: 'Namespace', metadata: { name } });
  } catch (err) {
    if (!isConflict(err)) throw err;
  }
}

/** Sum of the controller's DisposableEnv writes so far. */
async function controllerWrites(ctl: DenvProcess): Promise<number> {
  const text = await ctl.metricsText();
  let n = 0;
  for (const [verb, resource] of CONTROLLER_ENV_WRITES) {
    for (const line of text.split('\n')) {
      if (!line.startsWith('disposable_env_api_requests_total{') || !line.includes(`verb="${verb}"`) || !line.includes(`resource="${resource}"`)) continue;
      n += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
  }
  return n;
}

const pct = (v: readonly number[], p: number): number => percentile(v, p);
const fmt = (n: number): string => (Number.isFinite(n) ? n.toFixed(1) : String(n));

function stepPercentiles(steps: Record<string, number>[], p: number): Record<string, number> {
  const keys = [...new Set(steps.flatMap((s) => Object.keys(s)))];
  return Object.fromEntries(keys.map((k) => [k, pct(steps.map((s) => s[k]).filter((x): x is number => x !== undefined), p)]));
}

/** Everything of this run still on the host: cgroups, netns, mounts, runc containers, processes, state dirs. */
async function leftovers(c: Pick<Ctx, 'id' | 'work' | 'ids'>, cgroupRoots: string[]): Promise<string[]> {
  const out: string[] = [];
  for (const top of readdirSync('/sys/fs/cgroup', { withFileTypes: true }).filter((e) => e.isDirectory())) {
    const h = path.join('/sys/fs/cgroup', top.name);
    for (const e of readdirSync(h, { withFileTypes: true })) if (e.isDirectory() && cgroupRoots.includes(e.name)) out.push(`cgroup ${path.join(h, e.name)}`);
  }
  for (const root of cgroupRoots) if (existsSync(path.join('/sys/fs/cgroup', root))) out.push(`cgroup /sys/fs/cgroup/${root}`);
  const hosts = new Set([...c.ids].map((id) => `denv-${id}`));
  const ns = await execa('ip', ['netns', 'list'], { reject: false, timeout: 10_000 });
  for (const l of String(ns.stdout).split('\n')) if (hosts.has(l.split(' ')[0] ?? '')) out.push(`netns ${l}`);
  for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))) {
    if (m.mountPoint.startsWith(c.work) || hosts.has(path.basename(m.mountPoint))) out.push(`mount ${m.mountPoint}`);
  }
  const rl = await execa('runc', ['--root', RUNC_ROOT, 'list', '-q'], { reject: false, timeout: 10_000 });
  for (const id of String(rl.stdout).split('\n')) if (hosts.has(id)) out.push(`runc container ${id}`);
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let cmd = '';
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    } catch {
      continue;
    }
    if (cmd.includes(c.work) || [...hosts].some((h) => cmd.includes(h))) out.push(`process ${pid}: ${cmd.replace(/\0/g, ' ').slice(0, 120)}`);
  }
  if (existsSync(c.work)) out.push(`dir ${c.work}`);
  return out;
}

function tryRmdir(dir: string): void {
  try {
    rmdirSync(dir);
  } catch (err) {
    log(`rmdir ${dir}: ${(err as Error).message}`);
  }
}

/** Tear down what any env left in the bench's state dirs, remove them and their cgroup roots. */
async function cleanHost(work: string, dirs: { stateDir: string; cgroupRoot: string }[], rt: Runtime | undefined): Promise<void> {
  await rt?.close().catch(() => undefined);
  for (const d of dirs) {
    if (!existsSync(d.stateDir)) continue;
    const r = await Runtime.open({ stateDir: d.stateDir, cgroupRoot: d.cgroupRoot, emptyTimeoutMs: 3000 });
    for (const rec of (await r.journal.list()).records) if (outstanding(rec).length) await r.teardown(rec.id).catch((err: unknown) => log(`teardown ${rec.id}: ${String(err)}`));
    await r.close().catch(() => undefined);
    // the root and its class dirs, if close() left them (children first; a busy one is reported by the leak check)
    for (const h of hierarchies(r)) {
      const root = path.join(h, d.cgroupRoot);
      if (!existsSync(root)) continue;
      for (const e of readdirSync(root, { withFileTypes: true }).filter((x) => x.isDirectory())) tryRmdir(path.join(root, e.name));
      tryRmdir(root);
    }
  }
  for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((x) => x.mountPoint.startsWith(work))) {
    await execa('umount', ['-R', '-l', m.mountPoint], { reject: false, timeout: 10_000 });
  }
  // the host-wide registry of state dirs: drop the bench's own entries
  for (const f of existsSync(STATE_REGISTRY_DIR) ? readdirSync(STATE_REGISTRY_DIR) : []) {
    const file = path.join(STATE_REGISTRY_DIR, f);
    if (readFileSync(file, 'utf8').trim().startsWith(`${work}/`)) unlinkSync(file);
  }
  rmSync(work, { recursive: true, force: true });
}

/** The end-to-end benchmark; returns one table (see the module comment). */
export async function benchE2e(): Promise<BenchTable> {
  const id = randomBytes(3).toString('hex');
  const started = Date.now();
  const work = mkdtempSync(path.join(os.tmpdir(), 'denv-bench-'));
  chmodSync(work, 0o711); // an env's mapped root must reach its rootfs below the state dirs
  const agentDir = { stateDir: path.join(work, 'agent'), cgroupRoot: `disposable-bench-${id}` };
  const floorDir = { stateDir: path.join(work, 'floor'), cgroupRoot: `disposable-bench-${id}-floor` };
  for (const d of [agentDir, floorDir]) {
    mkdirSync(d.stateDir);
    chmodSync(d.stateDir, 0o711);
  }
  const ids = new Set<string>();
  const meta: Record<string, unknown> = { host: os.hostname(), cpus: os.cpus().length, node: process.version, samples: SAMPLES, rounds: ROUNDS, burst: BURST, settleMs: SETTLE_MS, spec: SPEC, extraAgentArgs: EXTRA_AGENT_ARGS, extraControllerArgs: EXTRA_CONTROLLER_ARGS, loadAverageAtStart: os.loadavg() };
  const rows: BenchRow[] = [];
  let cp: ControlPlane | undefined;
  let client: KubeClient | undefined;
  let agent: DenvProcess | undefined;
  let ctl: DenvProcess | undefined;
  let rt: Runtime | undefined;
  const watches: EnvWatch[] = [];
  let failure: Error | undefined;
  try {
    log(`starting a control plane in ${work}/cluster`);
    cp = await startControlPlane(path.join(work, 'cluster'));
    meta.etcdUnsafeNoFsync = process.env.DENV_ETCD_UNSAFE_NO_FSYNC ?? 'false';
    const kc = new KubeConfig();
    kc.loadFromFile(cp.kubeconfig);
    client = await KubeClient.fromKubeConfig(kc, { maxInFlight: 64 });
    const nsMeasured = `bench-e2e-${id}`;
    const nsFloor = `bench-e2e-floor-${id}`;
    const nsSys = `bench-e2e-sys-${id}`;
    for (const ns of [nsMeasured, nsFloor, nsSys]) await ensureNamespace(client, ns);
    const node = `bench-e2e-${id}`;
    log('starting the agent and the controller (node + tsx, as the cluster tests start them)');
    [agent, ctl] = await Promise.all([
      startDenv('agent', cp.kubeconfig, [`--node=${node}`, `--state-dir=${agentDir.stateDir}`, `--cgroup-root=${agentDir.cgroupRoot}`, `--node-lease-namespace=${nsSys}`, `--node-labels=${RUN_LABEL}=${id}`, '--log-level=info', ...EXTRA_AGENT_ARGS]),
      startDenv('controller', cp.kubeconfig, [`--watch-namespace=${nsMeasured}`, `--node-lease-namespace=${nsSys}`, `--leader-election-namespace=${nsSys}`, `--disposable-node-selector=${RUN_LABEL}=${id}`, '--log-level=info', ...EXTRA_CONTROLLER_ARGS]),
    ]);
    rt = await Runtime.open({ stateDir: floorDir.stateDir, cgroupRoot: floorDir.cgroupRoot });
    const measured = new EnvWatch(client, nsMeasured);
    const floor = new EnvWatch(client, nsFloor);
    watches.push(measured, floor);
    await Promise.all([measured.start(), floor.start()]);
    const cpu = new CpuBook(() => ({ ...cp!.pids(), controller: ctl?.pid, agent: agent?.pid, bench: process.pid }));
    const c: Ctx = { id, work, client, kubectl: await kubectlPath(), kubeconfig: cp.kubeconfig, measured, floor, nsMeasured, nsFloor, agentJournal: new Journal(agentDir.stateDir), rt, spec: parseSpec(SPEC), cpu, ids, n: 0 };

    // Warm-up: the node registered and schedulable, each path once (kubectl's discovery cache filled), a small burst.
    log('warm-up');
    for (const [i, via] of (['api', 'api', 'kubectl'] as const).entries()) await measuredEnvs(c, [`warm-${i}`], via, 'warm-up');
    await measuredEnvs(
      c,
      Array.from({ length: 10 }, (_, i) => `warm-burst-${i}`),
      'api',
      'warm-up',
    );
    await floorApi(c, ['warm-0'], 'warm-up');
    await floorRuntime(c, 1, 'warm-up');
    const writes0 = { agent: await agent.metric('disposable_env_agent_env_writes_total'), controller: await controllerWrites(ctl) };
    const agentWritesByKind0 = (await agent.metricsText()).split('\n').filter((l) => l.startsWith('disposable_env_agent_env_writes_total'));

    // 1 env at a time: the four sides in an order that rotates every sample, each after the same pause.
    const one = { api: [] as number[], kubectl: [] as number[], kubectlRun: [] as number[], floorApi: [] as number[], floorRt: [] as number[], stages: [] as Measured['stages'], skipped: 0 };
    log(`1 env at a time, ${SAMPLES} samples of each side`);
    for (let i = 0; i < SAMPLES; i++) {
      const sides: (() => Promise<void>)[] = [
        async () => {
          const m = await cpu.measure('1:api', 1, () => measuredEnvs(c, [`one-${i}`], 'api', '1:api'));
          one.api.push(...m.latencies);
          one.stages.push(...m.stages);
          one.skipped += m.skipped;
        },
        async () => {
          const m = await cpu.measure('1:kubectl', 1, () => measuredEnvs(c, [`onek-${i}`], 'kubectl', '1:kubectl'));
          one.kubectl.push(...m.latencies);
          one.kubectlRun.push(m.kubectlMs!);
          one.skipped += m.skipped;
        },
        async () => void one.floorApi.push(...(await cpu.measure('1:floorApi', 1, () => floorApi(c, [`one-${i}`], '1:floorApi')))),
        async () => void one.floorRt.push(...(await cpu.measure('1:floorRt', 1, () => floorRuntime(c, 1, '1:floorRt'))).latencies),
      ];
      for (let k = 0; k < sides.length; k++) {
        await sleep(SETTLE_MS);
        await sides[(i + k) % sides.length]!();
      }
    }
    log(`1 env: API create→Running p50 ${fmt(pct(one.api, 50))} ms; floor ${fmt(pct(one.floorApi, 50))} + ${fmt(pct(one.floorRt, 50))} ms`);

    // BURST at once, ROUNDS rounds, the sides rotating every round.
    const many = { api: [] as number[], kubectl: [] as number[], kubectlRun: [] as number[], floorApi: [] as number[], floorRt: [] as number[], stages: [] as Measured['stages'], agentSteps: [] as Record<string, number>[], floorSteps: [] as Record<string, number>[], skipped: 0, endedBeforeLastRunning: [] as number[] };
    log(`${BURST} at once, ${ROUNDS} rounds`);
    for (let r = 0; r < ROUNDS; r++) {
      const names = (p: string): string[] => Array.from({ length: BURST }, (_, j) => `${p}${r}-${j}`);
      const sides: (() => Promise<void>)[] = [
        async () => {
          const m = await cpu.measure('n:api', BURST, () => measuredEnvs(c, names('many-'), 'api', 'n:api'));
          many.api.push(...m.latencies);
          many.stages.push(...m.stages);
          many.agentSteps.push(...m.agentSteps);
          many.skipped += m.skipped;
          many.endedBeforeLastRunning.push(m.endedBeforeLastRunning);
        },
        async () => {
          const m = await cpu.measure('n:kubectl', BURST, () => measuredEnvs(c, names('manyk-'), 'kubectl', 'n:kubectl'));
          many.kubectl.push(...m.latencies);
          many.kubectlRun.push(m.kubectlMs!);
          many.skipped += m.skipped;
        },
        async () => void many.floorApi.push(...(await cpu.measure('n:floorApi', BURST, () => floorApi(c, names('many-'), 'n:floorApi')))),
        async () => {
          const f = await cpu.measure('n:floorRt', BURST, () => floorRuntime(c, BURST, 'n:floorRt'));
          many.floorRt.push(...f.latencies);
          many.floorSteps.push(...f.steps);
        },
      ];
      for (let k = 0; k < sides.length; k++) {
        await sleep(SETTLE_MS);
        await sides[(r + k) % sides.length]!();
      }
      log(`round ${r + 1}/${ROUNDS}: API create→Running p99 so far ${fmt(pct(many.api, 99))} ms; floor ${fmt(pct(many.floorApi, 99))} + ${fmt(pct(many.floorRt, 99))} ms`);
    }

    // Writes over the measured envs' whole lifecycle (every one of them is gone: finalizers released).
    const envCount = 2 * SAMPLES + 2 * ROUNDS * BURST;
    const agentWrites = (await agent.metric('disposable_env_agent_env_writes_total')) - writes0.agent;
    const ctlWrites = (await controllerWrites(ctl)) - writes0.controller;
    meta.agentEnvWritesBefore = agentWritesByKind0;
    meta.agentEnvWritesAfter = (await agent.metricsText()).split('\n').filter((l) => l.startsWith('disposable_env_agent_env_writes_total'));
    meta.controllerEnvRequests = (await ctl.metricsText()).split('\n').filter((l) => l.startsWith('disposable_env_api_requests_total{') && l.includes('resource="disposableenvs'));

    // Rows.
    const floorOf = (a: number[], b: number[], p: number): { name: string; value: number } => ({
      name: `floor p${p} = API create→watch ${fmt(pct(a, p))} + runtime create→Running ${fmt(pct(b, p))}`,
      value: pct(a, p) + pct(b, p),
    });
    for (const p of [50, 99]) {
      rows.push(row({ name: `API create → Running p${p}, 1 env (${SAMPLES} samples${p === 99 ? ': p99 = max' : ''})`, value: pct(one.api, p), unit: 'ms', baseline: floorOf(one.floorApi, one.floorRt, p) }));
    }
    for (const p of [50, 99]) {
      rows.push(row({ name: `kubectl apply → Running p${p}, 1 env (kubectl start-up included)`, value: pct(one.kubectl, p), unit: 'ms', baseline: floorOf(one.floorApi, one.floorRt, p) }));
    }
    rows.push(row({ name: '  kubectl apply itself, start → exit, p50 (1 env)', value: pct(one.kubectlRun, 50), unit: 'ms' }));
    for (const p of [50, 99]) {
      const r = row({ name: `API create → Running p${p}, ${BURST} created at once (${ROUNDS} rounds, ${ROUNDS * BURST} envs)`, value: pct(many.api, p), unit: 'ms', baseline: floorOf(many.floorApi, many.floorRt, p) });
      rows.push(p === 99 ? { ...r, target: '≤ 1.3× floor', pass: (r.ratio ?? Infinity) <= 1.3 } : r);
    }
    for (const p of [50, 99]) {
      rows.push(row({ name: `kubectl apply -f of ${BURST} manifests → Running p${p} (kubectl sends them one by one)`, value: pct(many.kubectl, p), unit: 'ms', baseline: floorOf(many.floorApi, many.floorRt, p) }));
    }
    rows.push(row({ name: `  that kubectl apply -f itself, start → exit, p50 (${BURST} manifests)`, value: pct(many.kubectlRun, 50), unit: 'ms' }));
    for (const st of STAGES) {
      for (const p of [50, 99]) {
        const v = pct(
          many.stages.map((s) => s[st.key]),
          p,
        );
        const base = st.floor === 'api' ? { name: `API create→watch p${p}`, value: pct(many.floorApi, p) } : st.floor === 'rt' ? { name: `runtime create→Running p${p}`, value: pct(many.floorRt, p) } : undefined;
        rows.push(row({ name: `  ${BURST} at once, stage p${p}: ${st.what}`, value: v, unit: 'ms', ...(base ? { baseline: base } : {}) }));
      }
    }
    rows.push(row({ name: `agent API writes per env (${envCount} envs of 2 s, usage interval 15 s; Running, end, finalizer release)`, value: agentWrites / envCount, unit: 'writes', target: '≤ 3', pass: agentWrites / envCount <= 3 }));
    rows.push(row({ name: `controller API writes per env (${envCount} envs; deleted by the bench, not by TTL)`, value: ctlWrites / envCount, unit: 'writes' }));
    // On 2 cores a burst is CPU-bound: what the machine spent from the first create to the last Running, per env,
    // against the floor's two sides in their own windows; and how busy the machine was meanwhile.
    const toRunning = 'n:api: create → last Running';
    const floorWindows = cpu.perEnv('n:floorApi: create → last seen') + cpu.perEnv('n:floorRt: create → last Running');
    rows.push(row({ name: `machine CPU per env, first create → last Running, ${BURST} at once`, value: cpu.perEnv(toRunning), unit: 'ms', baseline: { name: 'floor sides, same windows (API create → seen, runtime create)', value: floorWindows } }));
    rows.push(row({ name: `  machine busy in that window, ${BURST} at once`, value: 100 * cpu.busy(toRunning), unit: '%', baseline: { name: 'runtime floor side, its window', value: 100 * cpu.busy('n:floorRt: create → last Running') } }));
    rows.push(row({ name: `machine CPU per env, whole lifecycle (create, run, end, delete, gone), ${BURST} at once`, value: cpu.perEnv('n:api'), unit: 'ms', baseline: { name: 'floor sides (API create+delete, runtime create+teardown)', value: cpu.perEnv('n:floorApi') + cpu.perEnv('n:floorRt') } }));

    meta.oneEnv = {
      apiP50: pct(one.api, 50),
      apiP99: pct(one.api, 99),
      kubectlP50: pct(one.kubectl, 50),
      kubectlRunP50: pct(one.kubectlRun, 50),
      floorApi: { p50: pct(one.floorApi, 50), p99: pct(one.floorApi, 99) },
      floorRuntime: { p50: pct(one.floorRt, 50), p99: pct(one.floorRt, 99) },
      stagesP50: Object.fromEntries(STAGES.map((s) => [s.key, pct(one.stages.map((x) => x[s.key]), 50)])),
      stagesP99: Object.fromEntries(STAGES.map((s) => [s.key, pct(one.stages.map((x) => x[s.key]), 99)])),
    };
    meta.burst = {
      floorApi: { p50: pct(many.floorApi, 50), p99: pct(many.floorApi, 99) },
      floorRuntime: { p50: pct(many.floorRt, 50), p99: pct(many.floorRt, 99) },
      kubectlRunMs: many.kubectlRun.map(Math.round),
      endedBeforeLastRunningPerRound: many.endedBeforeLastRunning,
      agentCreateStepsP50: stepPercentiles(many.agentSteps, 50),
      agentCreateStepsP99: stepPercentiles(many.agentSteps, 99),
      floorCreateStepsP50: stepPercentiles(many.floorSteps, 50),
      floorCreateStepsP99: stepPercentiles(many.floorSteps, 99),
      slowest: many.stages.filter((s) => s.total >= pct(many.api, 99)).map((s) => Object.fromEntries(Object.entries(s).map(([k, v]) => [k, Math.round(v as number)]))),
    };
    meta.runningSkipped = one.skipped + many.skipped;
    // per env; a 1-env side's figures include the machine's idle background over its 3–4 s (the env runs 2 s)
    meta.cpuMsPerEnv = Object.fromEntries(
      [...cpu.sums].map(([k, v]) => [k, { samples: v.samples, envs: v.envs, wallMsPerSample: Math.round(v.wallMs / v.samples), host: Math.round((v.hostMs / v.envs) * 10) / 10, busyPercent: Math.round(100 * cpu.busy(k)), ...Object.fromEntries(Object.entries(v.procs).map(([p, ms]) => [p, Math.round((ms / v.envs) * 10) / 10])) }]),
    );
    meta.spawnHelper = helperStatus();
    meta.agentLogTail = agent.logs.filter((l) => /"level":"(warn|error)"/.test(l)).slice(-10);
    meta.controllerLogTail = ctl.logs.filter((l) => /"level":"(warn|error)"/.test(l)).slice(-10);
  } catch (err) {
    failure = err instanceof Error ? err : new Error('bench e2e failed', { cause: err });
    if (agent) log(`agent log tail:\n${agent.logs.slice(-15).join('\n')}`);
    if (ctl) log(`controller log tail:\n${ctl.logs.slice(-15).join('\n')}`);
  } finally {
    log('cleaning up');
    for (const w of watches) await w.informer.stop().catch(() => undefined);
    await ctl?.stop();
    await agent?.stop();
    client?.close();
    await cp?.down(); // before the work dir goes: its state (pidfiles) is in there
    await cleanHost(work, [agentDir, floorDir], rt).catch((err: unknown) => log(`host cleanup: ${String(err)}`));
  }
  if (failure) throw failure;
  const left = await leftovers({ id, work, ids }, [agentDir.cgroupRoot, floorDir.cgroupRoot]);
  if (left.length) log(`left after the bench:\n  ${left.join('\n  ')}`);
  rows.push({ name: 'objects of the run left on the host after the bench (cgroups, netns, mounts, runc, processes, dirs)', value: left.length, unit: 'objects', target: '0', pass: left.length === 0 });
  meta.left = left;
  meta.loadAverageAtEnd = os.loadavg();
  meta.seconds = (Date.now() - started) / 1000;
  return { title: `End to end: create → Running through controller and agent (one node), vs API + runtime floor`, rows, meta };
}
