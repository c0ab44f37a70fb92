-- Contract v2: every intent view shows the last declined attempt, what the session
-- cost, what was refunded and any dispute; guests' open intents are counted per
-- workspace (`driver` null for a guest); `capture_before` is Stripe's once read
-- (`deadline_read`), and the lapse warning has its own flag (`lapse_flagged`). All of
-- it is folded from events already stored, so the projection is rebuilt from the
-- first event (its checkpoint is reset; the projector catches up on start).
ALTER TABLE charging_intents ADD COLUMN last_payment_error text;
ALTER TABLE charging_intents ADD COLUMN final_amount_cents bigint;
ALTER TABLE charging_intents ADD COLUMN driver text;
ALTER TABLE charging_intents ADD COLUMN refunded_amount_cents bigint NOT NULL DEFAULT 0;
ALTER TABLE charging_intents ADD COLUMN dispute text;
ALTER TABLE charging_intents ADD COLUMN deadline_read boolean NOT NULL DEFAULT false;
ALTER TABLE charging_intents ADD COLUMN lapse_flagged boolean NOT NULL DEFAULT false;
DELETE FROM charging_intents;
DELETE FROM projection_checkpoints WHERE name = 'charging_intents';
