-- The master key the store's data keys are wrapped with (one row): `serve` refuses
-- another, and `roampay keys rotate-master` moves it.
CREATE TABLE vault_master
(
    singleton     integer PRIMARY KEY CHECK (singleton = 1),
    master_key_id text NOT NULL
);
