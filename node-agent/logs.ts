/**
 * Following the workload log that conmon writes (CRI format). conmon truncates
 * the file when it reaches --log-size-max, so a shrinking file restarts the
 * read from the beginning instead of waiting forever at a stale offset.
 */
import { open, stat } from 'node:fs/promises';
import { parseCriLog, type LogLine } from './conmon.js';

/** Follows one log file; call {@link LogFollower.poll} repeatedly. */
export class LogFollower {
  private offset = 0;
  private partial = '';

  constructor(
    readonly file: string,
    private readonly onLine: (l: LogLine) => void,
  ) {}

  /** Read whatever was appended since the last call and emit complete lines. */
  async poll(): Promise<void> {
    const st = await stat(this.file).catch(() => undefined);
    if (!st) return;
    if (st.size < this.offset) {
      this.offset = 0; // truncated by the size cap
      this.partial = '';
    }
    if (st.size === this.offset) return;
    const fh = await open(this.file, 'r');
    try {
      const len = st.size - this.offset;
      const buf = Buffer.alloc(len);
      const { bytesRead } = await fh.read(buf, 0, len, this.offset);
      this.offset += bytesRead;
      const text = this.partial + buf.subarray(0, bytesRead).toString('utf8');
      const cut = text.lastIndexOf('\n');
      this.partial = cut < 0 ? text : text.slice(cut + 1);
      if (cut >= 0) for (const l of parseCriLog(text.slice(0, cut + 1))) this.onLine(l);
    } finally {
      await fh.close();
    }
  }
}

/** Poll `follower` every `intervalMs` until `done()` is true, then drain once more. */
export async function followUntil(follower: LogFollower, done: () => Promise<boolean> | boolean, intervalMs = 100): Promise<void> {
  for (;;) {
    const finished = await done();
    await follower.poll();
    if (finished) return;
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
