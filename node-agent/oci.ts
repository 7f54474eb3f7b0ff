/**
 * Pure generation of the OCI runtime config (config.json) for one env: seven
 * namespaces by default (the netns by path, created by the runtime itself), a
 * user-namespace mapping of root to an unprivileged host range, the rootfs,
 * fresh /proc, /dev, /tmp and /run, the zombie-reaping init bind-mounted
 * read-only at /dev/init, capabilities, no_new_privs and the seccomp profile
 * (RuntimeDefault, or a Localhost profile the runtime has read). No I/O: everything it needs is a parameter, so it is unit-tested.
 */
import type { EnvSpec } from '../src/api/env.js';
import { DEFAULT_CAPABILITIES, type Capability, type NamespaceKind } from '../src/api/constants.js';
import { defaultSeccompProfile, type SeccompProfile } from './seccomp.js';

/** Where the init binary appears inside every env. /dev is always a fresh tmpfs, so the path never collides with the rootfs. */
export const INIT_PATH_IN_ENV = '/dev/init';

/** PATH given to workloads unless their spec sets one. */
export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Which init is bind-mounted as PID 1. */
export type InitKind = 'tini' | 'catatonit';

/** Everything the config depends on besides the spec. */
export interface OciInputs {
  readonly id: string;
  readonly name: string;
  readonly spec: EnvSpec;
  /** Host path given to runc as root.path. */
  readonly rootfsPath: string;
  /** True when the rootfs is the host's root (read-only bind made by the runtime). */
  readonly hostRoot: boolean;
  readonly netnsPath?: string;
  readonly idRange?: { readonly start: number; readonly size: number };
  readonly cgroupsPath: string;
  readonly initHostPath: string;
  readonly initKind: InitKind;
  readonly appArmorAvailable?: boolean;
  /** The parsed Localhost profile (spec.security.seccompProfile.type Localhost), read by the runtime. */
  readonly localhostSeccomp?: SeccompProfile;
}

/** The subset of the OCI runtime spec this project writes. */
export interface OciConfig {
  ociVersion: string;
  process: {
    terminal: boolean;
    user: { uid: number; gid: number };
    args: string[];
    env: string[];
    cwd: string;
    capabilities: { bounding: string[]; effective: string[]; permitted: string[]; inheritable: string[]; ambient: string[] };
    noNewPrivileges: boolean;
    apparmorProfile?: string;
  };
  root: { path: string; readonly: boolean };
  hostname?: string;
  mounts: { destination: string; type: string; source: string; options?: string[] }[];
  annotations: Record<string, string>;
  linux: {
    namespaces: { type: string; path?: string }[];
    uidMappings?: { containerID: number; hostID: number; size: number }[];
    gidMappings?: { containerID: number; hostID: number; size: number }[];
    cgroupsPath: string;
    resources: { devices: { allow: boolean; access: string }[] };
    seccomp?: SeccompProfile;
    maskedPaths: string[];
    readonlyPaths: string[];
  };
}

/** The env's capability set: (DEFAULT_CAPABILITIES ∪ add) − drop; `drop: [ALL]` leaves only `add` (Kubernetes semantics). */
export function capabilitySet(sec: EnvSpec['security']): string[] {
  const drop = new Set<string>(sec.capabilities.drop);
  const add = sec.capabilities.add;
  const base: Capability[] = drop.has('ALL') ? [] : DEFAULT_CAPABILITIES.filter((c) => !drop.has(c));
  const extra = add.filter((c) => drop.has('ALL') || !drop.has(c));
  return [...new Set([...base, ...extra])].sort().map((c) => `CAP_${c}`);
}

/** The init's argv before `--`: forward signals to the workload's process group; subreaper when not PID 1. */
export function initArgs(kind: InitKind, hasPidNamespace: boolean): string[] {
  const args = ['-g'];
  if (!hasPidNamespace && kind === 'tini') args.push('-s');
  return [INIT_PATH_IN_ENV, ...args, '--'];
}

function processEnv(spec: EnvSpec, hostname: string | undefined): string[] {
  const env = new Map<string, string>([
    ['PATH', DEFAULT_PATH],
    ['HOME', '/root'],
  ]);
  if (hostname) env.set('HOSTNAME', hostname);
  for (const e of spec.workload.env ?? []) env.set(e.name, e.value);
  return [...env].map(([k, v]) => `${k}=${v}`);
}

const NS_TYPE: Record<NamespaceKind, string> = {
  pid: 'pid',
  net: 'network',
  mount: 'mount',
  uts: 'uts',
  ipc: 'ipc',
  user: 'user',
  cgroup: 'cgroup',
};

function namespaces(kinds: readonly NamespaceKind[], netnsPath: string | undefined): OciConfig['linux']['namespaces'] {
  return kinds.map((k) => (k === 'net' ? { type: NS_TYPE.net, ...(netnsPath ? { path: netnsPath } : {}) } : { type: NS_TYPE[k] }));
}

function mounts(i: OciInputs, kinds: ReadonlySet<NamespaceKind>): OciConfig['mounts'] {
  const m: OciConfig['mounts'] = [];
  // A proc mount needs the env's own pid namespace; without one, bind the host's read-only.
  m.push(
    kinds.has('pid')
      ? { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] }
      : { destination: '/proc', type: 'bind', source: '/proc', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] },
  );
  m.push({ destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] });
  m.push({ destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] });
  m.push({ destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] });
  if (kinds.has('ipc')) m.push({ destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] });
  // sysfs can only be mounted by the owner of the netns; ours is made outside the env's user namespace
  m.push({ destination: '/sys', type: 'bind', source: '/sys', options: ['rbind', 'nosuid', 'noexec', 'nodev', 'ro'] });
  if (kinds.has('cgroup')) {
    m.push({ destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', 'ro'] });
  }
  const freshTmp = i.hostRoot || (i.spec.rootfs?.readOnly ?? false);
  if (freshTmp) m.push({ destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=1777'] });
  // the host's /run holds netns handles, runtime state and sockets: never show it
  if (i.hostRoot) m.push({ destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'nodev', 'mode=755'] });
  m.push({ destination: INIT_PATH_IN_ENV, type: 'bind', source: i.initHostPath, options: ['bind', 'ro', 'nosuid', 'nodev'] });
  return m;
}

/** Build the OCI config for one env. */
export function buildOciConfig(i: OciInputs): OciConfig {
  const spec = i.spec;
  const kinds = new Set(spec.isolation.namespaces);
  if (kinds.has('net') && !i.netnsPath) throw new Error('oci: a network namespace is requested but no netns path was given');
  if (kinds.has('user') && !i.idRange) throw new Error('oci: a user namespace is requested but no id range was given');
  const hostname = kinds.has('uts') ? (spec.workload.hostname ?? i.name) : undefined;
  const caps = capabilitySet(spec.security);
  const args = [...initArgs(i.initKind, kinds.has('pid')), ...spec.workload.command, ...(spec.workload.args ?? [])];
  const cfg: OciConfig = {
    ociVersion: '1.0.2',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: processEnv(spec, hostname),
      cwd: spec.workload.workingDir ?? '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: spec.security.noNewPrivileges,
      ...(spec.security.appArmorProfile && i.appArmorAvailable ? { apparmorProfile: spec.security.appArmorProfile } : {}),
    },
    root: { path: i.rootfsPath, readonly: i.hostRoot || (spec.rootfs?.readOnly ?? false) },
    ...(hostname ? { hostname } : {}),
    mounts: mounts(i, kinds),
    annotations: { 'dev.disposable.env-id': i.id, 'dev.disposable.env-name': i.name, 'dev.disposable.class': spec.class },
    linux: {
      namespaces: namespaces(spec.isolation.namespaces, i.netnsPath),
      cgroupsPath: i.cgroupsPath,
      resources: { devices: [{ allow: false, access: 'rwm' }] },
      maskedPaths: [
        '/proc/acpi', '/proc/asound', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
        '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
      ],
      readonlyPaths: ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'],
    },
  };
  if (kinds.has('user') && i.idRange) {
    const map = [{ containerID: 0, hostID: i.idRange.start, size: i.idRange.size }];
    cfg.linux.uidMappings = map;
    cfg.linux.gidMappings = map.map((x) => ({ ...x }));
  }
  cfg.linux.seccomp = seccompFor(spec.security.seccompProfile.type, caps, i.localhostSeccomp);
  if (!cfg.linux.seccomp) delete cfg.linux.seccomp;
  return cfg;
}

function seccompFor(type: EnvSpec['security']['seccompProfile']['type'], caps: readonly string[], localhost: SeccompProfile | undefined): SeccompProfile | undefined {
  switch (type) {
    case 'RuntimeDefault':
      return defaultSeccompProfile({ caps });
    case 'Unconfined':
      return undefined;
    case 'Localhost':
      if (!localhost) throw new Error('oci: seccompProfile type Localhost but no profile was read');
      return localhost;
  }
}
