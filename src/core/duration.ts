/**
 * Durations as operators write them on command lines and in Helm values: the
 * Go `time.ParseDuration` grammar (`15s`, `1m30s`, `500ms`, `2h`), so flags read
 * the same as kube-controller-manager's. Everything inside the controller is
 * milliseconds.
 */

const UNIT_MS: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const DURATION_RE = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:ns|us|µs|ms|s|m|h)/;

/** Parses a Go-style duration into milliseconds; undefined when `input` is not one. */
export function parseDuration(input: string): number | undefined {
  const s = input.trim();
  if (s === '0') return 0;
  if (s === '') return undefined;
  let rest = s;
  let total = 0;
  while (rest.length > 0) {
    const m = DURATION_RE.exec(rest);
    if (!m) return undefined;
    const token = m[0];
    const unit = /(ns|us|µs|ms|s|m|h)$/.exec(token)?.[1] ?? '';
    const value = Number(token.slice(0, token.length - unit.length));
    total += value * (UNIT_MS[unit] ?? NaN);
    rest = rest.slice(token.length);
  }
  return Number.isFinite(total) ? total : undefined;
}

/** Formats milliseconds the way parseDuration reads them back (`1m30s`, `250ms`). */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  const parts: string[] = [];
  let rest = Math.round(ms);
  const h = Math.floor(rest / 3_600_000);
  rest -= h * 3_600_000;
  const m = Math.floor(rest / 60_000);
  rest -= m * 60_000;
  const s = rest / 1000;
  if (h) parts.push(`${h}h`);
  if (m) parts.push(`${m}m`);
  if (s) parts.push(`${Number.isInteger(s) ? s : s.toFixed(3).replace(/0+$/, '')}s`);
  return parts.join('');
}
