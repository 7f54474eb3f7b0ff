/**
 * `denv`: one entry point for every command. Each subcommand lives in its own
 * module under ./commands and is loaded only when used, so `denv doctor` never
 * pays for the Kubernetes client and `denv controller` never loads the runtime.
 */
import { ValidationError } from '../api/validate.js';
import { ConfigError } from '../core/flags.js';

/** A subcommand: receives its own argv (after the name) and returns the process exit code. */
export interface Command {
  readonly summary: string;
  run(argv: string[]): Promise<number>;
}

const COMMANDS: Record<string, () => Promise<{ command: Command }>> = {
  validate: () => import('./commands/validate.js'),
  run: () => import('./commands/run.js'),
  ps: () => import('./commands/ps.js'),
  logs: () => import('./commands/logs.js'),
  stop: () => import('./commands/stop.js'),
  doctor: () => import('./commands/doctor.js'),
  supervise: () => import('./commands/supervise.js'),
  gc: () => import('./commands/gc.js'),
  controller: () => import('./commands/controller.js'),
  agent: () => import('./commands/agent.js'),
};

async function usage(): Promise<string> {
  const lines = ['usage: denv <command> [flags]', '', 'commands:'];
  for (const [name, load] of Object.entries(COMMANDS)) {
    let summary = '';
    try {
      summary = (await load()).command.summary;
    } catch {
      summary = '(not available in this build)';
    }
    lines.push(`  ${name.padEnd(11)} ${summary}`);
  }
  lines.push('', 'Run `denv <command> --help` for the flags of one command.');
  return lines.join('\n');
}

/** Parse argv, dispatch, and map errors to exit codes: 2 for bad input, 1 otherwise. */
export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    console.log(await usage());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    console.error(`denv: unknown command "${name}"\n\n${await usage()}`);
    return 2;
  }
  try {
    return await (await load()).command.run(rest);
  } catch (err) {
    if (err instanceof ValidationError) {
      console.error(`denv ${name}: invalid input:\n  ${err.problems.join('\n  ')}`);
      return 2;
    }
    if (err instanceof UsageError) {
      console.error(`denv ${name}: ${err.message}`);
      return 2;
    }
    if (err instanceof ConfigError) {
      console.error(`denv ${name}: invalid configuration:\n  ${err.problems.join('\n  ')}`);
      return 2;
    }
    const cause = err instanceof Error && err.cause instanceof Error ? `: ${err.cause.message}` : '';
    console.error(`denv ${name}: ${err instanceof Error ? err.message : String(err)}${cause}`);
    return 1;
  }
}

/** Bad flags or arguments: exit code 2, message printed without a stack. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

