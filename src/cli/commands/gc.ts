/**
 * `denv gc`: what the agent does at start and every interval, by hand. First
 * adoption (envs in the journal that nobody alive handles are rolled back,
 * re-supervised or finished), then one GC pass: every host object with our
 * prefix that no live env owns and is older than --min-age is reclaimed and
 * verified gone; foreign leaks are reported, never touched. Prints one row per
 * object: kind, path, age, owner env, action.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { openRuntime, parseOrUsage, RUNTIME_FLAGS, RUNTIME_FLAGS_HELP } from '../../../node-agent/cli.js';
import { recover, type Adopted } from '../../../node-agent/adopt.js';
import { gcPass, type GcReport } from '../../../node-agent/gc/pass.js';
import { parseDuration } from '../../../node-agent/gc/plan.js';
import { NodeMetrics } from '../../../node-agent/metrics.js';
import { envPaths } from '../../../node-agent/names.js';
import type { Runtime } from '../../../node-agent/runtime.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

const HELP = `usage: denv gc [--dry-run] [--min-age 60s] [--interval 30s] [--no-adopt] [--json] [flags]

Adopts envs nobody handles, then reclaims every host object named denv-<id>
that no live env owns and that is older than --min-age; reports foreign leaks.
  --dry-run          show what would be done; change nothing (adoption included)
  --min-age DUR      never touch objects younger than this (default 60s)
  --interval DUR     repeat every DUR until interrupted (default: one pass)
  --no-adopt         skip adoption of journaled envs
  --metrics          print the Prometheus metrics after the pass
${RUNTIME_FLAGS_HELP}`;

const OPTIONS = {
  ...RUNTIME_FLAGS,
  'dry-run': { type: 'boolean' },
  'min-age': { type: 'string' },
  interval: { type: 'string' },
  'no-adopt': { type: 'boolean' },
  metrics: { type: 'boolean' },
} as const;

/** Start a detached `denv supervise` for an adopted env, as `denv run --detach` does. */
function spawnSupervisor(rt: Runtime): (id: string) => Promise<void> {
  return (id) => {
    const args = [...process.execArgv, process.argv[1] ?? '', 'supervise', '--state-dir', rt.stateDir, '--id', id];
    if (rt.options.runtimePath !== undefined) args.push('--runtime-path', rt.options.runtimePath);
    if (rt.options.cgroupRoot !== undefined) args.push('--cgroup-root', rt.options.cgroupRoot);
    const fd = openSync(envPaths(rt.stateDir, id).supervisorLog, 'a', 0o600);
    try {
      spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] }).unref();
    } finally {
      closeSync(fd);
    }
    return Promise.resolve();
  };
}

function table(adopted: Adopted[], report: GcReport): string {
  const lines = [['KIND', 'NAME/PATH', 'AGE', 'ENV', 'ACTION']];
  for (const a of adopted) lines.push(['env', a.id, '-', a.id, `adopted: ${a.action}${a.error ? ` (failed: ${a.error})` : ''}`]);
  for (const r of report.rows) lines.push([r.kind, r.path, r.ageSeconds !== undefined ? `${r.ageSeconds}s` : '-', r.envId ?? '-', r.action]);
  const w = lines[0]!.map((_, i) => Math.min(70, Math.max(...lines.map((l) => l[i]!.length))));
  const out = lines.map((l) => l.map((c, i) => c.padEnd(w[i]!)).join('  ').trimEnd());
  out.push(`${report.rows.length} object(s), pass took ${report.seconds.toFixed(2)} s; reclaimed envs: ${report.reclaimedEnvs.length}, stuck: ${report.stuckEnvs.length}, corrupt journals: ${report.corruptJournals.length}`);
  return out.join('\n');
}

export const command: Command = {
  summary: 'adopt orphaned envs and reclaim leaked host objects of ours; report foreign leaks',
  async run(argv: string[]): Promise<number> {
    const { values } = parseOrUsage(() => parseArgs({ args: argv, options: OPTIONS, strict: true }), (m) => new UsageError(m));
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    const dur = (flag: string, v: string | undefined, dflt: number): number => {
      if (v === undefined) return dflt;
      try {
        return parseDuration(v);
      } catch (err) {
        throw new UsageError(`--${flag}: ${(err as Error).message}`);
      }
    };
    const minAge = dur('min-age', values['min-age'], 60);
    const interval = values.interval !== undefined ? dur('interval', values.interval, 30) : undefined;
    const rt = await openRuntime(values);
    const metrics = new NodeMetrics();
    let stopped = false;
    const stop = (): void => void (stopped = true);
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
    let worst = 0;
    do {
      const adopted = values['no-adopt'] || values['dry-run'] ? [] : await recover(rt, { supervise: spawnSupervisor(rt), metrics });
      const report = await gcPass(rt, { minAgeSeconds: minAge, dryRun: values['dry-run'] ?? false, metrics });
      if (values.json) console.log(JSON.stringify({ adopted, ...report }));
      else console.log(table(adopted, report));
      if (values.metrics) console.log(await metrics.text());
      if (report.stuckEnvs.length || adopted.some((a) => a.error)) worst = 1;
      if (interval === undefined) break;
      const until = Date.now() + interval * 1000;
      while (!stopped && Date.now() < until) await new Promise((r) => setTimeout(r, Math.min(200, until - Date.now())));
    } while (!stopped);
    return worst;
  },
};
