// Process identity (pid plus start time) from /proc/PID/stat text: a pid the
// kernel handed to a newer process, a zombie and a gone process are never the
// process that was recorded. The I/O half runs against a fake /proc in a temp
// dir; the journal's upgrade of version-1 records (bare pids) runs against this
// test process's own /proc entry.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { identityWrittenAt, isSameProcess, processIdentity, recordIdentity, selfIdentity } from '../../node-agent/exec.js';
import { Journal, JOURNAL_VERSION, recordProcess, type EnvRecord } from '../../node-agent/journal.js';
import { GONE_START_TICKS, identityFromStat, sameProcessId, sameProcessInStat } from '../../src/core/procfs.js';

/** A /proc/PID/stat line with state `state` and start time `start` (field 22). */
const stat = (pid: number, state: string, start: number, comm = 'sleep'): string =>
  `${pid} (${comm}) ${state} 1 ${pid} ${pid} 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 ${start} 2265088 130 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n`;

describe('ProcessId from /proc/PID/stat text', () => {
  const recorded = { pid: 4242, startTicks: 123456 };

  it('reads pid and start time; unparsable text has no identity', () => {
    expect(identityFromStat(4242, stat(4242, 'S', 123456, 'we (ird) x)'))).toEqual(recorded);
    expect(identityFromStat(4242, 'garbage')).toBeUndefined();
    expect(identityFromStat(4242, '')).toBeUndefined();
  });

  it('the same pid and start time, running or sleeping, is the same process', () => {
    expect(sameProcessInStat(recorded, stat(4242, 'S', 123456))).toBe(true);
    expect(sameProcessInStat(recorded, stat(4242, 'R', 123456))).toBe(true);
    expect(sameProcessInStat(recorded, stat(4242, 'D', 123456))).toBe(true);
  });

  it('a reused pid (same pid, another start time) is not the same process', () => {
    expect(sameProcessInStat(recorded, stat(4242, 'S', 987654))).toBe(false);
    expect(sameProcessInStat(recorded, stat(4242, 'S', 123455))).toBe(false);
  });

  it('a zombie, a dead task and a missing process are not alive', () => {
    expect(sameProcessInStat(recorded, stat(4242, 'Z', 123456))).toBe(false);
    expect(sameProcessInStat(recorded, stat(4242, 'X', 123456))).toBe(false);
    expect(sameProcessInStat(recorded, '')).toBe(false);
  });

  it('sameProcessId compares both halves', () => {
    expect(sameProcessId(recorded, { pid: 4242, startTicks: 123456 })).toBe(true);
    expect(sameProcessId(recorded, { pid: 4242, startTicks: 1 })).toBe(false);
    expect(sameProcessId(recorded, { pid: 4243, startTicks: 123456 })).toBe(false);
    expect(sameProcessId(recorded, undefined)).toBe(false);
  });
});

describe('isSameProcess and processIdentity against a fake /proc', () => {
  const proc = mkdtempSync(path.join(tmpdir(), 'fake-proc-'));
  afterAll(() => rmSync(proc, { recursive: true, force: true }));
  const put = (pid: number, text: string): void => {
    mkdirSync(path.join(proc, String(pid)), { recursive: true });
    writeFileSync(path.join(proc, String(pid), 'stat'), text);
  };
  // boot at 1 700 000 000 s (wall clock); 100 ticks a second
  writeFileSync(path.join(proc, 'stat'), 'cpu  1 2 3 4\nbtime 1700000000\nprocesses 99\n');

  it('judges a reused pid dead and the recorded process alive', () => {
    put(100, stat(100, 'S', 5000));
    const id = processIdentity(100, proc)!;
    expect(id).toEqual({ pid: 100, startTicks: 5000 });
    expect(isSameProcess(id, proc)).toBe(true);
    // the process exits and the kernel gives pid 100 to a newer process
    put(100, stat(100, 'S', 7000));
    expect(isSameProcess(id, proc)).toBe(false);
    expect(isSameProcess(processIdentity(100, proc), proc)).toBe(true);
  });

  it('a missing process has no identity; recording it gives one that matches nothing', () => {
    expect(processIdentity(101, proc)).toBeUndefined();
    expect(recordIdentity(101, proc)).toEqual({ pid: 101, startTicks: GONE_START_TICKS });
    put(101, stat(101, 'S', 0)); // even a process started at tick 0
    expect(isSameProcess({ pid: 101, startTicks: GONE_START_TICKS }, proc)).toBe(false);
    expect(isSameProcess(undefined, proc)).toBe(false);
  });

  it('a bare pid written at a time names the process holding it only if that process had started by then', () => {
    put(102, stat(102, 'S', 10_000)); // started at 1 700 000 100 s
    const startedMs = 1_700_000_100_000;
    expect(identityWrittenAt(102, startedMs + 60_000, proc)).toEqual({ pid: 102, startTicks: 10_000 });
    expect(identityWrittenAt(102, startedMs, proc)).toEqual({ pid: 102, startTicks: 10_000 });
    // written a minute before the current holder of the pid started: it named another (gone) process
    expect(identityWrittenAt(102, startedMs - 60_000, proc)).toEqual({ pid: 102, startTicks: GONE_START_TICKS });
    expect(identityWrittenAt(103, startedMs, proc)).toEqual({ pid: 103, startTicks: GONE_START_TICKS });
  });
});

describe('journal: processes by identity, and version-1 records with bare pids', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'journal-ids-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const j = new Journal(dir);
  const me = selfIdentity();
  const pidMax = Number(readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
  let n = 0;

  /** A record on disk as a runtime that recorded no start times wrote it. */
  const legacy = (pids: EnvRecord['pids'], updatedAt: string, extra: Record<string, unknown> = {}): string => {
    const id = `legacy${++n}`;
    mkdirSync(path.join(dir, 'envs', id), { recursive: true });
    const rec = { version: 1, id, name: id, class: 'c', source: { kind: 'cli' }, spec: {}, stateDir: dir, cgroupPath: 'x', cgroupMode: 'hybrid', phase: 'Running', createdAt: updatedAt, deadlines: {}, pids, runtime: { runc: '', conmon: '', init: '', runcRoot: '' }, resources: [], seq: 3, updatedAt, ...extra };
    writeFileSync(j.file(id), JSON.stringify(rec));
    return id;
  };

  it('begin records identities and the bare pids beside them; recordProcess sets both', async () => {
    const r = await j.begin({ id: 'new1', name: 'n', class: 'c', source: { kind: 'cli' }, spec: {} as never, cgroupPath: 'x', cgroupMode: 'hybrid', phase: 'Creating', deadlines: {}, processes: { creator: me }, runtime: { runc: '', conmon: '', init: '', runcRoot: '' } });
    expect(r.version).toBe(JOURNAL_VERSION);
    expect(r).toMatchObject({ processes: { creator: me }, pids: { creator: me.pid } });
    await j.update('new1', (x) => recordProcess(x, 'supervisor', { pid: 77, startTicks: 8 }));
    const onDisk = JSON.parse(readFileSync(j.file('new1'), 'utf8')) as EnvRecord;
    expect(onDisk.processes).toEqual({ creator: me, supervisor: { pid: 77, startTicks: 8 } });
    expect(onDisk.pids).toEqual({ creator: me.pid, supervisor: 77 });
  });

  it('a bare pid whose process started before the record was last written is taken to be that process', async () => {
    const id = legacy({ supervisor: me.pid }, new Date().toISOString());
    const r = (await j.read(id))!;
    expect(r.processes.supervisor).toEqual(me);
    expect(isSameProcess(r.processes.supervisor)).toBe(true);
  });

  it('a bare pid now held by a process that started after the last write is a reused pid: gone', async () => {
    const id = legacy({ supervisor: me.pid, conmon: pidMax + 1 }, '2001-01-01T00:00:00.000Z');
    const r = (await j.read(id))!;
    expect(r.processes.supervisor).toEqual({ pid: me.pid, startTicks: GONE_START_TICKS });
    expect(r.processes.conmon).toEqual({ pid: pidMax + 1, startTicks: GONE_START_TICKS }); // no such process at all
    expect(isSameProcess(r.processes.supervisor)).toBe(false);
    expect(r.pids).toEqual({ supervisor: me.pid, conmon: pidMax + 1 });
  });

  it('an identity that no longer matches its bare pid (rewritten by an older runtime) is worked out again from the pid', async () => {
    const id = legacy({ supervisor: me.pid }, new Date().toISOString(), { processes: { supervisor: { pid: pidMax + 1, startTicks: 5 } } });
    expect((await j.read(id))!.processes.supervisor).toEqual(me);
  });

  it('the next write keeps the upgraded identities, so a later write cannot move the bound', async () => {
    const id = legacy({ supervisor: me.pid }, '2001-01-01T00:00:00.000Z');
    await j.update(id, (x) => void (x.message = 'touched'));
    const onDisk = JSON.parse(readFileSync(j.file(id), 'utf8')) as EnvRecord;
    expect(onDisk.processes.supervisor).toEqual({ pid: me.pid, startTicks: GONE_START_TICKS });
    expect((await j.read(id))!.processes.supervisor).toEqual({ pid: me.pid, startTicks: GONE_START_TICKS });
  });
});
