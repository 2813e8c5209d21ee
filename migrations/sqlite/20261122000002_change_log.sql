-- The change log, as on Postgres: one row per instance change, written with the change.
CREATE TABLE registry_change (
    revision       INTEGER PRIMARY KEY,
    changed_at     INTEGER NOT NULL,
    instance_id    TEXT    NOT NULL,
    namespace      TEXT    NOT NULL,
    logical_id     TEXT    NOT NULL,
    epoch          TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    agent_type     TEXT    NOT NULL,
    version        TEXT    NOT NULL,
    endpoint       TEXT    NOT NULL,
    capabilities   TEXT    NOT NULL,
    labels         TEXT    NOT NULL,
    actor_name     TEXT    NOT NULL,
    node_id        TEXT    NOT NULL,
    ip_address     TEXT    NOT NULL,
    pid            INTEGER NOT NULL,
    lease_ttl      INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    last_heartbeat INTEGER NOT NULL,
    stopped_at     INTEGER,
    death_reason   TEXT
);
CREATE INDEX registry_change_changed_at_idx ON registry_change (changed_at);

-- Written by the database itself, as on Postgres; changed_at is microseconds, database time.
CREATE TRIGGER registry_instance_log_insert AFTER INSERT ON registry_instance
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.revision);
END;
CREATE TRIGGER registry_instance_log_update AFTER UPDATE OF revision ON registry_instance
    WHEN OLD.revision IS NOT NEW.revision
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.revision);
END;

ALTER TABLE registry_revision ADD COLUMN compacted INTEGER NOT NULL DEFAULT 0;
UPDATE registry_revision SET compacted = value;
