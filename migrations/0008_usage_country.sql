-- Usage kept by the exit's country too, so that GET /v1/usage can answer per country.
-- Rows written before this migration have no known country: ''.
ALTER TABLE usage_hourly ADD COLUMN country text NOT NULL DEFAULT '';
ALTER TABLE usage_hourly DROP CONSTRAINT usage_hourly_pkey;
ALTER TABLE usage_hourly ADD PRIMARY KEY (key_id, node_id, country, hour);
