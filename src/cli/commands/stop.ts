/**
 * `denv stop NAME`: stop a running env (reason Stopped): SIGTERM, its grace
 * period, then a kill of the whole cgroup, and teardown. The env's supervisor
 * does the work; when no supervisor is alive (it crashed), this command takes
 * over and supervises the env to its end itself.
 */
import { parseArgs } from 'node:util';
import { findEnv, openRuntime, phaseLine, recordJson, RUNTIME_FLAGS, RUNTIME_FLAGS_HELP, parseOrUsage } from '../../../node-agent/cli.js';
import { isFinished, type EnvRecord } from '../../../node-agent/journal.js';
import { isSameProcess, selfIdentity } from '../../../node-agent/exec.js';
import { sameProcessId } from '../../core/procfs.js';
import { requestStop, supervise } from '../../../node-agent/supervisor.js';
import type { Runtime } from '../../../node-agent/runtime.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

export const command: Command = {
  summary: 'stop a running env (SIGTERM, grace period, kill the cgroup, tear down)',
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parseOrUsage(() => parseArgs({ args: argv, options: { ...RUNTIME_FLAGS, 'kill-method': { type: 'string' } }, strict: true, allowPositionals: true }), (m) => new UsageError(m));
    if (values.help) {
      console.log(`usage: denv stop NAME|ID [flags]\n${RUNTIME_FLAGS_HELP}`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('expected exactly one env NAME or ID');
    const rt = await openRuntime(values);
    const r = await findEnv(rt.journal, positionals[0]!);
    if (!r) throw new UsageError(`no env named ${positionals[0]!} in ${rt.stateDir}`);
    const final = isFinished(r) ? r : await stop(rt, r);
    await rt.close().catch(() => false); // if this took over from a dead supervisor, the shared root may be ours to remove
    if (values.json) console.log(JSON.stringify(recordJson(final)));
    else console.log(phaseLine(final));
    return final.reason === 'Leaked' ? 1 : 0;
  },
};

async function stop(rt: Runtime, r: EnvRecord): Promise<EnvRecord> {
  await requestStop(rt.stateDir, r.id, `denv stop (pid ${process.pid})`);
  const limit = Date.now() + (r.spec.lifecycle.gracePeriodSeconds + 60) * 1000;
  for (;;) {
    const cur = await rt.journal.read(r.id);
    if (!cur || isFinished(cur)) return cur ?? r;
    const sup = cur.processes.supervisor;
    // by identity: a supervisor whose pid now belongs to another process is gone
    if (sup === undefined || sameProcessId(sup, selfIdentity()) || !isSameProcess(sup)) {
      // nobody enforces this env any more: take over; supervise() sees the stop request at once
      return supervise(rt, r.id, { registerPid: true, intervalMs: 200 });
    }
    if (Date.now() > limit) throw new Error(`env ${r.name} did not stop within ${r.spec.lifecycle.gracePeriodSeconds + 60}s (supervisor pid ${sup.pid})`);
    await new Promise((res) => setTimeout(res, 100));
  }
}
