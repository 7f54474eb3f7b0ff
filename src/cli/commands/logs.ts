/** `denv logs NAME [-f]`: the workload's output (conmon's CRI log), optionally following it until the env ends. */
import { parseArgs } from 'node:util';
import { findEnv, openRuntime, RUNTIME_FLAGS, RUNTIME_FLAGS_HELP, parseOrUsage } from '../../../node-agent/cli.js';
import { isFinished } from '../../../node-agent/journal.js';
import { followUntil, LogFollower } from '../../../node-agent/logs.js';
import { envPaths } from '../../../node-agent/names.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

export const command: Command = {
  summary: "print an env's output; -f follows it until the env ends",
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parseOrUsage(() => parseArgs({
      args: argv,
      options: { ...RUNTIME_FLAGS, follow: { type: 'boolean', short: 'f' }, timestamps: { type: 'boolean', short: 't' } },
      strict: true,
      allowPositionals: true,
    }), (m) => new UsageError(m));
    if (values.help) {
      console.log(`usage: denv logs NAME|ID [-f] [-t]\n  -f, --follow       keep printing until the env has finished\n  -t, --timestamps   prefix each line with its time\n${RUNTIME_FLAGS_HELP}`);
      return 0;
    }
    if (positionals.length !== 1) throw new UsageError('expected exactly one env NAME or ID');
    const rt = await openRuntime(values);
    const r = await findEnv(rt.journal, positionals[0]!);
    if (!r) throw new UsageError(`no env named ${positionals[0]!} in ${rt.stateDir}`);
    const follower = new LogFollower(envPaths(rt.stateDir, r.id).log, (l) => {
      const line = values.timestamps ? `${l.time} ${l.message}\n` : `${l.message}\n`;
      (l.stream === 'stderr' ? process.stderr : process.stdout).write(line);
    });
    if (!values.follow) {
      await follower.poll();
      return 0;
    }
    await followUntil(follower, async () => {
      const cur = await rt.journal.read(r.id);
      return !cur || isFinished(cur);
    });
    return 0;
  },
};
