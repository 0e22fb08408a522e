-- Balances become money. Amounts are integers in micro-units of the currency (one
-- millionth: 1 USD = 1,000,000): a price of a few dollars per GB makes a kilobyte cost a
-- few micro-dollars, and the hourly usage rows of a light key are worth fractions of a
-- cent, so cents would round most rows to nothing. A bigint of micro-units holds 9.2
-- trillion of the currency. Stripe's minor units (cents) are 10,000 micro-units.

-- What customers pay and operators earn per GB (10^9 bytes) of each exit type, from a
-- whole hour on: every hourly usage row has one price, so a row's charge is its bytes
-- times its price and an auditor can recompute it. A row for a country overrides the
-- type's price there (a premium); '' is every other country.
CREATE TABLE prices (
  id                    bigserial PRIMARY KEY,
  currency              text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  exit_type             text NOT NULL CHECK (exit_type IN ('residential', 'datacenter', 'mobile')),
  country               text NOT NULL DEFAULT '' CHECK (country = '' OR country ~ '^[a-z]{2}$'),
  customer_micro_per_gb bigint NOT NULL CHECK (customer_micro_per_gb >= 0),
  operator_micro_per_gb bigint NOT NULL CHECK (operator_micro_per_gb >= 0),
  effective_from        timestamptz NOT NULL
                        CHECK (date_trunc('hour', effective_from) = effective_from),
  -- who set it and why, for the record
  note                  text NOT NULL DEFAULT '',
  created_at            timestamptz NOT NULL DEFAULT now(),
  UNIQUE (currency, exit_type, country, effective_from)
);

ALTER TABLE accounts ADD COLUMN currency text NOT NULL DEFAULT 'usd' CHECK (currency ~ '^[a-z]{3}$');
-- Cached sums of the account's books in the journal, updated in the same transaction as
-- every posting to them: what the customer may spend (may dip below zero by the
-- gateway's documented bound), and what is owed to the operator for its nodes.
ALTER TABLE accounts ADD COLUMN balance_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN payable_micro bigint NOT NULL DEFAULT 0;

-- The double-entry journal. An entry is one movement with a cause; its postings move
-- money between books and sum to zero. Books: `customer:<account>` (prepaid credit owed
-- to the customer), `operator:<account>` (earnings owed to the operator), `revenue`,
-- `operator_cost`, `promotions` (trial credit and goodwill), `stripe` (money held at
-- Stripe), `refunds`, `disputes`. A posting's amount is positive for a debit and negative
-- for a credit, so a customer's balance is minus the sum of its book.
CREATE TABLE journal_entries (
  id          bigserial PRIMARY KEY,
  kind        text NOT NULL CHECK (kind IN ('opening', 'trial', 'topup', 'usage', 'refund',
                'dispute', 'adjustment', 'earning', 'payout', 'payout_reversal')),
  -- what caused it (a Stripe event id, a flush batch and account); a cause is applied once
  reference   text NOT NULL,
  currency    text NOT NULL CHECK (currency ~ '^[a-z]{3}$'),
  -- the customer or operator the entry concerns, for their statements
  account_id  text NOT NULL REFERENCES accounts (id),
  memo        text NOT NULL DEFAULT '',
  receipt_url text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (kind, reference)
);
CREATE INDEX journal_entries_account ON journal_entries (account_id, id);

CREATE TABLE journal_postings (
  entry_id     bigint NOT NULL REFERENCES journal_entries (id),
  book         text NOT NULL CHECK (book ~ '^[a-z_]+(:[a-z0-9_]+)?$'),
  amount_micro bigint NOT NULL CHECK (amount_micro <> 0),
  PRIMARY KEY (entry_id, book)
);
CREATE INDEX journal_postings_book ON journal_postings (book);

-- Every entry balances, checked when its transaction commits.
CREATE FUNCTION journal_entry_balances() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF (SELECT sum(amount_micro) FROM journal_postings WHERE entry_id = NEW.entry_id) <> 0 THEN
    RAISE EXCEPTION 'journal entry % does not balance', NEW.entry_id USING ERRCODE = '23514';
  END IF;
  RETURN NULL;
END $$;
CREATE CONSTRAINT TRIGGER journal_postings_balance AFTER INSERT ON journal_postings
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION journal_entry_balances();

-- Append-only: a wrong entry is corrected by another entry, never edited or removed.
CREATE FUNCTION journal_is_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'the journal is append-only (% on %)', TG_OP, TG_TABLE_NAME
    USING ERRCODE = '55000';
END $$;
CREATE TRIGGER journal_entries_append_only BEFORE UPDATE OR DELETE ON journal_entries
  FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();
CREATE TRIGGER journal_postings_append_only BEFORE UPDATE OR DELETE ON journal_postings
  FOR EACH ROW EXECUTE FUNCTION journal_is_append_only();

-- Usage rows carry their exit type and the prices in force for their hour, and what has
-- been charged and earned for them so far: each flush posts the difference, so a row's
-- charge is always floor(bytes × price / 10^9), recomputable from the row alone.
ALTER TABLE usage_hourly ADD COLUMN exit_type text NOT NULL DEFAULT 'residential'
  CHECK (exit_type IN ('residential', 'datacenter', 'mobile'));
ALTER TABLE usage_hourly ADD COLUMN customer_micro_per_gb bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN operator_micro_per_gb bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN charged_micro bigint NOT NULL DEFAULT 0;
ALTER TABLE usage_hourly ADD COLUMN earned_micro bigint NOT NULL DEFAULT 0;

-- Byte balances from before: each account opens with its byte balance at the residential
-- price a fresh install starts with (4.00 per GB), and the byte ledger is kept as history.
ALTER TABLE ledger RENAME TO ledger_bytes_before_money;
INSERT INTO journal_entries (kind, reference, currency, account_id, memo)
  SELECT 'opening', id, 'usd', id, 'byte balance before money: ' || balance_bytes || ' bytes'
  FROM accounts WHERE (balance_bytes::numeric * 4000000 / 1000000000)::bigint <> 0;
INSERT INTO journal_postings (entry_id, book, amount_micro)
  SELECT e.id, b.book, b.amount
  FROM journal_entries e JOIN accounts a ON a.id = e.account_id,
  LATERAL (VALUES
    ('customer:' || a.id, -(a.balance_bytes::numeric * 4000000 / 1000000000)::bigint),
    ('promotions', (a.balance_bytes::numeric * 4000000 / 1000000000)::bigint)
  ) AS b (book, amount)
  WHERE e.kind = 'opening' AND b.amount <> 0;
UPDATE accounts a SET balance_micro = -p.amount_micro
  FROM journal_postings p JOIN journal_entries e ON e.id = p.entry_id
  WHERE e.kind = 'opening' AND e.account_id = a.id AND p.book = 'customer:' || a.id;
ALTER TABLE accounts DROP COLUMN balance_bytes;
