CREATE TABLE credential_health
(
    workspace_id       text PRIMARY KEY,
    status             text        NOT NULL,
    credential_version bigint      NOT NULL,
    mode               text,
    account_id         text,
    failure_code       text,
    failure_message    text,
    checked_at         timestamptz,
    updated_at         timestamptz NOT NULL
);
CREATE INDEX credential_health_status ON credential_health (status);

CREATE TABLE audit_log
(
    id             bigint PRIMARY KEY,
    recorded_at    timestamptz NOT NULL,
    workspace_id   text,
    aggregate_type text        NOT NULL,
    aggregate_id   text        NOT NULL,
    event_type     text        NOT NULL,
    actor          text,
    request_id     text,
    summary        text        NOT NULL
);
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);
