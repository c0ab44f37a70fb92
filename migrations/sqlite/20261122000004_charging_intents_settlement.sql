-- Issue 4: what the session worker looks for. `settlement` is the Stripe step under way
-- (`capture` or `cancel`), null when none.
ALTER TABLE charging_intents ADD COLUMN settlement TEXT;
ALTER TABLE charging_intents ADD COLUMN authorized_at TEXT;
ALTER TABLE charging_intents ADD COLUMN capture_before TEXT;
CREATE INDEX charging_intents_settlement ON charging_intents (settlement) WHERE settlement IS NOT NULL;
