/** `denv validate -f FILE`: check manifests offline with the same rules the controller and agent use. */
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';
import { readManifests } from '../manifest.js';

export const command: Command = {
  summary: 'validate DisposableEnv manifests and print them with defaults applied',
  async run(argv: string[]): Promise<number> {
    const { values } = parseArgs({
      args: argv,
      options: { file: { type: 'string', short: 'f' }, quiet: { type: 'boolean', short: 'q' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    });
    if (values.help) {
      console.log('usage: denv validate -f FILE|- [--quiet]\n\nValidates every DisposableEnv in FILE and prints it with defaults applied.');
      return 0;
    }
    if (!values.file) throw new UsageError('missing -f FILE (use - for stdin)');
    const envs = await readManifests(values.file);
    for (const env of envs) {
      if (values.quiet) console.log(`${env.metadata.name ?? '(unnamed)'}: valid`);
      else console.log(`---\n${stringify(env, { lineWidth: 0 })}`);
    }
    return 0;
  },
};
