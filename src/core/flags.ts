/**
 * Flags of the long-running commands (`denv controller`, `denv agent`): each
 * flag may also come from a `DENV_*` environment variable, and one zod schema
 * validates them all, so every bad value is reported with the flag's name and
 * what was expected before anything connects or touches the host.
 */
import { z } from 'zod';
import { parseDuration } from './duration.js';

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;

/** One flag: its name, environment variable, default and help line. */
export interface FlagSpec {
  readonly key: string;
  readonly flag: string;
  readonly def?: string;
  readonly help: string;
  /** A flag that may stand alone (`--leader-elect`), meaning true; `--no-<flag>` means false. */
  readonly boolean?: boolean;
  /** Another environment variable read when `DENV_<FLAG>` is unset (e.g. KUBECONFIG). */
  readonly envAlias?: string;
}

/** A configuration error: one line per bad flag, each naming it. */
export class ConfigError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('\n'));
    this.name = 'ConfigError';
  }
}

/** `lease-duration` → `DENV_LEASE_DURATION`. */
export function envVarOf(flag: string): string {
  return `DENV_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** Splits argv into `--flag=value` / `--flag value` pairs; `--help` is returned separately. */
function readArgv(flags: readonly FlagSpec[], argv: readonly string[]): { values: Map<string, string>; help: boolean; problems: string[] } {
  const known = new Map(flags.map((f) => [f.flag, f]));
  const values = new Map<string, string>();
  const problems: string[] = [];
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? '';
    if (arg === '--help' || arg === '-h') {
      help = true;
      continue;
    }
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/s.exec(arg);
    if (!m) {
      problems.push(`${arg}: unexpected argument (flags look like --name=value)`);
      continue;
    }
    let name = m[1] ?? '';
    let value = m[2];
    if (value === undefined && name.startsWith('no-') && known.get(name.slice(3))?.boolean) {
      name = name.slice(3);
      value = 'false';
    }
    const spec = known.get(name);
    if (!spec) {
      problems.push(`--${name}: unknown flag (see --help)`);
      continue;
    }
    if (value === undefined) {
      const next = argv[i + 1];
      if (spec.boolean && (next === undefined || next.startsWith('--'))) value = 'true';
      else if (next === undefined) {
        problems.push(`--${name}: missing value`);
        continue;
      } else {
        value = next;
        i++;
      }
    }
    values.set(name, value);
  }
  return { values, help, problems };
}

/** Help text listing every flag, its environment variable and default. */
export function flagsHelp(usage: string, flags: readonly FlagSpec[]): string {
  const lines = [usage, '', 'Every flag can also be set through the environment variable shown.', ''];
  for (const f of flags) {
    lines.push(`  --${f.flag}${f.def !== undefined && f.def !== '' ? ` (default ${f.def})` : ''}`);
    lines.push(`      ${f.help} [${envVarOf(f.flag)}${f.envAlias ? `, ${f.envAlias}` : ''}]`);
  }
  return lines.join('\n');
}

/**
 * Parse flags, then the environment, then defaults, through `schema`; throws
 * ConfigError naming each bad flag (and the variable it came from). 'help' when asked.
 */
export function parseFlags<S extends z.ZodType>(flags: readonly FlagSpec[], schema: S, argv: readonly string[], env: NodeJS.ProcessEnv): z.infer<S> | 'help' {
  const { values, help, problems } = readArgv(flags, argv);
  if (help) return 'help';
  const raw: Record<string, string> = {};
  const fromEnvOf = (f: FlagSpec): string | undefined => {
    const v = env[envVarOf(f.flag)] ?? (f.envAlias ? env[f.envAlias] : undefined);
    return v !== undefined && v !== '' ? v : undefined;
  };
  for (const f of flags) {
    const v = values.get(f.flag) ?? fromEnvOf(f) ?? f.def;
    if (v !== undefined) raw[f.key] = v;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const key = String(issue.path[0] ?? '');
      const spec = flags.find((f) => f.key === key);
      const source = spec && !values.has(spec.flag) && fromEnvOf(spec) !== undefined ? ` (from ${env[envVarOf(spec.flag)] !== undefined ? envVarOf(spec.flag) : spec.envAlias})` : '';
      problems.push(`--${spec?.flag ?? key}${source}: ${issue.message}`);
    }
  }
  if (problems.length || !parsed.success) throw new ConfigError(problems);
  return parsed.data;
}

/** A Go-style duration (`15s`, `1m30s`) as milliseconds. */
export const duration = (example: string): z.ZodType<number, string> =>
  z.string().transform((s, ctx) => {
    const ms = parseDuration(s);
    if (ms === undefined || ms < 0) {
      ctx.addIssue({ code: 'custom', message: `expected a duration like ${example}` });
      return z.NEVER;
    }
    return ms;
  });

/** A duration longer than 0. */
export const positiveDuration = (example: string): z.ZodType<number, string> =>
  duration(example).refine((ms) => ms > 0, `must be longer than 0 (e.g. ${example})`);

/** A whole number in [min, max]. */
export const int = (min: number, max: number): z.ZodType<number, string> =>
  z
    .string()
    .regex(/^[0-9]+$/, `expected a whole number between ${min} and ${max}`)
    .transform(Number)
    .refine((n) => n >= min && n <= max, `expected a whole number between ${min} and ${max}`);

/** true/false/1/0. */
export const bool = (): z.ZodType<boolean, string> =>
  z.enum(['true', 'false', '1', '0'], { error: 'expected true or false' }).transform((s) => s === 'true' || s === '1');

/** A Kubernetes namespace name. */
export const namespace = (): z.ZodString => z.string().max(63).regex(DNS_LABEL, 'expected a namespace name (a DNS label)');

/** HOST:PORT to listen on (port 0 picks a free one). */
export const hostPort = (): z.ZodType<{ host: string; port: number }, string> =>
  z.string().transform((s, ctx) => {
    const m = /^(.*):([0-9]{1,5})$/.exec(s);
    const port = m ? Number(m[2]) : NaN;
    if (!m || port > 65535) {
      ctx.addIssue({ code: 'custom', message: 'expected HOST:PORT like :8080 or 127.0.0.1:8080 (port 0 picks a free one)' });
      return z.NEVER;
    }
    return { host: (m[1] ?? '').replace(/^\[|\]$/g, '') || '0.0.0.0', port };
  });

