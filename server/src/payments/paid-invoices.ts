/**
 * A postpaid account's usage is debited from its balance as it happens and billed by
 * Stripe afterwards from the meter (meter-reporter.ts); a paid invoice brings the balance
 * back up by what it billed before tax (the usage was priced without it), once per invoice:
 * a `topup` entry referenced by the invoice, memo `invoice paid`, with its hosted page.
 */
import type Stripe from 'stripe';
import { books, microPerStripeUnit, postEntry, transfer } from '../billing/index.ts';
import type { Queryable } from '../store/index.ts';

/** Credits the invoice to the account of its Customer; false when it names none here. */
export async function creditPaidInvoice(tx: Queryable, invoice: Stripe.Invoice): Promise<boolean> {
  const customer = typeof invoice.customer === 'string' ? invoice.customer : invoice.customer?.id;
  const [account] = customer
    ? await tx.query<{ id: string; currency: string }>(
        'SELECT id, currency FROM accounts WHERE stripe_customer_id = $1 ORDER BY id LIMIT 1',
        [customer],
      )
    : [];
  if (!account || account.currency !== invoice.currency?.toLowerCase()) return false;
  const paid = Math.min(invoice.amount_paid, invoice.total_excluding_tax ?? invoice.amount_paid);
  if (!(paid > 0)) return false;
  return postEntry(tx, {
    kind: 'topup',
    reference: invoice.id,
    currency: account.currency,
    accountId: account.id,
    memo: 'invoice paid',
    ...(invoice.hosted_invoice_url ? { receiptUrl: invoice.hosted_invoice_url } : {}),
    postings: transfer(
      books.stripe,
      books.customer(account.id),
      paid * microPerStripeUnit(account.currency),
    ),
  });
}
