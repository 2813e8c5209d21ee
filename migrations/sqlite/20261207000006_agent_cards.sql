-- Agent cards, as on Postgres (see there). The card is a BLOB of the exact bytes received.
CREATE TABLE agent_card (
    namespace    TEXT    NOT NULL REFERENCES namespace (name),
    logical_id   TEXT    NOT NULL,
    digest       TEXT    NOT NULL,
    kind         TEXT    NOT NULL CHECK (kind IN ('a2a', 'mcp')),
    card         BLOB    NOT NULL,
    name         TEXT    NOT NULL,
    version      TEXT    NOT NULL,
    published_at INTEGER NOT NULL,
    revision     INTEGER NOT NULL,
    collected    INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, logical_id, digest),
    CHECK (collected = (length(card) = 0))
);
CREATE UNIQUE INDEX agent_card_revision_idx ON agent_card (revision);

ALTER TABLE registry_instance ADD COLUMN card_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE registry_change ADD COLUMN card_digest TEXT NOT NULL DEFAULT '';

DROP TRIGGER registry_instance_log_insert;
DROP TRIGGER registry_instance_log_update;
CREATE TRIGGER registry_instance_log_insert AFTER INSERT ON registry_instance
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, card_digest, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.card_digest, NEW.revision);
END;
CREATE TRIGGER registry_instance_log_update AFTER UPDATE OF revision ON registry_instance
    WHEN OLD.revision IS NOT NEW.revision
BEGIN
    INSERT INTO registry_change (changed_at, instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint, capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at, last_heartbeat, stopped_at, death_reason, registered_by, card_digest, revision)
    VALUES (CAST((julianday('now') - 2440587.5) * 86400000000 AS INTEGER), NEW.instance_id, NEW.namespace, NEW.logical_id, NEW.epoch, NEW.status, NEW.agent_type, NEW.version, NEW.endpoint, NEW.capabilities, NEW.labels, NEW.actor_name, NEW.node_id, NEW.ip_address, NEW.pid, NEW.lease_ttl, NEW.started_at, NEW.last_heartbeat, NEW.stopped_at, NEW.death_reason, NEW.registered_by, NEW.card_digest, NEW.revision);
END;

-- active_instances selects i.* (SQLite expands it when the view is read); active_instance
-- lists its columns, so it is made again with card_digest.
DROP VIEW active_instance;
CREATE VIEW active_instance AS
SELECT instance_id, namespace, logical_id, epoch, status, agent_type, version, endpoint,
       capabilities, labels, actor_name, node_id, ip_address, pid, lease_ttl, started_at,
       last_heartbeat, stopped_at, death_reason, revision, registered_by, card_digest
FROM (
    SELECT *, row_number() OVER (
        PARTITION BY namespace, logical_id ORDER BY started_at, instance_id
    ) AS seniority
    FROM active_instances
)
WHERE seniority = 1;

CREATE VIEW active_agent AS
WITH latest AS (
    SELECT namespace, logical_id, digest FROM (
        SELECT namespace, logical_id, digest, row_number() OVER (
            PARTITION BY namespace, logical_id ORDER BY revision DESC
        ) AS newest
        FROM agent_card
        WHERE collected = 0
    ) WHERE newest = 1
), live AS (
    SELECT namespace, logical_id, count(*) AS live_instances
    FROM active_instances
    GROUP BY namespace, logical_id
), chosen AS (
    SELECT l.namespace, l.logical_id,
           COALESCE((
               SELECT c.digest
               FROM active_instance a
               JOIN agent_card c ON c.namespace = a.namespace AND c.logical_id = a.logical_id
                                AND c.digest = a.card_digest AND c.collected = 0
               WHERE a.namespace = l.namespace AND a.logical_id = l.logical_id
           ), l.digest) AS digest
    FROM latest l
)
SELECT c.namespace, c.logical_id, c.kind, c.name, c.version, c.digest,
       COALESCE(live.live_instances, 0) AS live_instances,
       CASE WHEN live.live_instances > 0 THEN 'LIVE' ELSE 'NO_LIVE_INSTANCES' END AS state,
       c.published_at, c.revision,
       CAST(c.card AS TEXT) AS card
FROM chosen ch
JOIN agent_card c ON c.namespace = ch.namespace AND c.logical_id = ch.logical_id
                 AND c.digest = ch.digest
LEFT JOIN live ON live.namespace = ch.namespace AND live.logical_id = ch.logical_id;
