-- Refunds and disputes. Stripe reports them about a charge of a PaymentIntent, not about
-- the Checkout Session a top-up is referenced by, and may report them before the payment
-- itself (events come in any order). So the webhook keeps what Stripe says as facts, and
-- the ledger is brought in line with the facts whenever both they and the payment's credit
-- are known (stripe-refunds.ts): a refund or dispute is taken back once, whichever came first.

-- The payment each card top-up was, written with its `topup` entry.
CREATE TABLE stripe_payments (
  payment_intent_id text PRIMARY KEY,
  account_id        text NOT NULL REFERENCES accounts (id),
  currency          text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  amount_micro      bigint NOT NULL CHECK (amount_micro > 0),
  -- the topup entry's reference: the Checkout Session, or the PaymentIntent of an auto top-up
  topup_reference   text NOT NULL
);

-- How much of each charge Stripe has refunded so far (charge.refunded's cumulative
-- amount_refunded, the highest seen: an older event arriving late changes nothing).
CREATE TABLE stripe_charge_refunds (
  charge_id         text PRIMARY KEY,
  payment_intent_id text NOT NULL,
  -- Stripe's minor units, as Stripe reports them (the entries' references name it)
  amount_refunded   bigint NOT NULL CHECK (amount_refunded >= 0)
);
CREATE INDEX stripe_charge_refunds_payment ON stripe_charge_refunds (payment_intent_id);

-- Each dispute and whether Stripe closed it won (the money came back) or lost.
CREATE TABLE stripe_disputes (
  id                text PRIMARY KEY,
  payment_intent_id text NOT NULL,
  -- Stripe's minor units, in the currency of the payment
  amount            bigint NOT NULL CHECK (amount >= 0),
  status            text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'won', 'lost'))
);
CREATE INDEX stripe_disputes_payment ON stripe_disputes (payment_intent_id);
