-- Stripe Connect: which connection a workspace uses, and its connected account's health
-- (the keys' health stays in status/failure_code/...).
ALTER TABLE credential_health ADD COLUMN connection text;
ALTER TABLE credential_health ADD COLUMN connect_account_id text;
ALTER TABLE credential_health ADD COLUMN connect_status text;
ALTER TABLE credential_health ADD COLUMN connect_failure_code text;
ALTER TABLE credential_health ADD COLUMN connect_failure_message text;
ALTER TABLE credential_health ADD COLUMN connect_checked_at text;
-- Connect webhooks name the account: this finds its workspace.
CREATE INDEX credential_health_connect_account ON credential_health (connect_account_id);

-- Every webhook delivery, verified or not, and what became of it (support's "did Stripe
-- send it, and what did we do?"). An operational log, not a read model: replays leave
-- it alone, rows older than ROAMPAY_DELIVERY_LOG_RETENTION_SECS are deleted.
CREATE TABLE webhook_deliveries (
    id           text PRIMARY KEY,
    received_at  text NOT NULL,
    endpoint     text NOT NULL,
    workspace_id text,
    event_id     text,
    event_type   text,
    outcome      text NOT NULL,
    code         text,
    request_id   text NOT NULL,
    payload      text
);
CREATE INDEX webhook_deliveries_workspace ON webhook_deliveries (workspace_id, id);
CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id);
