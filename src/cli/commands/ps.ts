/** `denv ps`: the envs of a state dir, live and recently finished (until their TTL expires). */
import { parseArgs } from 'node:util';
import { age, expireFinished, openRuntime, recordJson, RUNTIME_FLAGS, RUNTIME_FLAGS_HELP, parseOrUsage } from '../../../node-agent/cli.js';
import type { Command } from '../main.js';
import { UsageError } from '../main.js';

export const command: Command = {
  summary: 'list envs on this host (phase, reason, exit code, age)',
  async run(argv: string[]): Promise<number> {
    const { values } = parseOrUsage(() => parseArgs({ args: argv, options: { ...RUNTIME_FLAGS }, strict: true }), (m) => new UsageError(m));
    if (values.help) {
      console.log(`usage: denv ps [flags]\n${RUNTIME_FLAGS_HELP}`);
      return 0;
    }
    const rt = await openRuntime(values);
    const now = Date.now();
    await expireFinished(rt.journal, now).catch(() => undefined);
    const { records, incomplete } = await rt.journal.list();
    records.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    if (values.json) {
      console.log(JSON.stringify({ envs: records.map(recordJson), incomplete }, null, 2));
      return 0;
    }
    const rows = [['NAME', 'ID', 'CLASS', 'PHASE', 'REASON', 'EXIT', 'AGE']];
    for (const r of records) rows.push([r.name, r.id, r.class, r.phase, r.reason ?? '', r.exitCode === undefined ? '' : String(r.exitCode), age(r.createdAt, now)]);
    const widths = rows[0]!.map((_c, i) => Math.max(...rows.map((row) => (row[i] ?? '').length)));
    for (const row of rows) console.log(row.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd());
    for (const x of incomplete) console.log(`(incomplete: ${x.id}: ${x.error})`);
    return 0;
  },
};
