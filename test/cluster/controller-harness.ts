/**
 * What the controller cluster tests share: spawning the real `denv controller`
 * process (by PID, with a lifetime cap, killed in cleanup), reading its
 * metrics, creating envs, and polling the API server until a condition holds.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { API_VERSION, ENV_KIND, FINALIZER, GROUP, VERSION } from '../../src/api/constants.js';
import { KubeClient, isNotFound } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { kubeConfig, kubeconfigPath } from '../helpers/kube.js';
import { sumMetric } from '../helpers/prom-text.js';
import { FakeAgent, type FakeNodeOptions } from './fake-agent.js';

export { sumMetric };

export { FINALIZER };

/** Repository root, found from this file. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

/** The label tests put on their DisposableNodes, and select on with --disposable-node-selector. */
export const RUN_LABEL = 'disposable.dev/test-run';

/** A short random id for node names and selectors of one describe block. */
export function runId(): string {
  return `t${randomBytes(3).toString('hex')}`;
}

const MAX_LIFETIME_MS = 10 * 60_000;

export interface ControllerProcess {
  readonly pid: number;
  readonly port: number;
  readonly child: ChildProcess;
  /** Everything it logged (JSON lines on stderr). */
  readonly logs: string[];
  /** Resolves with the exit code (or signal name) when it ends. */
  readonly exited: Promise<number | string>;
  metrics(): Promise<string>;
  /** Sum of a metric's samples whose labels include `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  /** SIGTERM (graceful) or SIGKILL; resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}


/** Spawns `denv controller` against the test cluster and waits until /readyz answers 200. */
export async function startController(args: string[], opts: { waitReady?: boolean } = {}): Promise<ControllerProcess> {
  return startDenv('controller', args, opts);
}

/**
 * Spawns `denv COMMAND` (controller or agent) against the test cluster on a free loopback
 * port, by PID with a lifetime cap, and waits until its /readyz answers 200.
 */
export async function startDenv(command: 'controller' | 'agent', args: string[], opts: { waitReady?: boolean; readyTimeoutMs?: number } = {}): Promise<ControllerProcess> {
  const port = await freePort();
  const argv = [
    '--import',
    'tsx/esm',
    path.join(REPO_ROOT, 'src/cli/bin.ts'),
    command,
    `--kubeconfig=${kubeconfigPath()}`,
    `--http-addr=127.0.0.1:${port}`,
    '--log-level=debug',
    ...args,
  ];
  const child = spawn(process.execPath, argv, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_OPTIONS: '' } });
  if (child.pid === undefined) throw new Error(`start ${command}: spawn failed`);
  const logs: string[] = [];
  const collect = (buf: Buffer): void => {
    for (const l of buf.toString('utf8').split('\n')) if (l.trim()) logs.push(l);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  // The lifetime cap is this process's timeout: it never outlives a hung test run.
  const cap = setTimeout(() => child.kill('SIGKILL'), MAX_LIFETIME_MS);
  cap.unref();
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => {
      clearTimeout(cap);
      resolve(code ?? signal ?? -1);
    }),
  );
  const base = `http://127.0.0.1:${port}`;
  const proc: ControllerProcess = {
    pid: child.pid,
    port,
    child,
    logs,
    exited,
    async metrics() {
      const res = await fetch(`${base}/metrics`, { signal: AbortSignal.timeout(5000) });
      return res.text();
    },
    async metric(name, labels) {
      return sumMetric(await proc.metrics(), name, labels);
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, signal);
      const t = setTimeout(() => {
        if (child.exitCode === null && child.signalCode === null) process.kill(child.pid!, 'SIGKILL');
      }, 30_000);
      const r = await exited;
      clearTimeout(t);
      return r;
    },
  };
  if (opts.waitReady ?? true) {
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`${command} exited with ${child.exitCode}:\n${logs.slice(-20).join('\n')}`);
        const r = await fetch(`${base}/readyz`, { signal: AbortSignal.timeout(2000) }).catch(() => undefined);
        return r?.status === 200;
      },
      { timeoutMs: opts.readyTimeoutMs ?? 60_000, what: `${command} /readyz` },
    );
  }
  return proc;
}

/** Polls `fn` every `everyMs` until it returns a truthy value (a non-empty one, for arrays); throws after `timeoutMs` with the last value. */
export async function waitFor<T>(fn: () => Promise<T> | T, opts: { timeoutMs?: number; everyMs?: number; what?: string } = {}): Promise<NonNullable<T>> {
  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      // An empty array is truthy in JS but means "nothing yet" to every caller here.
      if (v && !(Array.isArray(v) && v.length === 0)) return v;
      last = v;
    } catch (err) {
      last = err;
      if (err instanceof Error && /(controller|agent) exited/.test(err.message)) throw err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out waiting for ${opts.what ?? 'condition'}; last: ${last instanceof Error ? last.message : JSON.stringify(last)}`);
    }
    await new Promise((r) => setTimeout(r, opts.everyMs ?? 100));
  }
}

/**
 * Reads `read()` every `everyMs` until `done` holds for the value or `timeoutMs` passes, and returns the last
 * value either way: for something that arrives a moment after what the test waited for (Events sent in the
 * background, a counter bumped on an answer), so the caller's own assertion reports what was there.
 */
export async function settled<T>(read: () => Promise<T>, done: (v: T) => boolean, timeoutMs = 10_000, everyMs = 100): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await read();
    if (done(v) || Date.now() > deadline) return v;
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** What a suite runs against: a client, its test nodes, one controller process scoped to them. */
export interface Suite {
  readonly client: KubeClient;
  readonly ctl: ControllerProcess;
}

/** For beforeAll: a client, the nodes `addNodes` registers, then a controller scoped to them with `args`. */
export async function startSuite(nodes: TestNodes, addNodes: () => Promise<void>, args: string[]): Promise<Suite> {
  const client = await testClient();
  await addNodes();
  return { client, ctl: await startController([...nodes.controllerScope(), ...args]) };
}

/** For afterAll: SIGTERM the controller, remove the nodes, close the client (whatever startSuite got to). */
export async function stopSuite(nodes: TestNodes, suite: Partial<Suite>): Promise<void> {
  await suite.ctl?.stop('SIGTERM');
  await nodes.cleanup();
  suite.client?.close();
}

/** A client for the test cluster (not counted by any controller). */
export async function testClient(): Promise<KubeClient> {
  return KubeClient.fromKubeConfig(kubeConfig(), { maxInFlight: 64 });
}

export function envsPath(ns: string, name?: string): string {
  return `/apis/${GROUP}/${VERSION}/namespaces/${ns}/disposableenvs${name ? `/${name}` : ''}`;
}

/** Creates a DisposableEnv with a minimal valid spec, `spec` merged over it. */
export async function createEnv(client: KubeClient, ns: string, name: string, spec: Record<string, unknown> = {}, metadata: Record<string, unknown> = {}): Promise<EnvObject> {
  return client.create<EnvObject>(envsPath(ns), {
    apiVersion: API_VERSION,
    kind: ENV_KIND,
    metadata: { name, ...metadata },
    spec: { workload: { command: ['/bin/true'] }, ...spec },
  });
}

export async function getEnv(client: KubeClient, ns: string, name: string): Promise<EnvObject | undefined> {
  try {
    return await client.get<EnvObject>(envsPath(ns, name));
  } catch (err) {
    if (isNotFound(err)) return undefined;
    throw err;
  }
}

/** Waits until the env satisfies `pred`, returning it. */
export async function waitForEnv(client: KubeClient, ns: string, name: string, pred: (e: EnvObject) => boolean, what: string, timeoutMs = 20_000): Promise<EnvObject> {
  return waitFor(
    async () => {
      const e = await getEnv(client, ns, name);
      return e && pred(e) ? e : undefined;
    },
    { timeoutMs, what: `${ns}/${name}: ${what}` },
  );
}

/** Waits until the env is gone. */
export async function waitForGone(client: KubeClient, ns: string, name: string, timeoutMs = 20_000): Promise<void> {
  await waitFor(async () => (await getEnv(client, ns, name)) === undefined, { timeoutMs, what: `${ns}/${name} to be deleted` });
}

export interface EventLite {
  reason: string;
  type: string;
  note: string;
  regarding: string;
  count: number;
}

/** events.k8s.io/v1 Events in a namespace, reduced to what tests assert on. */
export async function listEvents(client: KubeClient, ns: string): Promise<EventLite[]> {
  const { items } = await client.list<{ reason?: string; type?: string; note?: string; regarding?: { name?: string }; series?: { count?: number } }>(
    `/apis/events.k8s.io/v1/namespaces/${ns}/events`,
  );
  return items.map((e) => ({ reason: e.reason ?? '', type: e.type ?? '', note: e.note ?? '', regarding: e.regarding?.name ?? '', count: e.series?.count ?? 1 }));
}

/**
 * One describe block's fake nodes: named `<run>-<name>`, labelled with this run
 * (so a controller started with {@link TestNodes.controllerScope} sees only
 * them), heartbeating into the block's namespace.
 */
export class TestNodes {
  readonly run = runId();
  readonly agents = new Map<string, FakeAgent>();

  constructor(
    private readonly namespace: () => string,
    private readonly defaults: Partial<FakeNodeOptions> = {},
  ) {}

  /** The DisposableNode name of test node `name`. */
  node(name: string): string {
    return `${this.run}-${name}`;
  }

  /** Start a FakeAgent for node `name`. */
  async add(name: string, o: Partial<FakeNodeOptions> = {}): Promise<FakeAgent> {
    const a = await FakeAgent.start(kubeConfig(), { name: this.node(name), leaseNamespace: this.namespace(), labels: { [RUN_LABEL]: this.run }, renewEveryMs: 500, ...this.defaults, ...o });
    this.agents.set(name, a);
    return a;
  }

  /** The flags that keep a controller to the block's namespace and these nodes. */
  controllerScope(): string[] {
    const ns = this.namespace();
    return [`--watch-namespace=${ns}`, `--node-lease-namespace=${ns}`, `--leader-election-namespace=${ns}`, `--disposable-node-selector=${RUN_LABEL}=${this.run}`];
  }

  async cleanup(): Promise<void> {
    await Promise.all([...this.agents.values()].map((a) => a.cleanup()));
  }
}
