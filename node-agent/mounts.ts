/**
 * Host mounts the runtime owns. runc cannot take the host's `/` as a rootfs
 * (pivot_root fails with EINVAL), so an env without `rootfs.hostPath` gets a
 * recursive, read-only, slave bind of `/` under its own directory — a mount the
 * env owns and teardown removes.
 *
 * Every such bind lives under an *anchor*: the env's bundle directory bound
 * onto itself and made unbindable. `mount --rbind /` skips unbindable mounts,
 * so one env's rootfs never contains another's (no mount explosion, no EBUSY
 * on the other env's teardown), and nothing under an anchor propagates into
 * other mount namespaces. Each env owns its anchor and teardown removes it.
 */
import { readFile } from 'node:fs/promises';
import { parseMountinfo, type MountEntry } from '../src/core/procfs.js';
import { ExecError, run } from './exec.js';

/** The mount table of this process's mount namespace. */
export async function mountTable(): Promise<MountEntry[]> {
  return parseMountinfo(await readFile('/proc/self/mountinfo', 'utf8'));
}

/** Mounts at `dir` or below it. */
export function mountsUnder(table: readonly MountEntry[], dir: string): MountEntry[] {
  return table.filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(`${dir}/`));
}

/** True when `dir` is a mount point. */
export function isMountPoint(table: readonly MountEntry[], dir: string): boolean {
  return table.some((m) => m.mountPoint === dir);
}

/** The tools used for mounting (paths resolved by the runtime). */
export interface MountTools {
  readonly mount: string;
  readonly umount: string;
}

const TIMEOUT = 15_000;

/** Make `dir` a private, unbindable self-bind (idempotent). Returns true when this call made it. */
export function ensureAnchor(tools: Pick<MountTools, 'mount'>, dir: string): Promise<boolean> {
  return ensureSelfBind(tools, dir, { recursive: false, propagation: 'unbindable' });
}

/**
 * Make `dir` a mount point of its own (bound onto itself; `recursive` keeps
 * what is mounted below it reachable) with `propagation`, recursively too when
 * `recursive` (idempotent: nothing is done when its top mount already has it).
 * Returns true when this call made the bind.
 */
export async function ensureSelfBind(tools: Pick<MountTools, 'mount'>, dir: string, how: { recursive: boolean; propagation: 'unbindable' | 'shared' }): Promise<boolean> {
  const top = topMountAt(await mountTable(), dir);
  if (top && hasPropagation(top, how.propagation)) return false;
  if (!top) await run(tools.mount, [how.recursive ? '--rbind' : '--bind', dir, dir], { timeoutMs: TIMEOUT });
  await run(tools.mount, [`--make-${how.recursive ? 'r' : ''}${how.propagation}`, dir], { timeoutMs: TIMEOUT });
  return !top;
}

/** True when mount `m` has `propagation` (mountinfo's optional fields: `unbindable`, `shared:N`). */
export function hasPropagation(m: MountEntry, propagation: 'unbindable' | 'shared'): boolean {
  return propagation === 'unbindable' ? m.optionalFields.includes('unbindable') : m.optionalFields.some((f) => f.startsWith('shared:'));
}

/** The most recent mount stacked at exactly `dir`. */
export function topMountAt(table: readonly MountEntry[], dir: string): MountEntry | undefined {
  const at = table.filter((m) => m.mountPoint === dir);
  return at[at.length - 1];
}

/**
 * Bind the host's `/` at `target` recursively, read-only, as a slave; `anchor`
 * must be the anchor made by {@link ensureAnchor} directly above it. Copies of
 * netns handles (/run/netns) are dropped from the copy. On failure everything
 * mounted here is removed again.
 */
export async function bindHostRoot(tools: MountTools, target: string, anchor: string): Promise<void> {
  try {
    // One mount(8) call binds and then makes the copy a slave, so no SIGKILL of ours can leave a copy that
    // is a peer of the host's mounts (an unmount below a peer would propagate to the host's own mounts).
    await run(tools.mount, ['--rbind', '--make-rslave', '/', target], { timeoutMs: TIMEOUT });
    let table = await mountTable();
    for (const m of mountsUnder(table, `${target}/run/netns`).reverse()) {
      await run(tools.umount, ['-l', m.mountPoint], { timeoutMs: TIMEOUT, allowFailure: true });
    }
    table = await mountTable();
    const anchorMount = topMountAt(table, anchor);
    const top = topMountAt(table, target);
    if (!anchorMount || !top || top.parentId !== anchorMount.id) {
      throw new Error(`mount: ${target} is not directly under its anchor ${anchor}`);
    }
    // independent per-mount flag changes: run them a few at a time (one mount(8) each)
    const todo = mountsUnder(table, target);
    for (let i = 0; i < todo.length; i += 8) await Promise.all(todo.slice(i, i + 8).map((m) => remountReadOnly(tools, m)));
  } catch (err) {
    await unmountTree(tools, target).catch(() => undefined);
    throw err;
  }
}

async function remountReadOnly(tools: MountTools, m: MountEntry): Promise<void> {
  if (m.options.split(',').includes('ro')) return;
  try {
    await run(tools.mount, ['-o', 'remount,bind,ro', m.mountPoint], { timeoutMs: TIMEOUT });
  } catch (err) {
    throw new Error(`mount: cannot make ${m.mountPoint} read-only`, { cause: err });
  }
}

/**
 * Unmount `target` and everything below it, then prove none of it is left in
 * the mount table. Tries a normal recursive unmount first, then a lazy detach
 * (the env's processes are gone by now, so nothing can still use it).
 */
export async function unmountTree(tools: MountTools, target: string): Promise<void> {
  let left = mountsUnder(await mountTable(), target);
  if (!left.length) return;
  try {
    await run(tools.umount, ['-R', target], { timeoutMs: TIMEOUT });
  } catch (err) {
    if (!(err instanceof ExecError)) throw err;
    await run(tools.umount, ['-l', target], { timeoutMs: TIMEOUT, allowFailure: true });
  }
  left = mountsUnder(await mountTable(), target);
  if (left.length) {
    await run(tools.umount, ['-l', target], { timeoutMs: TIMEOUT, allowFailure: true });
    left = mountsUnder(await mountTable(), target);
  }
  if (left.length) throw new Error(`mount: ${left.length} mount(s) still under ${target}: ${left.map((m) => m.mountPoint).slice(0, 5).join(', ')}`);
}
