/**
 * Validation entry points that turn zod issues into messages a platform engineer
 * can act on: every message starts with the full field path, e.g.
 * `spec.resources.memory.high: must not exceed spec.resources.memory.max (1Gi)`.
 */
import { z } from 'zod';
import { DisposableEnvSchema, EnvSpecSchema, type DisposableEnv, type EnvSpec } from './env.js';

/** A rejected spec: every problem, each naming its field. Nothing was changed anywhere. */
export class ValidationError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'ValidationError';
  }
}

/** Outcome of validating without throwing. */
export type Validated<T> = { ok: true; value: T } | { ok: false; problems: string[] };

function pathOf(prefix: string, path: readonly PropertyKey[]): string {
  let out = prefix;
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += out ? `.${String(seg)}` : String(seg);
  }
  return out || '(root)';
}

function describeIssue(prefix: string, issue: z.core.$ZodIssue): string[] {
  if (issue.code === 'invalid_union') {
    // A quantity is int-or-string: report the string branch, which says what a quantity looks like.
    const branches = issue.errors;
    const best = branches.find((b) => b.some((i) => i.code !== 'invalid_type')) ?? branches[0] ?? [];
    const inner = best.map((i) => describeIssue(pathOf(prefix, issue.path), i)).flat();
    return inner.length ? inner : [`${pathOf(prefix, issue.path)}: ${issue.message}`];
  }
  if (issue.code === 'invalid_key') {
    return issue.issues.map((i) => `${pathOf(prefix, issue.path)}: key ${JSON.stringify(issue.input)} ${i.message}`);
  }
  if (issue.code === 'unrecognized_keys') {
    return issue.keys.map((k) => `${pathOf(prefix, [...issue.path, k])}: unknown field`);
  }
  return [`${pathOf(prefix, issue.path)}: ${issue.message}`];
}

/** Every problem of a zod error, formatted with the field path under `prefix`. */
export function formatIssues(error: z.ZodError, prefix = ''): string[] {
  return error.issues.flatMap((i) => describeIssue(prefix, i));
}

/** Validate and default a spec; problems are named under `spec.`. */
export function validateSpec(input: unknown): Validated<EnvSpec> {
  const r = EnvSpecSchema.safeParse(input);
  return r.success ? { ok: true, value: r.data } : { ok: false, problems: formatIssues(r.error, 'spec') };
}

/** Validate a whole DisposableEnv manifest (apiVersion, kind, metadata, spec). */
export function validateEnv(input: unknown): Validated<DisposableEnv> {
  const r = DisposableEnvSchema.safeParse(input);
  return r.success ? { ok: true, value: r.data } : { ok: false, problems: formatIssues(r.error) };
}

/** Like validateSpec, but throws a ValidationError listing every problem. */
export function parseSpec(input: unknown): EnvSpec {
  const r = validateSpec(input);
  if (!r.ok) throw new ValidationError(r.problems);
  return r.value;
}
