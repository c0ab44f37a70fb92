-- A candidate credential set (saved while a valid set serves payments) and its health.
ALTER TABLE credential_health ADD COLUMN candidate_version INTEGER;
ALTER TABLE credential_health ADD COLUMN candidate_status TEXT;
