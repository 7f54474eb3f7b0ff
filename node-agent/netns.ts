/**
 * The env's network namespace: created by the runtime itself as a named netns
 * (like `ip netns add denv-<id>`: a handle under /run/netns) with loopback up, handed
 * to runc by path, and deleted in teardown. Traffic counters for idle detection
 * come from /proc/<pid>/net/dev of a process inside it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseNetDev } from '../src/core/procfs.js';
import { run } from './exec.js';
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
}

/**
 * Create netns `name` with `lo` up. The handle file is created with O_EXCL
 * first, so an existing netns of that name is never reused; the namespace is
 * then bind-mounted on it (exactly what `ip netns add` leaves behind, so
 * `ip netns` lists and deletes it). With the spawn helper a child of the
 * helper does it in three system calls; without one, `unshare --net=FILE`
 * makes it and execs `ip link set lo up` inside. If anything fails, the netns
 * is deleted again.
 */
export async function createNetns(tools: NetnsTools, name: string): Promise<void> {
  const file = netnsPath(name);
  // two metadata calls on /run (tmpfs on a normal host): synchronous, cheaper than thread-pool round trips
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
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

/** Delete netns `name`; a netns that does not exist counts as deleted. Verifies the handle is gone. */
export async function deleteNetns(ip: string, name: string): Promise<void> {
  if (!(await netnsExists(name))) return;
  const r = await run(ip, ['netns', 'delete', name], { timeoutMs: TIMEOUT, allowFailure: true });
  if (await netnsExists(name)) {
    throw new Error(`netns: ${name} still exists after ip netns delete (exit ${r.exitCode}: ${r.stderr.trim()})`);
  }
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
