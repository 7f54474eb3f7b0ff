/**
 * The project's default seccomp profile (security.seccompProfile: Default):
 * everything is allowed except syscalls that let a workload reach past its env —
 * kernel modules, kexec, reboot, bpf, the keyring, the mount family, new
 * namespaces, swap, open_by_handle_at, perf, clock setting, ptrace — which fail
 * with EPERM. A deny list keeps arbitrary CI tools working; the capability drop
 * list and the user namespace are the other layers. Pure, so it is unit-tested.
 */

/** EPERM: the errno blocked syscalls return. */
export const EPERM = 1;
/** ENOSYS: returned for clone3, so libc falls back to clone(), whose flags we can inspect. */
export const ENOSYS = 38;

/** Syscalls the default profile blocks outright with EPERM. */
export const BLOCKED_SYSCALLS: readonly string[] = [
  // kernel code and the running kernel
  'init_module', 'finit_module', 'delete_module', 'create_module', 'kexec_load', 'kexec_file_load', 'reboot',
  'bpf', 'perf_event_open', 'lookup_dcookie', 'iopl', 'ioperm', 'syslog', '_sysctl', 'uselib', 'vm86', 'vm86old',
  // the kernel keyring is not namespaced
  'keyctl', 'add_key', 'request_key',
  // mounts and the root
  'mount', 'umount', 'umount2', 'pivot_root', 'chroot', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree', 'mount_setattr',
  // new namespaces (clone with namespace flags is filtered below)
  'unshare', 'setns',
  // host-wide state
  'swapon', 'swapoff', 'acct', 'quotactl', 'quotactl_fd', 'settimeofday', 'clock_settime', 'clock_adjtime', 'adjtimex', 'stime', 'nfsservctl',
  // escaping through file handles and other processes
  'open_by_handle_at', 'name_to_handle_at', 'userfaultfd',
];

/** Blocked unless the env adds SYS_PTRACE: debuggers inside the env need them. */
export const PTRACE_SYSCALLS: readonly string[] = ['ptrace', 'process_vm_readv', 'process_vm_writev', 'kcmp'];

/** clone() flags that create namespaces: CLONE_NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET. */
export const CLONE_NAMESPACE_BITS: readonly number[] = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000];

/** An OCI seccomp rule (runtime-spec `linux.seccomp.syscalls[]`). */
export interface SeccompRule {
  names: string[];
  action: 'SCMP_ACT_ERRNO' | 'SCMP_ACT_ALLOW';
  errnoRet?: number;
  args?: { index: number; value: number; valueTwo?: number; op: 'SCMP_CMP_MASKED_EQ' }[];
}

/** An OCI seccomp section (runtime-spec `linux.seccomp`). */
export interface SeccompProfile {
  defaultAction: 'SCMP_ACT_ALLOW';
  architectures: string[];
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

/** The default profile; `allowPtrace` when the env keeps CAP_SYS_PTRACE. */
export function defaultSeccompProfile(opts: { allowPtrace?: boolean; arch?: string } = {}): SeccompProfile {
  const names = [...BLOCKED_SYSCALLS, ...(opts.allowPtrace ? [] : PTRACE_SYSCALLS)];
  return {
    defaultAction: 'SCMP_ACT_ALLOW',
    architectures: seccompArchitectures(opts.arch),
    syscalls: [
      { names, action: 'SCMP_ACT_ERRNO', errnoRet: EPERM },
      // clone(2) with any namespace flag: EPERM. Rules are ORed, so one rule per flag bit:
      // (flags & bit) == bit. Arg 0 holds the flags on x86-64 and arm64.
      ...CLONE_NAMESPACE_BITS.map(
        (bit): SeccompRule => ({
          names: ['clone'],
          action: 'SCMP_ACT_ERRNO',
          errnoRet: EPERM,
          args: [{ index: 0, value: bit, valueTwo: bit, op: 'SCMP_CMP_MASKED_EQ' }],
        }),
      ),
      // clone3 passes flags in memory where seccomp cannot look: ENOSYS makes libc use clone()
      { names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS },
    ],
  };
}
