/**
 * Host uid/gid ranges for user namespaces, one per env and never overlapping:
 * slot N is [base + N*65536, +65536). A slot is reserved by creating the file
 * `<dir>/<start>` with O_EXCL — atomic across processes and state dirs — and
 * released by unlinking it once the env's processes are gone.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { readdir, readFile, unlink } from 'node:fs/promises';
import path from 'node:path';

/** First host id handed out; far above the usual /etc/subuid ranges (100000 + 65536·users). */
export const ID_BASE = 1_000_000_000;
/** Ids per slot (the most an env can map). */
export const SLOT_SIZE = 65536;
/** Upper bound on slots, so ids stay below 2^32 - 1. */
export const MAX_SLOTS = 40_000;

/** A reserved range. */
export interface IdReservation {
  readonly start: number;
  readonly size: number;
  /** The reservation file; removing it releases the range. */
  readonly file: string;
}

/** Start of slot `n`. */
export function slotStart(n: number): number {
  return ID_BASE + n * SLOT_SIZE;
}

const nextHint = new Map<string, number>();

/**
 * Reserve a free slot for `owner` (written into the file for the GC pass).
 * Synchronous: a few calls (one O_EXCL create, usually), cheaper than thread-pool round trips.
 */
export function reserveIdRange(dir: string, owner: string, size: number): IdReservation {
  if (size < 1 || size > SLOT_SIZE) throw new Error(`idmap: size ${size} out of range 1..${SLOT_SIZE}`);
  let madeDir = false;
  // start after the slot this process took last (wrapping), so a host with many envs is not scanned from 0 each time
  const first = nextHint.get(dir) ?? 0;
  for (let i = 0; i < MAX_SLOTS; i++) {
    const n = (first + i) % MAX_SLOTS;
    const start = slotStart(n);
    const file = path.join(dir, String(start));
    try {
      writeFileSync(file, `${owner}\n`, { flag: 'wx', mode: 0o600 });
      nextHint.set(dir, (n + 1) % MAX_SLOTS);
      return { start, size, file };
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' && !madeDir) {
        madeDir = true;
        // the directory is made on first use (checking it every time costs a syscall per env)
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        i--;
        continue;
      }
      if (code !== 'EEXIST') throw err;
    }
  }
  throw new Error(`idmap: all ${MAX_SLOTS} id ranges in ${dir} are reserved`);
}

/** Release a reservation; a missing file is already released. */
export async function releaseIdRange(file: string): Promise<void> {
  try {
    await unlink(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** The owner written into a reservation file, or undefined when it is free. */
export async function reservationOwner(file: string): Promise<string | undefined> {
  try {
    return (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
}

/**
 * Reservation files in `dir` whose owner line is exactly `owner`: how a
 * teardown finds a range whose file name never reached the journal (its
 * creator died between reserving and recording it).
 */
export async function reservationsOwnedBy(dir: string, owner: string): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return [];
  }
  const found: string[] = [];
  for (const n of names) {
    const file = path.join(dir, n);
    if ((await reservationOwner(file)) === owner) found.push(file);
  }
  return found;
}
