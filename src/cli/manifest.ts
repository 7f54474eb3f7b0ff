/**
 * Reading DisposableEnv manifests from files or stdin for the CLI. A file may
 * hold several YAML documents; every one is validated before anything is done,
 * and problems are prefixed with the file and document so they can be found.
 */
import { readFile } from 'node:fs/promises';
import { parseAllDocuments } from 'yaml';
import { validateEnv, ValidationError } from '../api/validate.js';
import type { DisposableEnv } from '../api/env.js';

/** Read and validate every DisposableEnv in `path` (`-` is stdin). Throws ValidationError listing all problems. */
export async function readManifests(path: string): Promise<DisposableEnv[]> {
  let text: string;
  try {
    text = path === '-' ? await readStdin() : await readFile(path, 'utf8');
  } catch (cause) {
    throw new ValidationError([`-f ${path}: cannot read file (${(cause as Error).message})`]);
  }
  return parseManifests(text, path);
}

/** Parse and validate manifests from YAML text; `source` names the input in messages. */
export function parseManifests(text: string, source: string): DisposableEnv[] {
  const docs = parseAllDocuments(text);
  const problems: string[] = [];
  const envs: DisposableEnv[] = [];
  docs.forEach((doc, i) => {
    const where = docs.length > 1 ? `${source} (document ${i + 1})` : source;
    if (doc.errors.length) {
      problems.push(...doc.errors.map((e) => `${where}: YAML: ${e.message}`));
      return;
    }
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) return;
    const r = validateEnv(value);
    if (r.ok) envs.push(r.value);
    else problems.push(...r.problems.map((p) => `${where}: ${p}`));
  });
  if (problems.length) throw new ValidationError(problems);
  if (!envs.length) throw new ValidationError([`${source}: no DisposableEnv found`]);
  return envs;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
