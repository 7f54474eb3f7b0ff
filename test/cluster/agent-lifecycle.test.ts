/**
 * The node agent end to end: a real kube-apiserver, the real `denv controller`,
 * and two real `denv agent` processes posing as separate nodes on this host,
 * each with its own state dir and cgroup root, running real envs (namespaces,
 * cgroups, runc under conmon). kubectl applies and waits as a user would; the
 * status objects the agents wrote are fed to kstatus (cli-utils) itself.
 */
import { jest } from '@jest/globals';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { FINALIZER } from '../../src/api/constants.js';
import type { KubeClient } from '../../src/controller/kube-client.js';
import type { EnvObject } from '../../src/controller/model.js';
import { kubectl, withTestNamespace } from '../helpers/kube.js';
import { kstatus } from '../helpers/kstatus.js';
import { findLeaks } from '../node/helpers.js';
import { AgentNodes } from './agent-harness.js';
import { createEnv, envsPath, getEnv, listEvents, settled, startController, testClient, waitFor, waitForEnv, waitForGone, type ControllerProcess } from './controller-harness.js';

jest.setTimeout(180_000);

const cond = (e: EnvObject | undefined, type: string): NonNullable<NonNullable<EnvObject['status']>['conditions']>[number] | undefined =>
  e?.status?.conditions?.find((c) => c.type === type);
const finished = (e: EnvObject): boolean => e.status?.phase === 'Succeeded' || e.status?.phase === 'Failed';

/** The suite's manifests, removed in afterAll. */
const manifestDir = mkdtempSync(path.join(tmpdir(), 'denv-agent-manifests-'));

function manifest(ns: string, name: string, spec: Record<string, unknown>): string {
  const file = path.join(manifestDir, `${ns}-${name}.yaml`);
  writeFileSync(file, stringify({ apiVersion: 'disposable.dev/v1alpha1', kind: 'DisposableEnv', metadata: { name, namespace: ns }, spec }));
  return file;
}

describe('node agent, end to end with the controller', () => {
  const ns = withTestNamespace('agent-life');
  const nodes = new AgentNodes(ns);
  let client: KubeClient;
  let ctl: ControllerProcess;
  /** Status objects seen along the way, with the kstatus result each must give. */
  const seen: { obj: EnvObject; want: string; what: string }[] = [];

  beforeAll(async () => {
    client = await testClient();
    await Promise.all([nodes.add('a'), nodes.add('b')]);
    ctl = await startController([...nodes.controllerScope(), '--node-lease-timeout=20s']);
  });

  afterAll(async () => {
    await ctl?.stop('SIGTERM');
    await nodes.cleanup(client);
    client?.close();
    rmSync(manifestDir, { recursive: true, force: true });
    expect(await findLeaks()).toEqual([]);
  });

  it('kubectl apply → Running → Succeeded with exit code and log tail; kubectl wait --for=condition=Finished returns', async () => {
    const file = manifest(ns(), 'hello', {
      class: 'ci-jobs',
      workload: { command: ['/bin/sh', '-c', 'echo hello from $(hostname); sleep 2; echo done'] },
      resources: { memory: { max: '64Mi' }, pids: { max: 64 } },
    });
    await kubectl(['apply', '-f', file]);
    const phases = new Set<string>();
    const running = await waitForEnv(
      client,
      ns(),
      'hello',
      (e) => {
        if (e.status?.phase) phases.add(e.status.phase);
        if (e.status?.phase === 'Scheduled') seen.push({ obj: e, want: 'InProgress', what: 'Scheduled' });
        return e.status?.phase === 'Running';
      },
      'Running',
      60_000,
    );
    seen.push({ obj: running, want: 'Current', what: 'Running' });
    expect(cond(running, 'Ready')?.status).toBe('True');
    expect(cond(running, 'Finished')?.status).toBe('False');
    expect(running.status?.startTime).toBeDefined();
    expect(running.status?.cgroupPath).toMatch(/^disposable-agent-.*\/ci-jobs\/denv-k[0-9a-f]+$/);
    expect(running.metadata.finalizers).toContain(FINALIZER);
    const w = await kubectl(['wait', '-n', ns(), 'denv/hello', '--for=condition=Finished', '--timeout=60s'], { timeoutMs: 70_000 });
    expect(w.exitCode).toBe(0);
    const done = (await getEnv(client, ns(), 'hello'))!;
    seen.push({ obj: done, want: 'Current', what: 'Succeeded' });
    expect(done.status).toMatchObject({ phase: 'Succeeded', reason: 'Completed', exitCode: 0 });
    expect(done.status?.logTail).toContain('hello from hello');
    expect(done.status?.logTail).toContain('done');
    expect(done.status?.finishTime).toBeDefined();
    expect(cond(done, 'Ready')?.status).toBe('True');
    expect(cond(done, 'Finished')?.status).toBe('True');
    expect(cond(done, 'Stalled')).toBeUndefined();
    expect(cond(done, 'Reclaimed')?.status).toBe('True');
    expect(phases.has('Running')).toBe(true);
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((e) => e.regarding === 'hello' && e.reason === 'Started') && ev.some((e) => e.regarding === 'hello' && e.reason === 'Reclaimed'),
    );
    expect(events.filter((e) => e.regarding === 'hello').map((e) => e.reason)).toEqual(expect.arrayContaining(['Started', 'Reclaimed']));
  });

  it('a failing workload ends Failed with its exit code, Stalled=True, and kubectl wait for Finished returns too', async () => {
    await kubectl(['apply', '-f', manifest(ns(), 'fails', { workload: { command: ['/bin/sh', '-c', 'echo about to fail >&2; exit 3'] } })]);
    const w = await kubectl(['wait', '-n', ns(), 'denv/fails', '--for=condition=Finished', '--timeout=60s'], { timeoutMs: 70_000 });
    expect(w.exitCode).toBe(0);
    const e = (await getEnv(client, ns(), 'fails'))!;
    seen.push({ obj: e, want: 'Failed', what: 'Failed' });
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'Error', exitCode: 3 });
    expect(e.status?.logTail).toContain('about to fail');
    expect(cond(e, 'Stalled')).toMatchObject({ status: 'True', reason: 'Error' });
    expect(cond(e, 'Ready')?.status).toBe('False');
  });

  it('a deadline ends the env DeadlineExceeded on the node (SIGTERM, grace, kill) with an Event', async () => {
    await kubectl(['apply', '-f', manifest(ns(), 'late', { workload: { command: ['/bin/sleep', '300'] }, lifecycle: { timeoutSeconds: 2, gracePeriodSeconds: 1 } })]);
    const e = await waitForEnv(client, ns(), 'late', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'DeadlineExceeded' });
    expect(cond(e, 'Stalled')?.reason).toBe('DeadlineExceeded');
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((x) => x.regarding === 'late' && x.reason === 'DeadlineExceeded'),
    );
    expect(events.some((x) => x.regarding === 'late' && x.reason === 'DeadlineExceeded' && x.type === 'Warning')).toBe(true);
  });

  it('an env the kernel sees do nothing ends IdleTimeout on the node, with an Event', async () => {
    await kubectl(['apply', '-f', manifest(ns(), 'idle', { workload: { command: ['/bin/sleep', '300'] }, lifecycle: { idleTimeoutSeconds: 10, gracePeriodSeconds: 1 } })]);
    const e = await waitForEnv(client, ns(), 'idle', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'IdleTimeout' });
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((x) => x.regarding === 'idle' && x.reason === 'IdleTimeout'),
    );
    expect(events.some((x) => x.regarding === 'idle' && x.reason === 'IdleTimeout' && x.type === 'Warning')).toBe(true);
  });

  it('an OOM kill ends the env OOMKilled, in the status and as an Event', async () => {
    await kubectl([
      'apply',
      '-f',
      manifest(ns(), 'hog', {
        workload: { command: ['/bin/sh', '-c', 'head -c 400M /dev/zero | tail'] },
        resources: { memory: { max: '32Mi', swapMax: '0' } },
        lifecycle: { timeoutSeconds: 60, gracePeriodSeconds: 1, reclaim: { onOOMKill: true } },
      }),
    ]);
    const e = await waitForEnv(client, ns(), 'hog', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ phase: 'Failed', reason: 'OOMKilled' });
    expect(e.status?.usage?.oomKills).toBeGreaterThan(0);
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((x) => x.regarding === 'hog' && x.reason === 'OOMKilled'),
    );
    expect(events.some((x) => x.regarding === 'hog' && x.reason === 'OOMKilled' && x.type === 'Warning')).toBe(true);
  });

  it('spec.stop on a running env stops it on the node (reason Stopped) and the object stays', async () => {
    await kubectl(['apply', '-f', manifest(ns(), 'halt', { workload: { command: ['/bin/sleep', '300'] }, lifecycle: { gracePeriodSeconds: 1 } })]);
    await waitForEnv(client, ns(), 'halt', (e) => e.status?.phase === 'Running', 'Running', 60_000);
    const p = await kubectl(['patch', '-n', ns(), 'denv/halt', '--type=merge', '-p', '{"spec":{"stop":true}}']);
    expect(p.exitCode).toBe(0);
    const e = await waitForEnv(client, ns(), 'halt', finished, 'finished', 60_000);
    expect(e.status).toMatchObject({ reason: 'Stopped' });
    expect(e.status?.message).toContain('spec.stop');
    expect(cond(e, 'Reclaimed')?.status).toBe('True');
    expect(e.metadata.deletionTimestamp).toBeUndefined();
  });

  it('deleting a running env tears it down on the node, releases the finalizer, and the object is gone', async () => {
    await kubectl(['apply', '-f', manifest(ns(), 'doomed', { workload: { command: ['/bin/sleep', '300'] } })]);
    const running = await waitForEnv(client, ns(), 'doomed', (e) => e.status?.phase === 'Running', 'Running', 60_000);
    const node = nodes.get(running.status!.nodeName!.slice(nodes.run.length + 1));
    const cgroup = running.status!.cgroupPath!;
    const del = await kubectl(['delete', '-n', ns(), 'denv/doomed', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    expect(del.exitCode).toBe(0);
    await waitForGone(client, ns(), 'doomed', 10_000);
    expect(cgroup.startsWith(node.cgroupRoot)).toBe(true);
    const leaks = await findLeaks();
    expect(leaks.filter((l) => l.includes(cgroup.split('/').pop()!))).toEqual([]);
    const events = await settled(
      () => listEvents(client, ns()),
      (ev) => ev.some((x) => x.regarding === 'doomed' && x.reason === 'Reclaimed'),
    );
    expect(events.some((x) => x.regarding === 'doomed' && x.reason === 'Reclaimed')).toBe(true);
  });

  it('a new env reads Pending at once, and an env no node fits stays Pending/Unschedulable', async () => {
    const fresh = await createEnv(client, ns(), 'nowhere', { nodeSelector: { pool: 'does-not-exist' } });
    // the CRD's status default: what kubectl and kstatus see before the controller acts
    expect(fresh.status).toMatchObject({ phase: 'Pending', observedGeneration: 0 });
    seen.push({ obj: fresh, want: 'InProgress', what: 'Pending (new)' });
    const pending = await waitForEnv(client, ns(), 'nowhere', (e) => e.status?.reason === 'Unschedulable', 'Unschedulable', 30_000);
    expect(pending.status?.phase).toBe('Pending');
    seen.push({ obj: pending, want: 'InProgress', what: 'Pending (Unschedulable)' });
  });

  it('kstatus (cli-utils) computes InProgress before Running, Current while Running and once Succeeded, Failed once Failed', async () => {
    expect(seen.map((s) => s.what)).toEqual(expect.arrayContaining(['Pending (new)', 'Pending (Unschedulable)', 'Running', 'Succeeded', 'Failed']));
    const results = await kstatus(seen.map((s) => s.obj));
    expect(results.map((r, i) => `${seen[i]!.what}: ${r.status}`)).toEqual(seen.map((s) => `${s.what}: ${s.want}`));
  });

  it('the envs of this suite leave the API and the host clean when deleted', async () => {
    await kubectl(['delete', '-n', ns(), 'denv', '--all', '--wait=true', '--timeout=60s'], { timeoutMs: 70_000 });
    await waitFor(async () => (await client.list<EnvObject>(envsPath(ns()))).items.length === 0, { timeoutMs: 30_000, what: 'every env gone' });
  });
});
