-- Which caller registered each instance: the name of its token, or '' when the server ran
-- without tokens. An `agent` token may heartbeat, drain and deregister only the instances it
-- registered. The change log carries it so every replica's index knows the owner.
ALTER TABLE registry_instance ADD COLUMN registered_by text NOT NULL DEFAULT '';
ALTER TABLE registry_change ADD COLUMN registered_by text NOT NULL DEFAULT '';

CREATE OR REPLACE FUNCTION registry_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, revision)
    VALUES (clock_timestamp(), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.revision);
    RETURN NULL;
END
$$;
