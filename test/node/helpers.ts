// Shared by the node runtime tests: run the real `denv` CLI as a subprocess,
// write manifests, make unique state dirs, clean up everything an env left even
// when a test failed, and the leak check that every runtime test file runs in
// afterAll (cgroups, netns, mounts, runc containers, conmon processes).
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { Journal, isFinished, outstanding } from '../../node-agent/journal.js';
import { isSameProcess } from '../../node-agent/exec.js';
import { RUNC_ROOT, STATE_REGISTRY_DIR } from '../../node-agent/names.js';
import { registeredStateDirs } from '../../node-agent/state-registry.js';
import { Runtime } from '../../node-agent/runtime.js';
import { parseMountinfo } from '../../src/core/procfs.js';

export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const STATE_PREFIX = 'denv-test-';

/** A fresh state dir under the system temp dir; registered for cleanup. */
export function stateDir(created: string[]): string {
  const d = mkdtempSync(path.join(tmpdir(), STATE_PREFIX));
  chmodSync(d, 0o711); // the env's mapped root must be able to reach its rootfs below it
  created.push(d);
  return d;
}

/** A unique env id for a test (valid, recognisable). */
export function testId(): string {
  return `t${randomBytes(5).toString('hex')}`;
}

/** Write a DisposableEnv manifest with `spec` and return its path. */
export function manifest(dir: string, name: string, spec: Record<string, unknown>): string {
  const file = path.join(dir, `${name}-${randomBytes(3).toString('hex')}.yaml`);
  writeFileSync(file, stringify({ apiVersion: 'disposable.dev/v1alpha1', kind: 'DisposableEnv', metadata: { name }, spec }));
  return file;
}

export interface CliResult {
  exitCode: number;
  stdout: string;
  stderr: string;
  ms: number;
}

/** Run `denv ARGS` as a real subprocess (node + tsx), with a timeout. */
export async function denv(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; extendEnv?: boolean } = {}): Promise<CliResult> {
  const t = Date.now();
  const r = await execa(process.execPath, ['--import', 'tsx/esm', path.join(REPO, 'src/cli/bin.ts'), ...args], {
    cwd: REPO,
    reject: false,
    timeout: opts.timeoutMs ?? 90_000,
    env: opts.env,
    extendEnv: opts.extendEnv ?? true,
    stdin: 'ignore',
  });
  return { exitCode: r.exitCode ?? -1, stdout: String(r.stdout), stderr: String(r.stderr), ms: Date.now() - t };
}

/** The JSON events `denv run --json` printed. */
export function events(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

/** The final result event of `denv run --json`. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- test assertions walk the JSON freely
export function result(stdout: string): Record<string, any> {
  const r = events(stdout).find((e) => e.event === 'result');
  if (!r) throw new Error(`no result event in:\n${stdout}`);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return r as Record<string, any>;
}

/**
 * Tear down whatever the journals of `dirs` still list, then delete the dirs.
 * Runs in afterAll so a failed test cannot leave host objects behind.
 */
/**
 * Register the suite's leak check: leaks are looked for before the emergency
 * cleanup (which would hide them), and after it; any leak fails the suite.
 */
export function checkLeaksAfterAll(dirs: string[]): void {
  afterAll(async () => {
    const before = await findLeaks();
    await cleanup(dirs);
    expect([...before, ...(await findLeaks())]).toEqual([]);
  });
}

export async function cleanup(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    if (!existsSync(d)) continue;
    const rt = await Runtime.open({ stateDir: d, emptyTimeoutMs: 3000 });
    for (const r of (await rt.journal.list()).records) {
      if (!outstanding(r).length) continue;
      const sup = r.processes.supervisor;
      if (sup && sup.pid !== process.pid && isSameProcess(sup)) {
        try {
          process.kill(sup.pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      await rt.teardown(r.id).catch(() => undefined);
    }
    await rt.close().catch(() => undefined); // the shared host root
    // mounts a teardown could not remove (env anchors, the shared host root)
    for (const anchor of [path.join(d, 'envs'), rt.hostRoot.paths.anchor]) {
      if (parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).some((m) => m.mountPoint.startsWith(anchor))) {
        await execa('umount', ['-R', '-l', anchor], { reject: false, timeout: 10_000 });
      }
    }
    rmSync(d, { recursive: true, force: true });
  }
  // the host-wide registry names every state dir a runtime used: drop the entries of the dirs just removed
  await registeredStateDirs(STATE_REGISTRY_DIR, { prune: true });
}

function walkCgroups(dir: string, depth: number, out: string[]): void {
  if (depth < 0) return;
  let names: string[];
  try {
    names = readdirSync(dir, { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => e.name);
  } catch {
    return;
  }
  for (const n of names) {
    const p = path.join(dir, n);
    if (/^disposable/.test(n) || (/\/disposable/.test(p) && /^denv-/.test(n))) out.push(p);
    walkCgroups(p, depth - 1, out);
  }
}

/** Resources claimed by an env that is still live in some test state dir (not leaks yet). */
async function liveClaims(): Promise<Set<string>> {
  const claims = new Set<string>();
  for (const name of readdirSync(tmpdir())) {
    if (!name.startsWith(STATE_PREFIX)) continue;
    const j = new Journal(path.join(tmpdir(), name));
    for (const r of (await j.list().catch(() => ({ records: [] }))).records) {
      if (isFinished(r)) continue;
      claims.add(r.id);
    }
  }
  return claims;
}

/**
 * Every host object of the project that is left on this machine: cgroups named
 * disposable* in any hierarchy, netns denv-*, mounts under test state dirs or
 * /run/netns/denv-*, runc containers in the project's runc root, conmon
 * processes for denv-* containers. Objects of envs that are still running in
 * another test state dir are not counted.
 */
export async function findLeaks(): Promise<string[]> {
  const live = await liveClaims();
  const ours = (s: string): boolean => ![...live].some((id) => s.includes(`denv-${id}`));
  const leaks: string[] = [];
  const cg: string[] = [];
  walkCgroups('/sys/fs/cgroup', 6, cg);
  for (const c of cg) {
    if (/disposable\.slice-test-/.test(c)) continue; // the GC audit test's own fixtures
    // a shared parent (disposable.slice, its classes) is fine only while a live env is below it
    const claimed = [...live].some((id) => cgHas(c, `denv-${id}`));
    if (!claimed) leaks.push(`cgroup ${c}`);
  }
  const ns = await execa('ip', ['netns', 'list'], { reject: false, timeout: 10_000 });
  for (const line of String(ns.stdout).split('\n')) {
    const n = line.split(' ')[0] ?? '';
    if (n.startsWith('denv-') && !n.startsWith('denv-audit-') && ours(n)) leaks.push(`netns ${n}`);
  }
  for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))) {
    const inState = m.mountPoint.startsWith(path.join(tmpdir(), STATE_PREFIX));
    if ((inState || m.mountPoint.startsWith('/run/netns/denv-')) && ours(m.mountPoint) && !stateDirLive(m.mountPoint, live)) leaks.push(`mount ${m.mountPoint}`);
  }
  const rl = await execa('runc', ['--root', RUNC_ROOT, 'list', '-q'], { reject: false, timeout: 10_000 });
  for (const id of String(rl.stdout).split('\n').filter(Boolean)) if (ours(id)) leaks.push(`runc container ${id}`);
  for (const pid of readdirSync('/proc').filter((n) => /^\d+$/.test(n))) {
    let cmd: string[];
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue;
    }
    if (path.basename(cmd[0] ?? '') !== 'conmon') continue;
    const joined = cmd.join(' ');
    if (/denv-/.test(joined) && ours(joined)) leaks.push(`conmon pid ${pid}: ${joined.slice(0, 160)}`);
  }
  return leaks;
}

function cgHas(dir: string, leaf: string): boolean {
  try {
    return walkHas(dir, leaf, 3);
  } catch {
    return false;
  }
}

function walkHas(dir: string, leaf: string, depth: number): boolean {
  if (path.basename(dir) === leaf) return true;
  if (depth <= 0) return false;
  return readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory() && walkHas(path.join(dir, e.name), leaf, depth - 1));
}

function stateDirLive(mountPoint: string, live: Set<string>): boolean {
  // the anchor of a state dir is fine while an env of that state dir is live
  return [...live].some((id) => {
    const base = mountPoint.split('/envs')[0] ?? '';
    return existsSync(path.join(base, 'envs', id));
  });
}

/** Processes in state `Z` among `pids`. */
export function zombies(pids: number[]): number[] {
  return pids.filter((p) => {
    try {
      const st = readFileSync(`/proc/${p}/stat`, 'utf8');
      return st.slice(st.lastIndexOf(')') + 2, st.lastIndexOf(')') + 3) === 'Z';
    } catch {
      return false;
    }
  });
}

/** Entries under `<dir>/envs` (what a failed preflight must not have created). */
export function envDirs(dir: string): string[] {
  try {
    return readdirSync(path.join(dir, 'envs'));
  } catch {
    return [];
  }
}

/** Snapshot of project objects on the host, to compare before/after a refused run. */
export async function hostSnapshot(): Promise<string[]> {
  const out: string[] = [];
  walkCgroups('/sys/fs/cgroup', 6, out);
  const ns = await execa('ip', ['netns', 'list'], { reject: false, timeout: 10_000 });
  out.push(...String(ns.stdout).split('\n').filter((l) => l.startsWith('denv-')).map((l) => `netns ${l}`));
  out.push(...parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8')).map((m) => `mount ${m.mountPoint}`));
  const rl = await execa('runc', ['--root', RUNC_ROOT, 'list', '-q'], { reject: false, timeout: 10_000 });
  out.push(...String(rl.stdout).split('\n').filter(Boolean).map((c) => `runc ${c}`));
  return out.sort();
}

/** Poll `fn` until it returns a truthy value or `timeoutMs` passes. */
export async function waitFor<T>(fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs: number, what: string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** KEY=VALUE lines of a text (the isolation probes print these). */
export function kv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_][A-Za-z0-9_.]*)=(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
  }
  return out;
}
