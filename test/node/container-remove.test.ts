// Removing a runc container at teardown (node-agent/conmon.ts removeContainer).
// When the workload has exited, `runc delete` would only remove the container's
// state dir and the env's cgroup dirs (which teardown removes and verifies
// itself), so the runtime removes the state dir by hand and saves a runc
// process; anything else still goes through `runc delete --force`.
//
// The decision is shown on state files shaped like runc's, in a scratch root;
// both paths are then shown on real containers made by the runtime.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { removeContainer, stoppedContainer } from '../../node-agent/conmon.js';
import { pidAlive } from '../../node-agent/exec.js';
import { hostName, RUNC_ROOT } from '../../node-agent/names.js';
import { Runtime } from '../../node-agent/runtime.js';
import { closeSharedHelper } from '../../node-agent/spawner.js';
import { parseSpec } from '../../src/api/validate.js';
import { parseProcStat } from '../../src/core/procfs.js';
import { checkLeaksAfterAll, stateDir, testId, waitFor } from './helpers.js';

const scratch = mkdtempSync(path.join(tmpdir(), 'denv-ctr-'));
const ours = new Set(['/sys/fs/cgroup/memory/disposable.slice/t/denv-x', '/sys/fs/cgroup/pids/disposable.slice/t/denv-x']);
let n = 0;

afterAll(() => {
  rmSync(scratch, { recursive: true, force: true });
});

/** A container dir with a state.json like runc's (only the fields the check reads, plus some it ignores). */
function planted(state: Record<string, unknown> | string): string {
  const id = `c${n++}`;
  mkdirSync(path.join(scratch, id));
  writeFileSync(path.join(scratch, id, 'state.json'), typeof state === 'string' ? state : JSON.stringify(state));
  return id;
}

const self = { pid: process.pid, start: parseProcStat(readFileSync('/proc/self/stat', 'utf8'))!.startTicks };
const base = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  id: 'x',
  init_process_pid: self.pid,
  init_process_start: self.start + 1, // the pid was reused: not the container's init
  created: new Date().toISOString(),
  config: { rootfs: '/r', hooks: null },
  rootless: false,
  cgroup_paths: { memory: [...ours][0], pids: [...ours][1] },
  namespace_paths: {},
  intel_rdt_path: '',
  ...over,
});

/** The pid of a process that has exited and been reaped. */
async function deadPid(): Promise<number> {
  const c = spawn('/bin/true', [], { stdio: 'ignore' });
  await new Promise((r) => c.once('exit', r));
  return c.pid!;
}

describe('stoppedContainer', () => {
  it('no dir: absent', () => {
    expect(stoppedContainer(scratch, 'never-made', ours)).toEqual({ state: 'absent' });
  });

  it('init gone (a reaped pid, or a pid reused by another process): stopped', async () => {
    expect(stoppedContainer(scratch, planted(base({ init_process_pid: await deadPid() })), ours)).toEqual({ state: 'stopped' });
    expect(stoppedContainer(scratch, planted(base()), ours)).toEqual({ state: 'stopped' });
    expect(stoppedContainer(scratch, planted(base({ config: { hooks: { prestart: [], poststop: [] } } })), ours)).toEqual({ state: 'stopped' });
  });

  it('needs runc: init alive, hooks, an Intel RDT group, a cgroup not the env’s, no pid, an unreadable or missing state file', () => {
    const why = (state: Record<string, unknown> | string): string => {
      const c = stoppedContainer(scratch, planted(state), ours);
      expect(c.state).toBe('needs runc');
      return (c as { why: string }).why;
    };
    expect(why(base({ init_process_start: self.start }))).toBe(`init ${self.pid} is alive`);
    expect(why(base({ config: { hooks: { poststop: [{ path: '/bin/true' }] } } }))).toBe('it has hooks');
    expect(why(base({ intel_rdt_path: '/sys/fs/resctrl/x' }))).toBe('it has an Intel RDT group');
    expect(why(base({ cgroup_paths: { memory: [...ours][0], devices: '/sys/fs/cgroup/devices/elsewhere' } }))).toBe('cgroup "/sys/fs/cgroup/devices/elsewhere" is not the env\'s');
    expect(why(base({ init_process_pid: undefined }))).toBe('no init pid in state.json');
    expect(why('{"id": "x", "init_pro')).toMatch(/^state\.json: /);
    const id = `c${n++}`;
    mkdirSync(path.join(scratch, id)); // a dir without state.json: runc's business
    expect(stoppedContainer(scratch, id, ours)).toMatchObject({ state: 'needs runc', why: expect.stringMatching(/ENOENT/) });
  });
});

describe('removeContainer', () => {
  it('a stopped container whose state dir cannot be removed (a mount inside) goes to runc delete, and the error says the container is still there', async () => {
    const id = planted(base({ init_process_pid: await deadPid() }));
    const busy = path.join(scratch, id, 'busy');
    const src = path.join(scratch, `${id}-src`);
    writeFileSync(busy, '');
    writeFileSync(src, 'x');
    await execa('mount', ['--bind', src, busy], { timeout: 10_000 });
    try {
      await expect(removeContainer('runc', scratch, id, ours)).rejects.toThrow(`runc: container ${id} still exists after delete`);
      expect(existsSync(path.join(scratch, id))).toBe(true);
    } finally {
      await execa('umount', [busy], { timeout: 10_000 });
    }
    expect(await removeContainer('runc', scratch, id, ours)).toBe('state dir');
    expect(existsSync(path.join(scratch, id))).toBe(false);
  });
});

describe('on real containers', () => {
  const dirs: string[] = [];
  const sd = stateDir(dirs);
  let rt: Runtime;
  const spec = parseSpec({ class: 'ctr-test', workload: { command: ['/bin/sleep', '300'] }, resources: { memory: { max: '64Mi' }, pids: { max: 32 } }, lifecycle: { timeoutSeconds: 120 } });

  beforeAll(async () => {
    rt = await Runtime.open({ stateDir: sd, emptyTimeoutMs: 5000 });
  });
  afterAll(async () => {
    await rt.close();
    closeSharedHelper();
  });
  checkLeaksAfterAll(dirs);

  const runcList = async (): Promise<string[]> => {
    const r = await execa('runc', ['--root', RUNC_ROOT, 'list', '-q'], { timeout: 10_000 });
    return String(r.stdout).split('\n').filter(Boolean);
  };

  it('an exited workload: teardown removes the state dir without runc, and runc no longer knows the container', async () => {
    const id = testId();
    const r = await rt.create({ id, name: 'ctr-exited', spec });
    expect(await runcList()).toContain(hostName(id));
    await rt.killAll(r);
    const done = await rt.finish(id, { reason: 'Stopped', message: 'test' });
    const c = done.resources.find((x) => x.kind === 'container')!;
    expect(c).toMatchObject({ state: 'removed', detail: { removedBy: 'state dir' } });
    expect(existsSync(path.join(RUNC_ROOT, hostName(id)))).toBe(false);
    expect(await runcList()).not.toContain(hostName(id));
    expect(done.leaks ?? []).toEqual([]);
    await rt.journal.forget(id);
  });

  it('a running workload: removeContainer goes through `runc delete --force`, which kills it; teardown then finds the container gone', async () => {
    const id = testId();
    const r = await rt.create({ id, name: 'ctr-running', spec });
    const init = r.pids.container!;
    expect(pidAlive(init)).toBe(true);
    const cgroups = new Set(r.resources.filter((x) => x.kind === 'cgroup').map((x) => x.hostId));
    expect(stoppedContainer(RUNC_ROOT, hostName(id), cgroups)).toEqual({ state: 'needs runc', why: `init ${init} is alive` });
    expect(await removeContainer('runc', RUNC_ROOT, hostName(id), cgroups)).toBe('runc delete');
    expect(await runcList()).not.toContain(hostName(id));
    await waitFor(() => !pidAlive(init), 5000, 'the workload to die');
    const done = await rt.finish(id, { reason: 'Stopped', message: 'test' });
    expect(done.resources.find((x) => x.kind === 'container')).toMatchObject({ state: 'removed', detail: { removedBy: 'absent' } });
    expect(done.leaks ?? []).toEqual([]);
    await rt.journal.forget(id);
  });
});
