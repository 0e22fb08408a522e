/**
 * The Stripe client, built from the configuration: STRIPE_SECRET_KEY, and STRIPE_API_URL
 * for where its requests go (Stripe's API; a local stand-in in tests).
 */
import Stripe from 'stripe';

export interface StripeClientOptions {
  secretKey: string;
  /** An http(s) origin, e.g. https://api.stripe.com. */
  apiUrl: string;
}

export function createStripeClient(options: StripeClientOptions): Stripe {
  const url = new URL(options.apiUrl);
  const protocol = url.protocol === 'http:' ? 'http' : 'https';
  return new Stripe(options.secretKey, {
    host: url.hostname,
    port: url.port ? Number(url.port) : protocol === 'http' ? 80 : 443,
    protocol,
    // Requests that create something always carry an idempotency key, so a retry after a
    // dropped connection is safe; the library retries such failures once by default.
    maxNetworkRetries: 2,
    timeout: 20_000,
    appInfo: { name: 'IPCola' },
  });
}
