/**
 * Write-ahead journal of every env on this host (DESIGN "On the node").
 *
 * Each host resource (cgroup directory, netns, mount, runc container, conmon
 * process, uid range, …) is recorded as `intended` *before* it is created, then
 * `created`, then `removed`. A runtime that restarts — or the GC pass — reads the
 * journals and knows exactly what may exist on the host for every env, including
 * half-made ones whose creator died between two steps.
 *
 * On disk: `<state-dir>/envs/<id>/journal.json`, one JSON document per env
 * (format {@link EnvRecord}, `version: 1`), replaced atomically on every change:
 * write a temp file in the same directory, fdatasync it, rename over the old one,
 * fsync the directory. A reader therefore sees either the old or the new record,
 * never a torn one. A directory under `envs/` without a readable journal is
 * reported by {@link Journal.list} as `incomplete`, never silently skipped.
 *
 * Concurrency: one writer per env at a time (its supervisor, or whoever took
 * over after the supervisor died). Writes from this process are serialised per
 * env; other processes talk to the writer through separate request files
 * (e.g. the stop request), never by writing the journal.
 *
 * Processes: every process a record names (creator, conmon, container init,
 * supervisor) is stored as a {@link ProcessId}, pid plus start time, in
 * `processes`; liveness is always judged by that pair. `pids` keeps the same
 * pids bare, as version 1 always had them, so older runtimes and tools that
 * read `pids` keep working; nothing here decides anything by it. The change is
 * additive, so the format stays `version: 1`. A record whose `pids` entry has
 * no matching `processes` entry (written, or rewritten since, by a runtime that
 * did not record start times) is upgraded when read, conservatively: the pid
 * is taken to name the process holding it now if that process started no later
 * than the record's last write (`updatedAt`), and a process that is gone or
 * started after that write is recorded as gone (start time -1, matching no
 * process). So a pid reused after the last write is judged dead, and a live
 * process the record may name is never judged dead. The next write persists
 * the upgraded identities, so later writes cannot move that bound.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, fdatasync, fsync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import type { Phase } from '../src/api/constants.js';
import { assertEnvId, envPaths, isEnvId } from './names.js';
import { isFinished, JOURNAL_VERSION, markCreated, markRemoved, outstanding, pidsOf, upgradeProcesses, type EnvRecord, type NewEnvRecord, type ResourceRef } from './env-record.js';

// The record's format and its pure helpers live in env-record.ts; the journal's users import them from here too.
export * from './env-record.js';

/** A journal that exists but cannot be read or parsed. */
export class JournalCorruptError extends Error {
  constructor(
    readonly file: string,
    cause: unknown,
  ) {
    super(`journal ${file} is unreadable: ${cause instanceof Error ? cause.message : String(cause)}`, { cause });
    this.name = 'JournalCorruptError';
  }
}

/** What {@link Journal.list} found under `envs/`. */
export interface JournalListing {
  readonly records: EnvRecord[];
  /** Directories whose journal is missing (crash between mkdir and first write) or unreadable. */
  readonly incomplete: { id: string; dir: string; error: string }[];
}

function now(): string {
  return new Date().toISOString();
}

/**
 * Write `data` to `file` atomically: temp file, fdatasync, rename, fsync the directory.
 * The metadata calls (open, write, close, rename) are synchronous: on a local file
 * system each is microseconds, where a thread-pool round trip costs a hundred or
 * more, and a create writes the journal twice on its critical path. The two
 * flushes, which wait for the disk, stay off the event loop.
 */
export async function atomicWrite(file: string, data: string): Promise<void> {
  const dir = path.dirname(file);
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeFileSync(fd, data, 'utf8');
    await flush(fd, true); // the data and the size: what a reader after a crash needs
  } catch (err) {
    closeSync(fd);
    rmSync(tmp, { force: true });
    throw err;
  }
  closeSync(fd);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  const dfd = openSync(dir, 'r');
  try {
    await flush(dfd, false);
  } finally {
    closeSync(dfd);
  }
}

/** fdatasync (data) or fsync (a directory) on the thread pool. */
function flush(fd: number, dataOnly: boolean): Promise<void> {
  return new Promise((resolve, reject) => (dataOnly ? fdatasync : fsync)(fd, (err) => (err ? reject(err) : resolve())));
}

/** The record in `file` from what reading it gave: undefined when there is none (ENOENT), else parsed or JournalCorruptError. */
function recordOf(file: string, got: string | NodeJS.ErrnoException): EnvRecord | undefined {
  if (typeof got !== 'string') {
    if (got.code === 'ENOENT') return undefined;
    throw new JournalCorruptError(file, got);
  }
  return parseRecord(file, got);
}

function parseRecord(file: string, text: string): EnvRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (err) {
    throw new JournalCorruptError(file, err);
  }
  const r = value as Partial<EnvRecord>;
  if (typeof r !== 'object' || r === null || typeof r.id !== 'string' || !Array.isArray(r.resources) || typeof r.version !== 'number') {
    throw new JournalCorruptError(file, new Error('not an env record'));
  }
  if (r.version > JOURNAL_VERSION) throw new JournalCorruptError(file, new Error(`version ${r.version} is newer than this runtime (${JOURNAL_VERSION})`));
  const record = value as EnvRecord;
  upgradeProcesses(record);
  return record;
}

/**
 * The journal of one state directory. All methods that change a record are
 * read-modify-write under a per-env lock held in this process.
 */
export class Journal {
  readonly stateDir: string;
  readonly envsDir: string;
  private readonly locks = new Map<string, Promise<unknown>>();
  /** What {@link liveNamed} needs of each record, keyed by env id, with the file's identity when read. */
  private readonly summaries = new Map<string, { key: string; name: string; phase: Phase; finished: boolean }>();

  constructor(stateDir: string) {
    this.stateDir = path.resolve(stateDir);
    this.envsDir = path.join(this.stateDir, 'envs');
  }

  /** Journal file of env `id`. */
  file(id: string): string {
    return envPaths(this.stateDir, id).journal;
  }

  /**
   * Start the record of a new env: creates `envs/<id>/` (failing if it exists,
   * so two runs can never share an id) and writes the first journal. This is
   * the first thing written for an env, before any host resource exists.
   */
  async begin(init: NewEnvRecord, intents: readonly ResourceRef[] = []): Promise<EnvRecord> {
    const id = assertEnvId(init.id);
    // EEXIST: id collision, refuse. o+x: runc resolves the rootfs as the env's mapped root. Synchronous, like
    // atomicWrite's metadata calls: this is on every create's critical path.
    try {
      mkdirSync(envPaths(this.stateDir, id).dir, { mode: 0o711 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      mkdirSync(this.envsDir, { recursive: true, mode: 0o711 }); // first env of this state dir
      mkdirSync(envPaths(this.stateDir, id).dir, { mode: 0o711 });
    }
    const t = now();
    const record: EnvRecord = {
      ...init,
      pids: pidsOf(init.processes),
      createdAt: init.createdAt ?? t,
      version: JOURNAL_VERSION,
      stateDir: this.stateDir,
      // everything create will make, journaled in the same write that creates the record
      resources: intents.map((ref) => ({ kind: ref.kind, hostId: ref.hostId, state: 'intended' as const, intendedAt: t, ...(ref.detail ? { detail: ref.detail } : {}) })),
      seq: 1,
      updatedAt: t,
    };
    await atomicWrite(this.file(id), JSON.stringify(record));
    return record;
  }

  /** Read one record; undefined when the env has no journal; JournalCorruptError when unreadable. */
  async read(id: string): Promise<EnvRecord | undefined> {
    const file = this.file(id);
    return recordOf(file, await readFile(file, 'utf8').catch((err: unknown) => err as NodeJS.ErrnoException));
  }

  /**
   * The unfinished env named `name` in this state dir, if any (preflight's name
   * check). One readdir and a stat per env; a record is read and parsed only
   * when its file changed since this process last looked. Every write replaces
   * the file (a new inode), so inode, size and mtime tell a change. A record
   * that cannot be read is skipped, as {@link list} reports it apart.
   */
  liveNamed(name: string): { id: string; phase: Phase } | undefined {
    let ids: string[];
    try {
      ids = readdirSync(this.envsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    const present = new Set<string>();
    let found: { id: string; phase: Phase } | undefined;
    for (const id of ids) {
      if (!isEnvId(id)) continue;
      present.add(id);
      const st = statSync(this.file(id), { bigint: true, throwIfNoEntry: false });
      if (!st) continue;
      const key = `${st.ino}:${st.size}:${st.mtimeNs}`;
      let s = this.summaries.get(id);
      if (s?.key !== key) {
        let r: EnvRecord | undefined;
        try {
          r = this.readNow(id);
        } catch {
          r = undefined;
        }
        if (!r) {
          this.summaries.delete(id);
          continue;
        }
        s = { key, name: r.name, phase: r.phase, finished: isFinished(r) };
        this.summaries.set(id, s);
      }
      if (!found && s.name === name && !s.finished) found = { id, phase: s.phase };
    }
    for (const id of this.summaries.keys()) if (!present.has(id)) this.summaries.delete(id);
    return found;
  }

  /** {@link read}, synchronously: for read-modify-write, where a thread-pool hop costs more than the read. */
  private readNow(id: string): EnvRecord | undefined {
    const file = this.file(id);
    let got: string | NodeJS.ErrnoException;
    try {
      got = readFileSync(file, 'utf8');
    } catch (err) {
      got = err as NodeJS.ErrnoException;
    }
    return recordOf(file, got);
  }

  /** Every record in the state dir, plus directories without a readable journal. */
  async list(): Promise<JournalListing> {
    let names: string[];
    try {
      names = await readdir(this.envsDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { records: [], incomplete: [] };
      throw err;
    }
    const records: EnvRecord[] = [];
    const incomplete: JournalListing['incomplete'] = [];
    for (const id of names.sort()) {
      if (!isEnvId(id)) continue; // not ours (temp files, stray names)
      const dir = path.join(this.envsDir, id);
      try {
        const r = await this.read(id);
        if (r) records.push(r);
        else incomplete.push({ id, dir, error: 'no journal.json' });
      } catch (err) {
        incomplete.push({ id, dir, error: (err as Error).message });
      }
    }
    return { records, incomplete };
  }

  /** Apply `mutate` to the current record and write it atomically; returns the new record. */
  async update(id: string, mutate: (r: EnvRecord) => void): Promise<EnvRecord> {
    return this.locked(id, async () => {
      const r = this.readNow(id);
      if (!r) throw new Error(`journal: env ${id} has no journal in ${this.stateDir}`);
      mutate(r);
      r.seq += 1;
      r.updatedAt = now();
      await atomicWrite(this.file(id), JSON.stringify(r));
      return r;
    });
  }

  /** Record that resources are about to be created. Call before creating them (one atomic write). */
  async intend(id: string, refs: readonly ResourceRef[]): Promise<void> {
    if (!refs.length) return;
    await this.update(id, (r) => {
      const t = now();
      for (const ref of refs) {
        const e = r.resources.find((x) => x.kind === ref.kind && x.hostId === ref.hostId);
        if (e) {
          e.state = 'intended';
          e.intendedAt = t;
          delete e.removedAt;
          if (ref.detail) e.detail = { ...e.detail, ...ref.detail };
        } else {
          r.resources.push({ kind: ref.kind, hostId: ref.hostId, state: 'intended', intendedAt: t, ...(ref.detail ? { detail: ref.detail } : {}) });
        }
      }
    });
  }

  /** Record that resources now exist. `madeByUs: false`: it already existed (e.g. a shared cgroup parent). */
  async created(id: string, refs: readonly ResourceRef[]): Promise<void> {
    if (!refs.length) return;
    await this.update(id, (r) => markCreated(r, refs, now()));
  }

  /** Record that resources are gone from the host (verified, or they never came to exist). */
  async removed(id: string, refs: readonly ResourceRef[]): Promise<void> {
    if (!refs.length) return;
    await this.update(id, (r) => markRemoved(r, refs, now()));
  }

  /** Delete an env's directory (journal, logs, bundle). Refuses while resources are outstanding. */
  async forget(id: string, opts: { force?: boolean } = {}): Promise<void> {
    await this.locked(id, async () => {
      const r = await this.read(id).catch(() => undefined);
      if (r && !opts.force && outstanding(r).length > 0) {
        throw new Error(`journal: env ${id} still has ${outstanding(r).length} host resource(s); tear it down first`);
      }
      // a dozen small files and three dirs: synchronous, like the journal's other small-file calls (about
      // 0.6-0.8 ms of CPU per env dir against 1.6-2.3 ms for the promise version's thread-pool round trips on the dev VM)
      rmSync(envPaths(this.stateDir, id).dir, { recursive: true, force: true });
    });
  }

  private async locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.locks.get(id) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.locks.set(id, tail);
    try {
      return await next;
    } finally {
      if (this.locks.get(id) === tail) this.locks.delete(id);
    }
  }
}
