-- Server-wide settings, created once and shared by every instance (the pepper that keys
-- the hashes of API key secrets and node tokens, and from which the session secret derives).
CREATE TABLE settings (
  name  text PRIMARY KEY,
  value text NOT NULL
);

-- Portal login sessions (express-session). `sid` holds a SHA-256 digest of the session id,
-- never the id itself; rows past expires_at are ignored on read and pruned on write.
CREATE TABLE sessions (
  sid        text PRIMARY KEY,
  data       jsonb NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX sessions_expires_at ON sessions (expires_at);
