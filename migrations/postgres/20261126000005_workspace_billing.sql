-- The standing of each workspace's subscription to the platform.
CREATE TABLE workspace_billing
(
    workspace_id       text PRIMARY KEY,
    status             text        NOT NULL,
    plan               text,
    stripe_customer_id text,
    grace_until        timestamptz,
    purge_after        timestamptz,
    purged             boolean     NOT NULL DEFAULT false,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX workspace_billing_status ON workspace_billing (status);
