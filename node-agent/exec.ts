/**
 * The one way the node runtime runs another program: an argv array (never a
 * shell string), a timeout, no stdin, and errors that name the program, its
 * arguments and what it printed. Keeping this in one place is what lets us say
 * "nothing user-supplied reaches a shell".
 */
import { execa } from 'execa';

/** Result of a program that ran to completion (any exit code). */
export interface ExecResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options for {@link run}. */
export interface ExecOptions {
  /** Kill the program after this long. Every call has one; default 30 s. */
  readonly timeoutMs?: number;
  /** Non-zero exit is returned instead of thrown. */
  readonly allowFailure?: boolean;
  /** Extra environment; PATH may be overridden to choose which binaries are found. */
  readonly env?: Record<string, string>;
  readonly cwd?: string;
}

/** A program failed, timed out or could not be started; the message says which and why. */
export class ExecError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly exitCode: number | undefined,
    readonly stderr: string,
    message: string,
  ) {
    super(message);
    this.name = 'ExecError';
  }
}

const DEFAULT_TIMEOUT_MS = 30_000;

/** Run `file` with `args` and wait for it; throws ExecError on failure unless allowFailure. */
export async function run(file: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const timeout = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const r = await execa(file, [...args], {
    timeout,
    reject: false,
    stdin: 'ignore',
    env: opts.env,
    extendEnv: true,
    cwd: opts.cwd,
    killSignal: 'SIGKILL',
    stripFinalNewline: true,
  });
  const argv = [file, ...args];
  const shown = argv.join(' ');
  if (r.timedOut) throw new ExecError(argv, undefined, String(r.stderr), `${shown}: timed out after ${timeout} ms`);
  if (r.exitCode === undefined) {
    // could not start (ENOENT) or died by a signal
    const why = r.signal ? `killed by ${r.signal}` : (r.originalMessage ?? r.shortMessage);
    throw new ExecError(argv, undefined, String(r.stderr), `${shown}: ${why}`);
  }
  const res: ExecResult = { exitCode: r.exitCode, stdout: String(r.stdout), stderr: String(r.stderr) };
  if (r.exitCode !== 0 && !opts.allowFailure) {
    const detail = res.stderr.trim() || res.stdout.trim();
    throw new ExecError(argv, r.exitCode, res.stderr, `${shown}: exit ${r.exitCode}${detail ? `: ${detail}` : ''}`);
  }
  return res;
}
