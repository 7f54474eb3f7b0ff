// Run by netns.test.ts inside a private mount namespace of its own
// (`unshare --mount --propagation private`), to play a freshly booted host on
// which /run/netns is still a plain directory: unmounting it here changes
// nothing outside. It makes one of our netns, lets `ip netns add` make another
// (which binds /run/netns onto itself, as iproute2 and CNI plugins do), then
// deletes both, and prints one JSON line of what it saw.
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { createNetns, deleteNetns, netnsDirMount, netnsExists, NETNS_DIR } from '../../node-agent/netns.js';
import { closeSharedHelper } from '../../node-agent/spawner.js';

const tools = { ip: 'ip', unshare: 'unshare', mount: 'mount' };
const mountinfo = (): string => readFileSync('/proc/self/mountinfo', 'utf8');

async function main(): Promise<void> {
  const [ours, theirs] = process.argv.slice(2) as [string, string];
  // private namespace: every mount stacked on /run/netns goes, lazily, here only
  for (let i = 0; i < 10 && netnsDirMount(mountinfo()) !== 'none'; i++) {
    await execa('umount', ['-l', NETNS_DIR], { timeout: 10_000 });
  }
  const before = netnsDirMount(mountinfo());
  const out: Record<string, unknown> = { before };
  try {
    await createNetns(tools, ours);
    out.afterCreate = netnsDirMount(mountinfo());
    await execa('ip', ['netns', 'add', theirs], { timeout: 10_000 });
    await deleteNetns(tools.ip, ours)
      .then(() => (out.deleted = true))
      .catch((err: unknown) => (out.deleteError = (err as Error).message));
    out.oursLeft = await netnsExists(ours);
  } finally {
    closeSharedHelper();
    await execa('ip', ['netns', 'delete', theirs], { timeout: 10_000, reject: false });
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`netns-dir-runner: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
