// Bad input gets a clear error and creates nothing on the host: an invalid
// manifest, a rootfs that does not exist, a missing runtime (PATH without runc,
// or a --runtime-path without it), a limit this host cannot enforce, an env id
// that could escape its directory. Each case compares the host's project
// objects before and after and checks that the state dir holds no env.
import { jest } from '@jest/globals';
import { mkdirSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { checkLeaksAfterAll, denv, envDirs, hostSnapshot, manifest, REPO, stateDir } from './helpers.js';

jest.setTimeout(120_000);

const dirs: string[] = [];
const work = stateDir(dirs);

checkLeaksAfterAll(dirs);

const ok = { workload: { command: ['/bin/true'] } };

async function refused(args: string[], env?: Record<string, string>): Promise<{ stderr: string; exitCode: number }> {
  const sd = stateDir(dirs);
  const before = await hostSnapshot();
  const r = await denv([...args, '--state-dir', sd], env ? { env, extendEnv: false } : {});
  expect(envDirs(sd)).toEqual([]);
  expect(await hostSnapshot()).toEqual(before);
  return r;
}

describe('refused before anything is created', () => {
  it('an invalid manifest: exit 2, every problem named by field', async () => {
    const r = await refused(['run', '-f', path.join(REPO, 'examples/invalid.yaml')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/invalid\.yaml: spec\.class: must be a DNS label/);
    const m = manifest(work, 'crossfield', { ...ok, resources: { memory: { max: '1Gi', high: '2Gi' } }, lifecycle: { timeoutSeconds: 10, gracePeriodSeconds: 60 } });
    const r2 = await refused(['run', '-f', m]);
    expect(r2.exitCode).toBe(2);
    expect(r2.stderr).toMatch(/spec\.resources\.memory\.high: must not exceed/);
    expect(r2.stderr).toMatch(/spec\.lifecycle\.gracePeriodSeconds: must not exceed/);
  });

  it('a manifest file that does not exist', async () => {
    const r = await refused(['run', '-f', path.join(work, 'nope.yaml')]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/cannot read file/);
  });

  it('a rootfs hostPath that does not exist', async () => {
    const m = manifest(work, 'norootfs', { ...ok, rootfs: { hostPath: '/nonexistent/rootfs' } });
    const r = await refused(['run', '-f', m]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/spec\.rootfs\.hostPath: \/nonexistent\/rootfs does not exist/);
    expect(r.stderr).toMatch(/nothing was created/);
  });

  it('PATH without runc', async () => {
    const m = manifest(work, 'noruntime', ok);
    // Debian links runc into /usr/bin too: a PATH with conmon and the init but no runc
    const bin = path.join(work, 'bin-without-runc');
    mkdirSync(bin, { recursive: true });
    symlinkSync('/usr/bin/conmon', path.join(bin, 'conmon'));
    symlinkSync('/usr/bin/tini-static', path.join(bin, 'tini-static'));
    const r = await refused(['run', '-f', m], { PATH: bin, HOME: '/root' });
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`runc not found in ${bin}`));
    expect(r.stderr).not.toMatch(/conmon not found/);
  });

  it('--runtime-path that holds no runtime', async () => {
    const m = manifest(work, 'badpath', ok);
    const r = await refused(['run', '-f', m, '--runtime-path', '/nonexistent']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/runc not found in \/nonexistent \(.*--runtime-path/);
    expect(r.stderr).toMatch(/conmon not found/);
    expect(r.stderr).toMatch(/neither tini-static nor catatonit/);
  });

  it('a limit this (hybrid) host cannot enforce, without bestEffort', async () => {
    const m = manifest(work, 'high', { ...ok, resources: { memory: { max: '64Mi', high: '32Mi' } } });
    const r = await refused(['run', '-f', m]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/spec\.resources\.memory\.high: cannot be enforced on this hybrid cgroup host.*bestEffort/);
  });

  it('an env id that could escape its directory', async () => {
    const m = manifest(work, 'badid', ok);
    const r = await refused(['run', '-f', m, '--id', '../../etc']);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/invalid env id/);
  });

  it('a state dir the env root could not reach', async () => {
    const m = manifest(work, 'private', ok);
    const sd = stateDir(dirs);
    const { chmodSync } = await import('node:fs');
    chmodSync(sd, 0o700);
    const r = await denv(['run', '-f', m, '--state-dir', sd]);
    expect(r.exitCode).toBe(2);
    expect(r.stderr).toMatch(/not searchable by the env's mapped root/);
    expect(envDirs(sd)).toEqual([]);
  });

  it('unknown flags are usage errors', async () => {
    const r = await denv(['run', '--frobnicate']);
    expect(r.exitCode).toBe(2);
  });
});
