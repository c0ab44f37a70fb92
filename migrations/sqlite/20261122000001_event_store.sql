-- The event log written by sqlite-es. SQLite has one writer at a time, so an
-- AFTER INSERT trigger can hand out the durable global order (`global_seq`) in
-- commit order; rowids are not used because VACUUM may renumber them.
CREATE TABLE events
(
    aggregate_type text                          NOT NULL,
    aggregate_id   text                          NOT NULL,
    sequence       integer CHECK (sequence >= 0) NOT NULL,
    event_type     text                          NOT NULL,
    event_version  text                          NOT NULL,
    payload        text                          NOT NULL,
    metadata       text                          NOT NULL,
    global_seq     integer,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
) STRICT;
CREATE UNIQUE INDEX events_global_seq ON events (global_seq);
CREATE TRIGGER events_assign_global_seq AFTER INSERT ON events
BEGIN
    UPDATE events SET global_seq = (SELECT IFNULL(MAX(global_seq), 0) + 1 FROM events)
     WHERE rowid = NEW.rowid;
END;

CREATE TABLE snapshots
(
    aggregate_type   text                                  NOT NULL,
    aggregate_id     text                                  NOT NULL,
    last_sequence    integer CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot integer CHECK (current_snapshot >= 0) NOT NULL,
    payload          text                                  NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
) STRICT;

CREATE TABLE projection_checkpoints
(
    name       text PRIMARY KEY,
    last_tx    integer NOT NULL DEFAULT 0,
    last_seq   integer NOT NULL DEFAULT 0,
    updated_at text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE vault_data_keys
(
    workspace_id  text PRIMARY KEY,
    master_key_id text NOT NULL,
    nonce         blob NOT NULL,
    wrapped_key   blob NOT NULL,
    created_at    text NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE vault_secrets
(
    workspace_id text    NOT NULL,
    field        text    NOT NULL,
    version      integer NOT NULL,
    fingerprint  text    NOT NULL,
    nonce        blob    NOT NULL,
    ciphertext   blob    NOT NULL,
    created_at   text    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (workspace_id, field, version, fingerprint)
) STRICT;
