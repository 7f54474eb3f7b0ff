/**
 * Names and paths of everything the runtime creates on a host. Every host
 * object carries the prefix `denv-` plus the env id, so the leak checker and the
 * GC pass can recognise ours and never touch anyone else's. Ids reach paths, so
 * they are validated strictly here and nowhere is a raw id joined into a path
 * without going through {@link assertEnvId}.
 */
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { dnsLabel } from '../src/api/env.js';

/** Prefix of every named host object (cgroup leaf, netns, runc container id). */
export const HOST_PREFIX = 'denv-';
/** Default state directory of the runtime (journal, bundles, logs). */
export const DEFAULT_STATE_DIR = '/var/lib/disposable-env';
/** The runc state root the project uses; the leak checker looks here. */
export const RUNC_ROOT = '/run/disposable-env/runc';
/** Where per-env uid/gid range reservations live (host-wide, shared by every state dir). */
export const IDMAP_DIR = '/run/disposable-env/idmap';
/**
 * Every state dir a runtime on this host has used, one file each (content: the
 * absolute path), so that a GC pass for one state dir never takes another
 * state dir's live envs for orphans. Under /run: forgotten with the host objects at reboot.
 */
export const STATE_REGISTRY_DIR = '/run/disposable-env/statedirs';
/** Default cgroup root under which `<class>/denv-<id>` is created. */
export const DEFAULT_CGROUP_ROOT = 'disposable.slice';

const CLASS_NAME = dnsLabel(); // spec.class

/** Whether `name` can be an env class (a DNS label), i.e. a directory under the cgroup root that we made. */
export function isClassName(name: string): boolean {
  return CLASS_NAME.safeParse(name).success;
}

// A lowercase DNS-label-like token: fits a Kubernetes UID (36 chars) and short CLI ids.
const ENV_ID = /^[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?$/;
const CGROUP_SEGMENT = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;

/** An id or path component that failed validation; nothing was created. */
export class NameError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NameError';
  }
}

/** A fresh short env id for the CLI: 10 lowercase base-36 characters (~51 bits). */
export function generateEnvId(): string {
  const bytes = randomBytes(10);
  let out = '';
  for (const b of bytes) out += (b % 36).toString(36);
  // a leading digit is fine for every consumer, but a letter reads better in `denv ps`
  return out.replace(/^[0-9]/, (d) => String.fromCharCode(97 + Number(d)));
}

/** Throw unless `id` is a valid env id (it becomes part of paths and names). */
export function assertEnvId(id: string): string {
  if (!ENV_ID.test(id)) {
    throw new NameError(`invalid env id ${JSON.stringify(id)}: must be 1-40 lowercase letters, digits or '-', starting and ending with a letter or digit`);
  }
  return id;
}

/** True when `id` is a valid env id. */
export function isEnvId(id: string): boolean {
  return ENV_ID.test(id);
}

/** Validate a cgroup root such as `disposable.slice` or `kubepods/denv`: relative, safe segments only. */
export function assertCgroupRoot(root: string): string {
  const segs = root.split('/');
  if (!root || root.startsWith('/') || segs.some((s) => !CGROUP_SEGMENT.test(s) || s === '.' || s === '..')) {
    throw new NameError(`invalid cgroup root ${JSON.stringify(root)}: must be a relative path of [A-Za-z0-9_.-] segments`);
  }
  return root;
}

/** The host name of an env's objects: `denv-<id>`. */
export function hostName(id: string): string {
  return `${HOST_PREFIX}${assertEnvId(id)}`;
}

/** The env id inside a host name such as `denv-<id>`, or undefined when it is not ours. */
export function envIdFromHostName(name: string): string | undefined {
  if (!name.startsWith(HOST_PREFIX)) return undefined;
  const id = name.slice(HOST_PREFIX.length);
  return isEnvId(id) ? id : undefined;
}

/** The cgroup path of an env relative to a hierarchy root: `<root>/<class>/denv-<id>`. */
export function cgroupRelPath(root: string, klass: string, id: string): string {
  if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(klass) || klass.length > 63) throw new NameError(`invalid class ${JSON.stringify(klass)}`);
  return `${assertCgroupRoot(root)}/${klass}/${hostName(id)}`;
}

/** Every on-disk path of one env under the state directory. */
export interface EnvPaths {
  readonly dir: string;
  readonly journal: string;
  readonly bundle: string;
  readonly config: string;
  readonly rootfs: string;
  readonly log: string;
  readonly exitDir: string;
  readonly exitFile: string;
  readonly conmonPidFile: string;
  readonly containerPidFile: string;
  readonly socketDir: string;
  readonly stopRequest: string;
  readonly supervisorLog: string;
}

/** Paths of env `id` under `stateDir` (absolute). */
export function envPaths(stateDir: string, id: string): EnvPaths {
  const dir = path.join(path.resolve(stateDir), 'envs', assertEnvId(id));
  const bundle = path.join(dir, 'bundle');
  const exitDir = path.join(dir, 'exits');
  return {
    dir,
    journal: path.join(dir, 'journal.json'),
    bundle,
    config: path.join(bundle, 'config.json'),
    rootfs: path.join(bundle, 'rootfs'),
    log: path.join(dir, 'workload.log'),
    exitDir,
    exitFile: path.join(exitDir, hostName(id)),
    conmonPidFile: path.join(dir, 'conmon.pid'),
    containerPidFile: path.join(dir, 'container.pid'),
    socketDir: path.join(dir, 'sock'),
    stopRequest: path.join(dir, 'stop-request.json'),
    supervisorLog: path.join(dir, 'supervisor.log'),
  };
}

/** Path of a named network namespace created with `ip netns add`. */
export function netnsPath(name: string): string {
  return path.join('/run/netns', name);
}
