-- The change log: every change to an instance row, one row per revision, written in the same
-- transaction as the change. Replicas tail it to keep their index current and Watch replays it,
-- so no intermediate state is lost even when a row changes twice between two reads.
CREATE TABLE registry_change (
    revision       bigint      PRIMARY KEY,
    changed_at     timestamptz NOT NULL,
    instance_id    uuid        NOT NULL,
    namespace      text        NOT NULL,
    logical_id     text        NOT NULL,
    epoch          uuid        NOT NULL,
    status         text        NOT NULL,
    agent_type     text        NOT NULL,
    version        text        NOT NULL,
    endpoint       text        NOT NULL,
    capabilities   text[]      NOT NULL,
    labels         jsonb       NOT NULL,
    actor_name     text        NOT NULL,
    node_id        text        NOT NULL,
    ip_address     text        NOT NULL,
    pid            bigint      NOT NULL,
    lease_ttl      interval    NOT NULL,
    started_at     timestamptz NOT NULL,
    last_heartbeat timestamptz NOT NULL,
    stopped_at     timestamptz,
    death_reason   text
);
CREATE INDEX registry_change_changed_at_idx ON registry_change (changed_at);

-- The database writes the log itself, for every writer (any server version, or an operator's
-- SQL): each inserted row, and each update that moves a row's revision (a state change). The
-- heartbeat flush sets only last_heartbeat, so it never fires the update trigger. The time is
-- taken when the row is written (after the revision lock), so it rises with the revision.
CREATE FUNCTION registry_log_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, revision)
    VALUES (clock_timestamp(), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.revision);
    RETURN NULL;
END
$$;
CREATE TRIGGER registry_instance_log_insert AFTER INSERT ON registry_instance
    FOR EACH ROW EXECUTE FUNCTION registry_log_change();
CREATE TRIGGER registry_instance_log_update AFTER UPDATE OF revision ON registry_instance
    FOR EACH ROW WHEN (OLD.revision IS DISTINCT FROM NEW.revision)
    EXECUTE FUNCTION registry_log_change();

-- Changes at or below `compacted` may be gone from the log: a watch cannot resume from there.
-- Whatever was committed before the log existed is not in it.
ALTER TABLE registry_revision ADD COLUMN compacted bigint NOT NULL DEFAULT 0;
UPDATE registry_revision SET compacted = value;
