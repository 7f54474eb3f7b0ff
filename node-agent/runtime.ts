/**
 * The node runtime for one host: create an env (preflight → journal → uid range
 * → cgroups → netns → rootfs → bundle → conmon/runc create → start), observe
 * it, terminate it, and tear it down with proof that every host object is gone.
 *
 * Preflight (preflight.ts) checks everything that can be known in advance
 * (spec, tools, rootfs, what this host can enforce) and changes nothing on the
 * host. After that, every resource is journaled before it is created; any
 * failure tears down what the journal lists (teardown.ts), so creation is
 * all-or-nothing.
 *
 * Over 500 lines because the class is the one place that orders an env's life
 * against its journal (create's steps and their records, finish, teardown's
 * record); the steps themselves live in their own modules.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { EnvSpec } from '../src/api/env.js';
import type { Phase } from '../src/api/constants.js';
import { GONE_START_TICKS, type ProcessId } from '../src/core/procfs.js';
import { V1Driver } from './cgroup/v1.js';
import { V2Driver } from './cgroup/v2.js';
import { removeEmptyLevels } from './cgroup/tree.js';
import type { CgroupDriver, CgroupStats, KillMethod } from './cgroup/types.js';
import { conmonCreate, FifoStart, isConmonOf, logTail, readExitCode, runcKill } from './conmon.js';
import { removeEnvObjects } from './teardown.js';
import { findTools, localhostSeccomp, PreflightError, specProblems, SYSTEM_PATH, type Tools } from './preflight.js';
import { isSameProcess, selfIdentity } from './exec.js';
import { reserveIdRange } from './idmap.js';
import { isFinished, Journal, markCreated, markRemoved, outstanding, recordProcess, type EnvRecord, type EnvSource, type LeakReport, type ResourceRef } from './journal.js';
import { outcome, usageFromStats, type Sample, type Verdict } from './lifecycle.js';
import { HostRoot } from './hostroot.js';
import { LIMIT_KEYS, limitResources, type LimitKey, type Limits } from './limits.js';
import type { NodeMetrics } from './metrics.js';
import { assertCgroupRoot, cgroupRelPath, DEFAULT_CGROUP_ROOT, envPaths, generateEnvId, hostName, IDMAP_DIR, netnsPath, RUNC_ROOT, assertEnvId, isClassName, STATE_REGISTRY_DIR } from './names.js';
import { registerStateDir } from './state-registry.js';
import { createNetns, netBytes } from './netns.js';
import { buildOciConfig } from './oci.js';
import { detectCgroupLayout, findExecutable, type CgroupLayout } from './probe.js';

/** Settings of a runtime instance (CLI flags or agent configuration). */
export interface RuntimeOptions {
  readonly stateDir: string;
  readonly cgroupRoot?: string;
  /** Where runc, conmon and the init are looked up (the CLI's --runtime-path); default $PATH. */
  readonly runtimePath?: string;
  readonly runcRoot?: string;
  readonly idmapDir?: string;
  /** Cap on the workload log file (conmon --log-size-max). Default 10 MiB. */
  readonly logSizeMax?: number;
  readonly killMethod?: KillMethod;
  /** How long teardown waits for the cgroup to empty after SIGKILL before reporting a leak. Default 10 000 ms. */
  readonly emptyTimeoutMs?: number;
  /** Force a layout (tests); default: detected. */
  readonly layout?: CgroupLayout;
  /** Where teardowns are observed (`disposable_env_teardown_duration_seconds`); the agent passes its registry's. */
  readonly metrics?: NodeMetrics;
  /** The host-wide list of state dirs (default {@link STATE_REGISTRY_DIR}). */
  readonly stateRegistryDir?: string;
  /** Where `seccompProfile.localhostProfile` is resolved (default {@link DEFAULT_SECCOMP_PROFILE_DIR}); nothing outside it is read. */
  readonly seccompProfileDir?: string;
}


/** A request to create an env. */
export interface CreateRequest {
  readonly id?: string;
  readonly name: string;
  readonly spec: EnvSpec;
  readonly source?: EnvSource;
}


/** Creation failed part-way; everything made was torn down again (see `record`). */
export class CreateError extends Error {
  constructor(
    message: string,
    readonly record: EnvRecord | undefined,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CreateError';
  }
}


/** What build() made, for the journal write that records the start: the init's identity and the results. */
interface Built {
  readonly container: ProcessId | undefined;
  /** The exec-fifo start, begun while `runc create` ran. */
  readonly fifo: FifoStart;
  readonly record: (r: EnvRecord) => void;
}

/** Called with the record every time an env changes phase. */
export type PhaseListener = (r: EnvRecord) => void;

/** The runtime for one state directory on this host. */
export class Runtime {
  readonly journal: Journal;
  readonly stateDir: string;
  readonly cgroupRoot: string;
  readonly runcRoot: string;
  readonly idmapDir: string;
  /** The read-only host root shared by every env of this state dir without rootfs.hostPath. */
  readonly hostRoot: HostRoot;
  private toolsCache?: Tools;
  private teardownToolsCache?: Promise<Pick<Tools, 'ip' | 'mount' | 'umount'>>;
  private registered?: Promise<void>;

  private constructor(
    readonly options: RuntimeOptions,
    readonly layout: CgroupLayout,
    readonly driver: CgroupDriver,
  ) {
    this.journal = new Journal(options.stateDir);
    this.stateDir = this.journal.stateDir;
    this.cgroupRoot = assertCgroupRoot(options.cgroupRoot ?? DEFAULT_CGROUP_ROOT);
    this.runcRoot = options.runcRoot ?? RUNC_ROOT;
    this.idmapDir = options.idmapDir ?? IDMAP_DIR;
    this.hostRoot = new HostRoot(this.stateDir, () => this.teardownTools());
  }

  /**
   * Remove the shared host root if no env of this state dir may still use it
   * (every env finished and fully torn down), and the shared cgroup parents
   * (`<root>/<class>`, then `<root>`) that no env uses any more.
   * Commands call it when they are done; a long-lived agent keeps both while
   * it runs (its GC pass prunes empty parents). Returns true when the host
   * root was removed.
   */
  async close(): Promise<boolean> {
    const released = await this.hostRoot.release(() => this.idle());
    await this.pruneParents();
    return released;
  }

  /** How many top levels of the cgroup root are the operator's, not ours (all but its last segment). */
  get cgroupRootKeepLevels(): number {
    return this.cgroupRoot.split('/').length - 1;
  }

  /**
   * Remove the shared cgroup parents that are empty: every `<root>/<class>`
   * without a child, in every hierarchy, then `<root>` (never the levels of a
   * configured root above its last segment). A parent in use stays (rmdir
   * fails on it), and a create that loses a parent this way builds its tree
   * again. With `dryRun` nothing is removed. Returns the directories (to be) removed.
   */
  async pruneParents(opts: { dryRun?: boolean } = {}): Promise<string[]> {
    const roots = this.driver.hierarchyRoots();
    const classes = new Set<string>();
    for (const h of roots) {
      for (const e of await readdir(path.join(h, this.cgroupRoot), { withFileTypes: true }).catch(() => [])) if (e.isDirectory() && isClassName(e.name)) classes.add(e.name);
    }
    const wouldRemove = opts.dryRun ? new Set<string>() : undefined;
    const gone: string[] = [];
    for (const c of [...classes].sort()) gone.push(...(await removeEmptyLevels(roots, `${this.cgroupRoot}/${c}`, this.cgroupRootKeepLevels, wouldRemove)));
    return [...new Set(gone)];
  }

  /** True when no env of this state dir is live or still holds a container. */
  async idle(): Promise<boolean> {
    const { records, incomplete } = await this.journal.list();
    if (incomplete.length) return false;
    return records.every((r) => isFinished(r) && !outstanding(r).some((x) => x.kind === 'container' || x.kind === 'conmon'));
  }

  /** Detect the host's cgroup layout and pick the driver. Changes nothing on the host. */
  static async open(options: RuntimeOptions): Promise<Runtime> {
    const layout = options.layout ?? (await detectCgroupLayout());
    const driver: CgroupDriver = layout.mode === 'unified' ? new V2Driver(layout.v2Root) : new V1Driver(layout);
    return new Runtime(options, layout, driver);
  }

  /** Find runc, conmon, an init, ip, mount and umount (once); a PreflightError names what is missing. */
  async tools(): Promise<Tools> {
    this.toolsCache ??= await findTools(this.options.runtimePath);
    return this.toolsCache;
  }

  /**
   * Which of `limits` this host cannot enforce, and why: each is asked of the cgroup
   * driver alone (swap and memory.high with a memory.max, as v1 needs), so a node
   * default it cannot enforce is skipped instead of failing every env's preflight.
   */
  async unenforceableLimits(limits: Limits): Promise<Map<LimitKey, string>> {
    const out = new Map<LimitKey, string>();
    for (const key of LIMIT_KEYS) {
      const v = limits[key];
      if (v === undefined) continue;
      const one: Limits = key === 'swap' || key === 'memory.high' ? { memory: limits.memory ?? v, [key]: v } : { [key]: v };
      const missing = await this.driver.unenforceable(limitResources(one));
      if (missing.length) out.set(key, missing.map((m) => m.why).join('; '));
    }
    return out;
  }

  /** Everything that can be checked before touching the host. Throws PreflightError listing all problems. */
  async preflight(req: CreateRequest): Promise<void> {
    const problems: string[] = [];
    try {
      if (req.id !== undefined) assertEnvId(req.id);
    } catch (err) {
      problems.push((err as Error).message);
    }
    if (!/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(req.name) || req.name.length > 63) problems.push(`metadata.name ${JSON.stringify(req.name)} must be a DNS label`);
    try {
      await this.tools();
    } catch (err) {
      problems.push(...((err as PreflightError).problems ?? [(err as Error).message]));
    }
    problems.push(...(await specProblems({ stateDir: this.stateDir, driver: this.driver, layoutMode: this.layout.mode, seccompProfileDir: this.options.seccompProfileDir }, req.spec)));
    const live = this.journal.liveNamed(req.name);
    if (live) problems.push(`an env named ${req.name} is already ${live.phase} in ${this.stateDir} (id ${live.id})`);
    if (problems.length) throw new PreflightError(problems);
  }

  /**
   * Create and start an env. Returns the record in phase Running. On failure
   * after preflight, tears down what was made and throws CreateError.
   */
  async create(req: CreateRequest, onPhase?: PhaseListener): Promise<EnvRecord> {
    const tp = performance.now();
    await this.preflight(req);
    const tools = await this.tools();
    const id = req.id ?? generateEnvId();
    const t0 = performance.now();
    const early: Record<string, number> = { preflight: since(tp) };
    const rel = cgroupRelPath(this.cgroupRoot, req.spec.class, id);
    this.registered ??= registerStateDir(this.options.stateRegistryDir ?? STATE_REGISTRY_DIR, this.stateDir);
    await this.registered;
    // Every host object create may make is journaled up front, in the record's first write; each
    // later step only records what it made (one write at the end of build). Teardown of an intended
    // object that never came to exist is a verified no-op.
    let record = await this.journal.begin({
      id,
      name: req.name,
      class: req.spec.class,
      source: req.source ?? { kind: 'cli' },
      spec: req.spec,
      cgroupPath: rel,
      cgroupMode: this.layout.mode,
      phase: 'Creating',
      deadlines: {},
      processes: { creator: selfIdentity() },
      runtime: { runc: tools.runc, conmon: tools.conmon, init: tools.init, runcRoot: this.runcRoot },
    }, this.intents(id, rel, req.spec));
    early.journalBegin = since(t0);
    onPhase?.(record);
    let built: Built | undefined;
    try {
      built = await this.build(record, tools, early);
      record = await this.start(id, tools, t0, built);
      onPhase?.(record);
      return record;
    } catch (err) {
      if (built) await this.journal.update(id, built.record).catch(() => undefined); // the start failed: record what build made
      const leaks = await this.teardown(id).catch((e: unknown) => [{ what: 'teardown', detail: (e as Error).message }]);
      const failed = await this.journal.update(id, (r) => {
        r.phase = 'Failed';
        r.reason = leaks.length ? 'Leaked' : 'CreateFailed';
        r.message = `create failed: ${(err as Error).message}`;
        r.finishTime = new Date().toISOString();
        if (leaks.length) r.leaks = leaks;
      });
      onPhase?.(failed);
      throw new CreateError(`create ${req.name}: ${(err as Error).message}`, failed, { cause: err });
    }
  }

  /** The host objects an env with `spec` will own, before any exists. */
  private intents(id: string, rel: string, spec: EnvSpec): ResourceRef[] {
    const p = envPaths(this.stateDir, id);
    const cid = hostName(id);
    const ns = spec.isolation.namespaces;
    const dirs = [...new Set(this.driver.directories(rel).flat())];
    return [
      ...(ns.includes('user') && spec.isolation.userNamespace.hostIdStart === undefined ? [{ kind: 'idRange' as const, hostId: `${this.idmapDir}/?`, detail: { pending: true } }] : []),
      ...dirs.map((d) => ({ kind: 'cgroup' as const, hostId: d })),
      ...(ns.includes('net') ? [{ kind: 'netns' as const, hostId: netnsPath(hostName(id)) }] : []),
      { kind: 'container', hostId: cid, detail: { root: this.runcRoot } },
      { kind: 'conmon', hostId: cid, detail: { pidFile: p.conmonPidFile } },
    ];
  }

  /** Make every host object of the env and create (not start) its container; returns the container's init pid. */
  private async build(record: EnvRecord, tools: Tools, early: Record<string, number>): Promise<Built> {
    const { id, spec } = record;
    const p = envPaths(this.stateDir, id);
    const timings: Record<string, number> = { ...early };
    const made: ResourceRef[] = [];
    const pending = new Set<string>();
    // a step may be synchronous (small-file and cgroupfs calls) or not
    const step = async (name: string, fn: () => Promise<void> | void): Promise<void> => {
      const t = performance.now();
      pending.add(name);
      try {
        await fn();
      } finally {
        pending.delete(name);
      }
      timings[name] = since(t);
    };
    const ns = spec.isolation.namespaces;
    let idRange: { start: number; size: number } | undefined;
    const netns = ns.includes('net') ? hostName(id) : undefined;
    const hostRoot = spec.rootfs === undefined;
    let rootfsPath = spec.rootfs?.hostPath ?? '';
    // independent of each other: the uid range, the cgroup subtree, the netns, the shared root, the bundle dirs.
    // All of them settle before anything is judged, so a failure never starts a teardown while a sibling is
    // still making something; and a step that hangs ends the create with its name instead of hanging it.
    const tPrepare = performance.now();
    await settleAll(BUILD_STEPS_TIMEOUT_MS, () => [...pending], [
      // first: the spawn helper makes the netns while the steps below run their synchronous calls here
      netns
        ? step('netns', async () => {
            await createNetns(tools, netns);
            made.push({ kind: 'netns', hostId: netnsPath(netns), madeByUs: true });
          })
        : undefined,
      ns.includes('user')
        ? step('idRange', () => {
            idRange = this.reserveIds(id, spec, made);
          })
        : undefined,
      step('cgroup', () => this.makeCgroup(record, made)),
      hostRoot
        ? step('rootfs', async () => {
            rootfsPath = await this.hostRoot.acquire();
          })
        : undefined,
      step('dirs', () => {
        mkdirSync(p.bundle, { recursive: true, mode: 0o711 });
        mkdirSync(p.exitDir, { recursive: true, mode: 0o700 });
        mkdirSync(p.socketDir, { recursive: true, mode: 0o700 });
      }),
    ]);
    timings.prepare = since(tPrepare); // the parallel steps above, as a whole
    await step('bundle', async () => {
      const localProfile = spec.security.seccompProfile.type === 'Localhost' ? await localhostSeccomp(this.options.seccompProfileDir, spec) : undefined;
      const cfg = buildOciConfig({
        id,
        name: record.name,
        spec,
        rootfsPath,
        hostRoot,
        ...(netns ? { netnsPath: netnsPath(netns) } : {}),
        ...(idRange ? { idRange } : {}),
        cgroupsPath: this.driver.runcPath(record.cgroupPath),
        initHostPath: tools.init,
        initKind: tools.initKind,
        ...(localProfile ? { localhostSeccomp: localProfile } : {}),
      });
      writeFileSync(p.config, JSON.stringify(cfg), { mode: 0o600 }); // ~10 KB: synchronous, like the other small files here
    });
    let pids: { conmon: ProcessId; container: ProcessId } | undefined;
    // the start's reader is on the exec fifo while runc create runs, so the workload starts when its init is ready
    const fifo = new FifoStart(this.runcRoot, hostName(id)).early();
    await step('runcCreate', async () => {
      pids = await this.launch(record, tools).catch((err: unknown) => {
        fifo.cancel();
        throw err;
      });
    });
    const cid = hostName(id);
    made.push({ kind: 'container', hostId: cid, madeByUs: true }, { kind: 'conmon', hostId: cid, madeByUs: true, detail: { pid: pids?.conmon.pid ?? 0, startTicks: pids?.conmon.startTicks ?? GONE_START_TICKS } });
    // recorded together with the start (one journal write): everything here was journaled as intended by begin()
    return {
      container: pids?.container,
      fifo,
      record: (r) => {
        markCreated(r, made, new Date().toISOString());
        if (made.some((x) => x.kind === 'idRange')) r.resources = r.resources.filter((x) => !(x.kind === 'idRange' && x.hostId.endsWith('/?')));
        r.timings = { ...r.timings, ...timings };
        if (netns) r.netns = netnsPath(netns);
        if (idRange) r.idRange = idRange;
        if (pids) {
          recordProcess(r, 'conmon', pids.conmon);
          recordProcess(r, 'container', pids.container);
        }
      },
    };
  }

  /** The owner line of env `id`'s uid range reservation. */
  private idOwner(id: string): string {
    return `${id} ${this.stateDir}`;
  }

  private reserveIds(id: string, spec: EnvSpec, made: ResourceRef[]): { start: number; size: number } {
    const size = spec.isolation.userNamespace.size;
    const fixed = spec.isolation.userNamespace.hostIdStart;
    if (fixed !== undefined) return { start: fixed, size };
    // The reservation file is the resource; its name is only known once reserved, so begin() journaled the
    // directory's intent (`<idmap>/?`). The file is recorded with the rest of create's results; a teardown
    // before that finds it by its owner line.
    const res = reserveIdRange(this.idmapDir, this.idOwner(id), size);
    made.push({ kind: 'idRange', hostId: res.file, madeByUs: true, detail: { start: res.start, size } });
    return { start: res.start, size: res.size };
  }

  private async makeCgroup(record: EnvRecord, made: ResourceRef[]): Promise<void> {
    const { id, spec } = record;
    const intended = new Set(record.resources.filter((x) => x.kind === 'cgroup').map((x) => x.hostId));
    const created = await this.driver.create(record.cgroupPath, spec.resources, {
      bestEffort: spec.resources.bestEffort,
      hooks: {
        // begin() journaled every directory of the tree; anything else is journaled before it is made
        intend: (dirs) => this.journal.intend(id, dirs.filter((d) => !intended.has(d)).map((d) => ({ kind: 'cgroup', hostId: d }))),
        created: (dirs) => {
          made.push(...dirs.map((d) => ({ kind: 'cgroup' as const, hostId: d.dir, madeByUs: d.made })));
          return Promise.resolve(); // recorded with the rest of build's results in one journal write
        },
      },
    });
    if (created.skipped.length) {
      await this.journal.update(id, (r) => {
        r.message = `best effort: not enforced: ${created.skipped.map((s) => `${s.field} (${s.why})`).join('; ')}`;
      });
    }
  }

  private async launch(record: EnvRecord, tools: Tools): Promise<{ conmon: ProcessId; container: ProcessId }> {
    const { id, spec } = record;
    const p = envPaths(this.stateDir, id);
    const cid = hostName(id);
    // the container and conmon were journaled as intended by begin()
    return conmonCreate({
      conmon: tools.conmon,
      runc: tools.runc,
      runcRoot: this.runcRoot,
      containerId: cid,
      name: record.name,
      bundle: p.bundle,
      logPath: p.log,
      logSizeMax: this.options.logSizeMax ?? 10 * 1024 * 1024,
      exitDir: p.exitDir,
      conmonPidFile: p.conmonPidFile,
      containerPidFile: p.containerPidFile,
      socketDir: p.socketDir,
      conmonLog: path.join(p.dir, 'conmon.log'),
      persistDir: p.dir,
      backstopSeconds: spec.lifecycle.timeoutSeconds + spec.lifecycle.gracePeriodSeconds + 30,
    });
  }

  private async start(id: string, tools: Tools, t0: number, built: Built): Promise<EnvRecord> {
    const t = performance.now();
    const how = await built.fifo.finish(tools.runc, built.container);
    const started = new Date();
    return this.journal.update(id, (r) => {
      built.record(r);
      r.phase = 'Running';
      r.startTime = started.toISOString();
      r.deadlines.timeoutAt = new Date(started.getTime() + r.spec.lifecycle.timeoutSeconds * 1000).toISOString();
      r.timings = { ...r.timings, runcStart: since(t), createToRunning: since(t0) };
      r.startedBy = how;
    });
  }

  /** One observation of a running env for the lifecycle rules. */
  async sample(r: EnvRecord): Promise<Sample> {
    const stats = await this.driver.stats(r.cgroupPath);
    // the init's /proc/PID/net/dev shows the env's netns only while the pid is still the init's
    const init = r.processes.container;
    const net = isSameProcess(init) && r.netns ? await netBytes(init!.pid) : undefined;
    return { at: Date.now(), stats, ...(net !== undefined ? { netBytes: net } : {}) };
  }

  /** Record the verdict, move to Terminating and SIGTERM the workload (its init forwards it). */
  async beginTermination(id: string, verdict: Verdict, graceMs: number): Promise<EnvRecord> {
    const killAt = new Date(Date.now() + graceMs);
    const r = await this.journal.update(id, (x) => {
      x.phase = 'Terminating';
      x.reason = verdict.reason;
      x.message = verdict.message;
      x.deadlines.killAt = killAt.toISOString();
    });
    await runcKill(r.runtime.runc, r.runtime.runcRoot, hostName(id), 'SIGTERM').catch(() => undefined);
    return r;
  }

  /** SIGKILL every process of the env through its cgroup (cgroup.kill or freeze + kill). */
  async killAll(r: EnvRecord): Promise<void> {
    await this.driver.kill(r.cgroupPath, this.options.killMethod ?? 'auto');
  }

  /**
   * Finish an env whose workload has exited (or was killed): final usage, exit
   * code, log tail, teardown, then the terminal phase and reason.
   */
  async finish(id: string, verdict?: Verdict): Promise<EnvRecord> {
    const r0 = await this.mustRead(id);
    const p = envPaths(this.stateDir, id);
    const stats: CgroupStats = await this.driver.stats(r0.cgroupPath).catch(() => ({}));
    const exitCode = await this.awaitExitCode(r0, p.exitFile);
    const tail = logTail(await readFile(p.log, 'utf8').catch(() => ''));
    // the terminal phase goes into teardown's own journal write: one write, not two
    const { record } = await this.teardownThen(id, (r, leaks) => {
      const o = outcome({
        ...(verdict ? { verdict } : {}),
        ...(exitCode !== undefined ? { exitCode } : {}),
        oomKills: stats.oomKills ?? 0,
        onOOMKill: r0.spec.lifecycle.reclaim.onOOMKill,
        leaks: leaks.map((l) => `${l.what}: ${l.detail}`),
      });
      r.phase = o.phase;
      r.reason = o.reason;
      r.message = o.message;
      r.finishTime = new Date().toISOString();
      if (exitCode !== undefined) r.exitCode = exitCode;
      r.usage = usageFromStats(stats);
      r.stats = stats;
      r.logTail = tail;
      if (leaks.length) r.leaks = leaks;
    });
    return record;
  }

  /**
   * The recorded exit code; when the workload was just killed, give conmon a
   * moment (up to 3 s) to see it die and write the code. Right after a kill
   * the cgroup is still populated for a while (the processes are exiting), so
   * only a cgroup that stays populated for a whole second says the workload
   * is alive and no code is coming (teardown will kill it); conmon being gone
   * ends the wait too.
   */
  private async awaitExitCode(r: EnvRecord, exitFile: string): Promise<number | undefined> {
    const start = Date.now();
    const deadline = start + 3000;
    let emptySeen = false;
    for (;;) {
      const code = await readExitCode(exitFile);
      if (code !== undefined) return code;
      const conmonUp = await isConmonOf(r.processes.conmon, hostName(r.id));
      if (!conmonUp) return readExitCode(exitFile); // it may have written the file just before exiting
      if (Date.now() > deadline) return undefined;
      if (!emptySeen) {
        const populated = await this.driver.populated(r.cgroupPath).catch(() => false);
        if (!populated) emptySeen = true;
        else if (Date.now() - start > LIVE_WORKLOAD_MS) return undefined;
      }
      await sleep(5);
    }
  }

  private async mustRead(id: string): Promise<EnvRecord> {
    const r = await this.journal.read(id);
    if (!r) throw new Error(`env ${id}: no journal in ${this.stateDir}`);
    return r;
  }

  /**
   * Remove every host object the journal lists for env `id`, in order: kill →
   * wait unpopulated → runc delete → conmon gone → unmount → netns → cgroups →
   * uid range. Each step is verified and journaled as removed. Returns what
   * could not be removed (e.g. processes stuck in D state), never retries forever.
   */
  async teardown(id: string): Promise<LeakReport[]> {
    return (await this.teardownThen(id)).leaks;
  }

  /** {@link teardown}, with `then` applied to the record in the same journal write that crosses off what is gone. */
  private async teardownThen(id: string, then?: (r: EnvRecord, leaks: LeakReport[]) => void): Promise<{ leaks: LeakReport[]; record: EnvRecord }> {
    const t = Date.now();
    const r = await this.mustRead(id);
    const { gone, leaks } = await removeEnvObjects(
      {
        driver: this.driver,
        killMethod: this.options.killMethod ?? 'auto',
        emptyTimeoutMs: this.options.emptyTimeoutMs ?? 10_000,
        idOwner: (id) => this.idOwner(id),
        tools: () => this.teardownTools(),
      },
      r,
    );
    // everything verified gone is crossed off in one write; a teardown cut short repeats the checks
    const record = await this.journal.update(id, (x) => {
      markRemoved(x, gone, new Date().toISOString());
      x.timings = { ...x.timings, teardown: Date.now() - t };
      then?.(x, leaks);
    });
    this.options.metrics?.teardownDuration.observe((Date.now() - t) / 1000);
    return { leaks, record };
  }

  /** Tools for teardown (from the system path; looked up once per runtime). */
  private teardownTools(): Promise<Pick<Tools, 'ip' | 'mount' | 'umount'>> {
    this.teardownToolsCache ??= (async () => {
      const sysPath = `${process.env.PATH ?? ''}:${SYSTEM_PATH}`;
      const ip = (await findExecutable('ip', sysPath)) ?? 'ip';
      const mount = (await findExecutable('mount', sysPath)) ?? 'mount';
      const umount = (await findExecutable('umount', sysPath)) ?? 'umount';
      return { ip, mount, umount };
    })();
    return this.teardownToolsCache;
  }
}

/** A cgroup still populated this long after finish() began holds a live workload, not a dying one. */
const LIVE_WORKLOAD_MS = 1000;

/** How long create's concurrent steps (uid range, cgroups, netns, host root, dirs) may take together. */
const BUILD_STEPS_TIMEOUT_MS = 120_000;

/**
 * Wait until every promise has settled, then throw the first failure. After
 * `timeoutMs` throw anyway, naming what `pendingNow()` says is still running.
 */
async function settleAll(timeoutMs: number, pendingNow: () => string[], work: readonly (Promise<void> | undefined)[]): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'timeout'>((res) => {
    timer = setTimeout(() => res('timeout'), timeoutMs);
  });
  try {
    const settled = await Promise.race([Promise.allSettled(work.filter((w): w is Promise<void> => w !== undefined)), deadline]);
    if (settled === 'timeout') throw new Error(`create steps did not finish within ${timeoutMs} ms: still running: ${pendingNow().join(', ') || '?'}`);
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  } finally {
    clearTimeout(timer);
  }
}

/** Milliseconds since `t` (a performance.now() reading), to 0.1 ms: create's per-step timings. */
function since(t: number): number {
  return Math.round((performance.now() - t) * 10) / 10;
}

/** Final states. */
export function isTerminalPhase(p: Phase): boolean {
  return p === 'Succeeded' || p === 'Failed';
}



const sleep = (ms: number): Promise<void> => new Promise((res) => setTimeout(res, ms));
