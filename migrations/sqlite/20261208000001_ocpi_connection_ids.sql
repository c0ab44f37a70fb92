-- Which workspace each OCPI connection belongs to: an OCPI token names its connection
-- (`{connection_id}.{secret}`), this table its workspace, whose `OcpiConnections`
-- aggregate holds the token's digest. A row is written before the connection's first
-- event and never changes.
CREATE TABLE IF NOT EXISTS ocpi_connection_ids (
    connection_id TEXT PRIMARY KEY,
    workspace_id TEXT NOT NULL
);
