/**
 * What this host is and can do, detected once: the cgroup mode (statfs magic of
 * /sys/fs/cgroup and of the hybrid `unified` mount), the mounted hierarchies and
 * controllers, kernel, user namespaces, and which runtime tools are installed.
 * `denv doctor` prints it; the runtime uses it to pick a cgroup driver and to
 * refuse — before creating anything — what this host cannot enforce.
 */
import { access, constants, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseMountinfo } from '../src/core/procfs.js';
import { run } from './exec.js';
import type { CgroupMode } from './cgroup/types.js';
import { helperStatus } from './spawner.js';

/** statfs f_type of a cgroup v2 mount. */
export const CGROUP2_SUPER_MAGIC = 0x63677270;
/** statfs f_type of a cgroup v1 mount. */
export const CGROUP_SUPER_MAGIC = 0x27e0eb;
/** statfs f_type of tmpfs (the /sys/fs/cgroup of hybrid and legacy hosts). */
export const TMPFS_MAGIC = 0x01021994;

/** One mounted cgroup v1 hierarchy. */
export interface V1Hierarchy {
  readonly mountPoint: string;
  /** Controllers bound to it (e.g. ["cpu", "cpuacct"]); a named hierarchy has none. */
  readonly controllers: string[];
  /** `name=` of a named hierarchy such as `systemd`. */
  readonly name?: string;
}

/** Where the cgroup hierarchies are. */
export interface CgroupLayout {
  readonly mode: CgroupMode;
  /** The cgroup2 mount (the whole tree on unified hosts, `unified` on hybrid ones). */
  readonly v2Root?: string;
  readonly v1: V1Hierarchy[];
}

/** Detect the cgroup layout: mode by statfs magic, hierarchies from mountinfo. */
export async function detectCgroupLayout(base = '/sys/fs/cgroup', mountinfoText?: string): Promise<CgroupLayout> {
  const magic = (await statfs(base)).type;
  const text = mountinfoText ?? (await readFile('/proc/self/mountinfo', 'utf8'));
  const mounts = parseMountinfo(text);
  if (magic === CGROUP2_SUPER_MAGIC) return { mode: 'unified', v2Root: base, v1: [] };
  const v1: V1Hierarchy[] = [];
  const seen = new Set<string>();
  for (const m of mounts) {
    if (m.fsType !== 'cgroup' || m.root !== '/' || !m.mountPoint.startsWith(`${base}/`)) continue;
    if (seen.has(m.majorMinor)) continue; // the same hierarchy mounted twice
    seen.add(m.majorMinor);
    const opts = m.superOptions.split(',');
    const name = opts.find((o) => o.startsWith('name='))?.slice(5);
    const controllers = opts.filter((o) => V1_CONTROLLERS.has(o));
    v1.push({ mountPoint: m.mountPoint, controllers, ...(name ? { name } : {}) });
  }
  const unified = path.join(base, 'unified');
  let unifiedMagic: number | undefined;
  try {
    unifiedMagic = (await statfs(unified)).type;
  } catch {
    unifiedMagic = undefined;
  }
  if (unifiedMagic === CGROUP2_SUPER_MAGIC) return { mode: 'hybrid', v2Root: unified, v1 };
  return { mode: 'legacy', v1 };
}

const V1_CONTROLLERS = new Set([
  'cpu', 'cpuacct', 'cpuset', 'memory', 'devices', 'freezer', 'net_cls', 'net_prio', 'blkio', 'perf_event', 'hugetlb', 'pids', 'rdma', 'misc',
]);

/** The v1 hierarchy holding `controller`, if mounted. */
export function v1Hierarchy(layout: CgroupLayout, controller: string): V1Hierarchy | undefined {
  return layout.v1.find((h) => h.controllers.includes(controller));
}

/** A tool the runtime may use, and whether this host has it. */
export interface ToolInfo {
  readonly path?: string;
  readonly version?: string;
}

/** Tools `denv doctor` reports; runc, conmon, ip, unshare, mount, umount and one init are required to run envs. */
export const TOOLS = ['runc', 'crun', 'conmon', 'tini-static', 'tini', 'catatonit', 'ip', 'unshare', 'mount', 'umount'] as const;
export type ToolName = (typeof TOOLS)[number];

/** Find an executable named `name` in the colon-separated `searchPath`. */
export async function findExecutable(name: string, searchPath: string): Promise<string | undefined> {
  for (const dir of searchPath.split(':')) {
    if (!dir || !path.isAbsolute(dir)) continue;
    const p = path.join(dir, name);
    try {
      await access(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

async function toolVersion(name: ToolName, file: string): Promise<string | undefined> {
  const args = name === 'ip' ? ['-V'] : ['--version'];
  try {
    const r = await run(file, args, { timeoutMs: 5000, allowFailure: true });
    const line = (r.stdout || r.stderr).split('\n')[0]?.trim();
    return line || undefined;
  } catch {
    return undefined;
  }
}

/** Everything `denv doctor` reports. */
export interface HostProbe {
  readonly kernel: string;
  readonly cgroup: CgroupLayout & {
    /** v2 controllers available (cgroup.controllers of the v2 root) or mounted v1 controllers. */
    readonly controllers: string[];
    readonly v2Features: { kill: boolean; freeze: boolean; events: boolean };
  };
  readonly userNamespaces: { supported: boolean; max: number };
  readonly tools: Record<ToolName, ToolInfo>;
  /** The spawn helper (dist/native/denv-spawn): without it every program the runtime runs forks the agent. */
  readonly spawnHelper: { path?: string };
  readonly canEnforce: string[];
  readonly cannotEnforce: { what: string; why: string }[];
}

async function readNumber(file: string): Promise<number | undefined> {
  try {
    return Number((await readFile(file, 'utf8')).trim());
  } catch {
    return undefined;
  }
}

async function present(file: string): Promise<boolean> {
  try {
    await access(file);
    return true;
  } catch {
    return false;
  }
}

/** Probe the host. `searchPath` decides where tools are looked up (default $PATH). */
export async function probeHost(searchPath = process.env.PATH ?? ''): Promise<HostProbe> {
  const layout = await detectCgroupLayout();
  let controllers: string[] = [];
  if (layout.v2Root) {
    const text = await readFile(path.join(layout.v2Root, 'cgroup.controllers'), 'utf8').catch(() => '');
    controllers = text.trim().split(/\s+/).filter(Boolean);
  }
  if (layout.mode !== 'unified') controllers = [...new Set([...layout.v1.flatMap((h) => h.controllers), ...controllers.map((c) => `${c} (v2)`)])];
  // cgroup.kill/freeze/events exist only in non-root cgroups; their presence follows the kernel version.
  const [maj = 0, min = 0] = os.release().split('.').map((x) => Number.parseInt(x, 10));
  const kernelAtLeast = (a: number, b: number): boolean => maj > a || (maj === a && min >= b);
  const v2Features = layout.v2Root
    ? { kill: kernelAtLeast(5, 14), freeze: kernelAtLeast(5, 2), events: true }
    : { kill: false, freeze: false, events: false };
  const max = (await readNumber('/proc/sys/user/max_user_namespaces')) ?? 0;
  const tools = {} as Record<ToolName, ToolInfo>;
  for (const t of TOOLS) {
    const file = await findExecutable(t, searchPath);
    tools[t] = file ? { path: file, version: await toolVersion(t, file) } : {};
  }
  const helper = helperStatus().binary;
  const { can, cannot } = await enforcement(layout, controllers);
  if (!tools.runc.path) cannot.push({ what: 'running envs', why: 'runc not found (apt-get install runc)' });
  if (!tools.conmon.path) cannot.push({ what: 'running envs', why: 'conmon not found (apt-get install conmon)' });
  if (!tools['tini-static'].path && !tools.catatonit.path) cannot.push({ what: 'running envs', why: 'no static init (apt-get install tini or catatonit)' });
  if (max <= 0) cannot.push({ what: 'isolation.userNamespace', why: '/proc/sys/user/max_user_namespaces is 0' });
  if (tools.crun.path && layout.mode === 'hybrid') cannot.push({ what: 'crun', why: 'crun refuses hybrid cgroup hosts; runc is used' });
  return {
    kernel: `${os.type()} ${os.release()}`,
    cgroup: { ...layout, controllers, v2Features },
    userNamespaces: { supported: max > 0, max },
    tools,
    spawnHelper: { ...(helper ? { path: helper } : {}) },
    canEnforce: can,
    cannotEnforce: cannot,
  };
}

async function enforcement(layout: CgroupLayout, controllers: string[]): Promise<{ can: string[]; cannot: { what: string; why: string }[] }> {
  const can: string[] = [];
  const cannot: { what: string; why: string }[] = [];
  const add = (ok: boolean, what: string, why: string): void => {
    if (ok) can.push(what);
    else cannot.push({ what, why });
  };
  if (layout.mode === 'unified') {
    const has = (c: string): boolean => controllers.includes(c);
    add(has('memory'), 'memory.max, memory.high, memory.swapMax (swap needs swap accounting)', 'memory controller not available');
    add(has('cpu'), 'cpu.max, cpu.weight', 'cpu controller not available');
    add(has('pids'), 'pids.max', 'pids controller not available');
    add(has('io'), 'io.weight, io.max', 'io controller not available');
    return { can, cannot };
  }
  const mem = v1Hierarchy(layout, 'memory');
  add(!!mem, 'memory.max (memory.limit_in_bytes)', 'memory hierarchy not mounted');
  cannot.push({ what: 'memory.high', why: 'cgroup v1 has no memory.high' });
  add(!!mem && (await present(path.join(mem.mountPoint, 'memory.memsw.limit_in_bytes'))), 'memory.swapMax (memory.memsw.limit_in_bytes)', 'no swap accounting (memory.memsw.* missing)');
  const cpu = v1Hierarchy(layout, 'cpu');
  add(!!cpu && (await present(path.join(cpu.mountPoint, 'cpu.cfs_quota_us'))), 'cpu.max (cpu.cfs_quota_us)', 'cpu hierarchy or CFS bandwidth control missing');
  add(!!cpu, 'cpu.weight (cpu.shares)', 'cpu hierarchy not mounted');
  add(!!v1Hierarchy(layout, 'pids'), 'pids.max', 'pids hierarchy not mounted');
  const blkio = v1Hierarchy(layout, 'blkio');
  add(!!blkio && (await present(path.join(blkio.mountPoint, 'blkio.weight'))), 'io.weight (blkio.weight)', 'blkio.weight missing (this kernel has only BFQ weights)');
  add(!!blkio && (await present(path.join(blkio.mountPoint, 'blkio.throttle.read_bps_device'))), 'io.max (blkio.throttle.*)', 'blkio throttling missing');
  add(!!v1Hierarchy(layout, 'freezer') || !!layout.v2Root, 'kill whole env (freezer or cgroup.kill)', 'neither freezer nor a cgroup2 tree');
  return { can, cannot };
}
