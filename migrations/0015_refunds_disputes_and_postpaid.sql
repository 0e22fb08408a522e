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

-- Postpaid accounts: they may spend down to minus their credit limit, and their usage is
-- billed through Stripe Billing's meter. Every usage row a flush charges them queues one
-- meter event in the flush's own transaction, named by an identifier of the batch and the
-- row, so a retried send is the same event at Stripe (which refuses a second); a sent
-- event leaves the outbox.
ALTER TABLE accounts ADD COLUMN postpaid boolean NOT NULL DEFAULT false;
ALTER TABLE accounts ADD COLUMN credit_limit_micro bigint NOT NULL DEFAULT 0
  CHECK (credit_limit_micro >= 0);

CREATE TABLE meter_events_outbox (
  -- <batch id>:<key>:<node>:<country>:<hour>
  identifier      text PRIMARY KEY,
  account_id      text NOT NULL REFERENCES accounts (id),
  -- what the row's bytes were charged by this batch, in micro-units of the account's currency
  value_micro     bigint NOT NULL CHECK (value_micro > 0),
  -- the usage row's hour, sent as the event's time
  hour            timestamptz NOT NULL,
  attempts        integer NOT NULL DEFAULT 0,
  -- not before: a server sending it holds it for a while, a failure backs off
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  last_error      text
);
CREATE INDEX meter_events_outbox_due ON meter_events_outbox (next_attempt_at);
