/**
 * Pure parsers for the kernel's text interfaces the node side reads:
 * /proc/<pid>/mountinfo, flat-keyed cgroup files (cgroup.events, memory.events,
 * cpu.stat, pids.* …), /proc/<pid>/net/dev and /proc/<pid>/stat (with the
 * process identity, pid plus start time, built from it). Tested against fixture strings;
 * the I/O lives in node-agent/.
 */

/** One line of /proc/<pid>/mountinfo. */
export interface MountEntry {
  readonly id: number;
  readonly parentId: number;
  readonly majorMinor: string;
  /** Path inside the source filesystem; ends in `//deleted` when the source is gone. */
  readonly root: string;
  readonly mountPoint: string;
  readonly options: string;
  readonly optionalFields: string[];
  readonly fsType: string;
  readonly source: string;
  readonly superOptions: string;
}

/** Undo the kernel's octal escaping of space, tab, newline and backslash (`\040`). */
export function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Parse mountinfo text; malformed lines are skipped rather than fatal. */
export function parseMountinfo(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    if (left.length < 6 || right.length < 2) continue;
    const [id, parentId, majorMinor, root, mountPoint, options, ...optionalFields] = left as [string, string, string, string, string, string, ...string[]];
    out.push({
      id: Number(id),
      parentId: Number(parentId),
      majorMinor,
      root: unescapeMountField(root),
      mountPoint: unescapeMountField(mountPoint),
      options,
      optionalFields,
      fsType: right[0] ?? '',
      source: unescapeMountField(right[1] ?? ''),
      superOptions: right[2] ?? '',
    });
  }
  return out;
}

/** Parse "key value" lines (cgroup.events, memory.events, cpu.stat, memory.stat) into numbers. */
export function parseFlatKeyed(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+(-?\d+)\s*$/.exec(line);
    if (m) out[m[1]!] = Number(m[2]);
  }
  return out;
}

/** Per-interface byte and packet counters from /proc/<pid>/net/dev. */
export interface NetDevCounters {
  readonly rxBytes: number;
  readonly rxPackets: number;
  readonly txBytes: number;
  readonly txPackets: number;
}

/** Parse /proc/<pid>/net/dev (two header lines, then `iface: rx… tx…`). */
export function parseNetDev(text: string): Record<string, NetDevCounters> {
  const out: Record<string, NetDevCounters> = {};
  for (const line of text.split('\n').slice(2)) {
    const m = /^\s*([^:\s]+):\s*(.*)$/.exec(line);
    if (!m) continue;
    const f = m[2]!.trim().split(/\s+/).map(Number);
    if (f.length < 16) continue;
    out[m[1]!] = { rxBytes: f[0]!, rxPackets: f[1]!, txBytes: f[8]!, txPackets: f[9]! };
  }
  return out;
}

/** The inode in a namespace link target such as `net:[4026531840]`. */
export function nsInode(linkTarget: string): number | undefined {
  const m = /^\w+:\[(\d+)\]$/.exec(linkTarget);
  return m ? Number(m[1]) : undefined;
}

/** Process state letter from /proc/<pid>/stat (handles `)` inside the command name). */
export function procState(statText: string): string | undefined {
  const close = statText.lastIndexOf(')');
  if (close < 0) return undefined;
  return statText.slice(close + 2, close + 3) || undefined;
}

/** The start time (field 22, clock ticks) and parent pid (field 4) of a /proc/PID/stat line: with the pid, the start time names one process. */
export function parseProcStat(text: string): { state: string; ppid: number; startTicks: number } | undefined {
  const close = text.lastIndexOf(')');
  if (close < 0) return undefined;
  const f = text.slice(close + 2).split(' ');
  // f[0] is field 3 (state); field N is f[N - 3]
  const ppid = Number(f[1]);
  const startTicks = Number(f[19]);
  if (!f[0] || !Number.isFinite(ppid) || !Number.isFinite(startTicks)) return undefined;
  return { state: f[0], ppid, startTicks };
}

/**
 * One process, told apart from every other process this boot: its pid plus its
 * start time (/proc/PID/stat field 22, clock ticks since boot). A pid alone is
 * recycled by the kernel and a name is shared by many processes; the pair is
 * what every liveness decision of the node runtime compares.
 */
export interface ProcessId {
  readonly pid: number;
  /**
   * Start time in clock ticks since boot; {@link GONE_START_TICKS} when the
   * process was already gone when it was recorded (it then matches no process).
   */
  readonly startTicks: number;
}

/**
 * The start time of a process that was gone before its start time could be
 * read (a pid from a journal written without start times, a pid file whose
 * process had exited): no process has it, so such an identity is never alive.
 */
export const GONE_START_TICKS = -1;

/** The identity of process `pid` from the text of its /proc/PID/stat; undefined for unparsable text. */
export function identityFromStat(pid: number, statText: string): ProcessId | undefined {
  const st = parseProcStat(statText);
  return st ? { pid, startTicks: st.startTicks } : undefined;
}

/**
 * True when `statText` (the current /proc/PID/stat of `id.pid`, '' when there
 * is none) shows the process `id` names still running: same start time (a pid
 * the kernel handed to a newer process is another process) and neither a
 * zombie nor dead (it has exited; only its parent's wait is missing).
 */
export function sameProcessInStat(id: ProcessId, statText: string): boolean {
  const st = parseProcStat(statText);
  return st !== undefined && st.startTicks === id.startTicks && st.state !== 'Z' && st.state !== 'X';
}

/** True when two identities name the same process. */
export function sameProcessId(a: ProcessId | undefined, b: ProcessId | undefined): boolean {
  return a !== undefined && b !== undefined && a.pid === b.pid && a.startTicks === b.startTicks;
}
