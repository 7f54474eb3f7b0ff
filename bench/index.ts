/**
 * `npm run bench [-- node|controller ...]`: runs the benchmark parts, prints
 * each as a Markdown table and writes bench/results/<part>.json plus
 * bench/results/summary.md. Every figure is measured in this run, against a
 * baseline measured in this run too.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderTable, type BenchTable } from './table.js';

const here = dirname(fileURLToPath(import.meta.url));
const PARTS: Record<string, { file: string; fn: string }> = {
  node: { file: 'node.ts', fn: 'benchNode' },
  controller: { file: 'controller.ts', fn: 'benchController' },
  e2e: { file: 'e2e.ts', fn: 'benchE2e' },
};

async function main(): Promise<number> {
  const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  const unknown = wanted.filter((w) => !(w in PARTS));
  if (unknown.length) {
    console.error(`bench: unknown part(s) ${unknown.join(', ')}; known: ${Object.keys(PARTS).join(', ')}`);
    return 2;
  }
  const parts = wanted.length ? wanted : Object.keys(PARTS);
  const outDir = join(here, 'results');
  mkdirSync(outDir, { recursive: true });
  const rendered: string[] = [];
  let failed = 0;
  for (const name of parts) {
    const part = PARTS[name]!;
    const file = join(here, part.file);
    if (!existsSync(file)) {
      console.error(`bench: part ${name} is not built yet (${part.file} missing)`);
      failed++;
      continue;
    }
    console.error(`bench: running ${name} …`);
    const mod = (await import(`./${part.file.replace(/\.ts$/, '.js')}`)) as Record<string, (opts?: unknown) => Promise<BenchTable | BenchTable[]>>;
    const fn = mod[part.fn];
    if (!fn) throw new Error(`bench: ${part.file} does not export ${part.fn}`);
    const started = Date.now();
    const tables = [await fn({})].flat();
    for (const t of tables) {
      const text = renderTable(t);
      rendered.push(text);
      console.log(`${text}\n`);
      if (t.rows.some((r) => r.pass === false)) failed++;
    }
    writeFileSync(join(outDir, `${name}.json`), JSON.stringify({ part: name, seconds: (Date.now() - started) / 1000, tables }, null, 2));
  }
  writeFileSync(join(outDir, 'summary.md'), `${rendered.join('\n\n')}\n`);
  if (failed) console.error(`bench: ${failed} table(s) with a missed target or a missing part`);
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  },
);
