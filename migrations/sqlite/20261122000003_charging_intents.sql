CREATE TABLE charging_intents
(
    charging_intent_id      text PRIMARY KEY,
    workspace_id            text    NOT NULL,
    status                  text    NOT NULL,
    payment_required        integer NOT NULL,
    amount_cents            integer,
    currency                text    NOT NULL,
    authorized_amount_cents integer,
    captured_amount_cents   integer,
    payment_intent_id       text,
    location_id             text    NOT NULL,
    evse_uid                text    NOT NULL,
    connector_id            text    NOT NULL,
    ocpi_session_id         text,
    failure_code            text,
    credential_version      integer,
    created_at              text    NOT NULL,
    updated_at              text    NOT NULL
) STRICT;
CREATE INDEX charging_intents_workspace ON charging_intents (workspace_id, charging_intent_id);
CREATE INDEX charging_intents_status ON charging_intents (status, created_at);
