/**
 * The shape every benchmark returns, and the printing shared by all of them.
 * Each row is a measured figure; where a baseline was measured in the same run
 * the row carries the ratio, and where the issue sets a target, whether it met it.
 */
export interface BenchRow {
  /** What was measured, e.g. "create→running p50". */
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same figure for the baseline measured in this run, if any. */
  readonly baseline?: { readonly name: string; readonly value: number };
  /** value / baseline.value. */
  readonly ratio?: number;
  /** Human-readable target, e.g. "≤ 1.3× bare runc". */
  readonly target?: string;
  readonly pass?: boolean;
}

export interface BenchTable {
  readonly title: string;
  readonly rows: BenchRow[];
  /** Free-form facts about the run (iterations, host, versions). */
  readonly meta?: Record<string, unknown>;
}

/** A row with its ratio computed from the baseline. */
export function row(r: Omit<BenchRow, 'ratio'>): BenchRow {
  const ratio = r.baseline && r.baseline.value !== 0 ? r.value / r.baseline.value : undefined;
  return ratio === undefined ? r : { ...r, ratio };
}

/** Percentile (0–100) of a sample, nearest-rank. */
export function percentile(values: readonly number[], p: number): number {
  if (!values.length) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank]!;
}

function fmt(n: number): string {
  if (!Number.isFinite(n)) return String(n);
  if (Math.abs(n) >= 100) return n.toFixed(0);
  if (Math.abs(n) >= 1) return n.toFixed(2);
  return n.toPrecision(3);
}

/** Render a table as Markdown, the form pasted into README and issue notes. */
export function renderTable(t: BenchTable): string {
  const lines = [`### ${t.title}`, '', '| figure | value | baseline (same run) | ratio | target | met |', '|---|---|---|---|---|---|'];
  for (const r of t.rows) {
    const base = r.baseline ? `${r.baseline.name}: ${fmt(r.baseline.value)} ${r.unit}` : '';
    const ratio = r.ratio !== undefined ? `${fmt(r.ratio)}×` : '';
    const met = r.pass === undefined ? '' : r.pass ? 'yes' : 'NO';
    lines.push(`| ${r.name} | ${fmt(r.value)} ${r.unit} | ${base} | ${ratio} | ${r.target ?? ''} | ${met} |`);
  }
  return lines.join('\n');
}
