-- Balance alerts and auto top-up. Each alert and each auto top-up happens once per
-- crossing, even with several servers flushing usage at once: a server fires one only by
-- disarming it with a conditional UPDATE ... RETURNING (one wins), and the journal re-arms
-- it in the very UPDATE that moves the balance back to or above its level (a top-up).
ALTER TABLE accounts ADD COLUMN low_balance_micro bigint NOT NULL DEFAULT 1000000
  CHECK (low_balance_micro >= 0);
ALTER TABLE accounts ADD COLUMN balance_low_armed boolean NOT NULL DEFAULT true;
ALTER TABLE accounts ADD COLUMN balance_exhausted_armed boolean NOT NULL DEFAULT true;

-- Auto top-up: charge the saved card `amount` when the balance falls below `threshold`.
-- `crossings` numbers the charges, for Stripe's idempotency key (a retry of one charge
-- is the same charge at Stripe).
ALTER TABLE accounts ADD COLUMN auto_topup_enabled boolean NOT NULL DEFAULT false;
ALTER TABLE accounts ADD COLUMN auto_topup_threshold_micro bigint NOT NULL DEFAULT 5000000
  CHECK (auto_topup_threshold_micro >= 0);
ALTER TABLE accounts ADD COLUMN auto_topup_amount_micro bigint NOT NULL DEFAULT 25000000
  CHECK (auto_topup_amount_micro > 0);
ALTER TABLE accounts ADD COLUMN auto_topup_armed boolean NOT NULL DEFAULT true;
ALTER TABLE accounts ADD COLUMN auto_topup_crossings integer NOT NULL DEFAULT 0;
-- The last charge that failed (card declined...): shown until a top-up succeeds.
ALTER TABLE accounts ADD COLUMN auto_topup_failed_at timestamptz;
ALTER TABLE accounts ADD COLUMN auto_topup_failure text;

-- The account's Stripe Customer and the card saved through Checkout for off-session use.
ALTER TABLE accounts ADD COLUMN stripe_customer_id text;
ALTER TABLE accounts ADD COLUMN payment_method_id text;
ALTER TABLE accounts ADD COLUMN payment_method_brand text;
ALTER TABLE accounts ADD COLUMN payment_method_last4 text;

-- key.cap_reached is sent once per key and month: the month it was last sent for.
ALTER TABLE api_keys ADD COLUMN cap_reached_month timestamptz;
