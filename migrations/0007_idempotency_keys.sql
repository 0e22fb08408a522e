-- Answers to mutating API requests sent with an Idempotency-Key, per account, kept a day:
-- a retry gets the first answer instead of doing the work twice. The answer is sealed
-- (AES-256-GCM under a key derived from the pepper) because some carry a secret shown once.
CREATE TABLE idempotency_keys (
  account_id   text NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
  key          text NOT NULL,
  request_hash text NOT NULL,
  -- null while the first request is still running
  status       integer,
  answer       text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (account_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
