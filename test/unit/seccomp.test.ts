// The RuntimeDefault seccomp profile (an allow-list) and the Localhost profile
// parser, without a kernel: what is allowed, what is refused with which errno,
// what depends on capabilities and architecture. test/node/runtime-hybrid.test.ts
// runs the same profile under runc and probes it from inside an env.
import {
  ALLOWED_SYSCALL_GROUPS,
  allowedSyscalls,
  ARCH_SYSCALLS,
  CAPABILITY_SYSCALLS,
  defaultSeccompProfile,
  ENOSYS,
  EPERM,
  parseSeccompProfile,
  REFUSED_SYSCALLS,
  type SeccompProfile,
  type SeccompRule,
} from '../../node-agent/seccomp.js';

const allowRule = (p: SeccompProfile): SeccompRule => p.syscalls.find((r) => r.action === 'SCMP_ACT_ALLOW' && !r.args)!;
const epermRule = (p: SeccompProfile): SeccompRule => p.syscalls.find((r) => r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === EPERM && !r.args)!;

/** What the issue names as refused, each by its syscall names. */
const MUST_REFUSE = [
  'io_uring_setup', 'io_uring_enter', 'io_uring_register', 'keyctl', 'add_key', 'request_key', 'bpf', 'userfaultfd',
  'unshare', 'setns', 'mount', 'umount2', 'pivot_root', 'fsopen', 'fsmount', 'move_mount', 'open_tree', 'mount_setattr',
  'init_module', 'finit_module', 'delete_module', 'kexec_load', 'kexec_file_load', 'settimeofday', 'clock_settime',
  'clock_adjtime', 'adjtimex', 'perf_event_open',
];

describe('RuntimeDefault seccomp profile', () => {
  const p = defaultSeccompProfile({ caps: ['CAP_CHOWN', 'CAP_SYS_CHROOT'], arch: 'x64' });

  it('refuses by default with ENOSYS, so a syscall it does not know looks absent and libc falls back', () => {
    expect(p.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(p.defaultErrnoRet).toBe(ENOSYS);
    expect(ENOSYS).toBe(38);
  });

  it('refuses io_uring, the keyring, bpf, userfaultfd, namespaces, mounts, modules, kexec, clock setting and perf with EPERM', () => {
    const refused = epermRule(p);
    expect(EPERM).toBe(1);
    for (const name of MUST_REFUSE) expect(refused.names).toContain(name);
  });

  it('allows none of the refused calls: no name is both allowed and refused', () => {
    const allowed = new Set(allowRule(p).names);
    expect(MUST_REFUSE.filter((n) => allowed.has(n))).toEqual([]);
    expect(REFUSED_SYSCALLS.filter((n) => allowed.has(n))).toEqual([]);
    expect(allowed.has('clone')).toBe(false); // only through the flag-checking rules
    expect(allowed.has('clone3')).toBe(false);
    expect(new Set(allowRule(p).names).size).toBe(allowRule(p).names.length);
  });

  it('allows what shells, coreutils, interpreters and compilers need', () => {
    const allowed = new Set(allowRule(p).names);
    for (const name of ['execve', 'openat', 'read', 'write', 'mmap', 'futex', 'rt_sigaction', 'wait4', 'pipe2', 'socket', 'getrandom', 'statx', 'newfstatat', 'prlimit64', 'rseq', 'arch_prctl']) {
      expect(allowed).toContain(name);
    }
    expect(Object.keys(ALLOWED_SYSCALL_GROUPS).sort()).toEqual(['aio', 'credentials', 'files', 'ipc', 'memory', 'network', 'process', 'scheduling', 'signals', 'system', 'time']);
    expect(allowRule(p).names.length).toBeGreaterThan(250);
  });

  it('gates ptrace on CAP_SYS_PTRACE and chroot on CAP_SYS_CHROOT (refused with EPERM without them)', () => {
    expect(epermRule(p).names).toEqual(expect.arrayContaining(CAPABILITY_SYSCALLS.CAP_SYS_PTRACE!));
    expect(allowRule(p).names).toContain('chroot');
    const traced = defaultSeccompProfile({ caps: ['CAP_SYS_PTRACE'], arch: 'x64' });
    expect(allowRule(traced).names).toEqual(expect.arrayContaining(['ptrace', 'process_vm_readv', 'kcmp']));
    expect(epermRule(traced).names).not.toContain('ptrace');
    expect(epermRule(traced).names).toContain('chroot');
  });

  it('adds the architecture\'s own calls only on that architecture', () => {
    expect(allowedSyscalls({ arch: 'x64' })).toContain('arch_prctl');
    expect(allowedSyscalls({ arch: 'arm64' })).not.toContain('arch_prctl');
    expect(allowedSyscalls({ arch: 'arm' })).toEqual(expect.arrayContaining(ARCH_SYSCALLS.arm!));
    expect(defaultSeccompProfile({ arch: 'arm64' }).architectures).toEqual(['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM']);
  });

  it('refuses clone with a namespace flag (EPERM) and sends clone3 to ENOSYS', () => {
    const clone = p.syscalls.filter((r) => r.names.includes('clone'));
    expect(clone[0]).toMatchObject({ action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    expect(clone.slice(1).every((r) => r.action === 'SCMP_ACT_ERRNO' && r.errnoRet === EPERM)).toBe(true);
    expect(clone.slice(1).map((r) => r.args![0]!.value)).toContain(0x10000000); // CLONE_NEWUSER
    expect(p.syscalls.find((r) => r.names.includes('clone3'))).toEqual({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  });
});

describe('Localhost profile parser', () => {
  it('accepts the runtime-spec shape as it is', () => {
    const oci = { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: 1, architectures: ['SCMP_ARCH_X86_64'], syscalls: [{ names: ['read', 'write'], action: 'SCMP_ACT_ALLOW' }] };
    expect(parseSeccompProfile(oci, { arch: 'x64' })).toEqual(oci);
  });

  it('fills in the host architectures and accepts an empty allow-everything profile', () => {
    expect(parseSeccompProfile({ defaultAction: 'SCMP_ACT_ALLOW' }, { arch: 'x64' })).toEqual({ defaultAction: 'SCMP_ACT_ALLOW', architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls: [] });
  });

  it('resolves a Docker-style profile: archMap, name, includes/excludes on capabilities and arches', () => {
    const docker = {
      defaultAction: 'SCMP_ACT_ERRNO',
      archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] }, { architecture: 'SCMP_ARCH_AARCH64', subArchitectures: [] }],
      syscalls: [
        { names: ['read'], action: 'SCMP_ACT_ALLOW', args: [] },
        { name: 'ptrace', action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_PTRACE'] } },
        { names: ['arch_prctl'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['amd64'] } },
        { names: ['personality'], action: 'SCMP_ACT_ALLOW', excludes: { caps: ['CAP_SYS_ADMIN'] }, args: [{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }] },
      ],
    };
    const plain = parseSeccompProfile(docker, { arch: 'x64', caps: [] });
    expect(plain.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
    expect(plain.syscalls.map((r) => r.names[0])).toEqual(['read', 'arch_prctl', 'personality']);
    expect(plain.syscalls[2]!.args).toEqual([{ index: 0, value: 8, op: 'SCMP_CMP_EQ' }]);
    const traced = parseSeccompProfile(docker, { arch: 'x64', caps: ['CAP_SYS_PTRACE', 'CAP_SYS_ADMIN'] });
    expect(traced.syscalls.map((r) => r.names[0])).toEqual(['read', 'ptrace', 'arch_prctl']);
    expect(parseSeccompProfile(docker, { arch: 'arm64' }).syscalls.map((r) => r.names[0])).toEqual(['read', 'personality']);
  });

  it.each([
    ['not an object', [], /JSON object/],
    ['no defaultAction', { syscalls: [] }, /defaultAction must be one of/],
    ['SCMP_ACT_NOTIFY (needs a listener)', { defaultAction: 'SCMP_ACT_NOTIFY' }, /defaultAction/],
    ['syscalls not a list', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: {} }, /syscalls must be a list/],
    ['a rule with a bad action', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'ALLOW' }] }, /syscalls\[0\]\.action/],
    ['a rule without names', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ action: 'SCMP_ACT_ALLOW' }] }, /syscalls\[0\] names no syscall/],
    ['a bad errno', { defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: -1 }, /defaultErrnoRet must be an errno/],
    ['a bad arg op', { defaultAction: 'SCMP_ACT_ALLOW', syscalls: [{ names: ['read'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 1, op: 'EQ' }] }] }, /args\[0\] must have/],
  ])('refuses %s, saying what is wrong', (_d, json, msg) => {
    expect(() => parseSeccompProfile(json, { arch: 'x64' })).toThrow(msg);
  });
});
