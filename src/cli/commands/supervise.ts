/**
 * `denv supervise --id ID` (internal): the detached per-env supervisor that
 * `denv run --detach` starts. It enforces the env's lifecycle until the env is
 * torn down; SIGTERM/SIGINT/SIGHUP stop the env (reason Stopped) cleanly.
 */
import { parseArgs } from 'node:util';
import { openRuntime, RUNTIME_FLAGS, parseOrUsage } from '../../../node-agent/cli.js';
import { assertEnvId } from '../../../node-agent/names.js';
import { supervise } from '../../../node-agent/supervisor.js';
import type { Verdict } from '../../../node-agent/lifecycle.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

export const command: Command = {
  summary: '(internal) supervise one detached env until it is torn down',
  async run(argv: string[]): Promise<number> {
    const { values } = parseOrUsage(() => parseArgs({
      args: argv,
      options: { ...RUNTIME_FLAGS, id: { type: 'string' }, 'sample-interval-ms': { type: 'string' }, 'kill-method': { type: 'string' } },
      strict: true,
    }), (m) => new UsageError(m));
    if (values.help) {
      console.log('usage: denv supervise --id ID --state-dir DIR [--sample-interval-ms N]');
      return 0;
    }
    if (!values.id) throw new UsageError('missing --id');
    const id = assertEnvId(values.id);
    const ms = values['sample-interval-ms'] !== undefined ? Number(values['sample-interval-ms']) : undefined;
    const rt = await openRuntime(values);
    let stop: Verdict | undefined;
    const onSignal = (sig: NodeJS.Signals): void => {
      stop ??= { reason: 'Stopped', message: `its supervisor received ${sig}` };
    };
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, onSignal);
    const final = await supervise(rt, id, { ...(ms ? { intervalMs: ms } : {}), stopRequested: () => stop, registerPid: true }).finally(() => rt.close().catch(() => false));
    console.log(JSON.stringify({ id, phase: final.phase, reason: final.reason, exitCode: final.exitCode }));
    return 0;
  },
};
