import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  checkoutAmount,
  formatMoney,
  microPerStripeUnit,
  parseMoney,
  stripeAmountStep,
} from '../../src/billing/index.ts';

const refusal = (fn: () => unknown) => {
  try {
    fn();
  } catch (error) {
    return (error as { code?: string; message: string }).code;
  }
  return 'accepted';
};

test('a Stripe amount is 10,000 micro-units in two-decimal, 1,000 in three-decimal and 1,000,000 in zero-decimal currencies', () => {
  assert.equal(microPerStripeUnit('usd'), 10_000);
  assert.equal(microPerStripeUnit('EUR'), 10_000);
  assert.equal(microPerStripeUnit('kwd'), 1_000);
  assert.equal(microPerStripeUnit('BHD'), 1_000);
  assert.equal(microPerStripeUnit('jpy'), 1_000_000);
  // Stripe charges three-decimal currencies in multiples of ten thousandths: a hundredth.
  assert.equal(stripeAmountStep('kwd'), 10_000);
  assert.equal(stripeAmountStep('usd'), 10_000);
  assert.equal(stripeAmountStep('jpy'), 1_000_000);
});

test('a checkout amount is whatever Stripe can charge in the currency, and nothing finer', () => {
  const amount = (text: string, currency: string) => checkoutAmount({ amount: text }, currency);
  assert.equal(amount('25.00', 'usd'), 25_000_000);
  assert.equal(amount('25.01', 'kwd'), 25_010_000);
  // 25.010 KWD is 25010 thousandths at Stripe, a multiple of ten as it requires.
  assert.equal(amount('25.01', 'kwd') / microPerStripeUnit('kwd'), 25_010);
  assert.equal(
    refusal(() => amount('25.005', 'kwd')),
    'invalid_request',
  );
  assert.equal(
    refusal(() => amount('25.001', 'usd')),
    'invalid_request',
  );
  assert.equal(amount('2500', 'jpy'), 2_500_000_000);
  assert.equal(
    refusal(() => amount('2500.50', 'jpy')),
    'invalid_request',
  );
});

test('money reads and prints as exact decimals with no floating point on the way', () => {
  assert.equal(parseMoney('0.000001'), 1);
  assert.equal(parseMoney('4.5'), 4_500_000);
  assert.equal(parseMoney('-1.25'), -1_250_000);
  assert.equal(parseMoney('1e3'), null);
  assert.equal(parseMoney('0.0000001'), null);
  assert.equal(formatMoney(4_000_000), '4.00');
  assert.equal(formatMoney(1_250), '0.00125');
  assert.equal(formatMoney(-87_278), '-0.087278');
  assert.equal(parseMoney(formatMoney(123_456_789)), 123_456_789);
});
