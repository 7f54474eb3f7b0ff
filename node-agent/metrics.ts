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

function envKey(l: EnvLabels): string {
  return `${l.namespace}\u0000${l.name}\u0000${l.class}`;
}

function envCounter(registry: Registry, name: string, help: string): Counter<EnvLabel> {
  return new Counter({ name: `${METRIC_PREFIX}${name}`, help, labelNames: ['namespace', 'name', 'class'] as const, registers: [registry] });
}

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
  readonly envCpuSeconds = envCounter(this.registry, 'cpu_seconds_total', 'CPU time the env used since it started.');
  readonly envOomKills = envCounter(this.registry, 'oom_kills_total', 'Processes of the env killed by the OOM killer.');
  /** The last value each per-env counter was brought to, so a new sample adds only the difference. */
  private readonly counted = new WeakMap<Counter<EnvLabel>, Map<string, number>>();
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
    this.countTo(this.envCpuSeconds, labels, v.cpuSeconds);
    this.countTo(this.envOomKills, labels, v.oomKills);
    set(this.envLastActivity, v.lastActivityMs === undefined ? undefined : v.lastActivityMs / 1000);
  }

  /** A per-env counter follows a kernel counter: it grows by what the kernel's value grew since the last sample. */
  private countTo(c: Counter<EnvLabel>, labels: EnvLabels, value: number | undefined): void {
    if (value === undefined) return;
    const seen = this.counted.get(c) ?? new Map<string, number>();
    this.counted.set(c, seen);
    const key = envKey(labels);
    const delta = value - (seen.get(key) ?? 0);
    if (delta > 0) c.inc(labels, delta);
    else if (!seen.has(key)) c.inc(labels, 0);
    seen.set(key, Math.max(value, seen.get(key) ?? 0));
  }

  /** Drop an env's series once it is gone from the node. */
  dropEnv(labels: EnvLabels): void {
    for (const g of [this.envMemoryCurrent, this.envMemoryMax, this.envPids, this.envLastActivity]) g.remove(labels);
    for (const c of [this.envCpuSeconds, this.envOomKills]) {
      c.remove(labels);
      this.counted.get(c)?.delete(envKey(labels));
    }
  }

  /** Prometheus text exposition of every metric. */
  async text(): Promise<string> {
    return this.registry.metrics();
  }
}
