-- Upstream-proxy nodes (DESIGN.md section 6): a datacenter supplier's existing SOCKS5 or
-- HTTP proxy registered as an exit node instead of running the agent. Such a node has no
-- agent token, so nodes.token_hash becomes optional (NULL never verifies); its exit IPs
-- and location live in exit_ips and nodes like an agent node's.
ALTER TABLE nodes ALTER COLUMN token_hash DROP NOT NULL;

CREATE TABLE upstream_proxies (
  node_id     text PRIMARY KEY REFERENCES nodes (id) ON DELETE CASCADE,
  protocol    text NOT NULL CHECK (protocol IN ('socks5', 'http')),
  -- an IP literal or a DNS name; resolved and checked against the exit policy when dialled
  host        text NOT NULL CHECK (length(host) BETWEEN 1 AND 253),
  port        integer NOT NULL CHECK (port BETWEEN 1 AND 65535),
  -- user name and password, sealed with AES-256-GCM under the settings row
  -- `upstream_credentials_key` (they are presented to the proxy, so they cannot be
  -- hashed); NULL for a proxy that takes no credentials
  credentials text CHECK (credentials IS NULL OR credentials LIKE 'v1.%'),
  created_at  timestamptz NOT NULL DEFAULT now()
);
