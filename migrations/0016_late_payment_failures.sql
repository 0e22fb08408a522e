-- An off-session charge can fail after Stripe first answered (a payment still processing
-- that is then declined), and Stripe also reports a decline it answered at once: each
-- failed PaymentIntent is kept here, so that it is shown on the account and sent as
-- topup.failed once, whether the charge's own answer or payment_intent.payment_failed
-- tells of it first, and however often the event comes.
CREATE TABLE auto_topup_failures (
  payment_intent_id text PRIMARY KEY,
  account_id        text NOT NULL REFERENCES accounts (id),
  message           text NOT NULL,
  failed_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auto_topup_failures_account ON auto_topup_failures (account_id);

-- Pending payouts are settled by a sweep (at start-up and every few minutes) as well as
-- by the operator's next request: the sweep reads them oldest first.
CREATE INDEX payouts_pending_oldest ON payouts (created_at, id) WHERE status = 'pending';

-- A refund that fails after it was made (a closed or expired card: Stripe reports it with
-- charge.refund.updated) sends the money back to the Stripe balance, so it goes back to
-- the customer's: kept as a fact, like refunds and disputes (0015), and given back once
-- the payment is credited here, whatever the order of the events.
CREATE TABLE stripe_refund_failures (
  refund_id         text PRIMARY KEY,
  charge_id         text NOT NULL,
  payment_intent_id text NOT NULL,
  amount            bigint NOT NULL CHECK (amount > 0)
);
CREATE INDEX stripe_refund_failures_payment ON stripe_refund_failures (payment_intent_id);
