/**
 * Creating and removing `<root>/<class>/denv-<id>` in one or more hierarchies,
 * level by level, shared by both drivers. Every level is journaled before it is
 * made; the leaf must not exist yet (an existing leaf is someone else's or a
 * leftover, never adopted silently); parents are shared between envs and are
 * removed only when empty.
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CgroupError, mkdirCgroup, removeCgroupDir, removeIfUnused, exists } from './fs.js';
import type { CreateHooks } from './types.js';

/** Per-level directories for `relPath` in each hierarchy root: result[level][hierarchy]. */
export function levels(hierarchyRoots: readonly string[], relPath: string): string[][] {
  const segs = relPath.split('/');
  return segs.map((_s, i) => hierarchyRoots.map((root) => path.join(root, ...segs.slice(0, i + 1))));
}

/** Per-hierarchy chains for `relPath`: result[hierarchy] = [top, …, leaf]. */
export function chains(hierarchyRoots: readonly string[], relPath: string): string[][] {
  const segs = relPath.split('/');
  return hierarchyRoots.map((root) => segs.map((_s, i) => path.join(root, ...segs.slice(0, i + 1))));
}

/**
 * Make every level of `relPath` in every hierarchy. `afterLevel` runs once a
 * level exists everywhere (enable controllers, copy cpusets). Returns the
 * directories this call made, top-down. If anything fails, what was made is
 * removed again and the error is rethrown.
 */
export async function makeTree(
  hierarchyRoots: readonly string[],
  relPath: string,
  hooks: CreateHooks,
  afterLevel: (dirs: LevelDir[], isLeaf: boolean) => Promise<void>,
): Promise<string[]> {
  // A concurrent teardown may remove an empty shared parent between two of our
  // mkdirs (ENOENT): start again from the top, a bounded number of times.
  for (let attempt = 1; ; attempt++) {
    try {
      return await makeTreeOnce(hierarchyRoots, relPath, hooks, afterLevel);
    } catch (err) {
      if (!(err instanceof CgroupError) || err.code !== 'ENOENT' || attempt >= 3) throw err;
    }
  }
}

async function makeTreeOnce(
  hierarchyRoots: readonly string[],
  relPath: string,
  hooks: CreateHooks,
  afterLevel: (dirs: LevelDir[], isLeaf: boolean) => Promise<void>,
): Promise<string[]> {
  const fast = await leavesUnderExistingParents(hierarchyRoots, relPath, hooks, afterLevel);
  if (fast) return fast;
  const lv = levels(hierarchyRoots, relPath);
  const made: string[] = [];
  try {
    for (const [i, dirs] of lv.entries()) {
      const isLeaf = i === lv.length - 1;
      await hooks.intend(dirs);
      const results = await mkdirLevel(dirs, isLeaf, made);
      await hooks.created(results);
      await afterLevel(results, isLeaf);
    }
    return made;
  } catch (err) {
    await unmake(made);
    throw err;
  }
}

/**
 * The common case: the shared parents exist already, so only the leaves are
 * made (one mkdir per hierarchy instead of one per level). Returns undefined,
 * having removed any leaf it made, when a parent is missing (ENOENT): the
 * caller then builds the tree level by level.
 */
async function leavesUnderExistingParents(
  hierarchyRoots: readonly string[],
  relPath: string,
  hooks: CreateHooks,
  afterLevel: (dirs: LevelDir[], isLeaf: boolean) => Promise<void>,
): Promise<string[] | undefined> {
  const lv = levels(hierarchyRoots, relPath);
  const leaves = lv[lv.length - 1] ?? [];
  await hooks.intend(leaves);
  const made: string[] = [];
  try {
    const results = await mkdirLevel(leaves, true, made);
    for (const level of lv.slice(0, -1)) {
      const parents = level.map((dir) => ({ dir, made: false }));
      await hooks.created(parents);
      await afterLevel(parents, false);
    }
    await hooks.created(results);
    await afterLevel(results, true);
    return made;
  } catch (err) {
    await unmake(made);
    if (err instanceof CgroupError && err.code === 'ENOENT') return undefined;
    throw err;
  }
}

/** A directory of one level and whether this call made it. */
type LevelDir = { dir: string; made: boolean };

/**
 * mkdir one level in every hierarchy at once (they are independent). Everything
 * settles before a failure is thrown; what this call made is added to `made`
 * either way, for the caller's rollback. A leaf that exists already is someone
 * else's or a leftover, never adopted.
 */
async function mkdirLevel(dirs: readonly string[], isLeaf: boolean, made: string[]): Promise<LevelDir[]> {
  const settled = await Promise.allSettled(dirs.map(async (dir) => ({ dir, made: await mkdirCgroup(dir) })));
  const results = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  for (const r of results) if (r.made) made.push(r.dir);
  const existing = isLeaf ? results.find((r) => !r.made) : undefined;
  if (existing) throw new CgroupError(`cgroup: ${existing.dir} already exists (an env with this id exists or leaked); refusing to reuse it`, 'EEXIST');
  const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
  return results;
}

/** Remove directories this process made, deepest first; best effort (used on rollback). */
async function unmake(made: readonly string[]): Promise<void> {
  for (const dir of [...made].reverse()) {
    try {
      await removeCgroupDir(dir, { budgetMs: 2000 });
    } catch {
      // reported by the caller's teardown, which re-checks every journaled directory
    }
  }
}

/**
 * Remove the leaf of `relPath` in every hierarchy (children first, EBUSY
 * retried within the budget), then each parent level that is now empty.
 * Returns the directories that are verified gone.
 */
export async function removeTreeEverywhere(
  hierarchyRoots: readonly string[],
  relPath: string,
  opts: { budgetMs?: number; removeParents?: boolean } = {},
): Promise<{ removed: string[] }> {
  const removed: string[] = [];
  const errors: string[] = [];
  const lv = levels(hierarchyRoots, relPath);
  const leaves = lv[lv.length - 1] ?? [];
  await Promise.all(
    leaves.map(async (dir) => {
      try {
        await removeCgroupDir(dir, { budgetMs: opts.budgetMs ?? 5000 });
        if (!(await exists(dir))) removed.push(dir);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }),
  );
  const parent = path.posix.dirname(relPath);
  if (opts.removeParents !== false && parent !== '.') removed.push(...(await removeEmptyLevels(hierarchyRoots, parent)));
  if (errors.length) throw new CgroupError(errors.join('; '), 'EBUSY');
  return { removed };
}

/**
 * Remove `relDir` and then each of its ancestors, deepest first, in every
 * hierarchy, where it no longer has a child. A shared parent that another env
 * still uses stays (EBUSY); a create that loses its parent this way starts its
 * tree again from the top (makeTree). The top `keepLevels` levels are never
 * touched (the part of a configured cgroup root above its last segment is not
 * ours). With `wouldRemove` nothing is removed: a directory counts as removed
 * (and is added to the set) when its only child directories are in the set
 * and no process is in it, so one set shared by several calls answers as the
 * real calls in the same order would. Returns the directories this call
 * removed (or would remove).
 */
export async function removeEmptyLevels(hierarchyRoots: readonly string[], relDir: string, keepLevels = 0, wouldRemove?: Set<string>): Promise<string[]> {
  const lv = levels(hierarchyRoots, relDir);
  const removed: string[] = [];
  const remove = wouldRemove ? (dir: string) => removableGiven(dir, wouldRemove) : removeIfUnused;
  for (let i = lv.length - 1; i >= keepLevels; i--) {
    // only what this call removed counts (a level that was not there is not reported)
    const gone = await Promise.all((lv[i] ?? []).map(async (dir) => ((await exists(dir)) && (await remove(dir)) ? dir : undefined)));
    for (const d of gone) if (d !== undefined) removed.push(d);
  }
  return removed;
}

/** What rmdir of `dir` would do once the directories in `removed` are gone; a yes is added to `removed`. */
async function removableGiven(dir: string, removed: Set<string>): Promise<boolean> {
  const kids = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const procs = await readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => 'unknown');
  const ok = kids.every((k) => !k.isDirectory() || removed.has(path.join(dir, k.name))) && procs.trim() === '';
  if (ok) removed.add(dir);
  return ok;
}
