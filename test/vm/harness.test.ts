// Proves the cgroup v2 VM harness: real cgroup v2 limits (memory OOM kill, CPU
// throttling, pids) inside a qemu-booted Debian kernel, runc, and Node + tsx.
// Without qemu these tests skip, except under CI (env CI set), where they fail.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { runInVm, vmAvailable, VmError, type VmRunResult } from './harness.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

const avail = await vmAvailable();
const inCi = Boolean(process.env.CI);
if (!avail.ok && !inCi) {
  console.warn(`[vm tests skipped] cgroup v2 VM unavailable: ${avail.why}`);
}
const describeVm = avail.ok || inCi ? describe : describe.skip;

/** Parses KEY=VALUE lines. */
function kv(text: string): Map<string, string> {
  const m = new Map<string, string>();
  for (const line of text.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0 && /^[A-Za-z_][A-Za-z0-9_.]*$/.test(line.slice(0, i))) m.set(line.slice(0, i), line.slice(i + 1));
  }
  return m;
}

function num(m: Map<string, string>, key: string): number {
  const v = m.get(key);
  if (v === undefined) throw new Error(`missing ${key}`);
  return Number(v);
}

// One boot for all cgroup/runc/node checks (a boot costs 10-30 s under TCG).
const CHECKS = String.raw`
set -u
R=/sys/fs/cgroup
echo "fstype=$(stat -f -c %T $R)"
echo "controllers=$(cat $R/cgroup.controllers)"
echo "subtree_control=$(cat $R/cgroup.subtree_control)"
echo "self_cgroup=$(cat /proc/self/cgroup)"

# memory: 32M limit, allocate 200M -> OOM kill
mkdir $R/denv-oom
echo 32M > $R/denv-oom/memory.max
echo "oom.memory_max=$(cat $R/denv-oom/memory.max)"
sh -c "echo \$\$ > $R/denv-oom/cgroup.procs; exec head -c 200M /dev/zero | tail" >/dev/null 2>&1
echo "oom.rc=$?"
echo "oom.oom_kill=$(awk '$1=="oom_kill"{print $2}' $R/denv-oom/memory.events)"
echo "oom.max_events=$(awk '$1=="max"{print $2}' $R/denv-oom/memory.events)"
echo "oom.peak_ok=$(test "$(cat $R/denv-oom/memory.current)" -le 33554432 && echo yes || echo no)"

# cpu: 20% quota, busy loop for 3 s of wall time -> throttled
mkdir $R/denv-cpu
echo "20000 100000" > $R/denv-cpu/cpu.max
echo "cpu.cpu_max=$(cat $R/denv-cpu/cpu.max)"
start=$(date +%s%N)
sh -c "echo \$\$ > $R/denv-cpu/cgroup.procs; exec timeout 3 sh -c 'while :; do :; done'"
echo "cpu.wall_usec=$(( ($(date +%s%N) - start) / 1000 ))"
for k in usage_usec nr_periods nr_throttled throttled_usec; do
  echo "cpu.$k=$(awk -v k=$k '$1==k{print $2}' $R/denv-cpu/cpu.stat)"
done

# pids: max 4 -> forks fail
mkdir $R/denv-pids
echo 4 > $R/denv-pids/pids.max
sh -c "echo \$\$ > $R/denv-pids/cgroup.procs; for i in 1 2 3 4 5 6 7 8; do sleep 2 & done; wait" >/dev/null 2>&1
echo "pids.max_events=$(awk '$1=="max"{print $2}' $R/denv-pids/pids.events)"

# runc: version and a trivial container whose rootfs is the (read-only) host root
echo "runc.version=$(runc --version | head -1)"
mkdir -p /tmp/bundle/rootfs
mount --bind / /tmp/bundle/rootfs
cd /tmp/bundle
runc spec
sed -i -e 's/"terminal": true/"terminal": false/' \
  -e 's/"sh"$/"sh", "-c", "echo runc.hello=yes; echo runc.cgroup=$(cat \/proc\/self\/cgroup)"/' config.json
runc run denv-t1 2>/tmp/runc.err
echo "runc.rc=$?"
sed 's/^/runc.stderr: /' /tmp/runc.err >&2
cd /

# node + tsx, from the host's repo through the read-only 9p root
t=$(date +%s%N); node -e 1; echo "node.e1_cold_ms=$(( ($(date +%s%N) - t) / 1000000 ))"
t=$(date +%s%N); node -e 1; echo "node.e1_ms=$(( ($(date +%s%N) - t) / 1000000 ))"
echo "node.version=$(node -p process.version)"
echo 'const n: number = 6 * 7; console.log("tsx.answer=" + n);' > /tmp/t.mts
cd "$REPO"
t=$(date +%s%N); node --import tsx/esm /tmp/t.mts; echo "tsx.rc=$?"
echo "tsx.ms=$(( ($(date +%s%N) - t) / 1000000 ))"
# a TypeScript ESM file of the repo that imports execa from node_modules (usage: exit 2)
node --import tsx/esm test/vm/cli.ts 2>/tmp/cli.err; echo "tsx.repo_rc=$?"
echo "tsx.repo_usage=$(grep -c '^usage: test/vm/run.sh' /tmp/cli.err)"
sed 's/^/tsx.stderr: /' /tmp/cli.err >&2
exit 7
`;

describeVm('cgroup v2 VM harness', () => {
  let r: VmRunResult;
  let out: Map<string, string>;

  beforeAll(async () => {
    if (!avail.ok) throw new Error(`cgroup v2 VM unavailable under CI: ${avail.why}`);
    r = await runInVm(CHECKS, { timeoutMs: 420_000, env: { REPO } });
    out = kv(r.stdout);
    if (r.stderr.trim()) {
      console.log(`[vm] script stderr:\n${r.stderr}`);
    }
    console.log(
      `[vm] boot ${r.bootMs} ms (guest ${r.guestBootMs} ms), total ${r.durationMs} ms; ` +
        `node -e 1: ${out.get('node.e1_ms')} ms (cold ${out.get('node.e1_cold_ms')} ms); ` +
        `node --import tsx/esm: ${out.get('tsx.ms')} ms`,
    );
  }, 480_000);

  test('script exit code, stdout and stderr come back', () => {
    expect(r.exitCode).toBe(7);
    expect(r.stdout).toContain('fstype=');
    expect(r.bootMs).toBeGreaterThan(0);
    expect(r.console).toContain('denv-vm: running command');
  });

  test('/sys/fs/cgroup is cgroup2 with memory, cpu, io and pids enabled at the root', () => {
    expect(out.get('fstype')).toBe('cgroup2fs');
    const controllers = out.get('controllers')!.split(' ');
    const enabled = out.get('subtree_control')!.split(' ');
    for (const c of ['memory', 'cpu', 'io', 'pids', 'cpuset']) {
      expect(controllers).toContain(c);
      expect(enabled).toContain(c);
    }
    expect(out.get('self_cgroup')).toBe('0::/');
  });

  test('memory.max=32M: allocating 200M gets OOM-killed', () => {
    expect(out.get('oom.memory_max')).toBe(String(32 * 1024 * 1024));
    expect(num(out, 'oom.rc')).not.toBe(0);
    expect(num(out, 'oom.oom_kill')).toBeGreaterThanOrEqual(1);
    expect(num(out, 'oom.max_events')).toBeGreaterThanOrEqual(1);
    expect(out.get('oom.peak_ok')).toBe('yes');
  });

  test('cpu.max "20000 100000": a busy loop is throttled', () => {
    expect(out.get('cpu.cpu_max')).toBe('20000 100000');
    expect(num(out, 'cpu.nr_throttled')).toBeGreaterThan(0);
    expect(num(out, 'cpu.throttled_usec')).toBeGreaterThan(0);
    // 20% quota: usage stays well below the wall time the loop ran for
    expect(num(out, 'cpu.usage_usec')).toBeLessThan(0.5 * num(out, 'cpu.wall_usec'));
  });

  test('pids.max=4: further forks fail', () => {
    expect(num(out, 'pids.max_events')).toBeGreaterThan(0);
  });

  test('runc runs a container on cgroup v2', () => {
    expect(out.get('runc.version')).toMatch(/^runc version /);
    expect(out.get('runc.rc')).toBe('0');
    expect(out.get('runc.hello')).toBe('yes');
    expect(out.get('runc.cgroup')).toBe('0::/');
  });

  test('node and tsx run the host repo code inside', () => {
    expect(out.get('node.version')).toBe(process.version);
    expect(out.get('tsx.rc')).toBe('0');
    expect(out.get('tsx.answer')).toBe('42');
    expect(out.get('tsx.repo_rc')).toBe('2');
    expect(out.get('tsx.repo_usage')).toBe('1');
  });
});

describeVm('runInVm plumbing', () => {
  test(
    'env, cwd, input files, stderr, extra out files and a failing exit code',
    async () => {
      if (!avail.ok) throw new Error(`cgroup v2 VM unavailable under CI: ${avail.why}`);
      const r = await runInVm(
        'echo "dir=$(pwd) foo=$FOO in=$(cat "$DENV_VM_OUT/in.txt")"; echo oops >&2; echo \'{"a":1}\' > "$DENV_VM_OUT/result.json"; exit 3',
        { cwd: '/usr', env: { FOO: "it's" }, inputs: { 'in.txt': 'hello' }, memoryMiB: 512, cpus: 1, timeoutMs: 240_000 },
      );
      expect(r.exitCode).toBe(3);
      expect(r.stdout).toBe("dir=/usr foo=it's in=hello\n");
      expect(r.stderr).toBe('oops\n');
      expect(JSON.parse(r.files['result.json']!)).toEqual({ a: 1 });
    },
    300_000,
  );

  test(
    'a run past its timeout is killed and reported',
    async () => {
      if (!avail.ok) throw new Error(`cgroup v2 VM unavailable under CI: ${avail.why}`);
      const t0 = Date.now();
      await expect(runInVm('sleep 600', { timeoutMs: 8_000, memoryMiB: 256, cpus: 1 })).rejects.toThrow(VmError);
      expect(Date.now() - t0).toBeLessThan(60_000);
    },
    120_000,
  );
});
