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

-- (The webhook delivery log lives in a file of its own: projections/src/webhook_deliveries.rs.)
