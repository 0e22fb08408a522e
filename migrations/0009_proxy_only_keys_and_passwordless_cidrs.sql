-- A new key carries traffic only: `api` (a bearer token for this API, able to make and
-- revoke keys) must be asked for. Keys made before keep the scopes they have.
ALTER TABLE api_keys ALTER COLUMN scopes SET DEFAULT ARRAY['proxy'];

-- Targeting parameters (`country-us-type-residential`, the username grammar without the
-- key id) used when a connection from a password-less CIDR sends no username.
ALTER TABLE api_keys ADD COLUMN default_targeting text NOT NULL DEFAULT '';

-- Client ranges from which a connection with no credentials at all is the key. A range
-- belongs to one key of all accounts: the exclusion constraint refuses any overlap, also
-- between two transactions racing (23P01), and its GiST index answers "which range holds
-- this address" (>>=). Revoking the key frees its ranges.
CREATE TABLE passwordless_cidrs (
  cidr       cidr NOT NULL,
  key_id     text NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT passwordless_cidrs_no_overlap EXCLUDE USING gist (cidr inet_ops WITH &&)
);
CREATE INDEX passwordless_cidrs_key ON passwordless_cidrs (key_id);
