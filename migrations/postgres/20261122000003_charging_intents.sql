CREATE TABLE charging_intents
(
    charging_intent_id      text PRIMARY KEY,
    workspace_id            text        NOT NULL,
    status                  text        NOT NULL,
    payment_required        boolean     NOT NULL,
    amount_cents            bigint,
    currency                text        NOT NULL,
    authorized_amount_cents bigint,
    captured_amount_cents   bigint,
    payment_intent_id       text,
    location_id             text        NOT NULL,
    evse_uid                text        NOT NULL,
    connector_id            text        NOT NULL,
    ocpi_session_id         text,
    failure_code            text,
    credential_version      bigint,
    created_at              timestamptz NOT NULL,
    updated_at              timestamptz NOT NULL
);
CREATE INDEX charging_intents_workspace ON charging_intents (workspace_id, charging_intent_id);
CREATE INDEX charging_intents_status ON charging_intents (status, created_at);
