-- The guest quota counts a workspace's guest intents waiting for payment on every
-- guest pre-authorization: a partial index keeps that count bounded by the quota
-- instead of growing with every intent ever made.
CREATE INDEX charging_intents_pending_guests ON charging_intents (workspace_id)
    WHERE status = 'pending_payment' AND driver IS NULL;
