/**
 * `denv agent --node NAME`: run the node agent until SIGTERM. It runs the envs
 * the controller binds to this node and reports them back; on SIGTERM it stops
 * watching and exits, and the envs keep running for the next agent to adopt.
 */
import type { Command } from '../main.js';
import { agentHelpText, parseAgentConfig } from '../../../node-agent/agent/config.js';
import { Agent } from '../../../node-agent/agent/agent.js';
import { createLogger, errorFields } from '../../log.js';

export const command: Command = {
  summary: 'run the node agent: run the envs the cluster binds to this node, report them, reclaim leaks',
  async run(argv: string[]): Promise<number> {
    const config = parseAgentConfig(argv); // a ConfigError names every bad flag; main() prints it and exits 2
    if (config === 'help') {
      console.log(agentHelpText());
      return 0;
    }
    const logger = createLogger('agent', config.logLevel);
    let agent: Agent;
    try {
      agent = await Agent.start(config, { logger });
    } catch (err) {
      logger.error('agent could not start', errorFields(err));
      return 1;
    }
    await new Promise<void>((resolve) => {
      const onSignal = (sig: NodeJS.Signals): void => {
        logger.info('stopping', { signal: sig });
        resolve();
      };
      process.once('SIGTERM', onSignal);
      process.once('SIGINT', onSignal);
    });
    await agent.stop();
    return 0;
  },
};
