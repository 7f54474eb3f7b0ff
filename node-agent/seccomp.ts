/**
 * Seccomp for envs (security.seccompProfile), the way the established runtimes
 * do it: `RuntimeDefault` is an allow-list. Its default action refuses with
 * ENOSYS, so a syscall the profile does not know (a newer one) looks absent
 * and the C library falls back; the syscalls that let a workload reach past
 * its env are refused by name with EPERM, so the failure is clear. Which
 * syscalls are allowed and why: docs/seccomp.md. `Localhost` profiles are
 * parsed and checked here too. Pure, so it is unit-tested; the runtime reads
 * the file.
 */

/** Where Localhost profiles are looked up unless the node sets --seccomp-profile-dir. */
export const DEFAULT_SECCOMP_PROFILE_DIR = '/var/lib/disposable-env/seccomp';

/** EPERM: the errno of the syscalls this profile refuses by name. */
export const EPERM = 1;
/** ENOSYS: the default errno (unknown syscalls), and clone3's, so libc falls back to clone(), whose flags we can inspect. */
export const ENOSYS = 38;

/**
 * The allow-list, by group. A name this host's libseccomp does not know (a
 * newer syscall, another architecture's) is skipped by runc, so the list may
 * name calls of newer kernels.
 */
export const ALLOWED_SYSCALL_GROUPS: Readonly<Record<string, readonly string[]>> = {
  // running a program and its threads; clone is allowed only without namespace flags (CLONE_RULES)
  process: [
    'fork', 'vfork', 'execve', 'execveat', 'exit', 'exit_group', 'wait4', 'waitid', 'kill', 'tkill', 'tgkill',
    'getpid', 'getppid', 'gettid', 'getpgid', 'setpgid', 'getpgrp', 'getsid', 'setsid', 'set_tid_address',
    'set_robust_list', 'get_robust_list', 'futex', 'futex_waitv', 'futex_wake', 'futex_wait', 'futex_requeue',
    'rseq', 'prctl', 'restart_syscall', 'pidfd_open', 'pidfd_send_signal', 'seccomp',
  ],
  // scheduling and priorities within the env's cgroup limits
  scheduling: [
    'sched_yield', 'sched_getaffinity', 'sched_setaffinity', 'sched_getparam', 'sched_setparam', 'sched_getscheduler',
    'sched_setscheduler', 'sched_get_priority_max', 'sched_get_priority_min', 'sched_rr_get_interval', 'sched_getattr',
    'sched_setattr', 'getpriority', 'setpriority', 'ioprio_get', 'ioprio_set', 'getcpu',
  ],
  // identities inside the env's user namespace; the capability set decides what succeeds
  credentials: [
    'getuid', 'geteuid', 'getgid', 'getegid', 'setuid', 'setgid', 'setreuid', 'setregid', 'setresuid', 'setresgid',
    'getresuid', 'getresgid', 'getgroups', 'setgroups', 'setfsuid', 'setfsgid', 'capget', 'capset',
  ],
  signals: [
    'rt_sigaction', 'rt_sigprocmask', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigpending', 'rt_sigtimedwait',
    'rt_sigqueueinfo', 'rt_tgsigqueueinfo', 'sigaltstack', 'signalfd', 'signalfd4', 'pause', 'alarm',
  ],
  // the process's own memory (accounted to its cgroup)
  memory: [
    'brk', 'mmap', 'munmap', 'mremap', 'mprotect', 'madvise', 'mincore', 'msync', 'mlock', 'mlock2', 'munlock',
    'mlockall', 'munlockall', 'membarrier', 'memfd_create', 'pkey_alloc', 'pkey_free', 'pkey_mprotect',
    'get_mempolicy', 'set_mempolicy', 'mbind', 'remap_file_pages', 'mseal',
  ],
  // files, directories, descriptors and polling, on what the mount namespace shows
  files: [
    'read', 'write', 'readv', 'writev', 'pread64', 'pwrite64', 'preadv', 'pwritev', 'preadv2', 'pwritev2',
    'open', 'openat', 'openat2', 'creat', 'close', 'close_range', 'dup', 'dup2', 'dup3', 'lseek', 'fstat', 'stat',
    'lstat', 'newfstatat', 'statx', 'statfs', 'fstatfs', 'access', 'faccessat', 'faccessat2', 'fcntl', 'flock',
    'fsync', 'fdatasync', 'sync', 'syncfs', 'sync_file_range', 'truncate', 'ftruncate', 'fallocate', 'fadvise64',
    'readahead', 'getdents', 'getdents64', 'getcwd', 'chdir', 'fchdir', 'rename', 'renameat', 'renameat2', 'mkdir',
    'mkdirat', 'rmdir', 'link', 'linkat', 'unlink', 'unlinkat', 'symlink', 'symlinkat', 'readlink', 'readlinkat',
    'chmod', 'fchmod', 'fchmodat', 'fchmodat2', 'chown', 'fchown', 'lchown', 'fchownat', 'umask', 'utime', 'utimes',
    'utimensat', 'futimesat', 'mknod', 'mknodat', 'sendfile', 'splice', 'tee', 'vmsplice', 'copy_file_range',
    'ioctl', 'pipe', 'pipe2', 'select', 'pselect6', 'poll', 'ppoll', 'epoll_create', 'epoll_create1', 'epoll_ctl',
    'epoll_wait', 'epoll_pwait', 'epoll_pwait2', 'eventfd', 'eventfd2', 'inotify_init', 'inotify_init1',
    'inotify_add_watch', 'inotify_rm_watch', 'getxattr', 'lgetxattr', 'fgetxattr', 'setxattr', 'lsetxattr',
    'fsetxattr', 'listxattr', 'llistxattr', 'flistxattr', 'removexattr', 'lremovexattr', 'fremovexattr',
    'getxattrat', 'setxattrat', 'listxattrat', 'removexattrat', 'cachestat',
  ],
  // POSIX AIO through the kernel's older interface (io_uring is refused)
  aio: ['io_setup', 'io_destroy', 'io_submit', 'io_cancel', 'io_getevents', 'io_pgetevents'],
  // reading clocks and timers; setting a clock is refused
  time: [
    'clock_gettime', 'clock_getres', 'clock_nanosleep', 'nanosleep', 'gettimeofday', 'time', 'times', 'timer_create',
    'timer_settime', 'timer_gettime', 'timer_getoverrun', 'timer_delete', 'timerfd_create', 'timerfd_settime',
    'timerfd_gettime', 'getitimer', 'setitimer',
  ],
  // System V and POSIX IPC, inside the env's IPC namespace
  ipc: [
    'msgget', 'msgsnd', 'msgrcv', 'msgctl', 'semget', 'semop', 'semtimedop', 'semctl', 'shmget', 'shmat', 'shmdt',
    'shmctl', 'mq_open', 'mq_unlink', 'mq_timedsend', 'mq_timedreceive', 'mq_notify', 'mq_getsetattr',
  ],
  // sockets, inside the env's network namespace
  network: [
    'socket', 'socketpair', 'bind', 'connect', 'listen', 'accept', 'accept4', 'getsockname', 'getpeername', 'sendto',
    'recvfrom', 'sendmsg', 'recvmsg', 'sendmmsg', 'recvmmsg', 'shutdown', 'setsockopt', 'getsockopt',
  ],
  // the env's own view of the system: limits, its UTS names, randomness; landlock only narrows the caller
  system: [
    'uname', 'sysinfo', 'getrlimit', 'setrlimit', 'prlimit64', 'getrusage', 'sethostname', 'setdomainname',
    'getrandom', 'landlock_create_ruleset', 'landlock_add_rule', 'landlock_restrict_self',
  ],
};

/** Allowed only on one architecture (by Node's `process.arch`): the ABI's own calls. */
export const ARCH_SYSCALLS: Readonly<Record<string, readonly string[]>> = {
  x64: ['arch_prctl', 'set_thread_area', 'get_thread_area'],
  arm64: [],
  arm: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
};

/** Allowed only when the env's capability set holds the capability; refused with EPERM otherwise. */
export const CAPABILITY_SYSCALLS: Readonly<Record<string, readonly string[]>> = {
  // reading another process's memory: debuggers and profilers inside the env
  CAP_SYS_PTRACE: ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp', 'pidfd_getfd'],
  // chroot stays inside the env's mount namespace; dropping SYS_CHROOT removes it
  CAP_SYS_CHROOT: ['chroot'],
};

/** Refused by name with EPERM in every case: the calls that reach past the env. */
export const REFUSED_SYSCALLS: readonly string[] = [
  // io_uring: a second syscall interface that seccomp cannot see into, and a frequent source of kernel bugs
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  // the kernel keyring is not namespaced
  'keyctl', 'add_key', 'request_key',
  // kernel programs, kernel page faults handled by user space, performance counters
  'bpf', 'userfaultfd', 'perf_event_open', 'lookup_dcookie',
  // new namespaces and joining others (clone with namespace flags is filtered by CLONE_RULES)
  'unshare', 'setns',
  // the mount family and the root
  'mount', 'umount', 'umount2', 'pivot_root', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree',
  'open_tree_attr', 'mount_setattr',
  // kernel code and the running kernel
  'init_module', 'finit_module', 'delete_module', 'create_module', 'kexec_load', 'kexec_file_load', 'reboot',
  'iopl', 'ioperm', 'syslog', '_sysctl', 'uselib', 'vm86', 'vm86old', 'nfsservctl',
  // host clocks (the time namespace is not used)
  'settimeofday', 'stime', 'clock_settime', 'clock_adjtime', 'adjtimex',
  // host-wide state
  'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd',
  // file handles resolve outside the env's mounts
  'open_by_handle_at', 'name_to_handle_at',
];

/** clone() flags that create namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. */
export const CLONE_NAMESPACE_BITS: readonly number[] = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

/** The seccomp actions runc 1.1 accepts, without SCMP_ACT_NOTIFY (it needs a listener this project does not run). */
export const SECCOMP_ACTIONS = [
  'SCMP_ACT_ALLOW', 'SCMP_ACT_ERRNO', 'SCMP_ACT_KILL', 'SCMP_ACT_KILL_PROCESS', 'SCMP_ACT_KILL_THREAD', 'SCMP_ACT_TRAP', 'SCMP_ACT_TRACE', 'SCMP_ACT_LOG',
] as const;
/** A seccomp action. */
export type SeccompAction = (typeof SECCOMP_ACTIONS)[number];

const ARG_OPS = ['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', 'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ'] as const;

/** A condition on one syscall argument (runtime-spec `linux.seccomp.syscalls[].args[]`). */
export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op: (typeof ARG_OPS)[number];
}

/** An OCI seccomp rule (runtime-spec `linux.seccomp.syscalls[]`). */
export interface SeccompRule {
  names: string[];
  action: SeccompAction;
  errnoRet?: number;
  args?: SeccompArg[];
}

/** An OCI seccomp section (runtime-spec `linux.seccomp`). */
export interface SeccompProfile {
  defaultAction: SeccompAction;
  defaultErrnoRet?: number;
  architectures: string[];
  flags?: string[];
  syscalls: SeccompRule[];
}

/** Architectures for the host's `process.arch`: native plus its compat ABIs. */
export function seccompArchitectures(arch: string = process.arch): string[] {
  switch (arch) {
    case 'x64':
      return ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'];
    case 'arm64':
      return ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'];
    default:
      return [];
  }
}

const NAMESPACE_MASK = CLONE_NAMESPACE_BITS.reduce((m, b) => m | b, 0);

/**
 * clone(2): allowed when no namespace flag is set, EPERM for each flag (rules
 * are ORed, so one rule per bit: (flags & bit) == bit). Arg 0 holds the flags
 * on x86-64 and arm64.
 */
const CLONE_RULES: readonly SeccompRule[] = [
  { names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: NAMESPACE_MASK, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] },
  ...CLONE_NAMESPACE_BITS.map(
    (bit): SeccompRule => ({ names: ['clone'], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM, args: [{ index: 0, value: bit, valueTwo: bit, op: 'SCMP_CMP_MASKED_EQ' }] }),
  ),
];

/** Every name the default profile allows for `arch` and the capability set `caps` (`CAP_*` names). */
export function allowedSyscalls(opts: { caps?: readonly string[]; arch?: string } = {}): string[] {
  const caps = new Set(opts.caps ?? []);
  const conditional = Object.entries(CAPABILITY_SYSCALLS).flatMap(([cap, names]) => (caps.has(cap) ? names : []));
  return [...Object.values(ALLOWED_SYSCALL_GROUPS).flat(), ...(ARCH_SYSCALLS[opts.arch ?? process.arch] ?? []), ...conditional];
}

/**
 * The RuntimeDefault profile for an env with capability set `caps` (`CAP_*`
 * names, as in the OCI config): default ENOSYS, the allow-list, the refusals
 * with EPERM (including capability-gated calls the env lacks), clone without
 * namespace flags, clone3 ENOSYS.
 */
export function defaultSeccompProfile(opts: { caps?: readonly string[]; arch?: string } = {}): SeccompProfile {
  const caps = new Set(opts.caps ?? []);
  const gatedOff = Object.entries(CAPABILITY_SYSCALLS).flatMap(([cap, names]) => (caps.has(cap) ? [] : names));
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: ENOSYS,
    architectures: seccompArchitectures(opts.arch),
    syscalls: [
      { names: allowedSyscalls(opts), action: 'SCMP_ACT_ALLOW' },
      { names: [...REFUSED_SYSCALLS, ...gatedOff], action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      ...CLONE_RULES,
      // clone3 passes flags in memory where seccomp cannot look: ENOSYS makes libc use clone()
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}

/** A Localhost profile file that is not a seccomp profile; the message says what is wrong. */
export class SeccompProfileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SeccompProfileError';
  }
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isAction = (v: unknown): v is SeccompAction => typeof v === 'string' && (SECCOMP_ACTIONS as readonly string[]).includes(v);
const errno = (v: unknown, where: string): number | undefined => {
  if (v === undefined) return undefined;
  if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > 4095) throw new SeccompProfileError(`${where} must be an errno number (0-4095)`);
  return v as number;
};
const strings = (v: unknown, where: string): string[] => {
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string' && s.length > 0)) throw new SeccompProfileError(`${where} must be a list of names`);
  return v as string[];
};

/** Does a Docker-format rule's includes/excludes (caps, arches) select it for this env? */
function selected(rule: Obj, caps: ReadonlySet<string>, archs: readonly string[]): boolean {
  const archName = (a: string): string => `SCMP_ARCH_${a.toUpperCase().replace(/^AMD64$/, 'X86_64').replace(/^ARM64$/, 'AARCH64')}`;
  const matches = (f: unknown, all: boolean): boolean => {
    if (!isObj(f)) return all;
    const c = Array.isArray(f.caps) ? (f.caps as string[]).map((x) => (x.startsWith('CAP_') ? x : `CAP_${x}`)) : [];
    const a = Array.isArray(f.arches) ? (f.arches as string[]).map(archName) : [];
    if (all) return c.every((x) => caps.has(x)) && (a.length === 0 || a.some((x) => archs.includes(x)));
    return c.some((x) => caps.has(x)) || a.some((x) => archs[0] === x);
  };
  return matches(rule.includes, true) && !(isObj(rule.excludes) && matches(rule.excludes, false));
}

function parseArg(a: unknown, where: string): SeccompArg {
  if (!isObj(a) || !Number.isInteger(a.index) || typeof a.value !== 'number' || !(ARG_OPS as readonly string[]).includes(a.op as string)) {
    throw new SeccompProfileError(`${where} must have an index, a value and an op (${ARG_OPS.join(', ')})`);
  }
  return { index: a.index as number, value: a.value, ...(typeof a.valueTwo === 'number' ? { valueTwo: a.valueTwo } : {}), op: a.op as SeccompArg['op'] };
}

/**
 * Parse a Localhost profile: the runtime-spec's `linux.seccomp` object, or a
 * Docker/containerd-style profile (`archMap`, `name`, rules with
 * `includes`/`excludes` on capabilities and architectures, resolved here for
 * this env). Throws SeccompProfileError saying what is wrong.
 */
export function parseSeccompProfile(json: unknown, opts: { caps?: readonly string[]; arch?: string } = {}): SeccompProfile {
  if (!isObj(json)) throw new SeccompProfileError('is not a JSON object');
  if (!isAction(json.defaultAction)) throw new SeccompProfileError(`defaultAction must be one of ${SECCOMP_ACTIONS.join(', ')}`);
  const native = seccompArchitectures(opts.arch);
  let architectures: string[] = [];
  if (json.architectures !== undefined) architectures = strings(json.architectures, 'architectures');
  else if (Array.isArray(json.archMap)) {
    const entry = (json.archMap as unknown[]).find((e) => isObj(e) && e.architecture === native[0]);
    if (isObj(entry)) architectures = [native[0]!, ...(Array.isArray(entry.subArchitectures) ? strings(entry.subArchitectures, 'archMap[].subArchitectures') : [])];
  }
  if (!architectures.length) architectures = native;
  const caps = new Set(opts.caps ?? []);
  const rules = json.syscalls === undefined ? [] : json.syscalls;
  if (!Array.isArray(rules)) throw new SeccompProfileError('syscalls must be a list');
  const syscalls: SeccompRule[] = [];
  rules.forEach((r: unknown, i) => {
    const where = `syscalls[${i}]`;
    if (!isObj(r)) throw new SeccompProfileError(`${where} is not an object`);
    if (!isAction(r.action)) throw new SeccompProfileError(`${where}.action must be one of ${SECCOMP_ACTIONS.join(', ')}`);
    const names = r.names !== undefined ? strings(r.names, `${where}.names`) : typeof r.name === 'string' ? [r.name] : [];
    if (!names.length) throw new SeccompProfileError(`${where} names no syscall`);
    if (!selected(r, caps, architectures)) return;
    const args = r.args === undefined || r.args === null ? [] : Array.isArray(r.args) ? r.args.map((a, j) => parseArg(a, `${where}.args[${j}]`)) : undefined;
    if (!args) throw new SeccompProfileError(`${where}.args must be a list`);
    const ret = errno(r.errnoRet, `${where}.errnoRet`);
    syscalls.push({ names, action: r.action, ...(ret !== undefined ? { errnoRet: ret } : {}), ...(args.length ? { args } : {}) });
  });
  const defaultErrnoRet = errno(json.defaultErrnoRet, 'defaultErrnoRet');
  const flags = json.flags === undefined ? undefined : strings(json.flags, 'flags');
  return { defaultAction: json.defaultAction, ...(defaultErrnoRet !== undefined ? { defaultErrnoRet } : {}), architectures, ...(flags ? { flags } : {}), syscalls };
}
