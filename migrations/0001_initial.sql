-- First schema (DESIGN.md section 8). Identifiers are short random text ids made by the
-- server; byte counts are bigint; secrets are stored only as hashes.

CREATE TABLE accounts (
  id            text PRIMARY KEY,
  name          text NOT NULL DEFAULT '',
  -- Cached sum of the ledger, updated in the same transaction as every ledger row.
  balance_bytes bigint NOT NULL DEFAULT 0,
  created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE users (
  id            text PRIMARY KEY,
  account_id    text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  email         text NOT NULL,
  -- scrypt, with its parameters and salt encoded in the value
  password_hash text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_unique ON users (lower(email));
CREATE INDEX users_account ON users (account_id);

CREATE TABLE api_keys (
  id                 text PRIMARY KEY CHECK (id ~ '^[a-z0-9]+$'),
  account_id         text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name               text NOT NULL DEFAULT '',
  -- keyed fast hash (HMAC-SHA-256) of the secret
  secret_hash        text NOT NULL,
  scopes             text[] NOT NULL DEFAULT ARRAY['proxy', 'api'],
  monthly_byte_cap   bigint CHECK (monthly_byte_cap IS NULL OR monthly_byte_cap >= 0),
  max_concurrency    integer CHECK (max_concurrency IS NULL OR max_concurrency > 0),
  allowed_countries  text[],
  client_allowlist   text[],
  disabled           boolean NOT NULL DEFAULT false,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  revoked_at         timestamptz
);
CREATE INDEX api_keys_account ON api_keys (account_id);

CREATE TABLE nodes (
  id           text PRIMARY KEY,
  -- the operator's account, credited for the bytes the node carries
  account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  name         text NOT NULL DEFAULT '',
  token_hash   text NOT NULL,
  type         text NOT NULL DEFAULT 'residential'
               CHECK (type IN ('residential', 'datacenter', 'mobile')),
  country      text CHECK (country IS NULL OR country ~ '^[a-z]{2}$'),
  region       text,
  city         text,
  asn          integer,
  created_at   timestamptz NOT NULL DEFAULT now(),
  last_seen_at timestamptz,
  deleted_at   timestamptz
);
CREATE INDEX nodes_account ON nodes (account_id);

CREATE TABLE exit_ips (
  node_id       text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
  ip            inet NOT NULL,
  country       text,
  region        text,
  city          text,
  asn           integer,
  first_seen_at timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (node_id, ip)
);

-- Metered traffic per key, per exit node, per hour; both directions, headers included.
CREATE TABLE usage_hourly (
  key_id     text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  node_id    text NOT NULL,
  hour       timestamptz NOT NULL CHECK (date_trunc('hour', hour) = hour),
  bytes_up   bigint NOT NULL DEFAULT 0 CHECK (bytes_up >= 0),
  bytes_down bigint NOT NULL DEFAULT 0 CHECK (bytes_down >= 0),
  requests   bigint NOT NULL DEFAULT 0 CHECK (requests >= 0),
  PRIMARY KEY (key_id, node_id, hour)
);
CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- Every movement of an account's byte balance: positive credits, negative debits.
CREATE TABLE ledger (
  id          bigserial PRIMARY KEY,
  account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  kind        text NOT NULL CHECK (kind IN ('trial', 'topup', 'usage', 'reward', 'adjustment', 'refund')),
  bytes       bigint NOT NULL,
  amount_minor bigint,
  currency    text,
  -- what caused the entry (a Stripe event id, a flush batch id); unique per kind so
  -- a replayed cause can never be applied twice
  reference   text,
  created_at  timestamptz NOT NULL DEFAULT now(),
  UNIQUE (kind, reference)
);
CREATE INDEX ledger_account ON ledger (account_id, created_at);
