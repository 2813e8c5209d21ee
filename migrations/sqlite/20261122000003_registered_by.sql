-- Which caller registered each instance: the name of its token, or '' when the server ran
-- without tokens (see the Postgres migration). The log triggers are recreated to carry it.
ALTER TABLE registry_instance ADD COLUMN registered_by TEXT NOT NULL DEFAULT '';
ALTER TABLE registry_change ADD COLUMN registered_by TEXT NOT NULL DEFAULT '';

DROP TRIGGER registry_instance_log_insert;
DROP TRIGGER registry_instance_log_update;
CREATE TRIGGER registry_instance_log_insert AFTER INSERT ON registry_instance
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.revision);
END;
CREATE TRIGGER registry_instance_log_update AFTER UPDATE OF revision ON registry_instance
    WHEN OLD.revision IS NOT NEW.revision
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.revision);
END;
