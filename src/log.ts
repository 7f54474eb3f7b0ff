/**
 * winston JSON logging for every long-running component (controller, agent).
 * One root logger per process; reconciles and env runs take a child logger with
 * their own fields, and errors are logged once, at the loop boundary.
 */
import winston from 'winston';

/** Create the process logger. `level` comes from validated configuration. */
export function createLogger(component: string, level = process.env.DENV_LOG_LEVEL ?? 'info'): winston.Logger {
  return winston.createLogger({
    level,
    defaultMeta: { component },
    format: winston.format.combine(winston.format.timestamp(), winston.format.errors({ stack: true }), winston.format.json()),
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'debug', 'verbose', 'silly'] })],
  });
}

/** Fields of an error worth logging, including its cause chain. */
export function errorFields(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { error: String(err) };
  const out: Record<string, unknown> = { error: err.message };
  if (err.cause !== undefined) out.cause = errorFields(err.cause);
  return out;
}
