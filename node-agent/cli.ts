/**
 * What the `denv run/ps/logs/stop/supervise` commands share: the runtime flags,
 * opening a runtime for a state dir, finding an env by name or id, expiring
 * finished envs after their TTL, and printing records. Kept out of the command
 * modules so each of those stays a thin argv → runtime adapter.
 */
import type { ParseArgsConfig } from 'node:util';
import { isFinished, outstanding, type EnvRecord, type Journal } from './journal.js';
import { DEFAULT_STATE_DIR, isEnvId } from './names.js';
import { Runtime } from './runtime.js';

/** Flags every runtime command accepts. */
export const RUNTIME_FLAGS = {
  'state-dir': { type: 'string' },
  'runtime-path': { type: 'string' },
  'cgroup-root': { type: 'string' },
  /** Only `denv run` creates envs, so only its help lists it. */
  'seccomp-profile-dir': { type: 'string' },
  /** Only `denv run` creates envs, so only its help lists them: node defaults and caps of limits (node-agent/limits.ts). */
  'default-limits': { type: 'string' },
  'max-limits': { type: 'string' },
  json: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies ParseArgsConfig['options'];

/** The runtime-flag values after parsing. */
export interface RuntimeFlagValues {
  'state-dir'?: string;
  'runtime-path'?: string;
  'cgroup-root'?: string;
  'seccomp-profile-dir'?: string;
  'kill-method'?: string;
  logSizeMax?: number;
}

/** Help text for the shared flags. */
export const RUNTIME_FLAGS_HELP = [
  `  --state-dir DIR      journal, bundles and logs (default ${DEFAULT_STATE_DIR})`,
  '  --runtime-path PATH  colon-separated dirs to find runc, conmon and tini-static/catatonit (default $PATH)',
  '  --cgroup-root PATH   cgroup root of the env tree (default disposable.slice)',
  '  --json               machine-readable output',
].join('\n');

/** Open the runtime the flags describe (detects the cgroup layout; creates nothing). */
export async function openRuntime(v: RuntimeFlagValues): Promise<Runtime> {
  const km = v['kill-method'];
  if (km !== undefined && km !== 'auto' && km !== 'cgroup.kill' && km !== 'freeze') throw new Error(`--kill-method must be auto, cgroup.kill or freeze`);
  return Runtime.open({
    stateDir: v['state-dir'] ?? DEFAULT_STATE_DIR,
    ...(v['runtime-path'] !== undefined ? { runtimePath: v['runtime-path'] } : {}),
    ...(v['cgroup-root'] !== undefined ? { cgroupRoot: v['cgroup-root'] } : {}),
    ...(v['seccomp-profile-dir'] !== undefined ? { seccompProfileDir: v['seccomp-profile-dir'] } : {}),
    ...(km !== undefined ? { killMethod: km } : {}),
    ...(v.logSizeMax !== undefined ? { logSizeMax: v.logSizeMax } : {}),
  });
}

/**
 * The env called `nameOrId`: an exact id, else the newest env with that name
 * (a live one first). Undefined when there is none.
 */
export async function findEnv(journal: Journal, nameOrId: string): Promise<EnvRecord | undefined> {
  const { records } = await journal.list();
  if (isEnvId(nameOrId)) {
    const byId = records.find((r) => r.id === nameOrId);
    if (byId) return byId;
  }
  const named = records.filter((r) => r.name === nameOrId).sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  return named.find((r) => !isFinished(r)) ?? named[0];
}

/** Forget finished envs whose ttlSecondsAfterFinished has passed and that left nothing on the host. */
export async function expireFinished(journal: Journal, now: number): Promise<string[]> {
  const gone: string[] = [];
  for (const r of (await journal.list()).records) {
    if (!isFinished(r) || !r.finishTime || outstanding(r).length) continue;
    if (Date.parse(r.finishTime) + r.spec.lifecycle.ttlSecondsAfterFinished * 1000 <= now) {
      await journal.forget(r.id);
      gone.push(r.id);
    }
  }
  return gone;
}

/** A short human age such as `42s`, `5m`, `3h`, `2d`. */
export function age(fromIso: string, now: number): string {
  const s = Math.max(0, Math.floor((now - Date.parse(fromIso)) / 1000));
  if (s < 120) return `${s}s`;
  if (s < 7200) return `${Math.floor(s / 60)}m`;
  if (s < 172800) return `${Math.floor(s / 3600)}h`;
  return `${Math.floor(s / 86400)}d`;
}

/** One line describing a phase change, for humans. */
export function phaseLine(r: EnvRecord): string {
  const base = `${r.name} [${r.id}] ${r.phase}`;
  switch (r.phase) {
    case 'Creating':
      return `${base} (cgroup ${r.cgroupPath}, ${r.cgroupMode})`;
    case 'Running':
      return `${base} (created in ${r.timings?.createToRunning ?? '?'} ms)`;
    case 'Terminating':
      return `${base}: ${r.reason ?? ''} — ${r.message ?? ''}`;
    default: {
      const exit = r.exitCode !== undefined ? ` exit ${r.exitCode}` : '';
      const td = r.timings?.teardown !== undefined ? `, teardown ${r.timings.teardown} ms` : '';
      return `${base}: ${r.reason ?? ''}${exit} — ${r.message ?? ''}${td}`;
    }
  }
}

/** The JSON form of a record shown by --json (status-like, without internals). */
export function recordJson(r: EnvRecord): Record<string, unknown> {
  return {
    id: r.id,
    name: r.name,
    class: r.class,
    phase: r.phase,
    reason: r.reason,
    message: r.message,
    cgroupPath: r.cgroupPath,
    cgroupMode: r.cgroupMode,
    netns: r.netns,
    createdAt: r.createdAt,
    startTime: r.startTime,
    finishTime: r.finishTime,
    exitCode: r.exitCode,
    usage: r.usage,
    stats: r.stats,
    logTail: r.logTail,
    leaks: r.leaks,
    timings: r.timings,
    pids: r.pids,
  };
}

/** Run a flag parser; its errors (unknown flag, missing value) become `usage(message)` so the CLI exits 2. */
export function parseOrUsage<T>(parse: () => T, usage: (message: string) => Error): T {
  try {
    return parse();
  } catch (err) {
    throw usage((err as Error).message);
  }
}
