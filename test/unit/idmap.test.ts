// uid/gid range reservations (node-agent/idmap.ts) in a temp dir: O_EXCL files,
// never two owners for one slot, released slots reused, the dir made on first use.
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ID_BASE, releaseIdRange, reservationsOwnedBy, reserveIdRange, SLOT_SIZE } from '../../node-agent/idmap.js';

describe('id ranges', () => {
  let root: string;
  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'denv-idmap-'));
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('makes the directory on first use and hands out distinct, non-overlapping slots', () => {
    const dir = path.join(root, 'idmap');
    const got = ['a', 'b', 'c', 'd'].map((o) => reserveIdRange(dir, `${o} /state`, SLOT_SIZE));
    const starts = got.map((g) => g.start).sort((x, y) => x - y);
    expect(new Set(starts).size).toBe(4);
    for (const s of starts) expect((s - ID_BASE) % SLOT_SIZE).toBe(0);
    expect(readdirSync(dir).sort()).toEqual(starts.map(String).sort());
    for (const g of got) expect(readFileSync(g.file, 'utf8')).toMatch(/^[abcd] \/state\n$/);
  });

  it('never takes a slot another owner holds, and reuses a released one', async () => {
    const dir = path.join(root, 'idmap');
    const held = Array.from({ length: 5 }, (_, i) => reserveIdRange(dir, `h${i} /s`, 1000));
    await releaseIdRange(held[2]!.file);
    expect(existsSync(held[2]!.file)).toBe(false);
    const seen = new Set(held.filter((_, i) => i !== 2).map((h) => h.start));
    const more = [];
    for (let i = 0; i < 3; i++) more.push(reserveIdRange(dir, `m${i} /s`, 1000));
    for (const m of more) expect(seen.has(m.start)).toBe(false);
    // the owners' files were never overwritten
    for (const [i, h] of held.entries()) if (i !== 2) expect(readFileSync(h.file, 'utf8')).toBe(`h${i} /s\n`);
    expect(await reservationsOwnedBy(dir, 'm1 /s')).toEqual([more[1]!.file]);
    await releaseIdRange(held[2]!.file); // releasing twice is fine
  });

  it('refuses a size outside 1..65536', () => {
    expect(() => reserveIdRange(path.join(root, 'x'), 'o', 0)).toThrow(/size 0 out of range/);
    expect(() => reserveIdRange(path.join(root, 'x'), 'o', SLOT_SIZE + 1)).toThrow(/out of range/);
  });
});
