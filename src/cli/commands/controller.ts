/** `denv controller`: run the cluster controller (scheduling, backstops, TTL, finalizers) until SIGTERM. */
import type { Command } from '../main.js';
import { UsageError } from '../main.js';
import { ConfigError, helpText, parseConfig } from '../../controller/config.js';
import { runController } from '../../controller/controller.js';

export const command: Command = {
  summary: 'run the cluster controller (schedules envs, enforces deadlines, TTL and finalizers)',
  async run(argv: string[]): Promise<number> {
    let config;
    try {
      config = parseConfig(argv);
    } catch (err) {
      if (err instanceof ConfigError) throw new UsageError(`invalid configuration:\n  ${err.problems.join('\n  ')}`);
      throw err;
    }
    if (config === 'help') {
      console.log(helpText());
      return 0;
    }
    return runController(config);
  },
};
