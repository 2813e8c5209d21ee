-- The heartbeat flush rewrites `last_heartbeat` for every beating instance once per interval.
-- An index on that column made each of those row updates a non-HOT update: a new entry in every
-- index of the table (GIN ones included) per instance per flush. No query ranges over the
-- column (expiry is decided from the leases held in memory, and the stored beat is read by
-- instance id), so the index goes, and free space is left in each page so the new row version
-- fits beside the old one (a heap-only-tuple update touches no index at all).
DROP INDEX IF EXISTS registry_instance_lease_idx;
ALTER TABLE registry_instance SET (fillfactor = 70);
