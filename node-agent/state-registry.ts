/**
 * The host-wide registry of state dirs (names.ts STATE_REGISTRY_DIR): one file
 * per state dir that a runtime created an env in, named by a hash of its path
 * and holding the path. A GC pass for one state dir reads the journals of the
 * others to learn which `denv-<id>` objects on the host are theirs and alive.
 */
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

function entryName(stateDir: string): string {
  return createHash('sha256').update(stateDir).digest('hex').slice(0, 24);
}

/** Record that `stateDir` holds envs on this host (idempotent). */
export async function registerStateDir(registryDir: string, stateDir: string): Promise<void> {
  const abs = path.resolve(stateDir);
  await mkdir(registryDir, { recursive: true, mode: 0o700 });
  await writeFile(path.join(registryDir, entryName(abs)), `${abs}\n`, { mode: 0o600 });
}

/**
 * The registered state dirs that still exist. Entries whose directory is gone
 * are dropped from the registry when `prune` is set.
 */
export async function registeredStateDirs(registryDir: string, opts: { prune?: boolean } = {}): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(registryDir);
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const n of names) {
    const file = path.join(registryDir, n);
    const dir = (await readFile(file, 'utf8').catch(() => '')).trim();
    const ok = path.isAbsolute(dir) && n === entryName(dir) && (await stat(dir).then((s) => s.isDirectory(), () => false));
    if (ok) out.push(dir);
    else if (opts.prune) await unlink(file).catch(() => undefined);
  }
  return out.sort();
}
