/** `denv controller`: run the cluster controller (scheduling, backstops, TTL, finalizers) until SIGTERM. */
import type { Command } from '../main.js';
import { helpText, parseConfig } from '../../controller/config.js';
import { runController } from '../../controller/controller.js';

export const command: Command = {
  summary: 'run the cluster controller (schedules envs, enforces deadlines, TTL and finalizers)',
  async run(argv: string[]): Promise<number> {
    const config = parseConfig(argv); // a ConfigError names every bad flag; main() prints it and exits 2
    if (config === 'help') {
      console.log(helpText());
      return 0;
    }
    return runController(config);
  },
};
