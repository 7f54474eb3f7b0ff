// End-to-end on this hybrid host through the real `denv` CLI: runc under conmon
// with all seven namespaces, v1 limits (a memory hog is OOMKilled, a fork bomb
// stays under pids.max), the unified tree for placement and kill, isolation
// seen from inside the env, zombie reaping by the init, detach + stop, logs and
// ps, and a hostPath rootfs. afterAll tears down anything a failed test left
// and then fails if any project object remains on the host.
/* eslint-disable @typescript-eslint/no-explicit-any, @typescript-eslint/no-unsafe-argument -- assertions walk the CLI's JSON output */
import { jest } from '@jest/globals';
import { execa } from 'execa';
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, symlinkSync, copyFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';
import { Journal } from '../../node-agent/journal.js';
import { isSameProcess } from '../../node-agent/exec.js';
import { ensureAnchor } from '../../node-agent/mounts.js';
import { NodeMetrics } from '../../node-agent/metrics.js';
import { RUNC_ROOT } from '../../node-agent/names.js';
import { closeSharedHelper, sharedHelper } from '../../node-agent/spawner.js';
import { supervise } from '../../node-agent/supervisor.js';
import { Runtime } from '../../node-agent/runtime.js';
import { parseSpec } from '../../src/api/validate.js';
import { parseMountinfo } from '../../src/core/procfs.js';
import { checkLeaksAfterAll, denv, envDirs, events, hostSnapshot, kv, manifest, result, stateDir, testId, waitFor, zombies } from './helpers.js';

jest.setTimeout(120_000);

const dirs: string[] = [];
const work = stateDir(dirs);
const measured: Record<string, number[]> = { createToRunning: [], teardown: [] };

afterAll(() => {
  console.log(`measured on this host (ms): ${JSON.stringify(measured)}`);
});
checkLeaksAfterAll(dirs);

function note(r: Record<string, any>): void {
  if (typeof r.timings?.createToRunning === 'number') measured.createToRunning!.push(r.timings.createToRunning);
  if (typeof r.timings?.teardown === 'number') measured.teardown!.push(r.timings.teardown);
}

const FAST = ['--sample-interval-ms', '200'];

/** Raw syscalls through python3's ctypes (x86-64 numbers); prints name=return,errno per call. */
const SYSCALL_PROBE = [
  'import ctypes',
  'libc = ctypes.CDLL(None, use_errno=True)',
  'libc.syscall.restype = ctypes.c_long',
  'def call(name, nr, *args):',
  '    ctypes.set_errno(0)',
  '    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])',
  '    print(f"{name}={r},{ctypes.get_errno() if r == -1 else 0}", flush=True)',
  'call("io_uring_setup", 425, 1, 0)',
  'call("unshare_newuser", 272, 0x10000000)',
  'call("keyctl", 250, 0, -2, 0, 0, 0)',
  'call("bpf", 321, 0, 0, 0)',
  'call("mount", 165, 0, 0, 0, 0, 0)',
  'call("unknown_1000", 1000)',
  'call("fanotify_init", 300, 0, 0)',
].join('\n');

/** The host's sh, coreutils, python3 and C compiler from /usr, then the probe. */
const TOOLS_AND_PROBE = [
  'echo sh=ok',
  'ls / >/dev/null && cat /proc/self/status >/dev/null && echo coreutils=ok',
  "/usr/bin/python3 -c 'import json, hashlib; print(\"python3=ok\")'",
  "printf 'int main(void) { return 0; }\\n' > /tmp/t.c && cc -o /tmp/t /tmp/t.c && /tmp/t && echo cc=ok",
  `/usr/bin/python3 -c '${SYSCALL_PROBE}'`,
].join('\n');

describe('denv run on the hybrid host', () => {
  it('runs the workload, shows each phase, passes the exit code through, and keeps logs and ps', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'exit-three', {
      class: 'ci-jobs',
      workload: { command: ['/bin/sh', '-c', 'echo to-stdout; echo to-stderr >&2; exit 3'] },
      resources: { memory: { max: '128Mi' }, cpu: { max: '500m' }, pids: { max: 64 } },
    });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--json', ...FAST]);
    expect(r.exitCode).toBe(3);
    const phases = events(r.stdout)
      .filter((e) => e.event === 'phase')
      .map((e) => e.phase);
    expect(phases).toEqual(['Creating', 'Running', 'Failed']);
    const res = result(r.stdout);
    note(res);
    expect(res).toMatchObject({ id, phase: 'Failed', reason: 'Error', exitCode: 3, cgroupPath: `disposable.slice/ci-jobs/denv-${id}`, cgroupMode: 'hybrid', netns: `/run/netns/denv-${id}` });
    expect(res.logTail).toContain('to-stdout');
    expect(res.logTail).toContain('to-stderr');
    expect(res.usage.cpuSeconds).toBeGreaterThanOrEqual(0);
    const logs = await denv(['logs', 'exit-three', '--state-dir', sd]);
    expect(logs.stdout.trim()).toBe('to-stdout');
    expect(logs.stderr.trim()).toBe('to-stderr');
    const ps = await denv(['ps', '--state-dir', sd, '--json']);
    expect(JSON.parse(ps.stdout).envs).toEqual([expect.objectContaining({ id, name: 'exit-three', phase: 'Failed', exitCode: 3 })]);
    // the journal shows every resource created and then removed
    const rec = (await new Journal(sd).read(id))!;
    const kinds = new Set(rec.resources.map((x) => x.kind));
    for (const k of ['idRange', 'cgroup', 'netns', 'container', 'conmon']) expect(kinds.has(k as never)).toBe(true);
    expect(rec.resources.every((x) => x.state === 'removed')).toBe(true);
    // the env ran on the state dir's shared host root, which denv run removed with the last env
    expect(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(`${sd}/`))).toEqual([]);
  });

  it('a memory hog over memory.max (v1 memory.limit_in_bytes) ends OOMKilled', async () => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'hog', {
      workload: { command: ['/bin/sh', '-c', 'head -c 400M /dev/zero | tail; sleep 30'] },
      resources: { memory: { max: '32Mi', swapMax: 0 } },
      lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 1 },
    });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--json', ...FAST]);
    const res = result(r.stdout);
    note(res);
    expect(res).toMatchObject({ phase: 'Failed', reason: 'OOMKilled' });
    expect(res.usage.oomKills).toBeGreaterThanOrEqual(1);
    // The kernel force-charges a few pages past the limit to a task it is
    // OOM-killing (so it can exit), so the peak may pass 32 MiB by that much;
    // the hog asked for 400 MiB, so 1 MiB of slack still proves the limit held.
    expect(res.usage.memoryPeakBytes).toBeLessThanOrEqual(33 * 1024 * 1024);
  });

  it('a fork bomb stays under pids.max, is reclaimed as ResourceExceeded, and the host keeps forking', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'bomb', {
      // the classic bomb (dash gives up when fork fails), then bash, which keeps retrying forks at the limit
      workload: { command: ['/bin/sh', '-c', '(b() { b | b & }; b) 2>/dev/null; exec bash -c "while :; do sleep 60 & done" 2>/dev/null'] },
      resources: { pids: { max: 64 }, memory: { max: '256Mi' } },
      lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 1, reclaim: { pidsAtMax: { forSeconds: 3 } } },
    });
    const run = denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--json', ...FAST]);
    const pidsCurrent = `/sys/fs/cgroup/pids/disposable.slice/default/denv-${id}/pids.current`;
    const readPids = (): number => {
      try {
        return Number(readFileSync(pidsCurrent, 'utf8'));
      } catch {
        return -1; // not created yet, or already torn down
      }
    };
    await waitFor(() => readPids() >= 60, 20_000, 'the bomb to reach the limit');
    let maxSeen = 0;
    const t = Date.now();
    let hostForks = 0;
    while (Date.now() - t < 2000) {
      const n = readPids();
      if (n < 0) break;
      maxSeen = Math.max(maxSeen, n);
      const h = await execa('/bin/true', [], { reject: false, timeout: 5000 });
      if (h.exitCode === 0) hostForks++;
    }
    const r = await run;
    const res = result(r.stdout);
    note(res);
    expect(maxSeen).toBeLessThanOrEqual(64);
    expect(maxSeen).toBeGreaterThan(32);
    expect(hostForks).toBeGreaterThan(5);
    expect(res).toMatchObject({ phase: 'Failed', reason: 'ResourceExceeded' });
    expect(res.message).toMatch(/pids\.max=64/);
  });

  it('isolation from inside: init is PID 1, only lo, own hostname, unprivileged root, read-only cgroups, dropped caps, seccomp EPERM', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const script = [
      'echo "pid1=$(tr "\\0" " " < /proc/1/cmdline)"',
      'echo "nprocs=$(ls /proc | grep -c "^[0-9]")"',
      'echo "ifaces=$(tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d " " | tr "\\n" ",")"',
      'echo "hostname=$(hostname)"',
      'echo "uid_map=$(tr -s " " < /proc/self/uid_map)"',
      'echo "uid=$(id -u)"',
      'mkdir /sys/fs/cgroup/memory/evil 2>/dev/null; echo "cg_mkdir_rc=$?"',
      'echo 1 2>/dev/null > /sys/fs/cgroup/pids/pids.max; echo "cg_write_rc=$?"',
      'ip link add d0 type dummy 2>/dev/null; echo "ip_link_add_rc=$?"',
      'grep CapEff /proc/self/status | sed "s/CapEff:\\t/capeff=/"',
      'grep NoNewPrivs /proc/self/status | sed "s/NoNewPrivs:\\t/nnp=/"',
      'unshare -U true 2>/dev/null; echo "unshare_rc=$?"',
      // raw syscalls through perl (Essential on Debian): keyctl(KEYCTL_GET_KEYRING_ID) and mount(2) on x86-64
      'perl -e \'$r = syscall(250, 0, -2, 0, 0, 0); printf "keyctl=%d,%d\\n", $r, $! + 0\'',
      'perl -e \'my ($s, $t, $f) = ("none", "/mnt", "tmpfs"); $r = syscall(165, $s, $t, $f, 0, 0); printf "mount=%d,%d\\n", $r, $! + 0\'',
      'touch /etc/denv-probe 2>/dev/null; echo "rootfs_write_rc=$?"',
      'touch /tmp/x && echo "tmp_write=ok"',
      'echo ready',
      'sleep 120',
    ].join('\n');
    const m = manifest(work, 'iso', { workload: { command: ['/bin/sh', '-c', script] }, resources: { pids: { max: 100 } } });
    const before = hostname();
    const d = await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--detach', ...FAST]);
    expect(d.exitCode).toBe(0);
    expect(d.stdout.trim()).toBe(id);
    const out = await waitFor(async () => {
      const l = await denv(['logs', id, '--state-dir', sd]);
      return l.stdout.includes('ready') ? l.stdout : undefined;
    }, 30_000, 'the probe to finish');
    const v = kv(out);
    expect(v.pid1).toMatch(/^\/dev\/init -g -- \/bin\/sh -c/);
    expect(Number(v.nprocs)).toBeLessThan(8);
    expect(v.ifaces).toBe('lo,');
    expect(v.hostname).toBe('iso');
    expect(hostname()).toBe(before);
    expect(v.uid).toBe('0');
    const [inside, hostStart, size] = (v.uid_map ?? '').trim().split(' ').map(Number);
    expect(inside).toBe(0);
    expect(hostStart).toBeGreaterThanOrEqual(1_000_000_000);
    expect(size).toBe(65536);
    expect(v.cg_mkdir_rc).not.toBe('0');
    expect(v.cg_write_rc).not.toBe('0');
    expect(v.ip_link_add_rc).not.toBe('0');
    expect((BigInt(`0x${v.capeff}`) >> 12n) & 1n).toBe(0n); // CAP_NET_ADMIN (12) is not effective
    expect((BigInt(`0x${v.capeff}`) >> 21n) & 1n).toBe(0n); // CAP_SYS_ADMIN (21) is not effective
    expect(v.nnp).toBe('1');
    expect(v.unshare_rc).not.toBe('0');
    expect(v.keyctl).toBe('-1,1'); // EPERM from seccomp: keyctl is otherwise allowed to any process
    expect(v.mount).toBe('-1,1');
    expect(v.rootfs_write_rc).not.toBe('0');
    expect(v.tmp_write).toBe('ok');
    // from the host: the env's processes run as the unprivileged mapped uid, inside our cgroups and netns
    const rec = (await new Journal(sd).read(id))!;
    const status = readFileSync(`/proc/${rec.pids.container!}/status`, 'utf8');
    expect(status).toMatch(new RegExp(`^Uid:\\s+${hostStart}\\s`, 'm'));
    expect(readFileSync(`/proc/${rec.pids.container!}/cgroup`, 'utf8')).toContain(`0::/disposable.slice/default/denv-${id}`);
    const ns = await execa('ip', ['netns', 'list'], { timeout: 10_000 });
    expect(ns.stdout).toContain(`denv-${id}`);
    expect(isSameProcess(rec.processes.supervisor)).toBe(true);
    const ps = await denv(['ps', '--state-dir', sd]);
    expect(ps.stdout).toMatch(new RegExp(`iso\\s+${id}\\s+default\\s+Running`));
    const stop = await denv(['stop', 'iso', '--state-dir', sd, '--json']);
    expect(stop.exitCode).toBe(0);
    const stopped = JSON.parse(stop.stdout);
    note(stopped);
    expect(stopped).toMatchObject({ phase: 'Failed', reason: 'Stopped', exitCode: 143 });
    await waitFor(() => !isSameProcess(rec.processes.supervisor), 10_000, 'the supervisor to exit');
  });

  it('denv logs -f follows the output until the env ends', async () => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'ticker', { workload: { command: ['/bin/sh', '-c', 'for i in 1 2 3 4 5; do echo tick $i; sleep 0.4; done; echo done >&2'] } });
    expect((await denv(['run', '-f', m, '--state-dir', sd, '--detach', ...FAST])).exitCode).toBe(0);
    const f = await denv(['logs', '-f', 'ticker', '--state-dir', sd], { timeoutMs: 30_000 });
    expect(f.exitCode).toBe(0);
    expect(f.stdout.trim().split('\n')).toEqual(['tick 1', 'tick 2', 'tick 3', 'tick 4', 'tick 5']);
    expect(f.stderr.trim()).toBe('done');
    const ps = JSON.parse((await denv(['ps', '--state-dir', sd, '--json'])).stdout);
    expect(ps.envs[0]).toMatchObject({ name: 'ticker', phase: 'Succeeded', reason: 'Completed' });
  });

  it('denv stop takes over when the detached supervisor died (conmon kept the workload alive)', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'orphaned', { workload: { command: ['/bin/sh', '-c', 'sleep 120'] }, lifecycle: { gracePeriodSeconds: 2 } });
    expect((await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--detach', ...FAST])).exitCode).toBe(0);
    const rec = (await new Journal(sd).read(id))!;
    expect(isSameProcess(rec.processes.supervisor)).toBe(true);
    process.kill(rec.processes.supervisor!.pid, 'SIGKILL');
    await waitFor(() => !isSameProcess(rec.processes.supervisor), 5000, 'the supervisor to die');
    // the workload is still running under conmon
    expect(readFileSync(`/proc/${rec.pids.container!}/cmdline`, 'utf8')).toContain('/dev/init');
    const stop = await denv(['stop', 'orphaned', '--state-dir', sd, '--json']);
    expect(stop.exitCode).toBe(0);
    expect(JSON.parse(stop.stdout)).toMatchObject({ phase: 'Failed', reason: 'Stopped', exitCode: 143 });
  });

  it('conmon caps the workload log at --log-size-max', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const m = manifest(work, 'chatty', { workload: { command: ['/bin/sh', '-c', 'i=0; while [ $i -lt 3000 ]; do echo "line $i of a chatty workload"; i=$((i+1)); done'] } });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--json', '--log-size-max', '8192', ...FAST]);
    expect(result(r.stdout)).toMatchObject({ reason: 'Completed' });
    const size = statSync(path.join(sd, 'envs', id, 'workload.log')).size;
    expect(size).toBeLessThanOrEqual(8192 + 200);
    expect(result(r.stdout).logTail).toContain('line 2999 of a chatty workload');
  });

  it('seccomp RuntimeDefault refuses io_uring, user namespaces, the keyring, bpf, mount and unknown syscalls, and still runs sh, coreutils, python3 and cc', async () => {
    const sd = stateDir(dirs);
    const run = async (name: string, seccompProfile: Record<string, string>): Promise<Record<string, string>> => {
      const m = manifest(work, name, { workload: { command: ['/bin/sh', '-c', TOOLS_AND_PROBE] }, security: { seccompProfile } });
      const r = await denv(['run', '-f', m, '--state-dir', sd, '--json', ...FAST]);
      expect(result(r.stdout)).toMatchObject({ reason: 'Completed', exitCode: 0 });
      return kv(result(r.stdout).logTail);
    };
    const confined = await run('seccomp-default', { type: 'RuntimeDefault' });
    // refused by name: EPERM (1), a clear "not permitted"
    expect(confined).toMatchObject({ io_uring_setup: '-1,1', unshare_newuser: '-1,1', keyctl: '-1,1', bpf: '-1,1', mount: '-1,1' });
    // not in the profile at all: ENOSYS (38), so a newer libc falls back; a real call the list omits reads the same
    expect(confined).toMatchObject({ unknown_1000: '-1,38', fanotify_init: '-1,38' });
    expect(confined).toMatchObject({ sh: 'ok', coreutils: 'ok', python3: 'ok', cc: 'ok' });
    // Unconfined: the kernel answers, exactly as it does for the same probe on the host
    const open = await run('seccomp-unconfined', { type: 'Unconfined' });
    const host = kv((await execa('/usr/bin/python3', ['-c', SYSCALL_PROBE], { timeout: 30_000 })).stdout);
    expect(open.io_uring_setup).toBe(host.io_uring_setup);
    expect(open.unknown_1000).toBe(host.unknown_1000);
    expect(open.io_uring_setup).not.toBe('-1,1');
    expect(open.keyctl).not.toBe('-1,1'); // ENOKEY (126) or a keyring id
    expect(open.unshare_newuser).toBe('0,0'); // the env's root may make a nested user namespace
  });

  it('a workload that needs a refused syscall fails with EPERM; a Localhost profile from the node\'s directory makes it work; one outside is refused before anything is created', async () => {
    const sd = stateDir(dirs);
    const profiles = path.join(work, `seccomp-${testId()}`);
    mkdirSync(path.join(profiles, 'ci'), { recursive: true });
    writeFileSync(path.join(profiles, 'ci', 'allow-all.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
    writeFileSync(path.join(work, 'outside.json'), JSON.stringify({ defaultAction: 'SCMP_ACT_ALLOW' }));
    symlinkSync(path.join(work, 'outside.json'), path.join(profiles, 'escape.json'));
    writeFileSync(path.join(profiles, 'broken.json'), '{"defaultAction": "ALLOW"}');
    // the workload: make a user namespace, as a rootless build tool would, and say how it went
    const workload = { command: ['/bin/sh', '-c', 'unshare -U true && echo nested=ok'] };
    const run = async (name: string, seccompProfile: Record<string, string>): Promise<{ exitCode: number; stdout: string; stderr: string }> => {
      const m = manifest(work, name, { workload, security: { seccompProfile } });
      return denv(['run', '-f', m, '--state-dir', sd, '--seccomp-profile-dir', profiles, '--json', ...FAST]);
    };
    const blocked = await run('needs-userns', { type: 'RuntimeDefault' });
    expect(result(blocked.stdout)).toMatchObject({ reason: 'Error', exitCode: 1 });
    expect(result(blocked.stdout).logTail).toMatch(/unshare failed: Operation not permitted/);
    const local = await run('needs-userns-local', { type: 'Localhost', localhostProfile: 'ci/allow-all.json' });
    expect(result(local.stdout)).toMatchObject({ reason: 'Completed', exitCode: 0 });
    expect(result(local.stdout).logTail).toContain('nested=ok');
    const unconfined = await run('needs-userns-open', { type: 'Unconfined' });
    expect(result(unconfined.stdout)).toMatchObject({ reason: 'Completed', exitCode: 0 });
    // refused before anything is created: the schema (..), the directory check (a symlink out, a missing file), the parser
    const before = await hostSnapshot();
    const envsBefore = envDirs(sd);
    const refused = [
      ['../outside.json', /spec\.security\.seccompProfile\.localhostProfile: must be a relative path .* without '\.\.' segments/],
      ['escape.json', /spec\.security\.seccompProfile\.localhostProfile: escape\.json resolves to .*outside\.json, outside the seccomp profile directory/],
      ['ci/missing.json', /spec\.security\.seccompProfile\.localhostProfile: ci\/missing\.json does not exist in the seccomp profile directory/],
      ['broken.json', /spec\.security\.seccompProfile\.localhostProfile: .*broken\.json is not a seccomp profile: defaultAction must be one of/],
    ] as const;
    for (const [localhostProfile, message] of refused) {
      const r = await run('refused-profile', { type: 'Localhost', localhostProfile });
      expect(r.exitCode).not.toBe(0);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).not.toContain('"phase":"Creating"');
    }
    expect(envDirs(sd)).toEqual(envsBefore);
    expect(await hostSnapshot()).toEqual(before);
  });

  it('the init reaps orphans: 200 double-forked children that exit leave no zombie', async () => {
    const sd = stateDir(dirs);
    const id = testId();
    const script = [
      'for i in $(seq 200); do ( sh -c "sleep 0.3" & ) ; done',
      'sleep 2',
      'echo "zombies_inside=$(ps -eo stat= | grep -c "^Z")"',
      'echo "procs_inside=$(ps -eo pid= | wc -l)"',
      'echo ready',
      'sleep 60',
    ].join('\n');
    const m = manifest(work, 'orphans', { workload: { command: ['/bin/sh', '-c', script] }, resources: { pids: { max: 512 } } });
    expect((await denv(['run', '-f', m, '--state-dir', sd, '--id', id, '--detach', ...FAST])).exitCode).toBe(0);
    const out = await waitFor(async () => {
      const l = await denv(['logs', id, '--state-dir', sd]);
      return l.stdout.includes('ready') ? l.stdout : undefined;
    }, 30_000, 'the orphans to exit');
    expect(kv(out).zombies_inside).toBe('0');
    // and from the host: nothing in the env's cgroup is a zombie
    const procs = readFileSync(`/sys/fs/cgroup/unified/disposable.slice/default/denv-${id}/cgroup.procs`, 'utf8').trim().split('\n').map(Number);
    expect(zombies(procs)).toEqual([]);
    expect(procs.length).toBeLessThan(6);
    const stop = await denv(['stop', id, '--state-dir', sd, '--json']);
    expect(JSON.parse(stop.stdout)).toMatchObject({ reason: 'Stopped' });
  });

  it('runs on a hostPath rootfs (a busybox tree) read-only', async () => {
    const sd = stateDir(dirs);
    const root = path.join(work, `rootfs-${testId()}`);
    for (const d of ['bin', 'proc', 'dev', 'sys', 'tmp', 'run', 'etc']) mkdirSync(path.join(root, d), { recursive: true });
    copyFileSync('/bin/busybox', path.join(root, 'bin/busybox'));
    chmodSync(path.join(root, 'bin/busybox'), 0o755);
    for (const t of ['sh', 'ls', 'cat', 'echo', 'touch']) symlinkSync('busybox', path.join(root, 'bin', t));
    chmodSync(root, 0o755);
    const m = manifest(work, 'busybox', {
      workload: { command: ['/bin/sh', '-c', 'echo "root=$(ls / | tr "\\n" " ")"; touch /etc/x 2>/dev/null; echo "write_rc=$?"'] },
      rootfs: { hostPath: root, readOnly: true },
    });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--json', ...FAST]);
    const res = result(r.stdout);
    note(res);
    expect(res).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
    const v = kv(res.logTail);
    expect(v.root?.trim().split(' ').sort()).toEqual(['bin', 'dev', 'etc', 'proc', 'run', 'sys', 'tmp']);
    expect(v.write_rc).not.toBe('0');
  });

  it('envs on the host root share one read-only tree: built once, reused, never containing itself, removed with the last env', async () => {
    const sd = stateDir(dirs);
    const metrics = new NodeMetrics();
    const rt = await Runtime.open({ stateDir: sd, metrics });
    const spec = parseSpec({ workload: { command: ['/bin/sh', '-c', 'sleep 60'] }, lifecycle: { gracePeriodSeconds: 1 } });
    const a = await rt.create({ name: 'twin-a', spec, id: testId() });
    // started through runc's exec fifo (no `runc start` process), and runc agrees it runs
    expect(a.startedBy).toBe('fifo');
    expect(existsSync(path.join(RUNC_ROOT, `denv-${a.id}`, 'exec.fifo'))).toBe(false); // removed once read, as `runc start` does
    const state = await execa('runc', ['--root', RUNC_ROOT, 'state', `denv-${a.id}`], { timeout: 10_000 });
    expect(JSON.parse(String(state.stdout))).toMatchObject({ status: 'running', pid: a.pids.container });
    const tree = rt.hostRoot.paths.rootfs;
    const before = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    const topA = before.filter((m) => m.mountPoint === tree).at(-1);
    const b = await rt.create({ name: 'twin-b', spec, id: testId() });
    const table = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    // reused, not rebuilt: the same mount, and no new mount under the state dir for the second env
    expect(table.filter((m) => m.mountPoint === tree).at(-1)?.id).toBe(topA?.id);
    expect(table.filter((m) => m.mountPoint.startsWith(`${sd}/`)).length).toBe(before.filter((m) => m.mountPoint.startsWith(`${sd}/`)).length);
    for (const r of [a, b]) expect(JSON.parse(readFileSync(path.join(sd, 'envs', r.id, 'bundle/config.json'), 'utf8')).root).toEqual({ path: tree, readonly: true });
    const mine = table.filter((m) => m.mountPoint === tree || m.mountPoint.startsWith(`${tree}/`));
    const hostMounts = table.filter((m) => !m.mountPoint.startsWith(sd)).length;
    expect(mine.some((m) => m.mountPoint.startsWith(`${tree}${sd}/`))).toBe(false); // the anchor is unbindable: no recursion
    expect(mine.length).toBeLessThanOrEqual(hostMounts);
    // every visible mount is read-only (a mount hidden under another stacked at the same point is unreachable)
    const visible = mine.filter((m, i) => !mine.slice(i + 1).some((x) => x.mountPoint === m.mountPoint));
    expect(visible.filter((m) => !m.options.split(',').includes('ro')).map((m) => m.mountPoint)).toEqual([]);
    expect(table.filter((m) => m.mountPoint === rt.hostRoot.paths.anchor).at(-1)?.optionalFields).toContain('unbindable');
    // in use: close keeps it
    expect(await rt.close()).toBe(false);
    await rt.killAll(a);
    expect(await rt.finish(a.id, { reason: 'Stopped', message: 'test' })).toMatchObject({ reason: 'Stopped', exitCode: 137 });
    expect(await rt.close()).toBe(false); // b still runs on it
    await rt.killAll(b);
    expect(await rt.finish(b.id, { reason: 'Stopped', message: 'test' })).toMatchObject({ reason: 'Stopped', exitCode: 137 });
    expect(await rt.close()).toBe(true);
    expect(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(`${sd}/`))).toEqual([]);
    // both normal teardowns were observed
    expect(await metrics.text()).toMatch(/^disposable_env_teardown_duration_seconds_count 2$/m);
  });

  it('a half-built shared root (its builder died) is torn down and built again', async () => {
    const sd = stateDir(dirs);
    const rt = await Runtime.open({ stateDir: sd });
    const tools = { mount: 'mount', umount: 'umount' };
    // what a builder killed between the bind and the marker leaves: anchor + tree, no marker
    mkdirSync(rt.hostRoot.paths.rootfs, { recursive: true, mode: 0o711 });
    await ensureAnchor(tools, rt.hostRoot.paths.anchor);
    await execa('mount', ['--rbind', '--make-rslave', '/', rt.hostRoot.paths.rootfs], { timeout: 10_000 });
    const stale = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === rt.hostRoot.paths.rootfs).at(-1);
    expect(await rt.hostRoot.ready()).toBe(false);
    const spec = parseSpec({ workload: { command: ['/bin/sh', '-c', 'touch /usr/x 2>/dev/null; echo rc=$?'] } });
    const r = await rt.create({ name: 'rebuilt', spec, id: testId() });
    expect(await rt.hostRoot.ready()).toBe(true);
    const table = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'));
    // the half-built one was removed, not stacked under the new one (mount ids may be reused, so count)
    expect(table.filter((m) => m.mountPoint === rt.hostRoot.paths.rootfs)).toHaveLength(1);
    expect(table.filter((m) => m.mountPoint === rt.hostRoot.paths.anchor)).toHaveLength(1);
    expect(stale).toBeDefined();
    const final = await supervise(rt, r.id, { intervalMs: 100 });
    expect(final.logTail).toContain('rc=1'); // read-only
    expect(await rt.close()).toBe(true);
    expect(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint.startsWith(`${sd}/`))).toEqual([]);
  });

  it('refuses a second live env of the same name in a state dir, before touching the host; the name is free again once the first finished', async () => {
    const sd = stateDir(dirs);
    const rt = await Runtime.open({ stateDir: sd });
    const spec = parseSpec({ workload: { command: ['/bin/sleep', '60'] } });
    const first = await rt.create({ name: 'twice', spec, id: testId() });
    const second = testId();
    await expect(rt.create({ name: 'twice', spec, id: second })).rejects.toThrow(`an env named twice is already Running in ${rt.stateDir} (id ${first.id})`);
    expect((await rt.journal.list()).records.map((r) => r.id)).toEqual([first.id]); // nothing journaled, nothing made
    await rt.killAll(first);
    expect((await rt.finish(first.id)).phase).toBe('Failed');
    const again = await rt.create({ name: 'twice', spec: parseSpec({ workload: { command: ['/bin/true'] } }), id: second });
    expect(again.phase).toBe('Running');
    expect((await supervise(rt, second, { intervalMs: 100 })).reason).toBe('Completed');
    expect(await rt.close()).toBe(true);
  });

  it('without the spawn helper (DENV_SPAWN_HELPER=off) an env runs the same way: conmon through child_process, the netns through unshare + ip', async () => {
    closeSharedHelper();
    process.env.DENV_SPAWN_HELPER = 'off';
    try {
      expect(sharedHelper()).toBeUndefined();
      const sd = stateDir(dirs);
      const rt = await Runtime.open({ stateDir: sd });
      const id = testId();
      const r = await rt.create({ name: 'no-helper', id, spec: parseSpec({ workload: { command: ['/bin/sh', '-c', 'ip -o link show lo; echo done; exit 4'] } }) });
      expect(r).toMatchObject({ phase: 'Running', netns: `/run/netns/denv-${id}` });
      const final = await supervise(rt, id, { intervalMs: 100 });
      expect(final).toMatchObject({ phase: 'Failed', reason: 'Error', exitCode: 4 });
      expect(final.logTail).toMatch(/lo: <LOOPBACK,UP,LOWER_UP>/);
      expect(final.logTail).toContain('done');
      expect(await rt.close()).toBe(true);
    } finally {
      delete process.env.DENV_SPAWN_HELPER;
    }
    expect(sharedHelper()).toBeDefined();
  });

  it('best effort runs a spec with memory.high on v1 and reports what was not enforced', async () => {
    const sd = stateDir(dirs);
    const m = manifest(work, 'besteffort', {
      workload: { command: ['/bin/true'] },
      resources: { memory: { max: '64Mi', high: '48Mi' }, bestEffort: true },
    });
    const r = await denv(['run', '-f', m, '--state-dir', sd, '--json', ...FAST]);
    const running = events(r.stdout).find((e) => e.phase === 'Running') as Record<string, any>;
    expect(running.message).toMatch(/best effort: not enforced: spec.resources.memory.high/);
    expect(result(r.stdout)).toMatchObject({ reason: 'Completed' });
  });
});
