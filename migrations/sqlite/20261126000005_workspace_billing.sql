-- The standing of each workspace's subscription to the platform.
CREATE TABLE workspace_billing
(
    workspace_id       text PRIMARY KEY,
    status             text    NOT NULL,
    plan               text,
    stripe_customer_id text,
    grace_until        text,
    purge_after        text,
    purged             integer NOT NULL DEFAULT 0,
    updated_at         text    NOT NULL
) STRICT;
CREATE INDEX workspace_billing_status ON workspace_billing (status);
