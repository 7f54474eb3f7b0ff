/**
 * `npm run bench -- node`: the node runtime against baselines measured in the
 * same run on the same host.
 *  - create→running and teardown latency (p50/p99) vs the raw floor
 *    (bench/raw-floor.c: clone with all seven namespaces + cgroups + exec
 *    /bin/true + reap + rmdir) and vs bare `runc create && runc start` /
 *    `runc delete --force` of the bundle config our runtime generated (same
 *    namespaces, uid mapping, rootfs and init; the rootfs bind is made once;
 *    the env's memory and pids limits, which our runtime writes itself, asked of runc),
 *    and vs conmon running `runc create` with the exec-fifo start on that
 *    bundle (the floor of any runtime that keeps conmon as the monitor);
 *  - churn: create+destroy cycles per second at concurrency 1 and 4, vs bare
 *    `runc run --detach` + `runc delete` and vs the conmon floor doing the same
 *    cycles (/bin/true behind the same init) at the same concurrency;
 *  - memory per running env at 100 envs: the runtime process's RSS growth with
 *    100 in-process supervisors, plus each env's conmon (PSS), vs the workload's own PSS;
 *  - a GC pass over 1,000 planted orphans vs removing the same objects by hand;
 *  - leaks after the bench (must be zero).
 * Everything it makes carries a run-unique tag and is removed at the end.
 */
import { execa } from 'execa';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, rmdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import { conmonCreate, FifoStart, runcDelete } from '../node-agent/conmon.js';
import { pidAlive, run as runProgram } from '../node-agent/exec.js';
import { gcPass, hierarchies } from '../node-agent/gc/pass.js';
import { Journal, outstanding, type EnvRecord } from '../node-agent/journal.js';
import { envPaths } from '../node-agent/names.js';
import { Runtime } from '../node-agent/runtime.js';
import { helperStatus } from '../node-agent/spawner.js';
import { supervise } from '../node-agent/supervisor.js';
import { parseSpec } from '../src/api/validate.js';
import { parseMountinfo, procState } from '../src/core/procfs.js';
import { percentile, row, type BenchRow, type BenchTable } from './table.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const TIMEOUT = 30_000;
const SAMPLES = Number(process.env.BENCH_NODE_SAMPLES ?? 60);
const MEM_ENVS = Number(process.env.BENCH_NODE_ENVS ?? 100);
const GC_ORPHANS = 1000;
const BASE_RUNC_ROOT = '/run/disposable-env-bench/runc';
/** Pause before every measured create, ours and the baselines alike (see Bench.baselines). */
const SETTLE_MS = Number(process.env.BENCH_NODE_SETTLE_MS ?? 50);

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;

/** USER_HZ: the unit of /proc/stat (100 on Linux for every architecture Node runs on here). */
const HZ = 100;

/** The machine's busy CPU time so far, in ms (every process: /proc/stat's cpu line less idle and iowait). */
function hostBusyMs(): number {
  const f = (readFileSync('/proc/stat', 'utf8').split('\n')[0] ?? '').trim().split(/\s+/).slice(1, 9).map(Number);
  const [user = 0, nice = 0, system = 0, , , irq = 0, softirq = 0, steal = 0] = f;
  return ((user + nice + system + irq + softirq + steal) * 1000) / HZ;
}

/** `fn` returning a rate of `total` cycles, and the machine's busy CPU per cycle while it ran (ms). */
async function withCpu(total: number, fn: () => Promise<number>): Promise<{ rate: number; cpuMs: number }> {
  const before = hostBusyMs();
  const rate = await fn();
  return { rate, cpuMs: (hostBusyMs() - before) / total };
}
const sleep = (n: number): Promise<void> => new Promise((r) => setTimeout(r, n));

/** The parts of a generated config.json the baselines change. */
type BundleConfig = {
  process: { args: string[] };
  root: { path: string };
  linux: { cgroupsPath: string; namespaces: { type: string; path?: string }[]; resources?: Record<string, unknown> };
};

/** Every bench env's limits; the baselines' bundle asks runc for the same ones. */
const BENCH_MEMORY_BYTES = 64 * 1024 * 1024;
const BENCH_PIDS = 64;

function spec(command: string[]): ReturnType<typeof parseSpec> {
  return parseSpec({ class: 'bench', workload: { command }, resources: { memory: { max: String(BENCH_MEMORY_BYTES) }, pids: { max: BENCH_PIDS } }, lifecycle: { timeoutSeconds: 600 } });
}

function pssKiB(pid: number): number {
  try {
    return Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))?.[1] ?? 0);
  } catch {
    return 0;
  }
}

function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

class Bench {
  readonly tag = `b${randomBytes(3).toString('hex')}`;
  readonly work = mkdtempSync(path.join(os.tmpdir(), 'denv-bench-'));
  rt!: Runtime;
  /** The runtime's own per-step create timings (journal `timings`), to explain where create→running goes. */
  readonly steps: Record<string, number[]> = {};
  private n = 0;

  id(): string {
    return `${this.tag}x${this.n++}`;
  }

  async open(): Promise<void> {
    chmodSync(this.work, 0o711);
    this.rt = await Runtime.open({ stateDir: path.join(this.work, 'state'), emptyTimeoutMs: 5000 });
  }

  /** One env: create (timed), kill + finish (timed). */
  async cycle(command: string[]): Promise<{ create: number; teardown: number }> {
    const id = this.id();
    let t = process.hrtime.bigint();
    const r = await this.rt.create({ id, name: id, spec: spec(command) });
    const create = ms(t);
    for (const [k, v] of Object.entries(r.timings ?? {})) (this.steps[k] ??= []).push(v);
    t = process.hrtime.bigint();
    await this.rt.killAll(r);
    await this.rt.finish(id, { reason: 'Stopped', message: 'bench' });
    const teardown = ms(t);
    await this.rt.journal.forget(id);
    return { create, teardown };
  }

  // ---- baselines --------------------------------------------------------------

  async rawFloor(): Promise<number[]> {
    const bin = path.join(this.work, 'raw-floor');
    await execa('gcc', ['-O2', '-o', bin, path.join(here, 'raw-floor.c')], { timeout: 60_000 });
    // cpuset is left out: a new cpuset cgroup needs cpus/mems copied in before a task can join
    const parents = hierarchies(this.rt)
      .filter((h) => !h.endsWith('/cpuset'))
      .map((h) => path.join(h, 'disposable.slice', `bench-raw-${this.tag}`));
    for (const p of parents) mkdirSync(p, { recursive: true });
    try {
      const r = await execa(bin, [String(SAMPLES), ...parents], { timeout: 120_000 });
      return (JSON.parse(String(r.stdout)) as { ns: number[] }).ns.map((n) => n / 1e6);
    } finally {
      for (const p of parents) if (existsSync(p)) rmdirSync(p);
    }
  }

  /**
   * Bare runc on the config our runtime generated for a template env (rootfs kept mounted by that env),
   * started the way the runtime starts its programs (node-agent/exec.ts: the spawn helper when built),
   * so the launcher's cost is the same on both sides.
   * `ours` is our own create+teardown cycle. Sample by sample, the four are taken in an order that
   * rotates each round, each after the same pause ({@link SETTLE_MS}), so no side always follows the
   * same predecessor: on this VM a create right after an idle spell or right after another runtime's
   * teardown (async netns cleanup in the kernel) is several ms slower, and a fixed order charged that
   * to whoever came next.
   */
  /**
   * The env whose generated config the bare-runc baselines run (its rootfs, the shared host root, lives as
   * long as it does), made on first use and ended by {@link endTemplate}.
   */
  private template?: { id: string; record: EnvRecord; cfg: BundleConfig };

  private async ensureTemplate(): Promise<{ id: string; record: EnvRecord; cfg: BundleConfig }> {
    if (this.template) return this.template;
    const id = this.id();
    const record = await this.rt.create({ id, name: id, spec: spec(['/bin/sleep', '1000']) });
    const cfg = JSON.parse(readFileSync(envPaths(this.rt.stateDir, id).config, 'utf8')) as BundleConfig;
    cfg.linux.namespaces = cfg.linux.namespaces.map((n) => ({ type: n.type })); // runc makes the netns itself
    // the env's limits, which our runtime writes itself before runc runs: in the baselines' bundle runc sets them
    cfg.linux.resources = { ...cfg.linux.resources, memory: { limit: BENCH_MEMORY_BYTES }, pids: { limit: BENCH_PIDS } };
    this.template = { id, record, cfg };
    return this.template;
  }

  async endTemplate(): Promise<void> {
    const t = this.template;
    if (!t) return;
    this.template = undefined;
    await this.rt.killAll(t.record).catch(() => undefined);
    await this.rt.finish(t.id).catch(() => undefined);
    for (const h of hierarchies(this.rt)) {
      const d = path.join(h, 'disposable.slice', `bench-base-${this.tag}`);
      for (const c of existsSync(d) ? readdirSync(d, { withFileTypes: true }).filter((e) => e.isDirectory()) : []) rmdirSync(path.join(d, c.name));
      if (existsSync(d)) rmdirSync(d);
    }
  }

  /** conmon's launch of container `cid` in `bundle` (which has `exit/` and `sock/`), for the conmon floor. */
  private conmonLaunch(tmpl: EnvRecord, cid: string, bundle: string): Parameters<typeof conmonCreate>[0] {
    return {
      conmon: tmpl.runtime.conmon,
      runc: tmpl.runtime.runc,
      runcRoot: BASE_RUNC_ROOT,
      containerId: cid,
      name: cid,
      bundle,
      logPath: path.join(bundle, 'log'),
      logSizeMax: 1024 * 1024,
      exitDir: path.join(bundle, 'exit'),
      conmonPidFile: path.join(bundle, 'conmon.pid'),
      containerPidFile: path.join(bundle, 'container.pid'),
      socketDir: path.join(bundle, 'sock'),
      conmonLog: path.join(bundle, 'conmon.log'),
      persistDir: bundle,
      backstopSeconds: 600,
    };
  }

  /** A fresh bundle dir for container `cid` with the template config (its cgroup named after the container), `args` as its process. */
  private bundleFor(cfg: BundleConfig, cid: string, args?: string[]): string {
    const bundle = path.join(this.work, cid);
    mkdirSync(bundle);
    const c = { ...cfg, linux: { ...cfg.linux, cgroupsPath: this.rt.driver.runcPath(`disposable.slice/bench-base-${this.tag}/${cid}`) }, ...(args ? { process: { ...cfg.process, args } } : {}) };
    writeFileSync(path.join(bundle, 'config.json'), JSON.stringify(c));
    return bundle;
  }

  async baselines(ours: () => Promise<void>): Promise<{ create: number[]; run: number[]; teardown: number[]; supervised: number[] }> {
    const { record: tmpl, cfg } = await this.ensureTemplate();
    const create: number[] = [];
    const run: number[] = [];
    const teardown: number[] = [];
    const supervised: number[] = [];
    const runc = tmpl.runtime.runc;
    const bundleFor = (cid: string): string => this.bundleFor(cfg, cid);
    const settle = (): Promise<void> => sleep(SETTLE_MS);
    try {
      for (let i = 0; i < SAMPLES; i++) {
        const cid = `rb-${this.tag}-${i}`;
        // `runc create` + `runc start`, then its teardown: `runc delete --force`
        const createStart = async (): Promise<void> => {
          const bundle = bundleFor(cid);
          await settle();
          let t = process.hrtime.bigint();
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'create', '--bundle', bundle, cid], { timeoutMs: TIMEOUT, discardOutput: true });
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'start', cid], { timeoutMs: TIMEOUT, discardOutput: true });
          create.push(ms(t));
          t = process.hrtime.bigint();
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'delete', '--force', cid], { timeoutMs: TIMEOUT, discardOutput: true });
          teardown.push(ms(t));
          rmSync(bundle, { recursive: true, force: true });
        };
        // the baseline: one `runc run --detach` of the same bundle
        const runDetach = async (): Promise<void> => {
          const rid = `${cid}r`;
          const bundle = bundleFor(rid);
          await settle();
          const t = process.hrtime.bigint();
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'run', '--detach', '--bundle', bundle, rid], { timeoutMs: TIMEOUT, discardOutput: true });
          run.push(ms(t));
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'delete', '--force', rid], { timeoutMs: TIMEOUT, discardOutput: true });
          rmSync(bundle, { recursive: true, force: true });
        };
        // the floor of any runtime that keeps conmon as the monitor (DESIGN.md): conmon runs `runc create`, then the
        // start through the exec fifo, exactly as ours does, and nothing else (no journal, no cgroup or netns of our own)
        const conmonFloor = async (): Promise<void> => {
          const sid = `${cid}s`;
          const bundle = bundleFor(sid);
          for (const d of ['exit', 'sock']) mkdirSync(path.join(bundle, d));
          await settle();
          const t = process.hrtime.bigint();
          const fifo = new FifoStart(BASE_RUNC_ROOT, sid).early(); // as ours: the start's reader waits while runc create runs
          const launched = await conmonCreate(this.conmonLaunch(tmpl, sid, bundle)).catch((err: unknown) => {
            fifo.cancel();
            throw err;
          });
          await fifo.finish(runc, launched.containerPid);
          supervised.push(ms(t));
          await runcDelete(runc, BASE_RUNC_ROOT, sid);
          for (let w = 0; w < 500 && pidAlive(launched.conmonPid); w++) await sleep(10);
          rmSync(bundle, { recursive: true, force: true });
        };
        const oursSettled = async (): Promise<void> => {
          await settle();
          await ours();
        };
        const order = [createStart, runDetach, conmonFloor, oursSettled];
        for (let k = 0; k < order.length; k++) await order[(i + k) % order.length]!();
      }
    } catch (err) {
      await this.endTemplate();
      throw err;
    }
    return { create, run, teardown, supervised };
  }

  /**
   * Churn's baseline: bare runc doing the same cycle as ours with nothing around it. `runc run --detach` of
   * the template bundle running /bin/true (behind the same init), wait until its init has exited (zombie or
   * gone, read from /proc), `runc delete`; cycles per second at `concurrency`.
   */
  async bareChurn(concurrency: number, total: number, via: 'runc run' | 'conmon' = 'runc run'): Promise<number> {
    const { record: tmpl, cfg } = await this.ensureTemplate();
    const runc = tmpl.runtime.runc;
    const sep = cfg.process.args.indexOf('--');
    const args = [...cfg.process.args.slice(0, sep + 1), '/bin/true'];
    const ended = (pid: number): boolean => {
      try {
        return procState(readFileSync(`/proc/${pid}/stat`, 'utf8')) === 'Z';
      } catch {
        return true;
      }
    };
    let left = total;
    let k = 0;
    const t = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) {
          const cid = `rc-${this.tag}-${via === 'conmon' ? 'm' : ''}${concurrency}-${k++}`;
          const bundle = this.bundleFor(cfg, cid, args);
          const pidFile = path.join(bundle, 'pid');
          let pid: number;
          let conmonPid = 0;
          if (via === 'conmon') {
            for (const d of ['exit', 'sock']) mkdirSync(path.join(bundle, d));
            const fifo = new FifoStart(BASE_RUNC_ROOT, cid).early();
            const launched = await conmonCreate(this.conmonLaunch(tmpl, cid, bundle)).catch((err: unknown) => {
              fifo.cancel();
              throw err;
            });
            await fifo.finish(runc, launched.containerPid);
            pid = launched.containerPid;
            conmonPid = launched.conmonPid;
          } else {
            await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'run', '--detach', '--pid-file', pidFile, '--bundle', bundle, cid], { timeoutMs: TIMEOUT, discardOutput: true });
            pid = Number(readFileSync(pidFile, 'utf8'));
          }
          for (const deadline = Date.now() + TIMEOUT; !ended(pid); ) {
            if (Date.now() > deadline) throw new Error(`bench: ${cid} (pid ${pid}) did not exit`);
            await sleep(1);
          }
          await runProgram(runc, ['--root', BASE_RUNC_ROOT, 'delete', cid], { timeoutMs: TIMEOUT, discardOutput: true });
          // conmon exits once it has seen the workload end and written the exit file
          for (let w = 0; w < 5000 && conmonPid && !ended(conmonPid); w++) await sleep(1); // a zombie counts: PID 1 reaps it
          rmSync(bundle, { recursive: true, force: true });
        }
      }),
    );
    return total / (ms(t) / 1000);
  }

  // ---- churn ------------------------------------------------------------------

  async churn(concurrency: number, total: number): Promise<number> {
    let left = total;
    const t = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (left-- > 0) await this.cycle(['/bin/true']);
      }),
    );
    return total / (ms(t) / 1000);
  }

  // ---- memory -----------------------------------------------------------------

  async memory(): Promise<{ inProcessKiB: number; rssKiB: number; rawRssKiB: number; newSpaceMiB: [number, number]; conmonKiB: number; workloadKiB: number }> {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as (() => void) | undefined;
    type Mem = { heapUsed: number; external: number; rss: number; newSpace: number };
    // V8's young generation (new space) grows with the allocation rate (16 → 32 MiB here), whatever the
    // number of envs; its size is read too, so the RSS growth can be judged without it
    const newSpace = (): number => v8.getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')?.space_size ?? 0;
    // before and after: the least of a few samples after a full GC, so both sides are measured alike
    const settle = async (): Promise<Mem> => {
      const samples: Mem[] = [];
      for (let i = 0; i < 5; i++) {
        gc?.();
        const m = process.memoryUsage();
        samples.push({ heapUsed: m.heapUsed, external: m.external, rss: m.rss, newSpace: newSpace() });
        await sleep(200);
      }
      const least = (k: keyof Mem): number => Math.min(...samples.map((x) => x[k]));
      return { heapUsed: least('heapUsed'), external: least('external'), rss: least('rss'), newSpace: least('newSpace') };
    };
    const m0 = await settle();
    const ids: string[] = [];
    const loops: Promise<unknown>[] = [];
    try {
      let next = 0;
      await Promise.all(
        Array.from({ length: 4 }, async () => {
          while (next < MEM_ENVS) {
            next++;
            const id = this.id();
            await this.rt.create({ id, name: id, spec: spec(['/bin/sleep', '1000']) });
            ids.push(id);
            loops.push(supervise(this.rt, id, { intervalMs: 1000 }).catch(() => undefined));
          }
        }),
      );
      await sleep(3000); // every supervisor has sampled a few times
      const m1 = await settle();
      let conmon = 0;
      let workload = 0;
      for (const id of ids) {
        const r = await this.rt.journal.read(id);
        if (r?.pids.conmon) {
          conmon += pssKiB(r.pids.conmon);
          for (const c of childrenOf(r.pids.conmon)) {
            workload += pssKiB(c);
            for (const g of childrenOf(c)) workload += pssKiB(g);
          }
        }
      }
      const per = (a: number, b: number): number => (b - a) / 1024 / ids.length;
      // external includes arrayBuffers (Node's process.memoryUsage())
      return {
        inProcessKiB: per(m0.heapUsed + m0.external, m1.heapUsed + m1.external),
        rssKiB: per(m0.rss, m1.rss - (m1.newSpace - m0.newSpace)),
        rawRssKiB: per(m0.rss, m1.rss),
        newSpaceMiB: [m0.newSpace / 1024 ** 2, m1.newSpace / 1024 ** 2],
        conmonKiB: conmon / ids.length,
        workloadKiB: workload / ids.length,
      };
    } finally {
      for (const id of ids) await this.rt.journal.read(id).then((r) => (r ? this.rt.killAll(r) : undefined)).catch(() => undefined);
      await Promise.all(loops);
    }
  }

  // ---- GC ---------------------------------------------------------------------

  /** 1,000 orphans of mixed kinds: 800 cgroup leaves, 150 journal-less env dirs, 50 netns. */
  async plantOrphans(sub: string): Promise<{ cgroups: string[]; bundles: string[]; netns: string[] }> {
    const pids = hierarchies(this.rt).find((h) => h.endsWith('/pids')) ?? hierarchies(this.rt)[0]!;
    const cgroups: string[] = [];
    const bundles: string[] = [];
    const netns: string[] = [];
    const base = path.join(pids, 'disposable.slice', `bench-gc-${this.tag}`);
    for (let i = 0; i < 800; i++) {
      const d = path.join(base, `denv-${this.tag}${sub}c${i}`);
      mkdirSync(d, { recursive: true });
      cgroups.push(d);
    }
    for (let i = 0; i < 150; i++) {
      const d = path.join(this.rt.stateDir, 'envs', `${this.tag}${sub}d${i}`);
      mkdirSync(path.join(d, 'bundle'), { recursive: true });
      bundles.push(d);
    }
    for (let i = 0; i < 50; i++) {
      const n = `denv-${this.tag}${sub}n${i}`;
      await execa('ip', ['netns', 'add', n], { timeout: TIMEOUT });
      netns.push(n);
    }
    return { cgroups, bundles, netns };
  }

  async gcBench(): Promise<{ pass: number; bare: number; reclaimed: number; stuck: number }> {
    // baseline: remove the same 1,000 objects by hand (rmdir, rm -r, ip netns delete)
    const b = await this.plantOrphans('m');
    let t = process.hrtime.bigint();
    for (const d of b.cgroups) rmdirSync(d);
    for (const d of b.bundles) rmSync(d, { recursive: true });
    for (const n of b.netns) await execa('ip', ['netns', 'delete', n], { timeout: TIMEOUT });
    const bare = ms(t);
    await this.plantOrphans('g');
    t = process.hrtime.bigint();
    const report = await gcPass(this.rt, { minAgeSeconds: 0, scope: (id) => id.startsWith(`${this.tag}g`), audit: false });
    const pass = ms(t);
    const base = path.join(hierarchies(this.rt).find((h) => h.endsWith('/pids')) ?? '', 'disposable.slice', `bench-gc-${this.tag}`);
    if (existsSync(base)) rmdirSync(base);
    return { pass, bare, reclaimed: report.rows.filter((r) => r.action === 'reclaimed').length, stuck: report.stuckEnvs.length };
  }

  // ---- leaks and cleanup --------------------------------------------------------

  /** Every object still carrying this run's tag. */
  async leaks(): Promise<string[]> {
    const out: string[] = [];
    const walk = (dir: string, depth: number): void => {
      if (depth < 0 || !existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true })) {
        if (!e.isDirectory()) continue;
        const p = path.join(dir, e.name);
        if (e.name.includes(this.tag)) out.push(`cgroup ${p}`);
        walk(p, depth - 1);
      }
    };
    for (const h of hierarchies(this.rt)) walk(path.join(h, 'disposable.slice'), 3);
    for (const n of existsSync('/run/netns') ? readdirSync('/run/netns') : []) if (n.includes(this.tag)) out.push(`netns ${n}`);
    for (const m of parseMountinfo(readFileSync('/proc/self/mountinfo', 'utf8'))) if (m.mountPoint.startsWith(this.work)) out.push(`mount ${m.mountPoint}`);
    for (const root of ['/run/disposable-env/runc', BASE_RUNC_ROOT]) {
      for (const c of existsSync(root) ? readdirSync(root) : []) if (c.includes(this.tag)) out.push(`runc ${root}/${c}`);
    }
    for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
      let cmd = '';
      try {
        cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
      } catch {
        continue;
      }
      if (cmd.includes(this.tag)) out.push(`process ${pid}`);
    }
    const j = new Journal(this.rt.stateDir);
    for (const r of (await j.list()).records) if (outstanding(r).length) out.push(`journal ${r.id}: ${outstanding(r).length} outstanding`);
    return out;
  }

  async cleanup(): Promise<void> {
    // a baseline that failed midway may have left its runc containers (and their cgroups) behind
    for (const c of existsSync(BASE_RUNC_ROOT) ? readdirSync(BASE_RUNC_ROOT).filter((x) => x.includes(this.tag)) : []) {
      await runProgram('runc', ['--root', BASE_RUNC_ROOT, 'delete', '--force', c], { timeoutMs: TIMEOUT, allowFailure: true, discardOutput: true }).catch(() => undefined);
    }
    await this.endTemplate().catch(() => undefined);
    for (const r of (await this.rt.journal.list()).records) if (outstanding(r).length) await this.rt.teardown(r.id).catch(() => undefined);
    await this.rt.close().catch(() => undefined);
    await gcPass(this.rt, { minAgeSeconds: 0, scope: (id) => id.startsWith(this.tag), audit: false }).catch(() => undefined);
    rmSync(this.work, { recursive: true, force: true });
  }
}

/** The node benchmark; returns one table (see the module comment). */
export async function benchNode(): Promise<BenchTable> {
  const b = new Bench();
  await b.open();
  const started = Date.now();
  const rows: BenchRow[] = [];
  try {
    await b.cycle(['/bin/true']); // warm-up: caches, tools, parents
    const raw = await b.rawFloor();
    const create: number[] = [];
    const teardown: number[] = [];
    // interleaved with the baselines, sample by sample, in rotating order: a load change hits every side alike
    const bare = await b.baselines(async () => {
      const c = await b.cycle(['/bin/sleep', '1000']);
      create.push(c.create);
      teardown.push(c.teardown);
    });
    for (const p of [50, 99]) {
      const ours = percentile(create, p);
      rows.push(row({ name: `create→running p${p} vs raw floor`, value: ours, unit: 'ms', baseline: { name: 'raw-floor clone+cgroup+exec+rmdir', value: percentile(raw, p) } }));
      const vsRun = row({ name: `create→running p${p} vs bare runc run`, value: ours, unit: 'ms', baseline: { name: 'runc run --detach', value: percentile(bare.run, p) } });
      rows.push(p === 50 ? { ...vsRun, target: '≤ 1.3× bare runc run', pass: (vsRun.ratio ?? Infinity) <= 1.3 } : vsRun);
      rows.push(row({ name: `create→running p${p} vs bare runc create+start`, value: ours, unit: 'ms', baseline: { name: 'runc create + runc start', value: percentile(bare.create, p) } }));
      rows.push(row({ name: `create→running p${p} vs conmon + runc create + fifo start (nothing else)`, value: ours, unit: 'ms', baseline: { name: 'conmon-supervised create+start', value: percentile(bare.supervised, p) } }));
      rows.push(row({ name: `  that floor itself p${p} vs bare runc run`, value: percentile(bare.supervised, p), unit: 'ms', baseline: { name: 'runc run --detach', value: percentile(bare.run, p) } }));
    }
    for (const p of [50, 99]) {
      const ours = percentile(teardown, p);
      rows.push(row({ name: `teardown p${p} vs raw floor`, value: ours, unit: 'ms', baseline: { name: 'raw-floor (whole cycle)', value: percentile(raw, p) } }));
      rows.push(row({ name: `teardown p${p} vs bare runc`, value: ours, unit: 'ms', baseline: { name: 'runc delete --force', value: percentile(bare.teardown, p) } }));
    }
    const rawRate = 1000 / percentile(raw, 50);
    for (const [conc, n] of [
      [1, 40],
      [4, 120],
    ] as const) {
      const { rate, cpuMs } = await withCpu(n, () => b.churn(conc, n));
      const bare = await withCpu(n, () => b.bareChurn(conc, n));
      const floor = await withCpu(n, () => b.bareChurn(conc, n, 'conmon'));
      rows.push(row({ name: `churn, concurrency ${conc}`, value: rate, unit: 'envs/s', baseline: { name: `bare runc run --detach + delete, concurrency ${conc}`, value: bare.rate }, target: '≥ 20 envs/s', pass: rate >= 20 }));
      rows.push(row({ name: `churn, concurrency ${conc}`, value: rate, unit: 'envs/s', baseline: { name: `conmon floor (conmon + runc create + fifo start, runc delete; nothing else), concurrency ${conc}`, value: floor.rate } }));
      rows.push(row({ name: `churn, concurrency ${conc}`, value: rate, unit: 'envs/s', baseline: { name: 'raw floor, serial', value: rawRate } }));
      // what a cycle costs the whole machine (every process, kernel included): on 2 cores churn is CPU-bound
      rows.push(row({ name: `  machine CPU per churn cycle, concurrency ${conc}`, value: cpuMs, unit: 'ms', baseline: { name: 'conmon floor, same cycle', value: floor.cpuMs } }));
      rows.push(row({ name: `  machine CPU per churn cycle, concurrency ${conc}`, value: cpuMs, unit: 'ms', baseline: { name: 'bare runc run + delete, same cycle', value: bare.cpuMs } }));
    }
    await b.endTemplate();
    const mem = await b.memory();
    // the "agent memory per running env": the runtime process's own growth, judged on the larger of
    // its JS heap+external growth after GC and its RSS growth (RSS is noisy: earlier phases' garbage can be returned),
    // less the growth of V8's new space, which follows the allocation rate, not the number of envs
    const agent = Math.max(mem.inProcessKiB, mem.rssKiB);
    rows.push(row({ name: `agent memory per running env (${MEM_ENVS} envs, a supervisor each; max of heap+external growth ${mem.inProcessKiB.toFixed(1)} KiB and RSS growth ${mem.rssKiB.toFixed(1)} KiB not counting V8's new space, ${mem.newSpaceMiB[0].toFixed(0)} → ${mem.newSpaceMiB[1].toFixed(0)} MiB; RSS growth with it ${mem.rawRssKiB.toFixed(1)} KiB)`, value: agent, unit: 'KiB', baseline: { name: 'workload PSS per env', value: mem.workloadKiB }, target: '≤ 200 KB', pass: agent * 1.024 <= 200 }));
    // conmon is a process of its own per env (it must outlive the agent); shown, not hidden, not part of the agent
    rows.push(row({ name: 'conmon per env (PSS; a separate monitor process per env)', value: mem.conmonKiB, unit: 'KiB', baseline: { name: 'workload PSS per env', value: mem.workloadKiB } }));
    rows.push(row({ name: 'agent + conmon per env', value: agent + mem.conmonKiB, unit: 'KiB', baseline: { name: 'workload PSS per env', value: mem.workloadKiB } }));
    const g = await b.gcBench();
    rows.push(row({ name: `GC pass, ${GC_ORPHANS} orphans (800 cgroups, 150 env dirs, 50 netns); reclaimed ${g.reclaimed}, stuck ${g.stuck}`, value: g.pass / 1000, unit: 's', baseline: { name: 'removing them by hand', value: g.bare / 1000 }, target: '< 5 s, all reclaimed', pass: g.pass < 5000 && g.reclaimed === GC_ORPHANS && g.stuck === 0 }));
    const sharedRootRemoved = await b.rt.close(); // the shared host root goes with the last env
    const leaks = await b.leaks();
    rows.push({ name: 'objects left after the bench', value: leaks.length, unit: 'objects', target: '0', pass: leaks.length === 0 });
    if (leaks.length) console.error(`bench node: leaks:\n  ${leaks.join('\n  ')}`);
    return { title: 'node runtime (hybrid cgroups, runc + conmon)', rows, meta: { spawnHelper: helperStatus(), sharedRootRemoved, createStepsP50Ms: Object.fromEntries(Object.entries(b.steps).map(([k, v]) => [k, percentile(v, 50)])), samples: SAMPLES, settleMs: SETTLE_MS, memEnvs: MEM_ENVS, seconds: (Date.now() - started) / 1000, host: os.hostname(), cpus: os.cpus().length, leaks } };
  } finally {
    await b.cleanup();
  }
}
