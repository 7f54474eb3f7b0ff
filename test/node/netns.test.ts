/**
 * Creating and deleting an env's named network namespace, for real: through
 * the spawn helper (a forked child of it unshares, bind-mounts and sets lo up)
 * and through the fallback without a helper (unshare(1) + ip(8)). Both must
 * leave what `ip netns add` leaves: a nsfs bind mount on /run/netns/<name>
 * holding a namespace that is not the host's, with lo up.
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createNetns, deleteNetns, netnsDirMount, netnsExists } from '../../node-agent/netns.js';
import { hostName, netnsPath } from '../../node-agent/names.js';
import { closeSharedHelper, sharedHelper } from '../../node-agent/spawner.js';
import { parseMountinfo } from '../../src/core/procfs.js';
import { checkLeaksAfterAll, REPO, testId } from './helpers.js';

const tools = { ip: 'ip', unshare: 'unshare', mount: 'mount' };
const made: string[] = [];
checkLeaksAfterAll([]);

afterAll(async () => {
  for (const n of made) await deleteNetns(tools.ip, n).catch(() => undefined);
  closeSharedHelper();
});

function fresh(): string {
  const n = hostName(testId());
  made.push(n);
  return n;
}

/** What a test expects of a live named netns. */
async function expectLiveNetns(name: string): Promise<void> {
  const file = netnsPath(name);
  const mount = parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).filter((m) => m.mountPoint === file);
  expect(mount.map((m) => m.fsType)).toEqual(['nsfs']);
  // a namespace of its own: the handle's inode is not the host's netns inode
  expect(statSync(file).ino).not.toBe(statSync('/proc/self/ns/net').ino);
  const lo = await execa('ip', ['-n', name, '-o', 'link', 'show', 'lo'], { timeout: 10_000 });
  expect(String(lo.stdout)).toMatch(/<LOOPBACK,UP,LOWER_UP>/);
  const links = await execa('ip', ['-n', name, '-o', 'link', 'show'], { timeout: 10_000 });
  expect(String(links.stdout).trim().split('\n')).toHaveLength(1); // nothing but lo
  const listed = await execa('ip', ['netns', 'list'], { timeout: 10_000 });
  expect(String(listed.stdout)).toContain(name);
}

/** Create a fresh netns, check it, delete it, and check that handle and mount are gone. */
async function roundTrip(): Promise<void> {
  const name = fresh();
  await createNetns(tools, name);
  await expectLiveNetns(name);
  await deleteNetns(tools.ip, name);
  expect(await netnsExists(name)).toBe(false);
  expect(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === netnsPath(name))).toBe(false);
}

describe('named netns', () => {
  it('through the spawn helper: a nsfs mount of a new namespace with lo up; delete removes mount and handle', async () => {
    expect(sharedHelper()).toBeDefined();
    await roundTrip();
  });

  it('the helper op itself answers exit 0, and names the failing step otherwise', async () => {
    const h = sharedHelper()!;
    const name = fresh();
    const file = netnsPath(name);
    writeFileSync(file, '', { flag: 'wx', mode: 0o444 });
    expect(await h.run({ file, args: [], timeoutMs: 10_000, netns: true })).toMatchObject({ state: 'exit', exitCode: 0, stderr: '' });
    await expectLiveNetns(name);
    await deleteNetns(tools.ip, name);
    const missing = `${file}-no-such-dir/handle`;
    const r = await h.run({ file: missing, args: [], timeoutMs: 10_000, netns: true });
    expect(r).toMatchObject({ state: 'exit', exitCode: 11 });
    expect(r.stderr).toContain(`mount --bind /proc/self/ns/net ${missing}: No such file or directory`);
  });

  it('the helper\'s delete op detaches the mount and removes the handle, and names the failing step otherwise', async () => {
    const h = sharedHelper()!;
    const name = fresh();
    await createNetns(tools, name);
    const file = netnsPath(name);
    expect(await h.run({ file, args: [], timeoutMs: 10_000, netnsDelete: true })).toMatchObject({ state: 'exit', exitCode: 0, stderr: '' });
    expect(existsSync(file)).toBe(false);
    expect(parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === file)).toBe(false);
    // already gone: nothing to do, like a teardown repeated after a crash
    expect(await h.run({ file, args: [], timeoutMs: 10_000, netnsDelete: true })).toMatchObject({ state: 'exit', exitCode: 0 });
    // a path that is not mounted and cannot be unlinked (a directory): the unlink step is named
    const dir = `${file}-dir`;
    mkdirSync(dir);
    try {
      const r = await h.run({ file: dir, args: [], timeoutMs: 10_000, netnsDelete: true });
      expect(r).toMatchObject({ state: 'exit', exitCode: 21 });
      expect(r.stderr).toContain(`Cannot remove namespace file "${dir}": Is a directory`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('two creates give two different namespaces', async () => {
    const a = fresh();
    const b = fresh();
    await Promise.all([createNetns(tools, a), createNetns(tools, b)]);
    expect(statSync(netnsPath(a)).ino).not.toBe(statSync(netnsPath(b)).ino);
    await Promise.all([deleteNetns(tools.ip, a), deleteNetns(tools.ip, b)]);
  });

  it('refuses a name that already exists and leaves the existing netns as it was', async () => {
    const name = fresh();
    await createNetns(tools, name);
    const ino = statSync(netnsPath(name)).ino;
    await expect(createNetns(tools, name)).rejects.toThrow(/EEXIST/);
    expect(statSync(netnsPath(name)).ino).toBe(ino);
    await expectLiveNetns(name);
    await deleteNetns(tools.ip, name);
  });

  it('without a helper (DENV_SPAWN_HELPER=off) unshare + ip make the same thing', async () => {
    closeSharedHelper();
    process.env.DENV_SPAWN_HELPER = 'off';
    try {
      expect(sharedHelper()).toBeUndefined();
      await roundTrip();
    } finally {
      delete process.env.DENV_SPAWN_HELPER;
    }
  });

  it('makes /run/netns a shared mount point first, so a later `ip netns add` cannot hide our handle (fresh host, private mount namespace)', async () => {
    const ours = fresh();
    const theirs = `test-${testId()}`;
    const child = await execa('unshare', ['--mount', '--propagation', 'private', '--', process.execPath, '--import', 'tsx/esm', path.join(REPO, 'test/node/netns-dir-runner.ts'), ours, theirs], {
      cwd: REPO,
      timeout: 60_000,
      reject: false,
    });
    try {
      expect(child.stderr).not.toMatch(/netns-dir-runner:/);
      const seen = JSON.parse(String(child.stdout).trim().split('\n').pop() ?? '{}') as Record<string, unknown>;
      // the child started from a plain directory, made it a shared mount point, and deleted its netns after
      // iproute2 had bound the directory onto itself (without the first step: EBUSY, the handle stays)
      expect(seen).toEqual({ before: 'none', afterCreate: 'shared', deleted: true, oursLeft: false });
    } finally {
      // the child's mounts went with its namespace; only a plain handle file could be left in the shared directory
      for (const f of [netnsPath(ours), netnsPath(theirs)]) {
        if (existsSync(f) && !parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint === f)) rmSync(f);
      }
    }
  });

  it('reads the handles directory from mountinfo: absent, not shared, shared (the top mount counts)', () => {
    const line = (id: number, parent: number, at: string, opt: string): string => `${id} ${parent} 254:0 /run/netns ${at} rw,relatime ${opt}- ext4 /dev/vda rw`;
    expect(netnsDirMount(`${line(27, 1, '/', '')}\n`)).toBe('none');
    expect(netnsDirMount(`${line(67, 27, '/run/netns', '')}\n`)).toBe('not-shared');
    expect(netnsDirMount(`${line(67, 27, '/run/netns', 'shared:1 ')}\n`)).toBe('shared');
    expect(netnsDirMount(`${line(67, 27, '/run/netns', 'shared:1 ')}\n${line(68, 67, '/run/netns', 'master:1 ')}\n`)).toBe('not-shared');
  });
});
