import fc from 'fast-check';
import {
  QuantityError,
  compareQuantities,
  formatBytes,
  isQuantity,
  parseQuantity,
  toBytes,
  toMillicores,
} from '../../src/core/quantity.js';

describe('toBytes', () => {
  it.each([
    ['1Gi', 1073741824n],
    ['800Mi', 838860800n],
    ['512Ki', 524288n],
    ['1.5Gi', 1610612736n],
    ['1G', 1000000000n],
    ['1k', 1000n],
    ['1e3', 1000n],
    ['1.5e3', 1500n],
    ['+2Mi', 2097152n],
    ['0', 0n],
    ['.5Ki', 512n],
    ['100', 100n],
    [4096, 4096n],
    ['500m', 1n], // 0.5 byte rounds up to a whole byte
    ['1n', 1n],
  ])('%s → %s', (q, want) => {
    expect(toBytes(q)).toBe(want);
  });
});

describe('toMillicores', () => {
  it.each([
    ['500m', 500n],
    ['1.5', 1500n],
    ['1', 1000n],
    [2, 2000n],
    ['0.2', 200n],
    ['100u', 1n], // 0.1 millicore rounds up
    ['250m', 250n],
    ['2e-1', 200n],
  ])('%s → %s', (q, want) => {
    expect(toMillicores(q)).toBe(want);
  });
});

describe('parseQuantity rejects', () => {
  it.each(['-1Gi', '1GB', 'abc', '', ' 1Gi', '1Gi ', '1.2.3', '1 Gi', 'Gi', '1ki', '--1', '1e400', -5, 1.5, NaN])(
    '%p',
    (q) => {
      expect(() => parseQuantity(q)).toThrow(QuantityError);
    },
  );
  it('names the input and the rule', () => {
    expect(() => parseQuantity('-1Gi')).toThrow('invalid quantity "-1Gi": must not be negative');
  });
});

describe('properties', () => {
  const suffixes = ['Ki', 'Mi', 'Gi', 'Ti'] as const;
  const pow = { Ki: 10n, Mi: 20n, Gi: 30n, Ti: 40n };

  it('binary suffixes are exact multiples of 1024', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1_000_000 }), fc.constantFrom(...suffixes), (n, s) => {
        expect(toBytes(`${n}${s}`)).toBe(BigInt(n) * 2n ** pow[s]);
      }),
    );
  });

  it('formatBytes round-trips through toBytes', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 2n ** 62n }), (b) => {
        const text = formatBytes(b);
        expect(isQuantity(text)).toBe(true);
        expect(toBytes(text)).toBe(b);
      }),
    );
  });

  it('millicores round-trip: `${m}m` parses back to m', () => {
    fc.assert(
      fc.property(fc.nat({ max: 10_000_000 }), (m) => {
        expect(toMillicores(`${m}m`)).toBe(BigInt(m));
      }),
    );
  });

  it('decimal cores and millicores agree', () => {
    fc.assert(
      fc.property(fc.nat({ max: 1000 }), fc.nat({ max: 999 }), (whole, frac) => {
        const decimal = `${whole}.${String(frac).padStart(3, '0')}`;
        expect(toMillicores(decimal)).toBe(BigInt(whole * 1000 + frac));
      }),
    );
  });

  it('rounding is upward and bounded by one unit', () => {
    fc.assert(
      fc.property(fc.nat({ max: 10 ** 9 }), fc.integer({ min: 1, max: 6 }), (n, digits) => {
        const q = `${n}e-${digits}`; // n / 10^digits bytes
        const bytes = toBytes(q);
        const exact = BigInt(n);
        const den = 10n ** BigInt(digits);
        expect(bytes * den >= exact).toBe(true);
        expect((bytes - 1n) * den < exact || bytes === 0n).toBe(true);
      }),
    );
  });

  it('compareQuantities is consistent with bytes', () => {
    fc.assert(
      fc.property(fc.nat({ max: 4096 }), fc.nat({ max: 4096 }), fc.constantFrom(...suffixes), (a, b, s) => {
        const c = compareQuantities(`${a}${s}`, `${b}${s}`);
        expect(Math.sign(c)).toBe(Math.sign(a - b));
      }),
    );
  });

  it('any string matching the grammar without a sign parses; never throws anything but QuantityError', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 12 }), (s) => {
        try {
          const r = parseQuantity(s);
          expect(r.num >= 0n).toBe(true);
          expect(r.den > 0n).toBe(true);
        } catch (e) {
          expect(e).toBeInstanceOf(QuantityError);
        }
      }),
    );
  });
});
