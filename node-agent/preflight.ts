/**
 * Preflight: everything about an env that can be known before anything is
 * made on the host — the programs the runtime runs, and what of the spec this
 * host cannot run (rootfs, user namespaces, AppArmor, a Localhost seccomp
 * profile, limits the cgroup driver cannot enforce). Nothing here changes the
 * host; a problem names its field and ends the env as PreflightError.
 */
import { readFileSync, statSync } from 'node:fs';
import { readFile, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import type { EnvSpec } from '../src/api/env.js';
import type { CgroupDriver } from './cgroup/types.js';
import { capabilitySet, type InitKind } from './oci.js';
import { findExecutable, type CgroupLayout } from './probe.js';
import { DEFAULT_SECCOMP_PROFILE_DIR, parseSeccompProfile, type SeccompProfile } from './seccomp.js';

/** Refused before anything was created on the host. */
export class PreflightError extends Error {
  constructor(readonly problems: string[]) {
    super(problems.join('; '));
    this.name = 'PreflightError';
  }
}

/** Resolved paths of every program the runtime runs. */
export interface Tools {
  readonly runc: string;
  readonly conmon: string;
  readonly init: string;
  readonly initKind: InitKind;
  readonly ip: string;
  readonly unshare: string;
  readonly mount: string;
  readonly umount: string;
}

/** Where system programs (ip, mount, …) are looked up after $PATH. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Find runc, conmon, an init, ip, mount and umount; a PreflightError names what is missing. */
export async function findTools(runtimePath: string | undefined): Promise<Tools> {
  const rtPath = runtimePath ?? process.env.PATH ?? SYSTEM_PATH;
  const sysPath = `${process.env.PATH ?? ''}:${SYSTEM_PATH}`;
  const problems: string[] = [];
  const need = async (name: string, where: string, hint: string): Promise<string> => {
    const p = await findExecutable(name, where);
    if (!p) problems.push(`${name} not found in ${where || '(empty path)'} (${hint})`);
    return p ?? '';
  };
  const via = runtimePath ? 'check --runtime-path' : 'install it, or pass --runtime-path DIR';
  const runc = await need('runc', rtPath, `apt-get install runc; ${via}`);
  const conmon = await need('conmon', rtPath, `apt-get install conmon; ${via}`);
  const tini = await findExecutable('tini-static', rtPath);
  const catatonit = tini ? undefined : await findExecutable('catatonit', rtPath);
  if (!tini && !catatonit) problems.push(`neither tini-static nor catatonit found in ${rtPath} (apt-get install tini; ${via})`);
  const ip = await need('ip', sysPath, 'apt-get install iproute2');
  const unshare = await need('unshare', sysPath, 'apt-get install util-linux');
  const mount = await need('mount', sysPath, 'apt-get install mount');
  const umount = await need('umount', sysPath, 'apt-get install mount');
  if (problems.length) throw new PreflightError(problems);
  return { runc, conmon, init: tini ?? catatonit ?? '', initKind: tini ? 'tini' : 'catatonit', ip, unshare, mount, umount };
}

/** What the spec checks need from the runtime. */
export interface SpecContext {
  readonly stateDir: string;
  readonly driver: CgroupDriver;
  readonly layoutMode: CgroupLayout['mode'];
  readonly seccompProfileDir: string | undefined;
}

/** What of `spec` this host cannot run, each naming its field; changes nothing on the host. */
export async function specProblems(ctx: SpecContext, spec: EnvSpec): Promise<string[]> {
  const problems: string[] = [];
  const hp = spec.rootfs?.hostPath;
  if (hp !== undefined) {
    const st = await stat(hp).catch(() => undefined);
    if (!st) problems.push(`spec.rootfs.hostPath: ${hp} does not exist`);
    else if (!st.isDirectory()) problems.push(`spec.rootfs.hostPath: ${hp} is not a directory`);
  }
  const ns = spec.isolation.namespaces;
  if (ns.includes('user') && !spec.isolation.userNamespace.enabled) {
    problems.push("spec.isolation.userNamespace.enabled is false but 'user' is in spec.isolation.namespaces: remove it to run without a user namespace");
  }
  if (ns.includes('user')) {
    const max = Number(readProc('/proc/sys/user/max_user_namespaces', '0'));
    if (!(max > 0)) problems.push('spec.isolation.namespaces: user namespaces are disabled on this host (max_user_namespaces=0)');
  }
  if (spec.security.appArmorProfile !== undefined) {
    const on = readProc('/sys/module/apparmor/parameters/enabled', 'N') === 'Y';
    if (!on) problems.push('spec.security.appArmorProfile: AppArmor is not enabled on this host');
  }
  if (ns.includes('user')) {
    // runc resolves the rootfs from inside the user namespace, as the mapped root: every
    // directory on the way must be searchable by "others".
    const paths = [ctx.stateDir, ...(hp !== undefined ? [hp] : [])];
    for (const p of paths) {
      const blocked = firstUnsearchable(p);
      if (blocked) problems.push(`${blocked} is not searchable by the env's mapped root user (mode lacks o+x); chmod o+x ${blocked} or use another ${p === hp ? 'rootfs' : '--state-dir'}`);
    }
  }
  if (spec.security.seccompProfile.type === 'Localhost') {
    await localhostSeccomp(ctx.seccompProfileDir, spec).catch((err: unknown) => problems.push((err as Error).message));
  }
  const missing = await ctx.driver.unenforceable(spec.resources);
  if (missing.length && !spec.resources.bestEffort) {
    for (const m of missing) problems.push(`${m.field}: cannot be enforced on this ${ctx.layoutMode} cgroup host: ${m.why} (set spec.resources.bestEffort: true to run without it)`);
  }
  return problems;
}

/**
 * The env's Localhost seccomp profile: `localhostProfile` resolved inside the
 * profile directory (its real path too, so a symlink cannot lead out), read
 * and parsed. The error names the field.
 */
export async function localhostSeccomp(seccompProfileDir: string | undefined, spec: EnvSpec): Promise<SeccompProfile> {
  const field = 'spec.security.seccompProfile.localhostProfile';
  const rel = spec.security.seccompProfile.localhostProfile ?? '';
  const dir = await realpath(seccompProfileDir ?? DEFAULT_SECCOMP_PROFILE_DIR).catch(() => undefined);
  if (!dir) throw new Error(`${field}: the node's seccomp profile directory ${seccompProfileDir ?? DEFAULT_SECCOMP_PROFILE_DIR} does not exist`);
  const file = await realpath(path.resolve(dir, rel)).catch(() => undefined);
  if (!file) throw new Error(`${field}: ${rel} does not exist in the seccomp profile directory ${dir}`);
  if (!file.startsWith(`${dir}/`)) throw new Error(`${field}: ${rel} resolves to ${file}, outside the seccomp profile directory ${dir}`);
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    throw new Error(`${field}: ${file} is not a JSON seccomp profile: ${(err as Error).message}`);
  }
  try {
    return parseSeccompProfile(json, { caps: capabilitySet(spec.security) });
  } catch (err) {
    throw new Error(`${field}: ${file} is not a seccomp profile: ${(err as Error).message}`);
  }
}

/** The first existing directory on the way to `p` (inclusive) that others cannot search. */
function firstUnsearchable(p: string): string | undefined {
  // a stat per level on every create: synchronous, cheaper than a thread-pool round trip each
  const parts = path.resolve(p).split('/').filter(Boolean);
  for (let i = 0; i <= parts.length; i++) {
    const dir = `/${parts.slice(0, i).join('/')}`;
    const st = statSync(dir, { throwIfNoEntry: false });
    if (!st) return undefined; // created later by us with o+x
    if (st.isDirectory() && (st.mode & 0o001) === 0) return dir;
  }
  return undefined;
}

/** A small procfs/sysfs value, trimmed; `fallback` when it cannot be read. */
function readProc(file: string, fallback: string): string {
  try {
    return readFileSync(file, 'utf8').trim();
  } catch {
    return fallback;
  }
}
