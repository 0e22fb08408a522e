/**
 * The billing page's auto top-up form, rendered: an amount the API refuses (not money, or
 * under the smallest charge) is said in the form and nothing is saved; good amounts are
 * sent as typed, with the session's CSRF token, and their saving is announced.
 */
import './support/dom.ts';
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import type { components } from '@ipcola/openapi';
import { screen, waitFor } from '@testing-library/react';
import { createElement } from 'react';
import { setCsrfToken } from '../src/api/client.ts';
import { AutoTopUpForm } from '../src/components/AutoTopUpForm.tsx';
import { StubApi } from './support/api-stub.ts';
import { errorBody } from './support/fixtures.ts';
import { renderPortal } from './support/render.tsx';

type Schemas = components['schemas'];

const usd = (amount: string): Schemas['Money'] => ({
  currency: 'usd',
  amount,
  amount_micro: Math.round(Number(amount) * 1_000_000),
});

const SETTINGS: Schemas['AutoTopUp'] = {
  enabled: false,
  threshold: usd('5.00'),
  amount: usd('25.00'),
  low_balance_threshold: usd('1.00'),
  payment_method: { brand: 'visa', last4: '4242' },
  last_failure: { at: '2026-12-05T22:00:00Z', message: 'Your card was declined.' },
};

/** The server's words for an amount it will not charge (server/src/billing/credit-packs.ts). */
function amountProblem(amount: string): string | undefined {
  if (!/^\d+(\.\d{1,2})?$/.test(amount))
    return 'amount must be a decimal with at most two decimals';
  const value = Number(amount);
  if (value < 5 || value > 10_000) return 'amount must be from 5.00 to 10000.00';
  return undefined;
}

describe('the auto top-up form', () => {
  const api = new StubApi()
    .on('put', '/v1/billing/auto-topup', ({ body }) => {
      const settings = body as Schemas['AutoTopUpSettings'];
      const problem = amountProblem(settings.amount ?? '');
      if (problem) return { status: 400, body: errorBody('invalid_request', problem) };
      return {
        status: 200,
        body: {
          ...SETTINGS,
          enabled: settings.enabled ?? SETTINGS.enabled,
          threshold: usd(settings.threshold ?? '5.00'),
          amount: usd(settings.amount ?? '25.00'),
          low_balance_threshold: usd(settings.low_balance_threshold ?? '1.00'),
          last_failure: null,
        },
      };
    })
    .install();
  setCsrfToken('csrf-of-this-session');
  const view = renderPortal(createElement(AutoTopUpForm, { settings: SETTINGS }), {
    path: '/billing',
  });
  const { user } = view;
  after(() => view.close());

  const field = (label: string) => screen.getByLabelText(label) as HTMLInputElement;
  const saves = () => api.requests('PUT', '/v1/billing/auto-topup');
  /** The refusal's text, in an alert of its own beside the last failure's. */
  async function refusal(text: RegExp) {
    const shown = await screen.findByText(text);
    assert.ok(shown.closest('[role="alert"]'));
    assert.ok(!shown.closest('[role="alert"]')?.textContent?.includes('The last charge failed'));
  }

  test('shows the saved card, the last failure and the saved levels', () => {
    assert.ok(screen.getByText(/Charges your visa ending 4242/));
    assert.ok(screen.getByText('Your card was declined.'));
    assert.equal(field('When balance is below').value, '5.00');
    assert.equal(field('Add').value, '25.00');
    assert.equal(field('Warn me below').value, '1.00');
    assert.equal(
      screen.getByRole('switch', { name: 'Top up automatically' }).matches(':checked'),
      false,
    );
  });

  test('an amount that is not money is refused and said in the form', async () => {
    // Switched on with the space bar, then on by Tab to the fields, as by keyboard alone.
    screen.getByRole('switch', { name: 'Top up automatically' }).focus();
    await user.keyboard(' ');
    await user.tab();
    assert.equal(document.activeElement, field('When balance is below'));
    await user.tab();
    await user.keyboard('{Control>}a{/Control}12.345{Enter}');
    await refusal(/amount must be a decimal with at most two decimals/);
    assert.deepEqual(saves()[0]?.body, {
      enabled: true,
      threshold: '5.00',
      amount: '12.345',
      low_balance_threshold: '1.00',
    });
    assert.equal(screen.queryByText('Auto top-up saved'), null);
  });

  test('an amount under the smallest charge is refused in the same way', async () => {
    await user.tripleClick(field('Add'));
    await user.keyboard('2.50{Enter}');
    await waitFor(() => assert.equal(saves().length, 2));
    await refusal(/amount must be from 5\.00 to 10000\.00/);
    assert.equal(screen.queryByText('Auto top-up saved'), null);
  });

  test('good amounts are sent as typed with the CSRF token, and the saving is announced', async () => {
    await user.tripleClick(field('Add'));
    await user.keyboard('40.00');
    await user.tripleClick(field('Warn me below'));
    await user.keyboard('2.5');
    await user.click(screen.getByRole('button', { name: 'Save' }));
    assert.ok(await screen.findByText('Auto top-up saved'));
    const saved = saves()[2];
    assert.deepEqual(saved?.body, {
      enabled: true,
      threshold: '5.00',
      amount: '40.00',
      low_balance_threshold: '2.5',
    });
    assert.equal(saved?.headers.get('X-CSRF-Token'), 'csrf-of-this-session');
    assert.equal(screen.queryByText(/amount must be/), null);
    assert.deepEqual(api.unanswered, []);
  });
});
