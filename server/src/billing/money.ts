/**
 * Money as integers of micro-units (a millionth of the currency: 1 USD = 1,000,000), the
 * unit of every balance, price and journal posting (see migrations/0010_money.sql for why
 * cents are too coarse). JS numbers hold them exactly up to 2^53, nine billion of the
 * currency; the database layer refuses anything beyond rather than round it.
 */

export const MICRO_PER_UNIT = 1_000_000;
/** Stripe's amounts are minor units (cents for USD): 10,000 micro-units each. */
export const MICRO_PER_MINOR = 10_000;
/**
 * Currencies whose Stripe amounts are whole units (no minor unit): for them one Stripe
 * amount is 1,000,000 micro-units, not 10,000 (https://docs.stripe.com/currencies).
 */
const ZERO_DECIMAL_CURRENCIES = new Set([
  'bif',
  'clp',
  'djf',
  'gnf',
  'jpy',
  'kmf',
  'krw',
  'mga',
  'pyg',
  'rwf',
  'ugx',
  'vnd',
  'vuv',
  'xaf',
  'xof',
  'xpf',
]);

/**
 * Currencies whose Stripe amounts are thousandths (https://docs.stripe.com/currencies):
 * one Stripe amount is 1,000 micro-units, and Stripe takes only multiples of ten of them,
 * so what is charged or transferred moves in hundredths there too.
 */
const THREE_DECIMAL_CURRENCIES = new Set(['bhd', 'jod', 'kwd', 'omr', 'tnd']);

/** Micro-units in one of Stripe's amount units of `currency` (its minor unit, or its unit). */
export function microPerStripeUnit(currency: string): number {
  const code = currency.toLowerCase();
  if (ZERO_DECIMAL_CURRENCIES.has(code)) return MICRO_PER_UNIT;
  return THREE_DECIMAL_CURRENCIES.has(code) ? 1_000 : MICRO_PER_MINOR;
}

/**
 * The smallest step, in micro-units, of an amount Stripe charges or transfers in
 * `currency`: a whole unit where there is no minor unit, a hundredth everywhere else.
 */
export function stripeAmountStep(currency: string): number {
  return ZERO_DECIMAL_CURRENCIES.has(currency.toLowerCase()) ? MICRO_PER_UNIT : MICRO_PER_MINOR;
}

/** Prices are per GB of 10^9 bytes, as every proxy seller quotes them. */
export const BYTES_PER_GB = 1_000_000_000;

const DECIMAL = /^(-)?(\d{1,10})(?:\.(\d{1,6}))?$/;

/** `"4"`, `"4.5"`, `"0.000001"` → micro-units; null for anything else (no exponents, at most six decimals). */
export function parseMoney(text: string): number | null {
  const match = DECIMAL.exec(text.trim());
  if (!match) return null;
  const [, sign, whole, fraction = ''] = match;
  const micro = Number(whole) * MICRO_PER_UNIT + Number(fraction.padEnd(6, '0'));
  return sign ? -micro : micro;
}

/** Micro-units as a decimal with at least two places: 4000000 → "4.00", 1250 → "0.00125". */
export function formatMoney(micro: number): string {
  const sign = micro < 0 ? '-' : '';
  const absolute = Math.abs(micro);
  const whole = Math.floor(absolute / MICRO_PER_UNIT);
  const fraction = String(absolute % MICRO_PER_UNIT)
    .padStart(6, '0')
    .replace(/0{1,4}$/, (zeros) => zeros.slice(0, Math.max(0, zeros.length - 4)));
  return `${sign}${whole}.${fraction.length < 2 ? fraction.padEnd(2, '0') : fraction}`;
}

/** What `bytes` cost at `microPerGb`, rounded down as every charge is (the customer's favour). */
export function costOf(bytes: number, microPerGb: number): number {
  return Number((BigInt(bytes) * BigInt(microPerGb)) / BigInt(BYTES_PER_GB));
}

/** How many bytes `micro` buys at `microPerGb` (all of them when the price is zero). */
export function bytesFor(micro: number, microPerGb: number): number {
  if (micro <= 0) return 0;
  if (microPerGb <= 0) return Number.MAX_SAFE_INTEGER;
  const bytes = (BigInt(micro) * BigInt(BYTES_PER_GB)) / BigInt(microPerGb);
  return bytes > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(bytes);
}
