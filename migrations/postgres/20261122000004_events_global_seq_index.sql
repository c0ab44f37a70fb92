-- Catch-up reads use (tx_id, global_seq) only; the index on global_seq alone cost
-- every commit a third index update and served no query.
DROP INDEX events_global_seq;
