-- Leases: sticky sessions made through the API (POST /v1/leases). The pin itself lives
-- in hot state with its TTL; this row remembers who made it, with which key and targeting.
CREATE TABLE leases (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9]+$'),
  account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  key_id      text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  targeting   jsonb NOT NULL DEFAULT '{}',
  ttl_seconds integer NOT NULL CHECK (ttl_seconds BETWEEN 30 AND 86400),
  created_at  timestamptz NOT NULL DEFAULT now(),
  released_at timestamptz
);
CREATE INDEX leases_account ON leases (account_id, created_at, id);
