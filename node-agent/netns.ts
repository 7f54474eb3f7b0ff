/**
 * The env's network namespace: created by the runtime itself as a named netns
 * (like `ip netns add denv-<id>`: a handle under /run/netns) with loopback up, handed
 * to runc by path, and deleted in teardown. Traffic counters for idle detection
 * come from /proc/<pid>/net/dev of a process inside it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseMountinfo, parseNetDev } from '../src/core/procfs.js';
import { run } from './exec.js';
import { ensureSelfBind, hasPropagation, topMountAt } from './mounts.js';
import { netnsPath } from './names.js';
import { sharedHelper } from './spawner.js';

const TIMEOUT = 10_000;

/** True when the named netns handle exists. */
export async function netnsExists(name: string): Promise<boolean> {
  try {
    await access(netnsPath(name));
    return true;
  } catch {
    return false;
  }
}

/** Programs used to make a netns. */
export interface NetnsTools {
  readonly ip: string;
  /** util-linux unshare(1). */
  readonly unshare: string;
  /** util-linux mount(8), to make the handles' directory a shared mount point once. */
  readonly mount: string;
}

/** Where named netns handles live (iproute2's NETNS_RUN_DIR). */
export const NETNS_DIR = path.dirname(netnsPath('x'));

/** What the top mount at `dir` is, from a mountinfo text: absent, shared, or not shared (private, slave). */
export function netnsDirMount(mountinfo: string, dir: string = NETNS_DIR): 'none' | 'not-shared' | 'shared' {
  const top = topMountAt(parseMountinfo(mountinfo), dir);
  if (!top) return 'none';
  return hasPropagation(top, 'shared') ? 'shared' : 'not-shared';
}

let netnsDirReady: Promise<void> | undefined;

/**
 * Make the handles' directory a mount point of its own with shared
 * propagation, as `ip netns add` does before its first handle. A handle bound
 * on the plain directory is hidden as soon as anything else on the host
 * (iproute2, a CNI plugin) binds /run/netns onto itself: `ip netns delete`
 * then unmounts only the copy on top, the unlink fails with EBUSY, and the
 * namespace can no longer be deleted by name — a leak. Done once per process
 * (a failure is retried by the next create); the bind is recursive, like
 * iproute2's, so handles already there stay reachable.
 */
export function ensureNetnsDir(tools: Pick<NetnsTools, 'mount'>): Promise<void> {
  netnsDirReady ??= (async (): Promise<void> => {
    mkdirSync(NETNS_DIR, { recursive: true, mode: 0o755 });
    await ensureSelfBind(tools, NETNS_DIR, { recursive: true, propagation: 'shared' });
  })().catch((err: unknown) => {
    netnsDirReady = undefined;
    throw new Error(`netns: cannot make ${NETNS_DIR} a shared mount point: ${(err as Error).message}`, { cause: err });
  });
  return netnsDirReady;
}

/**
 * Create netns `name` with `lo` up. The handles' directory is made a shared
 * mount point first ({@link ensureNetnsDir}, once per process), then the
 * handle file is created with O_EXCL, so an existing netns of that name is never reused; the namespace is
 * then bind-mounted on it (exactly what `ip netns add` leaves behind, so
 * `ip netns` lists and deletes it). With the spawn helper a child of the
 * helper does it in three system calls; without one, `unshare --net=FILE`
 * makes it and execs `ip link set lo up` inside. If anything fails, the netns
 * is deleted again.
 */
export async function createNetns(tools: NetnsTools, name: string): Promise<void> {
  const file = netnsPath(name);
  await ensureNetnsDir(tools);
  // a metadata call on /run (tmpfs on a normal host): synchronous, cheaper than a thread-pool round trip
  writeFileSync(file, '', { flag: 'wx', mode: 0o444 });
  try {
    if (!(await viaHelper(file, name))) {
      await run(tools.unshare, [`--net=${file}`, '--', tools.ip, 'link', 'set', 'lo', 'up'], { timeoutMs: TIMEOUT });
    }
  } catch (err) {
    await deleteNetns(tools.ip, name).catch(() => undefined);
    throw err;
  }
}

/** The netns made by the spawn helper; false when there is no helper (or one built without netns support). */
async function viaHelper(file: string, name: string): Promise<boolean> {
  const helper = sharedHelper();
  if (!helper) return false;
  let r;
  try {
    r = await helper.run({ file, args: [], timeoutMs: TIMEOUT, netns: true });
  } catch (err) {
    // its child may still be binding a namespace on the handle: no second try on top of it (the caller deletes the netns)
    throw new Error(`netns: the spawn helper died while creating ${name}: ${(err as Error).message}`, { cause: err });
  }
  if (r.state === 'error') return false; // a helper built without the netns request: nothing was done
  if (r.timedOut) throw new Error(`netns: creating ${name} timed out after ${TIMEOUT} ms`);
  if (r.exitCode !== 0) throw new Error(`netns: cannot create ${name}: ${r.stderr.trim() || `exit ${r.exitCode ?? `signal ${r.signal}`}`}`);
  return true;
}

/**
 * Delete netns `name`; a netns that does not exist counts as deleted. Verifies the handle is gone.
 * With the spawn helper a child of it does what `ip netns delete` does (detach the mount, remove
 * the file: two system calls instead of a program); without one, or with a helper built before
 * that request existed, `ip netns delete` runs.
 */
export async function deleteNetns(ip: string, name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  const file = netnsPath(name);
  const how = (await deleteViaHelper(file)) ?? { by: 'ip netns delete', ...(await run(ip, ['netns', 'delete', name], { timeoutMs: TIMEOUT, allowFailure: true })) };
  if (await netnsExists(name)) {
    throw new Error(`netns: ${name} still exists after ${how.by} (exit ${how.exitCode}: ${how.stderr.trim()})`);
  }
}

/** The helper's delete of a netns handle; undefined when there is no helper that can do it. */
async function deleteViaHelper(file: string): Promise<{ by: string; exitCode: number | undefined; stderr: string } | undefined> {
  const helper = sharedHelper();
  if (!helper) return undefined;
  const r = await helper.run({ file, args: [], timeoutMs: TIMEOUT, netnsDelete: true }).catch(() => undefined);
  if (!r || r.state === 'error') return undefined; // the helper died, or predates the request: nothing was done
  return { by: 'the helper\'s delete', exitCode: r.exitCode ?? undefined, stderr: r.timedOut ? `timed out after ${TIMEOUT} ms` : r.stderr };
}

/** Total bytes received and sent on every interface of the netns `pid` lives in; undefined if it is gone. */
export async function netBytes(pid: number): Promise<number | undefined> {
  try {
    const devs = parseNetDev(await readFile(`/proc/${pid}/net/dev`, 'utf8'));
    return Object.values(devs).reduce((sum, d) => sum + d.rxBytes + d.txBytes, 0);
  } catch {
    return undefined;
  }
}
