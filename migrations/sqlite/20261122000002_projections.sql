CREATE TABLE credential_health
(
    workspace_id       text PRIMARY KEY,
    status             text    NOT NULL,
    credential_version integer NOT NULL,
    mode               text,
    account_id         text,
    failure_code       text,
    failure_message    text,
    checked_at         text,
    updated_at         text    NOT NULL
) STRICT;
CREATE INDEX credential_health_status ON credential_health (status);

CREATE TABLE audit_log
(
    id             integer PRIMARY KEY,
    recorded_at    text NOT NULL,
    workspace_id   text,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    event_type     text NOT NULL,
    actor          text,
    request_id     text,
    summary        text NOT NULL
) STRICT;
CREATE INDEX audit_log_workspace ON audit_log (workspace_id, id);
