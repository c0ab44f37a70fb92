-- Support finds a payment by what a driver or Stripe tells them, newest first by
-- creation; and which workspaces' webhooks work.
ALTER TABLE charging_intents ADD COLUMN authorization_reference text;
UPDATE charging_intents
   SET authorization_reference = 'RP' || upper(right(replace(charging_intent_id, '-', ''), 14))
 WHERE payment_intent_id IS NOT NULL;
CREATE INDEX charging_intents_payment_intent ON charging_intents (payment_intent_id);
CREATE INDEX charging_intents_ocpi_session ON charging_intents (ocpi_session_id);
CREATE INDEX charging_intents_authorization_reference ON charging_intents (authorization_reference);
CREATE INDEX charging_intents_created ON charging_intents (created_at, charging_intent_id);

ALTER TABLE credential_health ADD COLUMN webhook_verified_at timestamptz;
ALTER TABLE credential_health ADD COLUMN webhook_failing_since timestamptz;
