/**
 * Adoption: what a runtime does when it (re)starts. For every env in the
 * journal it decides, from facts on the host, whether someone alive still
 * handles it; if not, it finishes what was half done: a half-created env is
 * rolled back, a running one gets a new supervisor (same limits, same absolute
 * deadline from the journal, logs and exit code kept by conmon), a workload
 * that ended meanwhile is finished, a half-torn-down env is torn down.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { ProcessId } from '../src/core/procfs.js';
import { killPids } from './cgroup/common.js';
import { isSameProcess, processIdentity } from './exec.js';
import { isConmonOf } from './conmon.js';
import type { Runtime } from './runtime.js';
import { outstanding, type EnvRecord } from './journal.js';
import { hostName } from './names.js';
import { adoptAction, type AdoptAction } from './gc/plan.js';
import type { NodeMetrics } from './metrics.js';

/** What adoption did with one env. */
export interface Adopted {
  readonly id: string;
  readonly action: AdoptAction;
  readonly phase?: string;
  readonly error?: string;
}

/** How adoption hands a running env to a supervisor. */
export interface RecoverOptions {
  /** Start a supervisor for env `id` (the CLI spawns a detached `denv supervise`; tests run it in-process). */
  readonly supervise: (id: string) => Promise<void>;
  /** Only these env ids (tests); default every env in the journal. */
  readonly scope?: (id: string) => boolean;
  readonly metrics?: NodeMetrics;
}

/**
 * True while someone alive owns env `r`: its supervisor, or, while it is being
 * created, its creator. Judged by the recorded identity (pid plus start time):
 * a pid the kernel has since given to another process is a dead owner.
 */
export function ownerAlive(r: EnvRecord): boolean {
  return isSameProcess(r.processes.supervisor) || (r.phase === 'Creating' && isSameProcess(r.processes.creator));
}

/** Helper programs a dead creator may have left running for this env. */
const HELPERS = new Set(['conmon', 'runc', 'ip', 'mount', 'umount']);

/**
 * End the helper processes a dead creator left in flight for this env (conmon
 * and runc naming its container, `ip netns add denv-<id>`, `mount` under its
 * env dir) and wait until they are gone: otherwise one of them could make its
 * object after the rollback removed everything.
 */
async function endStrays(rt: Runtime, id: string): Promise<void> {
  const cid = hostName(id);
  const envDir = `${rt.stateDir}/envs/${id}`;
  const { readdir } = await import('node:fs/promises');
  const mine = async (): Promise<ProcessId[]> => {
    const ids: ProcessId[] = [];
    for (const name of await readdir('/proc')) {
      if (!/^\d+$/.test(name)) continue;
      const id = processIdentity(Number(name)); // before argv: a pid reused after this read fails the check below
      const argv = (await readFile(`/proc/${name}/cmdline`, 'utf8').catch(() => '')).split('\0');
      if (!id || !HELPERS.has(path.basename(argv[0] ?? ''))) continue;
      if (argv.some((a) => a === cid || a === envDir || a.startsWith(`${envDir}/`))) ids.push(id);
    }
    return ids;
  };
  const deadline = Date.now() + 5000;
  for (;;) {
    const left = await mine();
    if (!left.length || Date.now() > deadline) return;
    killPids(left.filter((p) => isSameProcess(p)).map((p) => p.pid)); // still the process whose argv named the env
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function facts(r: EnvRecord): Promise<Parameters<typeof adoptAction>[0]> {
  const conmonAlive = await isConmonOf(r.processes.conmon, hostName(r.id));
  return { phase: r.phase, outstanding: outstanding(r).length, ownerAlive: ownerAlive(r), conmonAlive };
}

/** Adopt every env of `rt`'s state dir that nobody alive handles. Idempotent. */
export async function recover(rt: Runtime, opts: RecoverOptions): Promise<Adopted[]> {
  const out: Adopted[] = [];
  const { records } = await rt.journal.list();
  for (const r of records) {
    if (opts.scope && !opts.scope(r.id)) continue;
    const action = adoptAction(await facts(r));
    if (action === 'none') continue;
    try {
      await act(rt, r, action, opts);
      out.push({ id: r.id, action, phase: (await rt.journal.read(r.id))?.phase });
    } catch (err) {
      out.push({ id: r.id, action, error: (err as Error).message });
    }
  }
  return out;
}

async function act(rt: Runtime, r: EnvRecord, action: AdoptAction, opts: RecoverOptions): Promise<void> {
  const t = Date.now();
  switch (action) {
    case 'rollback': {
      await endStrays(rt, r.id);
      const leaks = await rt.teardown(r.id);
      await rt.journal.update(r.id, (x) => {
        x.phase = 'Failed';
        x.reason = leaks.length ? 'Leaked' : 'CreateFailed';
        x.message = `its creator (pid ${r.processes.creator?.pid ?? '?'}) died during create; rolled back on adoption`;
        x.finishTime = new Date().toISOString();
        if (leaks.length) x.leaks = leaks;
      });
      break;
    }
    case 'teardown': {
      const leaks = await rt.teardown(r.id);
      if (leaks.length) await rt.journal.update(r.id, (x) => void (x.leaks = leaks));
      break;
    }
    case 'finish':
      await endStrays(rt, r.id);
      await rt.finish(r.id, r.phase === 'Terminating' && r.reason ? { reason: r.reason as 'Stopped', message: r.message ?? '' } : undefined);
      break;
    case 'supervise':
      await opts.supervise(r.id);
      return;
    case 'none':
      return;
  }
  opts.metrics?.teardownDuration.observe((Date.now() - t) / 1000);
}
