// cgroup v2 VM harness: boots Debian's kernel under qemu (TCG) with a busybox
// initramfs, mounts the host root read-only over virtio-9p, runs a shell script
// inside it (PID 1's child, real cgroup v2 at /sys/fs/cgroup with all controllers
// enabled at the root) and brings exit code, stdout and stderr back through a
// second, writable 9p share. See test/vm/README.md.
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface VmRunOptions {
  /** Hard limit for the whole run (boot + script + poweroff). Default 300 000 ms. */
  timeoutMs?: number;
  /** Guest RAM. Default 2048 MiB. */
  memoryMiB?: number;
  /** Guest vCPUs. Default 2. */
  cpus?: number;
  /** Directory (inside the guest, i.e. a host path) to cd into before the script. */
  cwd?: string;
  /** Extra environment for the script (exported before it runs). */
  env?: Record<string, string>;
  /**
   * Files to put into the writable share before boot, by name (no slashes),
   * readable in the guest as $DENV_VM_OUT/<name>. (The host's /tmp is NOT
   * visible in the guest: /tmp there is a fresh tmpfs.) Returned in `files`
   * again unless the script deletes them.
   */
  inputs?: Record<string, string | Uint8Array>;
  /**
   * How long to wait for a free VM slot (see DENV_VM_MAX_PARALLEL) before
   * failing. Not part of timeoutMs. Default 30 min.
   */
  slotWaitMs?: number;
}

export interface VmRunResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  /** Host wall time from starting qemu until the guest started the script. */
  bootMs: number;
  /** Guest uptime (ms) when the script started, as reported by the guest kernel. */
  guestBootMs: number;
  /** Host wall time of the whole run (qemu start to qemu exit). */
  durationMs: number;
  /** Serial console (kernel + init messages), escape sequences stripped. */
  console: string;
  /**
   * Other regular files the script left in $DENV_VM_OUT (the writable share),
   * by name, as UTF-8 text. Subdirectories are not collected.
   */
  files: Record<string, string>;
}

export class VmError extends Error {
  constructor(
    message: string,
    readonly console: string,
  ) {
    super(`${message}\n--- VM console (last 4000 chars) ---\n${console.slice(-4000)}`);
    this.name = 'VmError';
  }
}

interface VmImage {
  kver: string;
  kernel: string;
  initrd: string;
}

const HERE = path.dirname(fileURLToPath(import.meta.url));
const BUILD_SCRIPT = path.join(HERE, 'build-initramfs.sh');
const QEMU = process.env.DENV_VM_QEMU ?? 'qemu-system-x86_64';
const RESERVED = new Set(['cmd.sh', 'stdout', 'stderr', 'exit', 'exit.tmp', 'stage1-error', '.repo-path']);
/**
 * The repository root. The guest mounts fresh tmpfs on /tmp, /run, /var/lib and
 * /root, which would hide a checkout living there (CI may clone anywhere), so
 * the repo is also exported on its own and mounted back at the same path.
 */
const REPO = path.resolve(HERE, '..', '..');
if (REPO.includes(',')) throw new Error(`the repository path must not contain a comma (qemu -virtfs option syntax): ${REPO}`);

/** qboot (from qemu-system-data) starts a -kernel boot about a second sooner than SeaBIOS. */
const QBOOT = '/usr/share/qemu/qboot.rom';

let imagePromise: Promise<VmImage> | undefined;

/** Builds the initramfs (cached on disk, memoised per process). */
export function ensureImage(): Promise<VmImage> {
  imagePromise ??= buildImage().catch((err: unknown) => {
    imagePromise = undefined;
    throw err;
  });
  return imagePromise;
}

async function buildImage(): Promise<VmImage> {
  const r = await execa('bash', [BUILD_SCRIPT], { timeout: 120_000, reject: false, stdin: 'ignore' });
  if (r.exitCode !== 0) {
    throw new Error(`build-initramfs.sh failed (exit ${r.exitCode ?? r.signal}): ${r.stderr}`);
  }
  const kv = new Map<string, string>();
  for (const line of r.stdout.split('\n')) {
    const i = line.indexOf('=');
    if (i > 0) kv.set(line.slice(0, i), line.slice(i + 1));
  }
  const kver = kv.get('KVER');
  const kernel = kv.get('KERNEL');
  const initrd = kv.get('INITRD');
  if (!kver || !kernel || !initrd) throw new Error(`build-initramfs.sh printed no image: ${r.stdout}`);
  return { kver, kernel, initrd };
}

/** Whether runInVm can work on this machine (qemu, kernel, busybox, modules). */
export async function vmAvailable(): Promise<{ ok: boolean; why?: string }> {
  const q = await execa(QEMU, ['--version'], { timeout: 10_000, reject: false, stdin: 'ignore' });
  if (q.failed || q.exitCode !== 0) {
    return { ok: false, why: `${QEMU} not runnable (apt-get install qemu-system-x86): ${q.shortMessage}` };
  }
  try {
    await ensureImage();
  } catch (err) {
    return { ok: false, why: (err as Error).message };
  }
  return { ok: true };
}

function cacheRoot(): string {
  return process.env.DENV_CACHE_DIR ?? path.join(process.env.HOME ?? os.homedir(), '.cache', 'disposable-env');
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));

/**
 * Takes one of DENV_VM_MAX_PARALLEL (default 1) machine-wide VM slots, so that
 * test files running in parallel jest workers do not boot several TCG guests at
 * once on a 2-core machine (which makes every guest crawl and timing checks flaky).
 * A slot is a directory made atomically with mkdir holding the owner's PID; slots
 * of dead owners are taken over.
 */
async function acquireSlot(waitMs: number): Promise<() => Promise<void>> {
  const max = Math.max(1, Number(process.env.DENV_VM_MAX_PARALLEL ?? '1') || 1);
  const dir = path.join(cacheRoot(), 'vm', 'slots');
  await mkdir(dir, { recursive: true });
  const deadline = Date.now() + waitMs;
  for (;;) {
    for (let i = 0; i < max; i++) {
      const slot = path.join(dir, `slot-${i}`);
      try {
        await mkdir(slot);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const owner = Number.parseInt((await readFile(path.join(slot, 'pid'), 'utf8').catch(() => '')).trim(), 10);
        const age = Date.now() - (await stat(slot).catch(() => ({ mtimeMs: Date.now() }))).mtimeMs;
        if ((Number.isNaN(owner) && age > 10_000) || (!Number.isNaN(owner) && !pidAlive(owner))) {
          await rm(slot, { recursive: true, force: true });
        }
        continue;
      }
      await writeFile(path.join(slot, 'pid'), String(process.pid));
      return () => rm(slot, { recursive: true, force: true });
    }
    if (Date.now() > deadline) throw new Error(`no free VM slot in ${dir} after ${waitMs} ms (DENV_VM_MAX_PARALLEL=${max})`);
    await sleep(250);
  }
}

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

function stripEscapes(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r/g, '');
}

async function readIfExists(p: string): Promise<string | undefined> {
  try {
    return await readFile(p, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Boots a fresh VM, runs `script` with /bin/sh inside it and returns its results.
 * Throws VmError when the VM does not get to run the script or times out.
 */
export async function runInVm(script: string, opts: VmRunOptions = {}): Promise<VmRunResult> {
  const timeoutMs = opts.timeoutMs ?? 300_000;
  const memoryMiB = opts.memoryMiB ?? 2048;
  const cpus = opts.cpus ?? 2;
  const image = await ensureImage();
  const release = await acquireSlot(opts.slotWaitMs ?? 30 * 60_000);
  try {
    return await runLocked(script, image, timeoutMs, memoryMiB, cpus, opts);
  } finally {
    await release();
  }
}

async function runLocked(
  script: string,
  image: VmImage,
  timeoutMs: number,
  memoryMiB: number,
  cpus: number,
  opts: VmRunOptions,
): Promise<VmRunResult> {
  const outDir = await mkdtemp(path.join(os.tmpdir(), 'denv-vm-'));
  try {
    let prologue = '';
    for (const [k, v] of Object.entries(opts.env ?? {})) {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(k)) throw new Error(`bad env name ${k}`);
      prologue += `export ${k}=${shellQuote(v)}\n`;
    }
    for (const [name, content] of Object.entries(opts.inputs ?? {})) {
      if (!/^[A-Za-z0-9._-]+$/.test(name) || name.startsWith('.') || RESERVED.has(name)) {
        throw new Error(`bad input file name ${name}`);
      }
      await writeFile(path.join(outDir, name), content);
    }
    if (opts.cwd) prologue += `cd ${shellQuote(opts.cwd)} || exit 125\n`;
    await writeFile(path.join(outDir, 'cmd.sh'), prologue + script + '\n', { mode: 0o644 });
    await writeFile(path.join(outDir, '.repo-path'), REPO);

    const args = [
      '-accel', 'tcg',
      '-cpu', process.env.DENV_VM_CPU ?? 'max',
      '-m', String(memoryMiB),
      '-smp', String(cpus),
      '-nographic',
      '-no-reboot',
      '-nic', 'none',
      ...(existsSync(QBOOT) && !process.env.DENV_VM_SEABIOS ? ['-bios', QBOOT] : []),
      '-kernel', image.kernel,
      '-initrd', image.initrd,
      '-append', 'console=ttyS0 quiet panic=-1 mitigations=off',
      '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=passthrough,readonly=on,multidevs=remap,id=hostroot',
      '-virtfs', `local,path=${outDir},mount_tag=out,security_model=none,id=out`,
      '-virtfs', `local,path=${REPO},mount_tag=repo,security_model=passthrough,readonly=on,multidevs=remap,id=repo`,
    ];

    const started = Date.now();
    let bootMs = -1;
    let consoleText = '';
    const proc = execa(QEMU, args, {
      stdin: 'ignore',
      all: true,
      reject: false,
      timeout: timeoutMs + 10_000, // backstop; the timer below kills first
      killSignal: 'SIGKILL',
      cleanup: true,
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (proc.pid !== undefined) {
        try {
          process.kill(proc.pid, 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }, timeoutMs);
    proc.all?.on('data', (chunk: Buffer) => {
      consoleText += chunk.toString('utf8');
      if (bootMs < 0 && consoleText.includes('denv-vm: running command')) bootMs = Date.now() - started;
    });
    const r = await proc;
    clearTimeout(timer);
    const durationMs = Date.now() - started;
    const consoleOut = stripEscapes(consoleText);

    if (timedOut || r.timedOut) {
      throw new VmError(`VM run timed out after ${timeoutMs} ms (qemu killed)`, consoleOut);
    }
    const stage1 = await readIfExists(path.join(outDir, 'stage1-error'));
    if (stage1 !== undefined) throw new VmError(`VM init failed: ${stage1.trim()}`, consoleOut);
    const exitText = await readIfExists(path.join(outDir, 'exit'));
    if (exitText === undefined) {
      throw new VmError(`VM exited (qemu exit ${r.exitCode ?? r.signal}) without running the script to completion`, consoleOut);
    }
    const m = /denv-vm: running command up=([0-9.]+)/.exec(consoleOut);
    const files: Record<string, string> = {};
    for (const name of await readdir(outDir)) {
      if (RESERVED.has(name)) continue;
      const p = path.join(outDir, name);
      if ((await stat(p)).isFile()) files[name] = await readFile(p, 'utf8');
    }
    return {
      exitCode: Number.parseInt(exitText.trim(), 10),
      stdout: (await readIfExists(path.join(outDir, 'stdout'))) ?? '',
      stderr: (await readIfExists(path.join(outDir, 'stderr'))) ?? '',
      bootMs,
      guestBootMs: m ? Math.round(Number(m[1]) * 1000) : -1,
      durationMs,
      console: consoleOut,
      files,
    };
  } finally {
    await rm(outDir, { recursive: true, force: true });
  }
}
