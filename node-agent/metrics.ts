/**
 * Every metric the node side exports, in one registry with the project's
 * prefix, so the agent's /metrics, `denv gc --json` and the benchmarks read the
 * same numbers. The registry is an object (not prom-client's global) so tests
 * and several runtimes in one process do not share counters.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const METRIC_PREFIX = 'disposable_env_';

type EnvLabel = 'namespace' | 'name' | 'class';

/** Labels of the per-env series. */
export type EnvLabels = Record<EnvLabel, string>;

function envGauge(registry: Registry, name: string, help: string): Gauge<EnvLabel> {
  return new Gauge({ name: `${METRIC_PREFIX}${name}`, help, labelNames: ['namespace', 'name', 'class'] as const, registers: [registry] });
}

/** The node-side metric set. Create one per agent process. */
export class NodeMetrics {
  readonly registry = new Registry();

  /** Orphans of our own found by a GC pass, by kind (cgroup, netns, mount, container, bundle, process, zombie). */
  readonly orphansFound = new Counter({
    name: `${METRIC_PREFIX}orphans_found_total`,
    help: 'Host resources carrying our prefix that no live env owned, found by GC passes.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly orphansReclaimed = new Counter({
    name: `${METRIC_PREFIX}orphans_reclaimed_total`,
    help: 'Orphans of our own that a GC pass removed and verified gone.',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly oldestOrphanAge = new Gauge({
    name: `${METRIC_PREFIX}oldest_orphan_age_seconds`,
    help: 'Age of the oldest orphan seen by the last GC pass (0 when none).',
    registers: [this.registry],
  });

  readonly gcPassDuration = new Histogram({
    name: `${METRIC_PREFIX}gc_pass_duration_seconds`,
    help: 'Duration of one GC pass.',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });

  readonly teardownDuration = new Histogram({
    name: `${METRIC_PREFIX}teardown_duration_seconds`,
    help: 'Time from the start of a teardown until every host resource was verified gone.',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
    registers: [this.registry],
  });

  readonly leakedEnvs = new Gauge({
    name: `${METRIC_PREFIX}leaked_envs`,
    help: 'Envs whose teardown could not finish (e.g. a process stuck in D state).',
    registers: [this.registry],
  });

  readonly foreignLeaks = new Gauge({
    name: `${METRIC_PREFIX}foreign_leaks`,
    help: 'Leaks not created by this project, seen by the last audit (reported, never touched).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  readonly envsRunning = new Gauge({
    name: `${METRIC_PREFIX}node_envs_running`,
    help: 'Envs currently running on this node.',
    registers: [this.registry],
  });

  readonly envsFinished = new Counter({
    name: `${METRIC_PREFIX}node_envs_finished_total`,
    help: 'Envs finished on this node, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly journalCorrupt = new Counter({
    name: `${METRIC_PREFIX}journal_corrupt_total`,
    help: 'Journal files that could not be read; GC fell back to names on the host.',
    registers: [this.registry],
  });

  /** Per-env gauges, labelled namespace, name, class (seed 000's Prometheus section; alerts divide current by max). */
  readonly envMemoryCurrent = envGauge(this.registry, 'memory_current_bytes', 'Memory the env uses now (cgroup memory.current or memory.usage_in_bytes).');
  readonly envMemoryMax = envGauge(this.registry, 'memory_max_bytes', 'The env\'s memory limit (spec.resources.memory.max); absent when it has none.');
  readonly envPids = envGauge(this.registry, 'pids', 'Tasks in the env.');
  readonly envCpuSeconds = envGauge(this.registry, 'cpu_usage_seconds', 'CPU time the env used since it started.');
  readonly envOomKills = envGauge(this.registry, 'oom_kills', 'Processes of the env killed by the OOM killer.');
  readonly envLastActivity = envGauge(this.registry, 'last_activity_timestamp_seconds', 'When the kernel last saw the env do something (CPU, I/O, network, tasks); time() minus it is the idle time.');

  /** Writes to DisposableEnvs by the agent (status applies and finalizer releases), for the writes-per-env budget. */
  readonly apiWrites = new Counter({
    name: `${METRIC_PREFIX}agent_env_writes_total`,
    help: 'Writes of the agent to DisposableEnv objects, by kind (status, finalizer).',
    labelNames: ['kind'] as const,
    registers: [this.registry],
  });

  /** Set every per-env gauge of one env. */
  setEnv(labels: EnvLabels, v: { memoryCurrentBytes?: number; memoryMaxBytes?: number; pids?: number; cpuSeconds?: number; oomKills?: number; lastActivityMs?: number }): void {
    const set = (g: Gauge<EnvLabel>, x: number | undefined): void => void (x === undefined ? undefined : g.set(labels, x));
    set(this.envMemoryCurrent, v.memoryCurrentBytes);
    set(this.envMemoryMax, v.memoryMaxBytes);
    set(this.envPids, v.pids);
    set(this.envCpuSeconds, v.cpuSeconds);
    set(this.envOomKills, v.oomKills);
    set(this.envLastActivity, v.lastActivityMs === undefined ? undefined : v.lastActivityMs / 1000);
  }

  /** Drop an env's series once it is gone from the node. */
  dropEnv(labels: EnvLabels): void {
    for (const g of [this.envMemoryCurrent, this.envMemoryMax, this.envPids, this.envCpuSeconds, this.envOomKills, this.envLastActivity]) g.remove(labels);
  }

  /** Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
