/**
 * Delivery signatures, Stripe's scheme: `IPCola-Signature: t=<unix seconds>,v1=<hex>`,
 * where the hex is HMAC-SHA256 under the endpoint's secret (the whole `whsec_...` text)
 * of `<t>.<raw body>`. The timestamp is signed with the body, so a captured delivery
 * cannot be replayed later than the receiver's tolerance; receivers compare in constant
 * time. verifyWebhookSignature is what a receiver in Node would write, exported for them
 * and the tests.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

export const SIGNATURE_HEADER = 'IPCola-Signature';

/** How far a receiver should let the signed timestamp be from its own clock. */
export const DEFAULT_TOLERANCE_SECONDS = 300;

export function signatureHeader(secret: string, body: string, unixSeconds: number): string {
  return `t=${unixSeconds},v1=${signatureOf(secret, body, unixSeconds)}`;
}

function signatureOf(secret: string, body: string, unixSeconds: number): string {
  return createHmac('sha256', secret).update(`${unixSeconds}.${body}`, 'utf8').digest('hex');
}

export interface VerifyOptions {
  toleranceSeconds?: number;
  /** The receiver's clock; default now. */
  now?: Date;
}

/**
 * True when `header` carries a v1 signature of exactly `body` (the raw bytes received,
 * before any JSON parsing) under `secret`, made within the tolerance of now.
 */
export function verifyWebhookSignature(
  body: string | Buffer,
  header: string | undefined,
  secret: string,
  options: VerifyOptions = {},
): boolean {
  if (!header) return false;
  let timestamp: number | undefined;
  const signatures: Buffer[] = [];
  for (const part of header.split(',')) {
    const [name, value = ''] = part.trim().split('=', 2);
    if (name === 't' && /^\d{1,12}$/.test(value)) timestamp = Number(value);
    if (name === 'v1' && /^[0-9a-f]{64}$/.test(value)) signatures.push(Buffer.from(value, 'hex'));
  }
  if (timestamp === undefined || signatures.length === 0) return false;
  const tolerance = options.toleranceSeconds ?? DEFAULT_TOLERANCE_SECONDS;
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  if (Math.abs(now - timestamp) > tolerance) return false;
  const expected = Buffer.from(
    signatureOf(secret, typeof body === 'string' ? body : body.toString('utf8'), timestamp),
    'hex',
  );
  return signatures.some((offered) => timingSafeEqual(offered, expected));
}
