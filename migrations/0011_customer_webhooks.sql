-- Customer webhooks: URLs an account registers for its billing events, the deliveries
-- owed to each, and every attempt at one. A delivery is claimed by one server at a time
-- (claim_token, with next_attempt_at as the claim's expiry), so servers sharing the
-- database never send the same attempt twice.
CREATE TABLE webhook_endpoints (
  id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9]+$'),
  account_id  text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  url         text NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
  event_types text[] NOT NULL CHECK (cardinality(event_types) > 0),
  description text NOT NULL DEFAULT '',
  -- the signing secret, sealed with AES-256-GCM (it must be read back to sign) and bound
  -- to the endpoint id
  secret      text NOT NULL CHECK (secret LIKE 'v1.%'),
  disabled    boolean NOT NULL DEFAULT false,
  created_at  timestamptz NOT NULL DEFAULT now(),
  updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_endpoints_account ON webhook_endpoints (account_id, created_at, id);

CREATE TABLE webhook_deliveries (
  id               text PRIMARY KEY CHECK (id ~ '^[a-z0-9]+$'),
  endpoint_id      text NOT NULL REFERENCES webhook_endpoints (id) ON DELETE CASCADE,
  event_id         text NOT NULL,
  type             text NOT NULL,
  -- the JSON body exactly as it is sent (and signed) on every attempt
  payload          text NOT NULL,
  status           text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'succeeded', 'failed')),
  attempt_count    integer NOT NULL DEFAULT 0 CHECK (attempt_count >= 0),
  -- when the next attempt is due; while claimed, when the claim lapses; null once done
  next_attempt_at  timestamptz,
  claim_token      text,
  first_attempt_at timestamptz,
  created_at       timestamptz NOT NULL DEFAULT now(),
  CHECK ((status = 'pending') = (next_attempt_at IS NOT NULL)),
  UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at)
  WHERE status = 'pending';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at, id);

CREATE TABLE webhook_attempts (
  delivery_id text NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
  attempt     integer NOT NULL CHECK (attempt >= 1),
  at          timestamptz NOT NULL,
  -- the receiver's HTTP status, or why there was none (target_forbidden, timeout, ...)
  status_code integer CHECK (status_code BETWEEN 100 AND 599),
  error       text,
  duration_ms integer NOT NULL CHECK (duration_ms >= 0),
  PRIMARY KEY (delivery_id, attempt),
  CHECK ((status_code IS NULL) <> (error IS NULL))
);
