/**
 * The shared read-only host root of one state directory.
 *
 * runc cannot take the host's `/` as a rootfs (pivot_root fails with EINVAL), so
 * an env without `rootfs.hostPath` runs on a recursive, read-only, slave bind of
 * `/`. Making that tree costs one rbind plus a read-only remount per submount
 * (150–200 ms on the development VM, most of an env's create time). It does not
 * depend on the env, so it is built once per state dir and every env's bundle
 * points at it: runc rbinds it into the env's own mount namespace, where nothing
 * propagates back (runc makes the env's mounts slaves).
 *
 * On the host:
 *  - `<state>/hostroot`            the anchor: a self-bind made unbindable, so an
 *                                  rbind of `/` (ours or anyone's) skips the tree;
 *  - `<state>/hostroot/rootfs`     the tree;
 *  - `<state>/hostroot.json`       the marker, written atomically once the tree is
 *                                  complete: the tree's mount id. A tree without a
 *                                  matching marker is half-built (its builder died)
 *                                  and is removed and built again;
 *  - `<state>/hostroot.lock`       the lock: the pid and start time of the process building, checking
 *                                  or removing the tree, created atomically (a hard link
 *                                  of a written temp file); stale once that pid is gone.
 *
 * The tree is removed when nothing uses it: `release()` (the CLI when its env is
 * done, the agent on shutdown) and the GC pass (crash leftovers) remove it only
 * while the caller says the state dir has no live env, under the lock.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { link, mkdir, readFile, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isSameProcess, pidAlive, run, selfIdentity } from './exec.js';
import { atomicWrite } from './journal.js';
import { bindHostRoot, ensureAnchor, mountTable, mountsUnder, unmountTree, type MountTools } from './mounts.js';

/** Paths of the shared host root of `stateDir`. */
export function hostRootPaths(stateDir: string): { anchor: string; rootfs: string; marker: string; lock: string } {
  const base = path.resolve(stateDir);
  const anchor = path.join(base, 'hostroot');
  return { anchor, rootfs: path.join(anchor, 'rootfs'), marker: `${anchor}.json`, lock: `${anchor}.lock` };
}

interface Marker {
  readonly mountId: number;
  readonly builtAt: string;
}

const LOCK_WAIT_MS = 30_000;
/** How often a reused tree's marker mtime is refreshed. */
const TOUCH_EVERY_MS = 10_000;
/** A lock older than this is taken over even if its pid looks alive (pid reuse after a crash). */
const LOCK_STALE_MS = 120_000;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));


/** The shared read-only host root of one state dir (see the module comment). */
export class HostRoot {
  readonly paths: ReturnType<typeof hostRootPaths>;
  /** Serialises this process's users; the lock file serialises processes. */
  private chain: Promise<unknown> = Promise.resolve();
  /** The marker of the tree this process last built or checked (the fast path compares it). */
  private known?: string;
  private touchedAt = 0;

  constructor(
    stateDir: string,
    private readonly tools: () => Promise<MountTools>,
  ) {
    this.paths = hostRootPaths(stateDir);
  }

  /**
   * The tree's path, built if it is missing or half-built. The caller must have
   * journaled its env first, so that a concurrent release sees it as live.
   */
  async acquire(): Promise<string> {
    if (await this.stillOurs()) return this.paths.rootfs;
    return this.exclusive(async () => {
      if (await this.ready()) {
        await this.touch();
        this.known = await readFile(this.paths.marker, 'utf8').catch(() => undefined);
        return this.paths.rootfs;
      }
      const tools = await this.tools();
      await this.remove(tools);
      await mkdir(this.paths.rootfs, { recursive: true, mode: 0o711 });
      await ensureAnchor(tools, this.paths.anchor);
      await bindHostRoot(tools, this.paths.rootfs, this.paths.anchor);
      const top = (await mountTable()).filter((m) => m.mountPoint === this.paths.rootfs).pop();
      if (!top) throw new Error(`mount: ${this.paths.rootfs} is not mounted after the bind`);
      const marker: Marker = { mountId: top.id, builtAt: new Date().toISOString() };
      await atomicWrite(this.paths.marker, JSON.stringify(marker));
      this.known = JSON.stringify(marker);
      this.touchedAt = Date.now();
      return this.paths.rootfs;
    });
  }

  /**
   * The fast path of acquire, without the lock: the tree this process built or
   * checked is still the one in place when no release is in progress (no lock
   * file) and the marker is unchanged. A release that starts after this check
   * sees the caller's env (journaled before acquire) and keeps the tree; one in
   * progress holds the lock, and one that finished changed or removed the marker.
   */
  private async stillOurs(): Promise<boolean> {
    if (this.known === undefined) return false;
    // two small reads on every create: synchronous, cheaper than two thread-pool round trips
    if (existsSync(this.paths.lock)) return false;
    let marker: string | undefined;
    try {
      marker = readFileSync(this.paths.marker, 'utf8');
    } catch {
      marker = undefined;
    }
    if (marker !== this.known) return false;
    if (Date.now() - this.touchedAt > TOUCH_EVERY_MS) await this.touch();
    return true;
  }

  /** Record a use in the marker's mtime (the GC's min age counts from it); at most every few seconds. */
  private async touch(): Promise<void> {
    const now = new Date();
    await utimes(this.paths.marker, now, now).catch(() => undefined);
    this.touchedAt = now.getTime();
  }

  /** True when a complete tree is mounted (its marker names the mount at the tree's path). */
  async ready(): Promise<boolean> {
    let marker: Marker;
    try {
      marker = JSON.parse(await readFile(this.paths.marker, 'utf8')) as Marker;
    } catch {
      return false;
    }
    const table = await mountTable();
    const top = table.filter((m) => m.mountPoint === this.paths.rootfs).pop();
    return top !== undefined && top.id === marker.mountId;
  }

  /** True when anything of the tree (anchor, tree, marker) is on the host. */
  async present(): Promise<boolean> {
    if (mountsUnder(await mountTable(), this.paths.anchor).length) return true;
    return (await stat(this.paths.marker).catch(() => undefined)) !== undefined;
  }

  /** Seconds since the tree was last handed out (or built); undefined without a marker. */
  async idleSeconds(now = Date.now()): Promise<number | undefined> {
    const st = await stat(this.paths.marker).catch(() => undefined);
    return st ? (now - st.mtimeMs) / 1000 : undefined;
  }

  /**
   * Remove the tree if `idle()` (checked under the lock) says no env of the
   * state dir can still be using it. Returns true when something was removed.
   */
  async release(idle: () => Promise<boolean>): Promise<boolean> {
    // nothing there: take no lock, whose directory would bring back a state dir its owner has removed
    if (!(await this.present())) return false;
    return this.exclusive(async () => {
      if (!(await this.present())) return false;
      if (!(await idle())) return false;
      await this.remove(await this.tools());
      return true;
    });
  }

  /** Unmount the tree and its anchor, prove nothing is left, drop the marker. */
  private async remove(tools: MountTools): Promise<void> {
    this.known = undefined;
    await unlink(this.paths.marker).catch(() => undefined);
    if (!mountsUnder(await mountTable(), this.paths.anchor).length) return;
    // whatever state a dead builder left it in, no unmount below the anchor may propagate to the host
    await run(tools.mount, ['--make-rslave', this.paths.anchor], { timeoutMs: 15_000, allowFailure: true });
    await unmountTree(tools, this.paths.anchor);
  }

  private async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(async () => {
      await this.lock();
      try {
        return await fn();
      } finally {
        await unlink(this.paths.lock).catch(() => undefined);
      }
    });
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async lock(): Promise<void> {
    await mkdir(path.dirname(this.paths.lock), { recursive: true, mode: 0o711 });
    const deadline = Date.now() + LOCK_WAIT_MS;
    for (;;) {
      // the lock appears atomically with the holder's pid in it (hard link of a written temp file), so a
      // holder that dies at any point leaves either no lock or one naming a pid that is gone
      const tmp = `${this.paths.lock}.${process.pid}.${randomBytes(4).toString('hex')}`;
      const me = selfIdentity();
      await writeFile(tmp, `${me.pid} ${me.startTicks}`, { mode: 0o600 });
      try {
        await link(tmp, this.paths.lock);
        return;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        await unlink(tmp).catch(() => undefined);
      }
      const [text, st] = await Promise.all([readFile(this.paths.lock, 'utf8').catch(() => ''), stat(this.paths.lock).catch(() => undefined)]);
      const stale = !holderAlive(text) || (st !== undefined && Date.now() - st.mtimeMs > LOCK_STALE_MS);
      if (stale) {
        await unlink(this.paths.lock).catch(() => undefined);
        continue;
      }
      if (Date.now() > deadline) throw new Error(`host root: ${this.paths.lock} is held by pid ${text || '?'} for over ${LOCK_WAIT_MS} ms`);
      await sleep(5);
    }
  }
}

/** The lock's holder is alive: the same process (pid and start time); a lock written before start times were kept names only a pid. */
function holderAlive(text: string): boolean {
  const [pid, ticks] = text.trim().split(/\s+/).map((x) => Number.parseInt(x, 10));
  if (!pid || pid <= 0) return false;
  return ticks === undefined || Number.isNaN(ticks) ? pidAlive(pid) : isSameProcess({ pid, startTicks: ticks });
}
