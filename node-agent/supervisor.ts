/**
 * The per-env supervisor: enforces the lifecycle of one running env until it
 * is torn down. It samples the kernel every interval, applies the pure rules
 * of lifecycle.ts, honours stop requests, and on a verdict sends SIGTERM, waits
 * the grace period and kills the whole cgroup; when the workload has exited it
 * finishes the env (usage, exit code, log tail, teardown).
 *
 * `denv run` runs it in-process; `denv run --detach` re-executes `denv` as a
 * detached `denv supervise` process that runs it. conmon keeps the workload
 * alive and records its exit independently, so a supervisor that dies can be
 * replaced (`denv stop` takes over when no supervisor is alive).
 *
 * Every process it watches (conmon, the `denv run` it is attached to) is named
 * by its identity, pid plus start time, so a pid the kernel hands to another
 * process is never mistaken for the one it watched. It logs through winston.
 */
import { readFile, unlink } from 'node:fs/promises';
import type winston from 'winston';
import { createLogger, errorFields } from '../src/log.js';
import type { ProcessId } from '../src/core/procfs.js';
import { readExitCode } from './conmon.js';
import { isSameProcess, selfIdentity } from './exec.js';
import type { EnvRecord } from './journal.js';
import { isFinished, recordProcess } from './journal.js';
import { deadlineAt, initialState, observe, policyFromSpec, type Policy, type Verdict, type WatchState } from './lifecycle.js';
import { envPaths } from './names.js';
import { atomicWrite } from './journal.js';
import { isConmonOf } from './conmon.js';
import type { PhaseListener, Runtime } from './runtime.js';

/** Options of one supervision. */
export interface SuperviseOptions {
  /** Sampling interval. Default 1000 ms; tests use less. */
  readonly intervalMs?: number;
  /** Stop the env (reason Stopped) when this process is gone: the env dies with the `denv run` that started it. */
  readonly attachedTo?: ProcessId;
  /** Polled every tick: a verdict here stops the env (e.g. the CLI got SIGINT). */
  readonly stopRequested?: () => Verdict | undefined;
  readonly onPhase?: PhaseListener;
  /** Record this process as the env's supervisor in the journal (its identity: pid plus start time). */
  readonly registerPid?: boolean;
  /** Where the loop reports what it cannot do (a failed kill, a failed sample). Default: createLogger('supervisor'). */
  readonly logger?: winston.Logger;
}

/** A request from another process to stop an env. */
export interface StopRequest {
  readonly reason: 'Stopped';
  readonly message: string;
  readonly at: string;
}

/** Ask the supervisor of env `id` to stop it (atomic file write; the supervisor polls). */
export async function requestStop(stateDir: string, id: string, message: string): Promise<void> {
  const req: StopRequest = { reason: 'Stopped', message, at: new Date().toISOString() };
  await atomicWrite(envPaths(stateDir, id).stopRequest, JSON.stringify(req));
}

async function readStopRequest(stateDir: string, id: string): Promise<Verdict | undefined> {
  try {
    const req = JSON.parse(await readFile(envPaths(stateDir, id).stopRequest, 'utf8')) as StopRequest;
    return { reason: 'Stopped', message: req.message || 'stopped on request' };
  } catch {
    return undefined;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Per-tick state of the loop. */
interface Loop {
  watch: WatchState;
  verdict?: Verdict;
  killAtMs?: number;
  killed: boolean;
}

/** Supervise env `id` until it is finished; returns the final record. */
export async function supervise(rt: Runtime, id: string, opts: SuperviseOptions = {}): Promise<EnvRecord> {
  let r = await rt.journal.read(id);
  if (!r) throw new Error(`supervise: env ${id} has no journal in ${rt.stateDir}`);
  if (isFinished(r)) return r;
  if (opts.registerPid) {
    const me = selfIdentity();
    r = await rt.journal.update(id, (x) => recordProcess(x, 'supervisor', me));
  }
  const log = (opts.logger ?? defaultLogger()).child({ env: r.name, id });
  // the loop needs the env's identity, cgroup, pids and deadlines, not its resource list: a supervisor
  // per running env stays small (finish() re-reads the whole record from the journal)
  r = withoutResources(r);
  const interval = Math.max(20, opts.intervalMs ?? 1000);
  const policy = policyFromSpec(r.spec);
  const startedAt = r.startTime ? Date.parse(r.startTime) : Date.now();
  const loop: Loop = { watch: initialState(startedAt, await rt.sample(r).catch(() => undefined)), killed: false };
  if (r.phase === 'Terminating' && r.reason) adoptTermination(r, loop);
  const exitFile = envPaths(rt.stateDir, id).exitFile;
  for (;;) {
    if ((await readExitCode(exitFile)) !== undefined) break;
    if (!(await monitorAlive(r))) break; // conmon died without an exit file: nothing more will come
    await tick(rt, r, policy, loop, opts, log);
    if (loop.verdict && r.phase !== 'Terminating') {
      r = await rt.beginTermination(id, loop.verdict, policy.graceMs);
      opts.onPhase?.(r);
      r = withoutResources(r);
    }
    // the exit is watched more often than the kernel is sampled, so a finished workload is noticed fast
    if (await exitedWithin(exitFile, interval)) break;
  }
  const final = await rt.finish(id, loop.verdict);
  await unlink(envPaths(rt.stateDir, id).stopRequest).catch(() => undefined);
  opts.onPhase?.(final);
  return final;
}

const EXIT_POLL_MS = 50;

function withoutResources(r: EnvRecord): EnvRecord {
  return { ...r, resources: [] };
}

/** Wait up to `ms`, returning early (true) once conmon has written the exit file. */
async function exitedWithin(exitFile: string, ms: number): Promise<boolean> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    await sleep(Math.min(EXIT_POLL_MS, until - Date.now()));
    if ((await readExitCode(exitFile)) !== undefined) return true;
  }
  return false;
}

function adoptTermination(r: EnvRecord, loop: Loop): void {
  loop.verdict = { reason: r.reason as Verdict['reason'], message: r.message ?? '' };
  loop.killAtMs = r.deadlines.killAt ? Date.parse(r.deadlines.killAt) : Date.now();
}

async function monitorAlive(r: EnvRecord): Promise<boolean> {
  return isConmonOf(r.processes.conmon, `denv-${r.id}`);
}

let sharedLogger: winston.Logger | undefined;

/** One logger for every supervision in this process that was given none. */
function defaultLogger(): winston.Logger {
  return (sharedLogger ??= createLogger('supervisor'));
}

/** One iteration: decide (if not yet terminating), or kill once the grace period is over. */
async function tick(rt: Runtime, r: EnvRecord, policy: Policy, loop: Loop, opts: SuperviseOptions, log: winston.Logger): Promise<void> {
  if (!loop.verdict) {
    const stop = opts.stopRequested?.() ?? (await readStopRequest(rt.stateDir, r.id)) ?? attachedGone(opts);
    if (stop) {
      loop.verdict = stop;
    } else {
      loop.verdict = await decide(rt, r, policy, loop, log);
    }
    if (loop.verdict) loop.killAtMs = Date.now() + policy.graceMs;
    if (!loop.verdict || policy.graceMs > 0) return;
  }
  if (!loop.killed && loop.killAtMs !== undefined && Date.now() >= loop.killAtMs) {
    try {
      await rt.killAll(r);
      loop.killed = true;
    } catch (err) {
      // tried again next tick; teardown kills whatever is left in any case
      log.error('kill failed', errorFields(err));
    }
  }
}

/** Sample and apply the rules. If the kernel cannot be read this tick, only the deadline is judged. */
async function decide(rt: Runtime, r: EnvRecord, policy: Policy, loop: Loop, log: winston.Logger): Promise<Verdict | undefined> {
  let s;
  try {
    s = await rt.sample(r);
  } catch (err) {
    log.warn('cannot sample; only the deadline is judged this tick', errorFields(err));
    if (Date.now() < deadlineAt(policy, loop.watch.startedAt)) return undefined;
    return { reason: 'DeadlineExceeded', message: `ran longer than timeoutSeconds=${policy.timeoutMs / 1000}` };
  }
  const res = observe(policy, loop.watch, s);
  loop.watch = res.state;
  return res.verdict;
}

function attachedGone(opts: SuperviseOptions): Verdict | undefined {
  if (opts.attachedTo === undefined || isSameProcess(opts.attachedTo)) return undefined;
  return { reason: 'Stopped', message: `the denv run that started it (pid ${opts.attachedTo.pid}) is gone` };
}
