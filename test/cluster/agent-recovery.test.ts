/**
 * The node agent when things go wrong, with a real control plane, the real
 * controller and real agents: an agent SIGKILLed mid-run adopts its envs on
 * restart (they finish normally, each run exactly once); an agent stopped for
 * longer than the node-lease timeout finds its envs NodeLost and its GC
 * reclaims them; orphans planted on the host with the project's prefix are
 * reclaimed within one GC pass and counted in /metrics; invalid and
 * out-of-policy manifests create nothing on the host; an env with no resources
 * runs under the node's default limits, and one asking above --max-limits is
 * refused naming the field and the cap.
 */
import { jest } from '@jest/globals';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { Journal } from '../../node-agent/journal.js';
import { kubectl, withTestNamespace } from '../helpers/kube.js';
import { findLeaks } from '../node/helpers.js';
import { AgentNodes } from './agent-harness.js';
import { createEnv, getEnv, listEvents, settled, startController, testClient, waitFor, waitForEnv, type ControllerProcess } from './controller-harness.js';

jest.setTimeout(240_000);

const cond = (e: EnvObject | undefined, type: string): NonNullable<NonNullable<EnvObject['status']>['conditions']>[number] | undefined =>
  e?.status?.conditions?.find((c) => c.type === type);
const finished = (e: EnvObject): boolean => e.status?.phase === 'Succeeded' || e.status?.phase === 'Failed';

/** Env dirs (one per env ever created) in an agent's state dir. */
function envDirs(stateDir: string): string[] {
  try {
    return readdirSync(path.join(stateDir, 'envs'));
  } catch {
    return [];
  }
}

describe('node agent: restart, node loss, orphans, refusals', () => {
  const ns = withTestNamespace('agent-rec');
  const nodes = new AgentNodes(ns);
  let client: KubeClient;
  let ctl: ControllerProcess;
  const strays: ChildProcess[] = [];

  beforeAll(async () => {
    client = await testClient();
    await nodes.add('a', ['--allowed-host-paths=/usr', '--max-limits=memory=2Gi']);
    ctl = await startController([...nodes.controllerScope(), '--node-lease-timeout=12s', '--node-lost-finalizer-grace=10m']);
  });

  afterAll(async () => {
    for (const c of strays) {
      try {
        if (c.pid) process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone: the GC killed it
      }
    }
    await ctl?.stop('SIGTERM');
    await kubectl(['delete', '-n', ns(), 'denv', '--all', '--wait=false'], { reject: false });
    await nodes.cleanup(client);
    client?.close();
    expect(await findLeaks()).toEqual([]);
  });

  it('SIGKILL of the agent mid-run: after restart its envs are adopted, still Running, and finish normally, each run exactly once', async () => {
    const names = ['survivor-1', 'survivor-2'];
    for (const n of names) await createEnv(client, ns(), n, { workload: { command: ['/bin/sh', '-c', 'echo run-started; sleep 6; echo run-finished'] } });
    const before = await Promise.all(names.map((n) => waitForEnv(client, ns(), n, (e) => e.status?.phase === 'Running', 'Running', 60_000)));
    const a = nodes.get('a');
    expect(await a.proc.stop('SIGKILL')).toBe('SIGKILL');
    // the workloads run on under conmon while no agent is there
    await new Promise((r) => setTimeout(r, 1500));
    for (const n of names) expect((await getEnv(client, ns(), n))?.status?.phase).toBe('Running');
    await nodes.restart('a');
    const after = await Promise.all(names.map((n) => waitForEnv(client, ns(), n, finished, 'finished', 60_000)));
    for (const [i, e] of after.entries()) {
      expect(e.status).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
      expect(e.status?.startTime).toBe(before[i]!.status?.startTime);
      // exactly once: one start and one finish in the log, one journal record for the object
      expect(e.status?.logTail?.match(/run-started/g)).toHaveLength(1);
      expect(e.status?.logTail?.match(/run-finished/g)).toHaveLength(1);
      const records = (await new Journal(a.stateDir).list()).records.filter((r) => r.source.kind === 'kubernetes' && r.source.uid === e.metadata.uid);
      expect(records).toHaveLength(1);
    }
    expect(a.proc.logs.some((l) => l.includes('adopted env'))).toBe(true);
  });

  it('an agent stopped longer than the node-lease timeout: its envs become NodeLost, and when it returns its GC reclaims them', async () => {
    await createEnv(client, ns(), 'stranded', { workload: { command: ['/bin/sleep', '300'] } });
    const running = await waitForEnv(client, ns(), 'stranded', (e) => e.status?.phase === 'Running', 'Running', 60_000);
    const cgroupLeaf = running.status!.cgroupPath!.split('/').pop()!;
    const a = nodes.get('a');
    await a.proc.stop('SIGKILL');
    const lost = await waitForEnv(client, ns(), 'stranded', (e) => e.status?.reason === 'NodeLost', 'NodeLost', 60_000);
    expect(lost.status?.phase).toBe('Failed');
    expect(cond(lost, 'Stalled')?.status).toBe('True');
    // still on the host while the agent is away
    expect(existsSync(path.join('/sys/fs/cgroup/pids', running.status!.cgroupPath!))).toBe(true);
    await nodes.restart('a');
    const reclaimed = await waitForEnv(client, ns(), 'stranded', (e) => cond(e, 'Reclaimed')?.status === 'True', 'Reclaimed=True', 60_000);
    // the controller's end stands: the agent did not write phase or reason again
    expect(reclaimed.status).toMatchObject({ phase: 'Failed', reason: 'NodeLost' });
    expect(existsSync(path.join('/sys/fs/cgroup/pids', running.status!.cgroupPath!))).toBe(false);
    expect((await findLeaks()).filter((l) => l.includes(cgroupLeaf))).toEqual([]);
  });

  it('orphans planted with the prefix (no env in the API) are reclaimed within one GC pass and counted in /metrics', async () => {
    const a = nodes.get('a');
    const id = `orph${Date.now().toString(36)}`;
    const stray = spawn('sleep', ['300'], { stdio: 'ignore', detached: true });
    strays.push(stray);
    const cgroups = ['pids', 'memory', 'freezer'].map((h) => path.join('/sys/fs/cgroup', h, a.cgroupRoot, 'ci-jobs', `denv-${id}`));
    for (const d of cgroups) {
      mkdirSync(d, { recursive: true });
      writeFileSync(path.join(d, 'cgroup.procs'), String(stray.pid));
    }
    await execa('ip', ['netns', 'add', `denv-${id}`], { timeout: 10_000 });
    const reclaimedBefore = await a.proc.metric('disposable_env_orphans_reclaimed_total');
    await waitFor(() => cgroups.every((d) => !existsSync(d)) && !readFileSync('/proc/self/mountinfo', 'utf8').includes(`/run/netns/denv-${id}`), {
      timeoutMs: 30_000,
      what: 'the GC pass to reclaim the planted orphans',
    });
    const ns2 = await execa('ip', ['netns', 'list'], { timeout: 10_000 });
    expect(ns2.stdout).not.toContain(`denv-${id}`);
    await waitFor(() => stray.exitCode !== null || stray.signalCode !== null, { timeoutMs: 10_000, what: 'the stray process to be killed' });
    const reclaimedAfter = await a.proc.metric('disposable_env_orphans_reclaimed_total');
    expect(reclaimedAfter - reclaimedBefore).toBeGreaterThanOrEqual(cgroups.length + 1);
    expect(await a.proc.metric('disposable_env_orphans_reclaimed_total', { kind: 'netns' })).toBeGreaterThanOrEqual(1);
    const node = await client.get<{ status?: { lastGC?: { time?: string; reclaimed?: Record<string, number> } } }>(`/apis/disposable.dev/v1alpha1/disposablenodes/${a.name}`);
    expect(node.status?.lastGC?.time).toBeDefined();
  });

  it('an invalid manifest is refused by the API server naming the field; an out-of-policy one ends PolicyDenied; neither creates anything on the host', async () => {
    const a = nodes.get('a');
    const dirsBefore = envDirs(a.stateDir).length;
    const bad = await kubectl(['apply', '-f', '-'], {
      reject: false,
      input: JSON.stringify({ apiVersion: 'disposable.dev/v1alpha1', kind: 'DisposableEnv', metadata: { name: 'bad', namespace: ns() }, spec: { workload: { command: ['/bin/true'] }, resources: { memory: { max: '-1Gi' } } } }),
    });
    expect(bad.exitCode).not.toBe(0);
    expect(bad.stderr).toContain('spec.resources.memory.max');
    await createEnv(client, ns(), 'outside', { workload: { command: ['/bin/true'] }, rootfs: { hostPath: '/srv' } });
    const e = await waitForEnv(client, ns(), 'outside', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'PolicyDenied' });
    expect(e.status?.message).toContain('spec.rootfs.hostPath');
    expect(e.status?.message).toContain('nothing was created');
    expect(cond(e, 'Stalled')?.reason).toBe('PolicyDenied');
    expect(envDirs(a.stateDir).length).toBe(dirsBefore);
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((x) => x.regarding === 'outside' && x.reason === 'PolicyDenied'),
    );
    expect(events.some((x) => x.regarding === 'outside' && x.reason === 'PolicyDenied' && x.type === 'Warning')).toBe(true);
    // deleting it needs no teardown: the finalizer goes at once
    await kubectl(['delete', '-n', ns(), 'denv/outside', '--wait=true', '--timeout=30s'], { timeoutMs: 40_000 });
  });
  it('an env with no resources runs under the default limits (read from the kernel); asking above --max-limits ends PolicyDenied naming the field and the cap', async () => {
    const a = nodes.get('a');
    const created = await createEnv(client, ns(), 'defaulted', { workload: { command: ['/bin/sh', '-c', 'sleep 4'] } });
    const rec = await waitFor(async () => {
      const r = (await new Journal(a.stateDir).list()).records.find((x) => x.source.kind === 'kubernetes' && x.source.uid === created.metadata.uid);
      return r?.phase === 'Running' ? r : undefined;
    }, { timeoutMs: 60_000, what: 'the env to run' });
    expect(rec.spec.resources).toMatchObject({ memory: { max: '1Gi' }, pids: { max: 100 }, cpu: { max: '500m' } });
    expect(readFileSync(`/sys/fs/cgroup/pids/${rec.cgroupPath}/pids.max`, 'utf8').trim()).toBe('100');
    expect(Number(readFileSync(`/sys/fs/cgroup/memory/${rec.cgroupPath}/memory.limit_in_bytes`, 'utf8'))).toBe(1024 ** 3);
    expect((await waitForEnv(client, ns(), 'defaulted', finished, 'finished', 60_000)).status?.phase).toBe('Succeeded');

    const dirsBefore = envDirs(a.stateDir).length;
    await createEnv(client, ns(), 'greedy', { resources: { memory: { max: '8Gi' } } });
    const e = await waitForEnv(client, ns(), 'greedy', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'PolicyDenied' });
    expect(e.status?.message).toContain("spec.resources.memory.max: 8Gi is above this node's cap 2Gi (flag --max-limits)");
    expect(e.status?.message).toContain('nothing was created');
    expect(envDirs(a.stateDir).length).toBe(dirsBefore);
    await kubectl(['delete', '-n', ns(), 'denv/greedy', 'denv/defaulted', '--wait=true', '--timeout=30s'], { timeoutMs: 40_000 });
  });
});
