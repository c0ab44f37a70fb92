-- OCPI location ids are CiString: one location per id whatever its case. Each folded
-- (lower-case) id maps to the stream its first publication created, which keeps the
-- case it was published with.
CREATE TABLE location_keys
(
    folded      text PRIMARY KEY,
    location_id text NOT NULL
) STRICT;

-- Locations published before the map existed (of ids differing only in case, the
-- first stream to have been written keeps the id).
INSERT INTO location_keys (folded, location_id)
SELECT lower(aggregate_id), aggregate_id
  FROM events
 WHERE aggregate_type = 'Location'
 GROUP BY aggregate_id
 ORDER BY MIN(global_seq)
ON CONFLICT (folded) DO NOTHING;
