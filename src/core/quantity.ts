/**
 * Kubernetes resource quantities, parsed exactly.
 *
 * `@kubernetes/client-node` ships `quantityToScalar`, but it rejects fractional
 * binary quantities (`1.5Gi` throws), accepts negatives, has no exponent form
 * (`1e3`) and returns floats for milli values. Limits written to cgroup files
 * must be exact integers rounded in a known direction, so this module parses the
 * full Kubernetes grammar into an exact rational (BigInt numerator / 10^scale)
 * and rounds once, at the end. See docs/decisions.md.
 */

/** The Kubernetes quantity grammar (apimachinery resource.Quantity), unsigned or signed. */
export const QUANTITY_PATTERN =
  '^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$';

/** The same grammar without a minus sign: what every limit in the API accepts. */
export const NONNEGATIVE_QUANTITY_PATTERN = QUANTITY_PATTERN.replace('^(\\+|-)?', '^\\+?');

const QUANTITY_RE = new RegExp(QUANTITY_PATTERN);

const BINARY_SUFFIX: Record<string, number> = { Ki: 10, Mi: 20, Gi: 30, Ti: 40, Pi: 50, Ei: 60 };
const DECIMAL_SUFFIX: Record<string, number> = { n: -9, u: -6, m: -3, '': 0, k: 3, M: 6, G: 9, T: 12, P: 15, E: 18 };

/** Largest exponent we accept; beyond it no cgroup value can be meaningful. */
const MAX_EXPONENT = 30;

/** An exact non-negative rational: `num / den`. */
export interface Rational {
  readonly num: bigint;
  readonly den: bigint;
}

/** Raised for any string that is not a valid, non-negative Kubernetes quantity. */
export class QuantityError extends Error {
  constructor(
    readonly input: string,
    readonly why: string,
  ) {
    super(`invalid quantity "${input}": ${why}`);
    this.name = 'QuantityError';
  }
}

/** True when `s` matches the Kubernetes quantity grammar (sign allowed). */
export function isQuantity(s: string): boolean {
  return QUANTITY_RE.test(s);
}

function parseDecimal(digits: string): Rational {
  const [whole = '', frac = ''] = digits.split('.');
  const num = BigInt((whole || '0') + frac);
  return { num, den: 10n ** BigInt(frac.length) };
}

/**
 * Parse a quantity (string or integer) into an exact rational. Negative values are
 * rejected: no resource limit in this project can be negative.
 */
export function parseQuantity(input: string | number): Rational {
  if (typeof input === 'number') {
    if (!Number.isSafeInteger(input) || input < 0) {
      throw new QuantityError(String(input), 'must be a non-negative integer or a quantity string');
    }
    return { num: BigInt(input), den: 1n };
  }
  const s = input.trim();
  if (s !== input || !QUANTITY_RE.test(s)) {
    throw new QuantityError(input, 'does not match the Kubernetes quantity format (e.g. 512Mi, 1Gi, 500m, 1.5)');
  }
  if (s.startsWith('-')) {
    throw new QuantityError(input, 'must not be negative');
  }
  const body = s.startsWith('+') ? s.slice(1) : s;
  const m = /^([0-9.]+)(.*)$/.exec(body);
  if (!m) throw new QuantityError(input, 'has no number');
  const value = parseDecimal(m[1] ?? '0');
  const suffix = m[2] ?? '';
  if (suffix in BINARY_SUFFIX) {
    return { num: value.num * 2n ** BigInt(BINARY_SUFFIX[suffix] ?? 0), den: value.den };
  }
  let exp: number;
  if (suffix in DECIMAL_SUFFIX) {
    exp = DECIMAL_SUFFIX[suffix] ?? 0;
  } else {
    // decimal exponent form: e3, E-2, e1.0 is not meaningful for us
    const e = Number(suffix.slice(1));
    if (!Number.isInteger(e)) throw new QuantityError(input, 'exponent must be an integer');
    exp = e;
  }
  if (Math.abs(exp) > MAX_EXPONENT) throw new QuantityError(input, 'exponent out of range');
  return exp >= 0
    ? { num: value.num * 10n ** BigInt(exp), den: value.den }
    : { num: value.num, den: value.den * 10n ** BigInt(-exp) };
}

function ceilDiv(a: bigint, b: bigint): bigint {
  return (a + b - 1n) / b;
}

/** Bytes for a memory or bandwidth quantity, rounded up to a whole byte. */
export function toBytes(q: string | number): bigint {
  const r = parseQuantity(q);
  return ceilDiv(r.num, r.den);
}

/** Millicores for a CPU quantity (`1.5` → 1500, `250m` → 250), rounded up. */
export function toMillicores(q: string | number): bigint {
  const r = parseQuantity(q);
  return ceilDiv(r.num * 1000n, r.den);
}

/** Compare two quantities exactly: negative, zero or positive like a comparator. */
export function compareQuantities(a: string | number, b: string | number): number {
  const x = parseQuantity(a);
  const y = parseQuantity(b);
  const l = x.num * y.den;
  const r = y.num * x.den;
  return l < r ? -1 : l > r ? 1 : 0;
}

/** Canonical short form for bytes: the largest binary suffix that divides exactly. */
export function formatBytes(bytes: bigint): string {
  if (bytes < 0n) throw new RangeError('bytes must be non-negative');
  const suffixes: [string, bigint][] = [
    ['Ei', 2n ** 60n],
    ['Pi', 2n ** 50n],
    ['Ti', 2n ** 40n],
    ['Gi', 2n ** 30n],
    ['Mi', 2n ** 20n],
    ['Ki', 2n ** 10n],
  ];
  for (const [suffix, unit] of suffixes) {
    if (bytes !== 0n && bytes % unit === 0n) return `${bytes / unit}${suffix}`;
  }
  return bytes.toString();
}
