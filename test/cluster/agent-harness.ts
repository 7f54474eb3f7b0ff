/**
 * Real node agents for cluster tests: each `denv agent` process poses as a
 * separate node on this host, with its own state dir (a `denv-test-*` dir the
 * node tests' leak check knows) and its own cgroup root, heartbeating into the
 * block's namespace and labelled with the block's run, so a controller started
 * with {@link AgentNodes.controllerScope} sees only them. Cleanup stops the
 * agents, tears down whatever an env left, and removes the API objects.
 */
import { mkdtempSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { GROUP, VERSION } from '../../src/api/constants.js';
import { outstanding } from '../../node-agent/journal.js';
import { Runtime } from '../../node-agent/runtime.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import { cleanup as cleanupStateDirs, STATE_PREFIX } from '../node/helpers.js';
import { RUN_LABEL, runId, startDenv, type ControllerProcess } from './controller-harness.js';

/** Flags that make agents quick enough for tests (the defaults suit production). */
export const FAST_AGENT = ['--lease-renew-interval=1s', '--sample-interval=200ms', '--gc-interval=3s', '--gc-min-age=1s'];

/** One node played by a real agent process. */
export interface AgentNode {
  readonly name: string;
  readonly stateDir: string;
  readonly cgroupRoot: string;
  proc: ControllerProcess;
  readonly args: string[];
}

export class AgentNodes {
  readonly run = runId();
  readonly nodes = new Map<string, AgentNode>();
  readonly stateDirs: string[] = [];

  constructor(private readonly namespace: () => string) {}

  /** The DisposableNode name of test node `name`. */
  node(name: string): string {
    return `${this.run}-${name}`;
  }

  /** Start an agent for node `name` (a fresh state dir and cgroup root). */
  async add(name: string, args: string[] = []): Promise<AgentNode> {
    const stateDir = mkdtempSync(path.join(tmpdir(), STATE_PREFIX));
    chmodSync(stateDir, 0o711); // the env's mapped root must reach its rootfs below it
    this.stateDirs.push(stateDir);
    const n: AgentNode = { name: this.node(name), stateDir, cgroupRoot: `disposable-agent-${this.run}-${name}`, args, proc: undefined as unknown as ControllerProcess };
    n.proc = await startDenv('agent', this.agentArgs(n));
    this.nodes.set(name, n);
    return n;
  }

  private agentArgs(n: AgentNode): string[] {
    const ns = this.namespace();
    return [`--node=${n.name}`, `--state-dir=${n.stateDir}`, `--cgroup-root=${n.cgroupRoot}`, `--node-lease-namespace=${ns}`, `--node-labels=${RUN_LABEL}=${this.run}`, ...FAST_AGENT, ...n.args];
  }

  /** Start node `name`'s agent again on the same state dir (after a kill or stop). */
  async restart(name: string, extra: string[] = []): Promise<AgentNode> {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no agent node ${name}`);
    n.proc = await startDenv('agent', [...this.agentArgs(n), ...extra]);
    return n;
  }

  get(name: string): AgentNode {
    const n = this.nodes.get(name);
    if (!n) throw new Error(`no agent node ${name}`);
    return n;
  }

  /** The flags that keep a controller to the block's namespace and these nodes. */
  controllerScope(): string[] {
    const ns = this.namespace();
    return [`--watch-namespace=${ns}`, `--node-lease-namespace=${ns}`, `--leader-election-namespace=${ns}`, `--disposable-node-selector=${RUN_LABEL}=${this.run}`];
  }

  /** SIGTERM every agent, tear down what envs left in their state dirs, delete the DisposableNodes. */
  async cleanup(client: KubeClient): Promise<void> {
    await Promise.all([...this.nodes.values()].map((n) => n.proc.stop('SIGTERM')));
    // envs outlive a stopped agent by design: tear down what is left with each node's own cgroup root
    for (const n of this.nodes.values()) {
      const rt = await Runtime.open({ stateDir: n.stateDir, cgroupRoot: n.cgroupRoot, emptyTimeoutMs: 3000 });
      for (const r of (await rt.journal.list()).records) if (outstanding(r).length) await rt.teardown(r.id).catch(() => undefined);
      await rt.close().catch(() => undefined);
    }
    await cleanupStateDirs(this.stateDirs);
    for (const n of this.nodes.values()) await client.delete(`/apis/${GROUP}/${VERSION}/disposablenodes/${n.name}`).catch(() => undefined);
  }
}
