-- The heartbeat flush rewrites `last_heartbeat` for every beating instance once per interval;
-- an index on that column cost one index update per instance per flush and served no query
-- (expiry is decided from the leases held in memory, the stored beat is read by instance id).
DROP INDEX IF EXISTS registry_instance_lease_idx;
