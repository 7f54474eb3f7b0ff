/**
 * `npm run gen:crds`: writes crds/*.yaml from the zod schemas. With `--check`
 * it writes nothing and exits 1 when the committed files differ.
 */
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderCrds } from './render.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const dir = join(root, 'crds');
const check = process.argv.includes('--check');
let stale = 0;
mkdirSync(dir, { recursive: true });
for (const [file, text] of Object.entries(renderCrds())) {
  const path = join(dir, file);
  let current = '';
  try {
    current = readFileSync(path, 'utf8');
  } catch {
    current = '';
  }
  if (current === text) continue;
  if (check) {
    console.error(`crds/${file} is out of date: run npm run gen:crds`);
    stale++;
  } else {
    writeFileSync(path, text);
    console.log(`wrote crds/${file}`);
  }
}
process.exitCode = stale ? 1 : 0;
