-- Which workspace each OCPI connection belongs to: an OCPI token names its connection
-- (`{connection_id}.{secret}`), this table its workspace, whose `OcpiConnections`
-- aggregate holds the token's digest. A row is written before the connection's first
-- event; only its last request time changes.
CREATE TABLE IF NOT EXISTS ocpi_connection_ids (
    connection_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL,
    -- When the partner last called with this connection's token (at most a minute
    -- stale; not an event: a read model of traffic).
    last_request_at TIMESTAMPTZ
);
