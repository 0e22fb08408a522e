-- Usage batches already written to usage_hourly and debited. A batch sealed in hot state
-- is applied at most once, whatever crash comes between writing it and acknowledging it
-- there; ids older than the retention are pruned (hot state never keeps a batch that long).
CREATE TABLE usage_batches (
  id         text PRIMARY KEY,
  applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX usage_batches_applied_at ON usage_batches (applied_at);
