-- When a key's secret was last replaced: connections admitted with the old secret
-- before this instant are cut by the gateway.
ALTER TABLE api_keys ADD COLUMN secret_rotated_at timestamptz;
