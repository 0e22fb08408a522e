-- Operators are paid through Stripe Connect: each operator account links one connected
-- (Express) account, made once and kept here so a second request reuses it.
ALTER TABLE accounts ADD COLUMN stripe_connect_id text UNIQUE
  CHECK (stripe_connect_id IS NULL OR stripe_connect_id ~ '^acct_[A-Za-z0-9]+$');

-- A payout is written, with its `payout` journal entry, before Stripe is asked for the
-- transfer, and its id is the transfer's idempotency key: whatever fails when, the
-- transfer is made at most once and the ledger says whether it was. `pending`: Stripe has
-- not answered yet (sent again with the same key on the account's next payout request);
-- `paid`: Stripe made the transfer; `failed`: Stripe refused it and a `payout_reversal`
-- entry gave the amount back; `reversed`: a paid transfer Stripe later reversed
-- (`transfer.reversed`), `reversed_micro` of it given back.
CREATE TABLE payouts (
  id                 text PRIMARY KEY,
  account_id         text NOT NULL REFERENCES accounts (id),
  amount_micro       bigint NOT NULL CHECK (amount_micro > 0),
  currency           text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'paid', 'failed', 'reversed')),
  stripe_transfer_id text UNIQUE,
  reversed_micro     bigint NOT NULL DEFAULT 0
                     CHECK (reversed_micro >= 0 AND reversed_micro <= amount_micro),
  failure            text,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX payouts_account ON payouts (account_id, created_at, id);
CREATE INDEX payouts_pending ON payouts (account_id) WHERE status = 'pending';

-- What an operator may be paid leaves out recent earnings: they are read per node and hour.
CREATE INDEX usage_hourly_node_hour ON usage_hourly (node_id, hour);
