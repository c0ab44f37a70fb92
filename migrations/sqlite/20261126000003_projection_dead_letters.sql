-- Events a projection could not apply, set aside so that it goes on.
CREATE TABLE projection_dead_letters
(
    projection     text    NOT NULL,
    tx             integer NOT NULL,
    seq            integer NOT NULL,
    aggregate_type text    NOT NULL,
    aggregate_id   text    NOT NULL,
    event_type     text    NOT NULL,
    error          text    NOT NULL,
    recorded_at    text    NOT NULL,
    PRIMARY KEY (projection, tx, seq)
) STRICT;
