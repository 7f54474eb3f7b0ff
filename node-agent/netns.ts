/**
 * The env's network namespace: created by the runtime itself as a named netns
 * (`ip netns add denv-<id>`, a handle under /run/netns) with loopback up, handed
 * to runc by path, and deleted in teardown. Traffic counters for idle detection
 * come from /proc/<pid>/net/dev of a process inside it.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseNetDev } from '../src/core/procfs.js';
import { run } from './exec.js';
import { netnsPath } from './names.js';

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
 * Create netns `name` with `lo` up, in one process: `unshare --net=FILE`
 * makes a new network namespace persistent by bind-mounting it on
 * `/run/netns/<name>` (exactly what `ip netns add` leaves behind, so `ip netns`
 * lists and deletes it) and then execs `ip link set lo up` inside it. The
 * handle file is created with O_EXCL first, so an existing netns of that name
 * is never reused. If anything fails, the netns is deleted again.
 */
export async function createNetns(tools: NetnsTools, name: string): Promise<void> {
  const file = netnsPath(name);
  // two metadata calls on /run (tmpfs on a normal host): synchronous, cheaper than thread-pool round trips
  mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  writeFileSync(file, '', { flag: 'wx', mode: 0o444 });
  try {
    await run(tools.unshare, [`--net=${file}`, '--', tools.ip, 'link', 'set', 'lo', 'up'], { timeoutMs: TIMEOUT });
  } catch (err) {
    await deleteNetns(tools.ip, name).catch(() => undefined);
    throw err;
  }
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
