/**
 * `denv run -f env.yaml`: create the env on this host, show each phase as it
 * happens, stream the workload's output, enforce its lifecycle, tear it down and
 * exit with the workload's exit code. The env dies with this command (Ctrl-C,
 * SIGTERM, SIGHUP stop it) unless `--detach` hands it to a detached supervisor.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ValidationError } from '../../api/validate.js';
import { expireFinished, openRuntime, phaseLine, recordJson, RUNTIME_FLAGS, RUNTIME_FLAGS_HELP, parseOrUsage } from '../../../node-agent/cli.js';
import type { EnvRecord } from '../../../node-agent/journal.js';
import { followUntil, LogFollower } from '../../../node-agent/logs.js';
import { envPaths } from '../../../node-agent/names.js';
import { PreflightError } from '../../../node-agent/preflight.js';
import { CreateError, type Runtime } from '../../../node-agent/runtime.js';
import { isSameProcess, recordIdentity } from '../../../node-agent/exec.js';
import { sameProcessId } from '../../core/procfs.js';
import { supervise } from '../../../node-agent/supervisor.js';
import { DEFAULT_SECCOMP_PROFILE_DIR } from '../../../node-agent/seccomp.js';
import { applyDefaultLimits, defaultsAboveCaps, DEFAULT_LIMITS_FLAG, limitProblems, parseLimits, skippedText, type Limits } from '../../../node-agent/limits.js';
import type { Verdict } from '../../../node-agent/lifecycle.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';
import { readManifests } from '../manifest.js';

const HELP = `usage: denv run -f FILE [--detach] [--json] [--id ID] [flags]

Runs the DisposableEnv in FILE on this host and exits with its exit code.
  -f, --file FILE          manifest with exactly one DisposableEnv (- for stdin)
  --detach                 return once it runs; a detached supervisor enforces its lifecycle
  --id ID                  env id (default: generated)
  --sample-interval-ms N   how often the kernel is sampled (default 1000)
  --log-size-max BYTES     cap on the workload log file kept by conmon (default 10485760)
  --seccomp-profile-dir DIR  where spec.security.seccompProfile.localhostProfile is resolved; a profile
                           outside it is refused (default ${DEFAULT_SECCOMP_PROFILE_DIR})
  --default-limits LIST    limits for what the env leaves unset; one this host cannot enforce is
                           skipped (default ${DEFAULT_LIMITS_FLAG}; empty: none)
  --max-limits LIST        caps, same syntax (e.g. memory=4Gi,pids=1000): asking more is refused (default: none)
${RUNTIME_FLAGS_HELP}`;

const OPTIONS = {
  ...RUNTIME_FLAGS,
  file: { type: 'string', short: 'f' },
  detach: { type: 'boolean' },
  id: { type: 'string' },
  'sample-interval-ms': { type: 'string' },
  'log-size-max': { type: 'string' },
  'kill-method': { type: 'string' },
} as const;

type Values = ReturnType<typeof parseArgs<{ args: string[]; options: typeof OPTIONS; strict: true }>>['values'];

function interval(v: Values): number | undefined {
  const raw = v['sample-interval-ms'];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 20 || n > 60_000) throw new UsageError('--sample-interval-ms must be an integer between 20 and 60000');
  return n;
}

function logCap(raw: string): number {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 1024 || n > 2 ** 40) throw new UsageError('--log-size-max must be an integer number of bytes, at least 1024');
  return n;
}

function limitsFlag(v: Values, flag: 'default-limits' | 'max-limits', def: string): Limits {
  try {
    return parseLimits(v[flag] ?? def);
  } catch (err) {
    throw new UsageError(`--${flag}: ${(err as Error).message}`);
  }
}

export const command: Command = {
  summary: 'run a DisposableEnv on this host: create, limit, run, watch, tear down',
  async run(argv: string[]): Promise<number> {
    const { values } = parseOrUsage(() => parseArgs({ args: argv, options: OPTIONS, strict: true }), (m) => new UsageError(m));
    if (values.help) {
      console.log(HELP);
      return 0;
    }
    if (!values.file) throw new UsageError('missing -f FILE');
    const ms = interval(values);
    const defaults = limitsFlag(values, 'default-limits', DEFAULT_LIMITS_FLAG);
    const caps = limitsFlag(values, 'max-limits', '');
    const inverted = defaultsAboveCaps(defaults, caps);
    if (inverted.length) throw new UsageError(`--max-limits: ${inverted.join('; ')} (--default-limits)`);
    const envs = await readManifests(values.file);
    if (envs.length !== 1) throw new UsageError(`${values.file} holds ${envs.length} DisposableEnvs; denv run takes exactly one`);
    const env = envs[0]!;
    const name = env.metadata.name;
    if (!name) throw new ValidationError([`${values.file}: metadata.name is required`]);
    const rt = await openRuntime({ ...values, ...(values['log-size-max'] !== undefined ? { logSizeMax: logCap(values['log-size-max']) } : {}) });
    await expireFinished(rt.journal, Date.now()).catch(() => undefined);
    const show = (r: EnvRecord): void => {
      if (values.json) console.log(JSON.stringify({ event: 'phase', ...recordJson(r) }));
      else console.error(`denv: ${phaseLine(r)}`);
    };
    try {
      // the node's default limits fill what the env leaves unset, then the caps bound what it asks
      const defaulted = applyDefaultLimits(env.spec, defaults, await rt.unenforceableLimits(defaults));
      for (const line of skippedText(defaulted.skipped)) console.error(`denv: ${line}`);
      const over = limitProblems(defaulted.spec, caps);
      if (over.length) {
        console.error(`denv run: cannot run ${name} (nothing was created):\n  ${over.join('\n  ')}`);
        return 2;
      }
      let record: EnvRecord;
      try {
        record = await rt.create({ name, spec: defaulted.spec, ...(values.id !== undefined ? { id: values.id } : {}) }, show);
      } catch (err) {
        if (err instanceof PreflightError) {
          console.error(`denv run: cannot run ${name} (nothing was created):\n  ${err.problems.join('\n  ')}`);
          return 2;
        }
        if (err instanceof CreateError) {
          console.error(`denv run: ${err.message}`);
          return 1;
        }
        throw err;
      }
      if (values.detach) return await detach(rt, record, values, ms);
      return await attached(rt, record, values, ms, show);
    } finally {
      // the shared host root goes once no env of this state dir needs it (a detached env keeps it)
      await rt.close().catch(() => false);
    }
  },
};

async function attached(rt: Runtime, record: EnvRecord, values: Values, ms: number | undefined, show: (r: EnvRecord) => void): Promise<number> {
  let stop: Verdict | undefined;
  const onSignal = (sig: NodeJS.Signals): void => {
    stop ??= { reason: 'Stopped', message: `denv run received ${sig}` };
  };
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  let finished = false;
  const follower = new LogFollower(envPaths(rt.stateDir, record.id).log, (l) => {
    if (values.json) return;
    (l.stream === 'stderr' ? process.stderr : process.stdout).write(`${l.message}\n`);
  });
  const following = followUntil(follower, () => finished);
  try {
    let final: EnvRecord;
    try {
      final = await supervise(rt, record.id, { ...(ms ? { intervalMs: ms } : {}), stopRequested: () => stop, onPhase: show, registerPid: true });
    } catch (err) {
      // the env must not outlive this command: tear it down before reporting the error
      await rt.finish(record.id, { reason: 'Stopped', message: `denv run failed: ${(err as Error).message}` }).catch(() => undefined);
      throw err;
    }
    finished = true;
    await following;
    if (values.json) console.log(JSON.stringify({ event: 'result', ...recordJson(final) }));
    else printUsage(final);
    return final.exitCode ?? 1;
  } finally {
    finished = true;
    for (const s of signals) process.off(s, onSignal);
  }
}

function printUsage(r: EnvRecord): void {
  const u = r.usage ?? {};
  const mib = (b?: number): string => (b === undefined ? '?' : `${(b / 1048576).toFixed(1)}MiB`);
  console.error(
    `denv: usage: cpu ${u.cpuSeconds ?? '?'}s, memory peak ${mib(u.memoryPeakBytes)}, oom kills ${u.oomKills ?? 0}, io r/w ${u.ioReadBytes ?? '?'}/${u.ioWriteBytes ?? '?'} bytes`,
  );
  for (const l of r.leaks ?? []) console.error(`denv: LEAKED ${l.what}: ${l.detail}`);
}

/** Hand the env to a detached `denv supervise` and wait until it has registered. */
async function detach(rt: Runtime, record: EnvRecord, values: Values, ms: number | undefined): Promise<number> {
  const p = envPaths(rt.stateDir, record.id);
  const args = [...process.execArgv, process.argv[1] ?? '', 'supervise', '--state-dir', rt.stateDir, '--id', record.id];
  if (values['runtime-path'] !== undefined) args.push('--runtime-path', values['runtime-path']);
  if (values['cgroup-root'] !== undefined) args.push('--cgroup-root', values['cgroup-root']);
  if (values['kill-method'] !== undefined) args.push('--kill-method', values['kill-method']);
  if (ms !== undefined) args.push('--sample-interval-ms', String(ms));
  const fd = openSync(p.supervisorLog, 'a', 0o600);
  try {
    const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd] });
    // read while the child cannot have been reaped yet (its exit is handled by this event loop, later)
    const supervisor = child.pid !== undefined ? recordIdentity(child.pid) : undefined;
    child.unref();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      const r = await rt.journal.read(record.id);
      if (sameProcessId(r?.processes.supervisor, supervisor)) break;
      if (!isSameProcess(supervisor)) throw new Error(`the supervisor exited at once; see ${p.supervisorLog}`);
      await new Promise((res) => setTimeout(res, 50));
    }
  } finally {
    closeSync(fd);
  }
  if (values.json) console.log(JSON.stringify({ event: 'detached', ...recordJson((await rt.journal.read(record.id)) ?? record) }));
  else console.log(record.id);
  return 0;
}
