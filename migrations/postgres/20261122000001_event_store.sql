-- The event log written by postgres-es, plus a durable global order for catch-up
-- projectors: `tx_id` is the writing transaction, and readers only take events whose
-- transaction is older than every transaction still in flight, ordered by
-- (tx_id, global_seq). Sequence values alone commit out of order.
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    global_seq     bigint GENERATED ALWAYS AS IDENTITY,
    tx_id          xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_order ON events (tx_id, global_seq);
CREATE UNIQUE INDEX events_global_seq ON events (global_seq);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
);

-- Where each projector has got to in the global order.
CREATE TABLE projection_checkpoints
(
    name       text PRIMARY KEY,
    last_tx    bigint      NOT NULL DEFAULT 0,
    last_seq   bigint      NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Secret material, AES-256-GCM under a per-workspace data key. The associated data
-- binds workspace_id|field|version, so a row copied elsewhere does not decrypt.
CREATE TABLE vault_data_keys
(
    workspace_id   text PRIMARY KEY,
    master_key_id  text        NOT NULL,
    nonce          bytea       NOT NULL,
    wrapped_key    bytea       NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE vault_secrets
(
    workspace_id text        NOT NULL,
    field        text        NOT NULL,
    version      bigint      NOT NULL,
    fingerprint  text        NOT NULL,
    nonce        bytea       NOT NULL,
    ciphertext   bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, field, version, fingerprint)
);
