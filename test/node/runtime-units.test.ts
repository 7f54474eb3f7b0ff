// Pure pieces of the node runtime, tested without a kernel: names and id
// validation, the OCI config, the seccomp profile, cgroup read-back rules and
// stats parsers, CRI log parsing, and the CLI's env lookup.
import { parseSpec } from '../../src/api/validate.js';
import { assertCgroupRoot, assertEnvId, cgroupRelPath, envIdFromHostName, envPaths, generateEnvId, hostName } from '../../node-agent/names.js';
import { buildOciConfig, capabilitySet, INIT_PATH_IN_ENV, type OciInputs } from '../../node-agent/oci.js';
import { defaultSeccompProfile, ENOSYS, EPERM, REFUSED_SYSCALLS } from '../../node-agent/seccomp.js';
import { parseBlkioBytes, parseIoStat, readbackMatches, statsFromV1, statsFromV2 } from '../../node-agent/cgroup/parse.js';
import { conmonArgs, logTail, parseCriLog } from '../../node-agent/conmon.js';
import { levels } from '../../node-agent/cgroup/tree.js';
import { HostRoot } from '../../node-agent/hostroot.js';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

describe('names', () => {
  it('generates valid, distinct ids', () => {
    const ids = new Set(Array.from({ length: 200 }, () => generateEnvId()));
    expect(ids.size).toBe(200);
    for (const id of ids) expect(() => assertEnvId(id)).not.toThrow();
  });
  it.each(['', '../x', 'a/b', 'A', '-a', 'a-', 'a'.repeat(41), 'a b', 'a\nb', '.'])('rejects id %j', (id) => {
    expect(() => assertEnvId(id)).toThrow(/invalid env id/);
  });
  it('accepts a Kubernetes UID', () => {
    expect(assertEnvId('0f3c9a2e-8a1b-4c1d-9e2f-0123456789ab')).toBeTruthy();
  });
  it('builds prefixed host names and paths under the state dir', () => {
    expect(hostName('abc')).toBe('denv-abc');
    expect(envIdFromHostName('denv-abc')).toBe('abc');
    expect(envIdFromHostName('other-abc')).toBeUndefined();
    expect(cgroupRelPath('disposable.slice', 'ci-jobs', 'abc')).toBe('disposable.slice/ci-jobs/denv-abc');
    expect(envPaths('/var/lib/x', 'abc').exitFile).toBe('/var/lib/x/envs/abc/exits/denv-abc');
    expect(() => cgroupRelPath('disposable.slice', '../up', 'abc')).toThrow();
  });
  it.each(['/abs', '', 'a/../b', '..', 'a//b', 'a/./b'])('rejects cgroup root %j', (root) => {
    expect(() => assertCgroupRoot(root)).toThrow(/invalid cgroup root/);
  });
  it('levels lists every hierarchy per level, top-down', () => {
    expect(levels(['/a', '/b'], 'x/y')).toEqual([
      ['/a/x', '/b/x'],
      ['/a/x/y', '/b/x/y'],
    ]);
  });
});

const spec = (extra: Record<string, unknown> = {}): ReturnType<typeof parseSpec> =>
  parseSpec({ class: 'ci-jobs', workload: { command: ['/bin/sh', '-c', 'echo hi'], args: ['x'] }, ...extra });

const inputs = (s = spec()): OciInputs => ({
  id: 'abc',
  name: 'build-1',
  spec: s,
  rootfsPath: '/state/envs/abc/bundle/rootfs',
  hostRoot: true,
  netnsPath: '/run/netns/denv-abc',
  idRange: { start: 1_000_000_000, size: 65536 },
  cgroupsPath: '/disposable.slice/ci-jobs/denv-abc',
  initHostPath: '/usr/bin/tini-static',
  initKind: 'tini',
});

describe('OCI config', () => {
  it('has all seven namespaces by default, the netns by path, and root mapped to an unprivileged range', () => {
    const c = buildOciConfig(inputs());
    expect(c.linux.namespaces).toEqual([
      { type: 'pid' },
      { type: 'network', path: '/run/netns/denv-abc' },
      { type: 'mount' },
      { type: 'uts' },
      { type: 'ipc' },
      { type: 'user' },
      { type: 'cgroup' },
    ]);
    expect(c.linux.uidMappings).toEqual([{ containerID: 0, hostID: 1_000_000_000, size: 65536 }]);
    expect(c.linux.gidMappings).toEqual(c.linux.uidMappings);
    expect(c.linux.cgroupsPath).toBe('/disposable.slice/ci-jobs/denv-abc');
  });
  it('runs the workload under the init at /dev/init, bind-mounted read-only', () => {
    const c = buildOciConfig(inputs());
    expect(c.process.args).toEqual([INIT_PATH_IN_ENV, '-g', '--', '/bin/sh', '-c', 'echo hi', 'x']);
    expect(c.mounts.find((m) => m.destination === INIT_PATH_IN_ENV)).toEqual({ destination: '/dev/init', type: 'bind', source: '/usr/bin/tini-static', options: ['bind', 'ro', 'nosuid', 'nodev'] });
  });
  it('host root: read-only root, fresh /proc, /dev, /tmp and /run; hostname defaults to the env name', () => {
    const c = buildOciConfig(inputs());
    expect(c.root).toEqual({ path: '/state/envs/abc/bundle/rootfs', readonly: true });
    const dest = c.mounts.map((m) => `${m.destination}:${m.type}`);
    expect(dest).toEqual(expect.arrayContaining(['/proc:proc', '/dev:tmpfs', '/tmp:tmpfs', '/run:tmpfs', '/sys:bind', '/sys/fs/cgroup:cgroup']));
    expect(c.hostname).toBe('build-1');
    expect(c.process.env).toEqual(expect.arrayContaining(['HOSTNAME=build-1', 'HOME=/root']));
  });
  it('carries env, working dir, an explicit hostname, and a writable hostPath rootfs', () => {
    const s = spec({
      workload: { command: ['/bin/true'], env: [{ name: 'CI', value: 'true' }, { name: 'PATH', value: '/x' }], workingDir: '/src', hostname: 'box' },
      rootfs: { hostPath: '/srv/root' },
    });
    const c = buildOciConfig({ ...inputs(s), hostRoot: false, rootfsPath: '/srv/root' });
    expect(c.process.env).toEqual(expect.arrayContaining(['CI=true', 'PATH=/x', 'HOSTNAME=box']));
    expect(c.process.cwd).toBe('/src');
    expect(c.hostname).toBe('box');
    expect(c.root).toEqual({ path: '/srv/root', readonly: false });
    expect(c.mounts.some((m) => m.destination === '/run')).toBe(false);
  });
  it('a subset of namespaces: no netns, no user mapping, no hostname, host /proc bound when no pid ns', () => {
    const s = spec({ isolation: { namespaces: ['mount', 'uts'], userNamespace: { enabled: false } } });
    const c = buildOciConfig({ ...inputs(s), netnsPath: undefined, idRange: undefined });
    expect(c.linux.namespaces).toEqual([{ type: 'mount' }, { type: 'uts' }]);
    expect(c.linux.uidMappings).toBeUndefined();
    expect(c.mounts.find((m) => m.destination === '/proc')?.type).toBe('bind');
    expect(c.process.args.slice(0, 4)).toEqual(['/dev/init', '-g', '-s', '--']);
  });
  it('refuses a net namespace without a netns path', () => {
    expect(() => buildOciConfig({ ...inputs(), netnsPath: undefined })).toThrow(/netns path/);
  });
  it('noNewPrivileges and the RuntimeDefault seccomp profile; Unconfined has none; Localhost is the profile read', () => {
    expect(buildOciConfig(inputs()).process.noNewPrivileges).toBe(true);
    expect(buildOciConfig(inputs()).linux.seccomp).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: ENOSYS });
    expect(buildOciConfig(inputs(spec({ security: { seccompProfile: { type: 'Unconfined' } } }))).linux.seccomp).toBeUndefined();
    const local = spec({ security: { seccompProfile: { type: 'Localhost', localhostProfile: 'p.json' } } });
    expect(() => buildOciConfig(inputs(local))).toThrow(/no profile was read/);
    const profile = { defaultAction: 'SCMP_ACT_ALLOW' as const, architectures: [], syscalls: [] };
    expect(buildOciConfig({ ...inputs(local), localhostSeccomp: profile }).linux.seccomp).toBe(profile);
  });
});

describe('capabilities', () => {
  it('default set without SYS_ADMIN or NET_ADMIN', () => {
    const caps = capabilitySet(spec().security);
    expect(caps).toContain('CAP_CHOWN');
    expect(caps).not.toContain('CAP_SYS_ADMIN');
    expect(caps).not.toContain('CAP_NET_ADMIN');
  });
  it('(default + add) − drop; drop ALL keeps only add', () => {
    const s1 = spec({ security: { capabilities: { add: ['NET_ADMIN'], drop: ['NET_RAW', 'MKNOD'] } } }).security;
    const c1 = capabilitySet(s1);
    expect(c1).toContain('CAP_NET_ADMIN');
    expect(c1).not.toContain('CAP_NET_RAW');
    expect(c1).not.toContain('CAP_MKNOD');
    expect(capabilitySet(spec({ security: { capabilities: { add: ['KILL'], drop: ['ALL'] } } }).security)).toEqual(['CAP_KILL']);
  });
  it('ptrace is refused by seccomp unless SYS_PTRACE is added; chroot only with SYS_CHROOT', () => {
    const rule = (c: ReturnType<typeof buildOciConfig>, name: string): string | undefined => c.linux.seccomp?.syscalls.find((r) => !r.args && r.names.includes(name))?.action;
    expect(rule(buildOciConfig(inputs()), 'ptrace')).toBe('SCMP_ACT_ERRNO');
    expect(rule(buildOciConfig(inputs(spec({ security: { capabilities: { add: ['SYS_PTRACE'] } } }))), 'ptrace')).toBe('SCMP_ACT_ALLOW');
    expect(rule(buildOciConfig(inputs()), 'chroot')).toBe('SCMP_ACT_ALLOW');
    expect(rule(buildOciConfig(inputs(spec({ security: { capabilities: { drop: ['SYS_CHROOT'] } } }))), 'chroot')).toBe('SCMP_ACT_ERRNO');
  });
});

describe('seccomp profile', () => {
  it('refuses the dangerous syscalls by name with EPERM; unknown ones get ENOSYS', () => {
    const p = defaultSeccompProfile();
    expect(p).toMatchObject({ defaultAction: 'SCMP_ACT_ERRNO', defaultErrnoRet: ENOSYS });
    const deny = p.syscalls.find((r) => r.action === 'SCMP_ACT_ERRNO' && !r.args && r.errnoRet === EPERM)!;
    for (const s of ['init_module', 'kexec_load', 'reboot', 'bpf', 'keyctl', 'mount', 'pivot_root', 'swapon', 'open_by_handle_at', 'perf_event_open', 'unshare', 'setns', 'io_uring_setup']) {
      expect(deny.names).toContain(s);
    }
    expect(new Set(REFUSED_SYSCALLS).size).toBe(REFUSED_SYSCALLS.length);
  });
  it('clone without namespace flags is allowed, with any flag EPERM (one masked rule per flag), clone3 ENOSYS', () => {
    const p = defaultSeccompProfile();
    const clone = p.syscalls.filter((r) => r.names.includes('clone'));
    expect(clone).toHaveLength(8);
    expect(clone[0]).toEqual({ names: ['clone'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value: 0x7e020000, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }] });
    const perBit = clone.slice(1);
    for (const r of perBit) expect(r.args?.[0]?.value).toBe(r.args?.[0]?.valueTwo);
    expect(perBit.reduce((m, r) => m | (r.args?.[0]?.value ?? 0), 0)).toBe(0x7e020000);
    expect(p.syscalls.find((r) => r.names.includes('clone3'))?.errnoRet).toBe(38);
  });
  it('names the native and compat architectures', () => {
    expect(defaultSeccompProfile({ arch: 'x64' }).architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32']);
  });
});

describe('cgroup read-back', () => {
  it.each([
    ['memory.max', '104857600', '104857600', true],
    ['memory.max', '1000000', '999424', true], // rounded down to a page
    ['memory.max', '1000000', '4096', false],
    ['memory.limit_in_bytes', '1000000', '999424', true],
    ['memory.swap.max', 'max', 'max', true],
    ['cpu.max', '20000 100000', '20000 100000', true],
    ['cpu.max', '20000 100000', 'max 100000', false],
    ['pids.max', '64', '64', true],
    ['cpu.cfs_quota_us', '50000', '50000', true],
    ['io.weight', 'default 200', 'default 200', true],
    ['io.max', '8:0 rbps=1048576', '8:0 rbps=1048576 wbps=max riops=max wiops=max', true],
    ['io.max', '8:0 rbps=1048576', '8:16 rbps=1048576 wbps=max riops=max wiops=max', false],
    ['blkio.throttle.read_bps_device', '8:0 1048576', '8:0 1048576\n8:16 5', true],
  ])('%s: wrote %j, kernel shows %j → %s', (file, written, shown, ok) => {
    expect(readbackMatches(file, written, shown)).toBe(ok);
  });
});

describe('cgroup stats', () => {
  it('parses v2 files', () => {
    const st = statsFromV2({
      'memory.current': '1048576',
      'memory.peak': '2097152',
      'memory.max': 'max',
      'memory.events': 'low 0\nhigh 4\nmax 9\noom 2\noom_kill 1\noom_group_kill 0',
      'pids.current': '7',
      'pids.max': '64',
      'pids.events': 'max 3',
      'cpu.stat': 'usage_usec 5000\nuser_usec 3000\nsystem_usec 2000\nnr_periods 10\nnr_throttled 4\nthrottled_usec 1234',
      'io.stat': '8:0 rbytes=100 wbytes=200 rios=1 wios=2 dbytes=0 dios=0\n8:16 rbytes=1 wbytes=2 rios=1 wios=1 dbytes=0 dios=0',
    });
    expect(st).toEqual({
      memoryCurrentBytes: 1048576,
      memoryPeakBytes: 2097152,
      memoryMaxEvents: 9,
      memoryHighEvents: 4,
      oomEvents: 2,
      oomKills: 1,
      pidsCurrent: 7,
      pidsMax: 64,
      pidsMaxEvents: 3,
      cpuUsageUsec: 5000,
      cpuPeriods: 10,
      cpuThrottledPeriods: 4,
      cpuThrottledUsec: 1234,
      ioReadBytes: 101,
      ioWriteBytes: 202,
    });
  });
  it('parses v1 files (and treats the v1 unlimited sentinel as no limit)', () => {
    const st = statsFromV1({
      'memory/memory.usage_in_bytes': '4096',
      'memory/memory.max_usage_in_bytes': '8192',
      'memory/memory.limit_in_bytes': '9223372036854771712',
      'memory/memory.failcnt': '5',
      'memory/memory.oom_control': 'oom_kill_disable 0\nunder_oom 0\noom_kill 2',
      'pids/pids.current': '3',
      'pids/pids.max': 'max',
      'pids/pids.events': 'max 0',
      'cpuacct/cpuacct.usage': '2500000',
      'cpu/cpu.stat': 'nr_periods 5\nnr_throttled 2\nthrottled_time 3000000',
      'blkio/blkio.throttle.io_service_bytes_recursive': '8:0 Read 10\n8:0 Write 20\n8:0 Sync 30\n8:0 Async 0\n8:0 Total 30\nTotal 30',
    });
    expect(st).toEqual({
      memoryCurrentBytes: 4096,
      memoryPeakBytes: 8192,
      memoryMaxEvents: 5,
      oomKills: 2,
      pidsCurrent: 3,
      pidsMaxEvents: 0,
      cpuUsageUsec: 2500,
      cpuPeriods: 5,
      cpuThrottledPeriods: 2,
      cpuThrottledUsec: 3000,
      ioReadBytes: 10,
      ioWriteBytes: 20,
    });
  });
  it('io parsers ignore unrelated lines', () => {
    expect(parseIoStat('')).toEqual({ read: 0, write: 0 });
    expect(parseBlkioBytes('Total 0\n')).toEqual({ read: 0, write: 0 });
  });
});

describe('CRI log', () => {
  const log = [
    '2026-01-01T00:00:00.000000001+00:00 stdout F hello',
    '2026-01-01T00:00:00.000000002+00:00 stderr P part one ',
    '2026-01-01T00:00:00.000000003+00:00 stderr F and two',
    '2026-01-01T00:00:00.000000004+00:00 stdout F ',
    'garbage',
    '',
  ].join('\n');
  it('parses streams and joins partial lines', () => {
    expect(parseCriLog(log).map((l) => [l.stream, l.message])).toEqual([
      ['stdout', 'hello'],
      ['stderr', 'part one and two'],
      ['stdout', ''],
    ]);
  });
  it('tail keeps the last lines within the byte budget', () => {
    const many = Array.from({ length: 100 }, (_v, i) => `2026-01-01T00:00:00Z stdout F line ${i}`).join('\n');
    expect(logTail(many, 3)).toBe('line 97\nline 98\nline 99');
    expect(logTail(many, 100, 10).length).toBe(10);
  });
  it('conmon gets the log cap, exit dir, runc root and backstop as argv', () => {
    const a = conmonArgs({
      conmon: '/usr/bin/conmon',
      runc: '/usr/sbin/runc',
      runcRoot: '/run/disposable-env/runc',
      containerId: 'denv-abc',
      name: 'n',
      bundle: '/b',
      logPath: '/l',
      logSizeMax: 1024,
      exitDir: '/e',
      conmonPidFile: '/c.pid',
      containerPidFile: '/p.pid',
      socketDir: '/s',
      conmonLog: '/cl',
      persistDir: '/env',
      backstopSeconds: 99,
    });
    expect(a.join(' ')).toContain('-l k8s-file:/l --log-size-max 1024');
    expect(a.join(' ')).toContain('--runtime-arg --root --runtime-arg /run/disposable-env/runc');
    expect(a.join(' ')).toContain('--exit-dir /e');
    expect(a.join(' ')).toContain('-T 99');
    expect(a.join(' ')).toContain('--persist-dir /env');
  });
});

describe('shared host root lock', () => {
  const tools = (): Promise<{ mount: string; umount: string }> => Promise.resolve({ mount: 'mount', umount: 'umount' });

  it('takes over a lock whose holder died, one left empty, and one whose pid now belongs to another process, instead of waiting', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'denv-lock-'));
    try {
      const hr = new HostRoot(dir, tools);
      const dead = spawnSync('/bin/true').pid; // a pid that has exited
      // this test's own pid with another start time: the pid was reused, the holder is gone
      for (const content of [String(dead), '', `${dead} 1`, `${process.pid} 1`]) {
        writeFileSync(hr.paths.lock, content);
        writeFileSync(hr.paths.marker, ''); // a tree to release (no mounts): the release has to take the lock
        const t = Date.now();
        expect(await hr.release(() => Promise.resolve(true))).toBe(true);
        expect(Date.now() - t).toBeLessThan(2000);
        expect(existsSync(hr.paths.lock)).toBe(false);
        expect(existsSync(hr.paths.marker)).toBe(false);
      }
      // no temp files of the lock protocol are left behind
      expect(readdirSync(dir).filter((n) => n.startsWith('hostroot.lock'))).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('releasing when there is no tree takes no lock, so a state dir its owner removed is not made again', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'denv-lock-'));
    const hr = new HostRoot(dir, tools);
    rmSync(dir, { recursive: true, force: true });
    try {
      expect(await hr.release(() => Promise.resolve(true))).toBe(false);
      expect(existsSync(dir)).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
